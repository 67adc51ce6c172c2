"""Staged coarse-to-fine (C2F) diffusion inpainting with latent categories guidance (DESIGN.md section 2).

Stage ``s`` (default resolutions 256 -> 512 -> 1024) is a pixel-space
:class:`diffusion.denoiser.InpaintingDenoiser` around a :class:`networks.c2f.unet.InpaintingUNet`;
all stages read the same LCG category tokens (:class:`networks.c2f.category_embedding.LatentCategoryEmbedding`,
loaded from an ``LCGPretrainModule`` checkpoint). Stage ``s > 0`` gets 3 extra input channels
(``cond``): the upsampled output of stage ``s - 1`` corrected by a
:class:`networks.c2f.guidance_combiner.GuidanceCombiner` (known pixels pasted exactly, a learned
correction in the hole).

Training (one stage per step, sampled uniformly from ``train_stages`` with a step-seeded RNG so
every DDP rank picks the same one): the batch holds the finest resolution; the module builds the
pyramid (area / max-pool, :mod:`diffusion.pyramid`). The condition of stage ``s > 0`` is the
ground truth at stage ``s - 1`` degraded by :func:`diffusion.pyramid.degrade_condition` (blur +
noise in the hole, upsampled), so each stage trains on its own. Per-sample loss of stage ``k``::

    noise_weight * noise + l1_weight * l1 + combiner_weight * combiner + sum_j w_j * term_j

``noise``: mask-weighted noise MSE; ``l1``: |x0_pred - target|; ``combiner``: hole L1 of the
combiner output vs the stage's ground truth (stages > 0); ``term_j``: loss-term callbacks
(:class:`callbacks.boundary_loss.BoundaryLoss`, :class:`callbacks.consistency_loss.UpsamplingConsistencyLoss`)
evaluated on ctx ``{x0_pred, target, mask, condition (stages > 0, detached), stage}``.
Logged: ``train/s{k}/<term>``, ``train/s{k}/loss``, ``train/loss``; ``val/s{k}/<term>``,
``val/s{k}/loss``, ``val/loss`` (mean over the trained stages).

Sampling (:meth:`C2FDiffusionModule.inpaint`): DDIM at every stage (60/40/30 steps by default)
with classifier-free guidance, one gain per stage, conditional and unconditional passes in one
batched forward; known pixels are kept exactly at every stage and in the result.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn

from diffusion.denoiser import InpaintingDenoiser
from diffusion.guidance import GuidanceMode, drop_condition, guidance_contexts, resolve_cond_drop_prob
from diffusion.pyramid import (
    crop_to,
    degrade_condition,
    downsample_image,
    downsample_mask,
    pad_to_multiple,
    stage_sizes,
    upsample,
)
from diffusion.sampling import sample_ddim
from diffusion.schedules import ScheduleName
from lightning_modules.lcg_pretrain import check_inpainting_batch
from lightning_modules.loss_term_host import LossTermHost
from masks.types import Category
from networks.c2f.category_embedding import LatentCategoryEmbedding, categories_from_mask_types, load_lcg_embedding
from networks.c2f.guidance_combiner import GuidanceCombiner
from networks.c2f.unet import InpaintingUNet

__all__ = ["C2FDiffusionModule", "C2FCheckpointError"]

#: key under which a C2F checkpoint records what wrote it
CHECKPOINT_META_KEY = "c2f_diffusion"


class C2FCheckpointError(ValueError):
    """A checkpoint that was not written by :class:`C2FDiffusionModule` or has another stage layout."""


def _check_meta(ckpt: Mapping[str, Any], path: str | Path, resolutions: Sequence[int]) -> None:
    meta = ckpt.get(CHECKPOINT_META_KEY)
    if meta is None:
        hp = ckpt.get("hyper_parameters", {}) or {}
        prefixes = sorted({k.split(".")[0] for k in ckpt.get("state_dict", {})})[:6]
        raise C2FCheckpointError(
            f"{path} was not written by C2FDiffusionModule (no {CHECKPOINT_META_KEY!r} entry; state_dict prefixes "
            f"{prefixes}, hyper-parameters {sorted(hp)[:6]}). An LCG checkpoint goes to "
            "model.init_args.lcg_checkpoint instead; other modules' checkpoints cannot be loaded"
        )
    if list(meta["resolutions"]) != list(resolutions):
        raise C2FCheckpointError(
            f"{path} holds a C2F model with {len(meta['resolutions'])} stages at resolutions {list(meta['resolutions'])}, "
            f"but this module has {len(resolutions)} stages at {list(resolutions)}; set model.init_args.resolutions "
            "(and the per-stage lists) to the checkpoint's values"
        )


class C2FDiffusionModule(LossTermHost, LightningModule):
    """Coarse-to-fine diffusion inpainting: a pyramid of LCG-guided U-Net stages (see module docstring).

    Args:
        unets: one dict of :class:`networks.c2f.unet.InpaintingUNet` arguments per stage (channels,
            channel_mults, attention_levels, ...). ``context_dim`` defaults to the embedding's
            ``dim`` and ``cond_channels`` is set by the module (0 at stage 0, 3 above); giving
            other values is an error.
        embedding: :class:`networks.c2f.category_embedding.LatentCategoryEmbedding` arguments
            (tokens_per_category, dim, null_embedding); must match the LCG checkpoint.
        resolutions: stage resolutions, coarse to fine (each divides the last; the batch / the
            image to inpaint is at the last one, or any size with the same ratios).
        sampling_steps: DDIM steps per stage.
        guidance_gains: classifier-free guidance gain per stage. The seed paper prescribes a large
            gain at the coarsest stage, smaller at each finer one, without numbers; the default
            starts at PixelHacker's 4.5.
        lcg_checkpoint: ``LCGPretrainModule`` checkpoint to load the category embedding from.
            None keeps the random initialisation (tiny configs and tests; the tokens are then
            fixed random vectors the stages learn to read).
        lcg_load_unet: also initialise the stage-0 U-Net from the LCG checkpoint (its config must
            be the LCG run's U-Net config).
        train_embedding: also train the category embedding (default: keep the LCG embedding).
        init_checkpoint: a C2FDiffusionModule checkpoint whose weights initialise this module
            (e.g. the run that trained stage 0, before training stage 1); same stage layout required.
        train_stages: stage indices trained by this run (one is sampled per step); None = all.
            Stages not listed are frozen and get no optimizer state.
        condition_blur_sigma: (min, max) Gaussian sigma (pixels of the lower stage) of the
            ground-truth degradation that stands in for the lower stage's output in training.
        condition_noise_std: (min, max) std of the noise of that degradation.
        combiner_width: feature channels of each guidance combiner.
        combiner_depth: residual blocks of each guidance combiner.
        schedule: noise schedule of every stage (``scaled_linear``, ``linear``, ``cosine``).
        num_train_timesteps: training timesteps ``T``.
        hole_weight: noise-loss weight of hole pixels.
        known_weight: noise-loss weight of known pixels.
        noise_weight: weight of the mask-weighted noise loss.
        l1_weight: weight of the image L1 on the predicted x0.
        combiner_weight: weight of the combiner's hole L1 (stages > 0).
        guidance: ``"fg_bg"`` (PixelHacker, ``eps_bg + s (eps_fg - eps_bg)``) or ``"learned_null"``
            (learned null tokens with condition dropout, ``eps_null + s (eps_c - eps_null)``).
        cond_drop_prob: condition-dropout probability for ``guidance="learned_null"`` (None: 0.1).
        sample_eta: DDIM eta of every stage.
        cfg_batched: conditional + unconditional CFG passes as one batched forward (False: two
            forwards, less peak memory).
        val_sampling_steps: DDIM steps per stage for the validation image grids (None:
            ``sampling_steps``); lets tiny CPU runs log grids cheaply.
        degenerate_masks: ``"error"`` or ``"warn"`` on training masks with no hole / no known pixel.
        seed: seed of the stage choice, validation noise, and the sampling of ``log_images`` /
            ``predict_step`` (predictions are reproducible).
        optimizer: optimizer factory (``OptimizerCallable``) applied to the trainable parameters.
    """

    def __init__(
        self,
        unets: list[dict[str, Any]],
        embedding: dict[str, Any] | None = None,
        resolutions: list[int] = [256, 512, 1024],
        sampling_steps: list[int] = [60, 40, 30],
        guidance_gains: list[float] = [4.5, 3.0, 1.5],
        lcg_checkpoint: str | None = None,
        lcg_load_unet: bool = False,
        train_embedding: bool = False,
        init_checkpoint: str | None = None,
        train_stages: list[int] | None = None,
        condition_blur_sigma: list[float] = [0.0, 1.5],
        condition_noise_std: list[float] = [0.0, 0.05],
        combiner_width: int = 32,
        combiner_depth: int = 2,
        schedule: ScheduleName = "scaled_linear",
        num_train_timesteps: int = 1000,
        hole_weight: float = 1.0,
        known_weight: float = 0.1,
        noise_weight: float = 1.0,
        l1_weight: float = 0.1,
        combiner_weight: float = 0.1,
        guidance: GuidanceMode = "fg_bg",
        cond_drop_prob: float | None = None,
        sample_eta: float = 0.0,
        cfg_batched: bool = True,
        val_sampling_steps: list[int] | None = None,
        degenerate_masks: Literal["error", "warn"] = "error",
        seed: int = 0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        n = len(resolutions)
        lists = {"unets": unets, "sampling_steps": sampling_steps, "guidance_gains": guidance_gains}
        if val_sampling_steps is not None:
            lists["val_sampling_steps"] = val_sampling_steps
        bad = {k: len(v) for k, v in lists.items() if len(v) != n}
        if n == 0 or bad:
            raise ValueError(
                f"C2FDiffusionModule: every per-stage list needs one entry per resolution "
                f"(resolutions={list(resolutions)}, {n} stages); got lengths {bad}"
            )
        if list(resolutions) != sorted(set(resolutions)) or any(resolutions[-1] % r for r in resolutions):
            raise ValueError(
                f"C2FDiffusionModule: resolutions must increase strictly and each divide the last, got {list(resolutions)}"
            )
        if any(s < 1 for s in sampling_steps) or any(s < 1 for s in (val_sampling_steps or [1])):
            raise ValueError(f"C2FDiffusionModule: sampling steps must be >= 1, got {list(sampling_steps)} / {val_sampling_steps}")
        if any(b > a for a, b in zip(guidance_gains, guidance_gains[1:])):
            rank_zero_warn(
                f"C2FDiffusionModule: guidance_gains {list(guidance_gains)} increase from coarse to fine; the method uses "
                "a large gain at the coarsest stage and smaller ones above it"
            )
        stages = list(range(n)) if train_stages is None else sorted(set(int(s) for s in train_stages))
        if not stages or any(not 0 <= s < n for s in stages):
            raise ValueError(f"C2FDiffusionModule: train_stages must list stage indices in 0..{n - 1}, got {train_stages}")
        for name, rng in (("condition_blur_sigma", condition_blur_sigma), ("condition_noise_std", condition_noise_std)):
            if len(rng) != 2 or not 0 <= rng[0] <= rng[1]:
                raise ValueError(f"C2FDiffusionModule: {name} must be [min, max] with 0 <= min <= max, got {list(rng)}")
        self.embedding = LatentCategoryEmbedding(**(embedding or {}))
        cond_drop_prob = resolve_cond_drop_prob(guidance, cond_drop_prob, self.embedding, "C2FDiffusionModule")
        self.stages = torch.nn.ModuleList()
        for s, cfg in enumerate(unets):
            cfg = dict(cfg)
            want = 0 if s == 0 else 3
            if cfg.get("cond_channels", want) != want:
                raise ValueError(
                    f"C2FDiffusionModule: unets[{s}].cond_channels is set by the module ({want} at stage {s}); remove it"
                )
            if cfg.get("context_dim", self.embedding.dim) != self.embedding.dim:
                raise ValueError(
                    f"C2FDiffusionModule: unets[{s}].context_dim={cfg['context_dim']} must equal embedding dim {self.embedding.dim}"
                )
            cfg.update(cond_channels=want, context_dim=self.embedding.dim)
            unet = InpaintingUNet(**cfg)
            self.stages.append(InpaintingDenoiser(unet, schedule, num_train_timesteps, hole_weight, known_weight))
        self.combiners = torch.nn.ModuleList(
            GuidanceCombiner(combiner_width, combiner_depth, token_dim=self.embedding.dim) for _ in range(n - 1)
        )
        if lcg_checkpoint is not None:
            load_lcg_embedding(lcg_checkpoint, self.embedding, self.stages[0].unet if lcg_load_unet else None)
        elif lcg_load_unet:
            raise ValueError("C2FDiffusionModule: lcg_load_unet=true needs lcg_checkpoint")
        if init_checkpoint is not None:
            self.load_c2f_weights(init_checkpoint)

        self.resolutions = [int(r) for r in resolutions]
        self.sampling_steps = [int(s) for s in sampling_steps]
        self.guidance_gains = [float(g) for g in guidance_gains]
        self.val_sampling_steps = None if val_sampling_steps is None else [int(s) for s in val_sampling_steps]
        self.train_stages = stages
        self.condition_blur_sigma, self.condition_noise_std = tuple(condition_blur_sigma), tuple(condition_noise_std)
        self.noise_weight, self.l1_weight, self.combiner_weight = noise_weight, l1_weight, combiner_weight
        self.guidance, self.cond_drop_prob = guidance, cond_drop_prob
        self.sample_eta, self.cfg_batched = sample_eta, cfg_batched
        self.degenerate_masks, self.seed = degenerate_masks, seed
        self.optimizer_factory = optimizer
        self._freeze_untrained(train_embedding)

    # ------------------------------------------------------------------ structure
    @property
    def num_stages(self) -> int:
        """Number of pyramid stages."""
        return len(self.resolutions)

    @property
    def size_multiple(self) -> int:
        """Image H and W must be multiples of this (every stage size divisible by its U-Net's factor)."""
        top = self.resolutions[-1]
        m = 1
        for r, st in zip(self.resolutions, self.stages):
            f = (top // r) * st.unet.downsample_factor
            m = m * f // math.gcd(m, f)
        return m

    def _freeze_untrained(self, train_embedding: bool) -> None:
        self.embedding.requires_grad_(train_embedding)
        for s in range(self.num_stages):
            on = s in self.train_stages
            self.stages[s].requires_grad_(on)
            if s > 0:
                self.combiners[s - 1].requires_grad_(on)

    def load_c2f_weights(self, path: str | Path) -> None:
        """Load every weight from a C2FDiffusionModule checkpoint with the same stage layout.

        Raises:
            FileNotFoundError: no file at ``path``.
            C2FCheckpointError: another module's checkpoint, another stage count / resolutions, or
                U-Net configs that differ (the message names the keys).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"C2F checkpoint {path} not found")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict):
            raise C2FCheckpointError(f"{path} is not a Lightning checkpoint")
        _check_meta(ckpt, path, self.hparams.resolutions)
        self._load_state(ckpt["state_dict"], path)

    def _load_state(self, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
        if missing or unexpected or shapes:
            raise C2FCheckpointError(
                f"{path}: weights do not fit this C2F configuration: missing {missing[:6]}, unexpected {unexpected[:6]}, "
                f"shape mismatches {shapes[:6]}; use the unets/embedding/combiner settings of the run that wrote it"
            )
        self.load_state_dict(state)

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu", **overrides: Any) -> "C2FDiffusionModule":
        """Rebuild a trained module from its checkpoint (hyper-parameters are stored in it), in eval mode.

        ``overrides`` replace stored constructor arguments (e.g. ``sampling_steps``); the stage
        layout must stay the same. Raises :class:`C2FCheckpointError` for another module's file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"C2F checkpoint {path} not found")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict) or CHECKPOINT_META_KEY not in ckpt:
            _check_meta(ckpt if isinstance(ckpt, dict) else {}, path, [])
        hp = {k: v for k, v in dict(ckpt.get("hyper_parameters", {})).items() if not k.startswith("_")}
        hp.update(overrides)
        hp.update(lcg_checkpoint=None, lcg_load_unet=False, init_checkpoint=None)  # weights come from this file
        module = cls(**hp)
        _check_meta(ckpt, path, module.resolutions)
        module._load_state(ckpt["state_dict"], path)
        return module.to(map_location).eval()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_META_KEY] = {"resolutions": list(self.resolutions), "num_stages": self.num_stages}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        _check_meta(checkpoint, "checkpoint", self.resolutions)

    # ------------------------------------------------------------------ helpers
    def _categories(self, batch: Mapping[str, Any], b: int, device: torch.device) -> torch.Tensor:
        if "category" in batch:
            return torch.as_tensor(batch["category"], device=device).long().reshape(b)
        if "mask_type" in batch:
            return categories_from_mask_types(batch["mask_type"].long().to(device))
        raise ValueError(f"batch needs 'category' or 'mask_type'; got keys {sorted(batch)}")

    def _check_size(self, h: int, w: int, where: str) -> None:
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(
                f"{where}: image size {h}x{w} is not a multiple of {m} (stage factor x U-Net downsampling for "
                f"resolutions {self.resolutions}); set the data resolution to a multiple of {m}"
            )

    def stage_inputs(
        self,
        batch: Mapping[str, Any],
        stage: int,
        generator: torch.Generator | None = None,
        drop: bool = False,
    ) -> dict[str, torch.Tensor | None]:
        """Training inputs of ``stage`` from a full-resolution batch: target, mask, tokens, condition.

        The condition (stages > 0) is the degraded lower-stage ground truth passed through the
        stage's guidance combiner; ``raw_condition`` is the degraded upsampled input before it.
        """
        image, mask = batch["image"], batch["mask"]
        b = image.shape[0]
        sizes = stage_sizes(image.shape[-2:], self.resolutions)
        target = downsample_image(image, sizes[stage])
        m = downsample_mask(mask, sizes[stage])
        category = self._categories(batch, b, image.device)
        tokens = self.embedding.tokens(category)
        context = drop_condition(tokens, self.embedding, self.cond_drop_prob) if drop else tokens
        raw = cond = None
        if stage > 0:
            lo = sizes[stage - 1]
            raw = degrade_condition(
                downsample_image(image, lo), downsample_mask(mask, lo), sizes[stage],
                self.condition_blur_sigma, self.condition_noise_std, generator,
            )
            cond = self.combiners[stage - 1](raw, target * (1 - m), m, tokens)
        return {"target": target, "mask": m, "context": context, "tokens": tokens, "raw_condition": raw, "condition": cond}

    def stage_losses(
        self, batch: Mapping[str, Any], stage: int, generator: torch.Generator | None = None, drop: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-sample total loss ``(B,)`` of ``stage`` and every term ``(B,)`` by name."""
        inp = self.stage_inputs(batch, stage, generator, drop)
        target, m, cond = inp["target"], inp["mask"], inp["condition"]
        b = target.shape[0]
        t = noise = None
        if generator is not None:
            t = torch.randint(0, self.stages[stage].num_train_timesteps, (b,), generator=generator).to(target.device)
            noise = torch.randn(target.shape, generator=generator).to(target.device, target.dtype)
        out = self.stages[stage].loss(target, m, inp["context"], cond=cond, t=t, noise=noise)
        terms = {"noise": out["noise"], "l1": out["l1"]}
        per_sample = self.noise_weight * out["noise"] + self.l1_weight * out["l1"]
        if cond is not None:
            hole = m.sum(dim=(1, 2, 3)).clamp_min(1.0) * 3
            terms["combiner"] = ((cond - target).abs() * m).sum(dim=(1, 2, 3)) / hole
            per_sample = per_sample + self.combiner_weight * terms["combiner"]
        ctx: dict[str, Any] = {"x0_pred": out["x0_pred"], "target": target, "mask": m, "stage": stage}
        if cond is not None:
            ctx["condition"] = cond.detach()
        for name, (weight, value) in self.extra_loss_terms(ctx).items():
            per_sample = per_sample + weight * value
            terms[name] = value
        terms["loss"] = per_sample
        return per_sample, terms

    def _pick_stage(self) -> int:
        if len(self.train_stages) == 1:
            return self.train_stages[0]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.global_step))
        return self.train_stages[int(torch.randint(len(self.train_stages), (1,), generator=g))]

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        check_inpainting_batch(batch, self.degenerate_masks, "training batch")
        self._check_size(*batch["image"].shape[-2:], "training batch")
        stage = self._pick_stage()
        per_sample, terms = self.stage_losses(batch, stage, drop=True)
        b = per_sample.shape[0]
        loss = per_sample.mean()
        for name, value in terms.items():
            self.log(f"train/s{stage}/{name}", value.mean(), batch_size=b)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        check_inpainting_batch(batch, "warn", "validation batch")
        self._check_size(*batch["image"].shape[-2:], "validation batch")
        b = batch["image"].shape[0]
        total = 0.0
        for stage in self.train_stages:
            g = torch.Generator().manual_seed(self.seed + 7919 * batch_idx + stage)
            per_sample, terms = self.stage_losses(batch, stage, generator=g)
            for name, value in terms.items():
                self.log(f"val/s{stage}/{name}", value.mean(), batch_size=b, sync_dist=True)
            total = total + per_sample.mean()
        loss = total / len(self.train_stages)
        self.log("val/loss", loss, prog_bar=True, batch_size=b, sync_dist=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return self.optimizer_factory(params)

    # ------------------------------------------------------------------ sampling
    def _category_tensor(self, category: int | str | torch.Tensor | Sequence[int], b: int, device: torch.device) -> torch.Tensor:
        if isinstance(category, str):
            names = {"foreground": Category.FOREGROUND, "background": Category.BACKGROUND}
            if category not in names:
                raise ValueError(f"category must be 'foreground' or 'background' (or 0 / 1), got {category!r}")
            category = int(names[category])
        c = torch.as_tensor(category, device=device).long().reshape(-1)
        if c.numel() == 1:
            c = c.expand(b)
        if c.numel() != b:
            raise ValueError(f"category must be one id or one per image ({b}), got {c.numel()}")
        return c

    @torch.no_grad()
    def inpaint(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        category: int | str | torch.Tensor | Sequence[int] = "background",
        steps: Sequence[int] | None = None,
        gains: Sequence[float] | None = None,
        eta: float | None = None,
        generator: torch.Generator | None = None,
        cfg_batched: bool | None = None,
        return_stages: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Three-stage (``num_stages``) inpainting of ``image`` where ``mask == 1``; usable outside a Trainer.

        The image is padded (reflect, bottom / right) to :attr:`size_multiple`, the pyramid is built
        (area / max-pool), each stage samples with DDIM + CFG at its size conditioned on the
        combined upsampled output of the stage below, and the result is cropped back.

        Args:
            image: ``(B, 3, H, W)`` in [-1, 1], any H, W (the last stage runs at H x W, stage ``s``
                at ``H * resolutions[s] / resolutions[-1]``).
            mask: ``(B, 1, H, W)``, 1 (> 0.5) = hole.
            category: LCG category of the fill: ``"background"`` (object removal), ``"foreground"``,
                an id (0 fg, 1 bg) or one id per image. Used by ``guidance="learned_null"`` and the combiner.
            steps: DDIM steps per stage (default ``sampling_steps``).
            gains: CFG gain per stage (default ``guidance_gains``).
            eta: DDIM eta (default ``sample_eta``).
            generator: RNG on ``image``'s device (reproducible samples).
            cfg_batched: override ``cfg_batched`` (one doubled forward vs two forwards).
            return_stages: also return every stage's output (at its own size).

        Returns:
            ``(B, 3, H, W)`` in [-1, 1] equal to ``image`` bit for bit where ``mask == 0``
            (and ``[stage outputs]`` when ``return_stages``).
        """
        if image.ndim != 4 or image.shape[1] != 3 or mask.ndim != 4 or mask.shape[1] != 1 or \
                mask.shape[0] != image.shape[0] or mask.shape[-2:] != image.shape[-2:]:
            raise ValueError(
                f"inpaint: image must be (B, 3, H, W) and mask (B, 1, H, W) of the same size, got "
                f"{tuple(image.shape)} and {tuple(mask.shape)}"
            )
        steps = list(self.sampling_steps if steps is None else steps)
        gains = list(self.guidance_gains if gains is None else gains)
        if len(steps) != self.num_stages or len(gains) != self.num_stages:
            raise ValueError(f"inpaint: steps {steps} and gains {gains} need one entry per stage ({self.num_stages})")
        eta = self.sample_eta if eta is None else eta
        batched = self.cfg_batched if cfg_batched is None else cfg_batched
        dtype = next(self.parameters()).dtype
        orig_image = image
        hole_full = (mask > 0.5).to(image.dtype)
        b = image.shape[0]
        category = self._category_tensor(category, b, image.device)
        padded, size = pad_to_multiple(image.to(dtype), self.size_multiple)
        pmask, _ = pad_to_multiple(hole_full.to(dtype), self.size_multiple)
        sizes = stage_sizes(padded.shape[-2:], self.resolutions)
        tokens = self.embedding.tokens(category)
        ctx_c, ctx_u = guidance_contexts(self.embedding, category, self.guidance)
        outputs: list[torch.Tensor] = []
        prev = None
        for s, denoiser in enumerate(self.stages):
            img_s = downsample_image(padded, sizes[s])
            m_s = downsample_mask(pmask, sizes[s])
            masked = img_s * (1 - m_s)
            cond = None
            if prev is not None:
                cond = self.combiners[s - 1](upsample(prev, sizes[s]), masked, m_s, tokens)

            def eps_fn(x: torch.Tensor, t: torch.Tensor, _d=denoiser, _m=masked, _k=m_s, _c=cond, _g=gains[s]) -> torch.Tensor:
                return _d.forward_with_cond_scale(x, t, _m, _k, ctx_c, ctx_u, _g, cond=_c, batched=batched)

            prev = sample_ddim(eps_fn, img_s, m_s, denoiser.alphas_cumprod, steps[s], eta, generator=generator)
            outputs.append(prev)
        out = crop_to(prev, size).to(orig_image.dtype)
        out = torch.where(hole_full > 0.5, out, orig_image)
        outputs[-1] = out
        return (out, outputs) if return_stages else out

    def log_images(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Grids for :class:`callbacks.image_logger.ImageLogger`: ``s{k}`` = masked input | stage output | target.

        One grid per stage at the stage's resolution (holes shown white); sampled with
        ``val_sampling_steps`` (or ``sampling_steps``) and a fixed seed.
        """
        image, mask = batch["image"], batch["mask"]
        b = image.shape[0]
        g = torch.Generator(device=image.device).manual_seed(self.seed)
        _, outs = self.inpaint(
            image, mask, self._categories(batch, b, image.device), steps=self.val_sampling_steps, generator=g, return_stages=True
        )
        grids = {}
        for s, out in enumerate(outs):
            size = out.shape[-2:]
            tgt = downsample_image(image, size)
            m = downsample_mask(mask, size)
            shown = torch.where(m > 0.5, torch.ones_like(tgt), tgt)
            grids[f"s{s}"] = torch.cat([shown, out, tgt], dim=-1)
        return grids

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Inpaint a batch (``image``, ``mask``, optional ``category`` / ``image_uint8`` / ``key``).

        Returns ``{"inpainted", "mask", "key", "image_uint8"}`` for
        :class:`callbacks.prediction_writer.InpaintingPredictionWriter`. Seeded per batch.
        """
        image, mask = batch["image"], batch["mask"]
        b = image.shape[0]
        category = batch.get("category", torch.full((b,), int(Category.BACKGROUND)))
        g = torch.Generator(device=image.device).manual_seed(self.seed + batch_idx)
        out = self.inpaint(image, mask, category, generator=g)
        keys = batch.get("key", [f"{batch_idx:06d}_{i}" for i in range(b)])
        return {"inpainted": out, "mask": (mask > 0.5).float(), "key": list(keys), "image_uint8": batch.get("image_uint8")}

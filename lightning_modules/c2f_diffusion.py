"""Training of the staged coarse-to-fine (C2F) diffusion inpainter with latent categories guidance.

The model is the plain :class:`diffusion.c2f.C2FModel` (per-stage denoisers, guidance combiners,
LCG embedding); sampling is :func:`diffusion.c2f_sampling.sample_c2f`. This module only wires
them to data, losses, optimizers and logging.

Training (one stage per step, sampled uniformly from ``train_stages`` with a step-seeded RNG so
every DDP rank picks the same one): the batch holds the finest resolution;
:meth:`diffusion.c2f.C2FModel.stage_inputs` builds the stage's target, mask and condition (the
degraded ground truth of the stage below through the combiner). Per-sample loss of stage ``k``::

    noise_weight * noise + l1_weight * l1 + combiner_weight * combiner + sum_j w_j * term_j

``noise``: the mask-weighted diffusion loss on the model's prediction target (epsilon, v or x0;
optional min-SNR-gamma weighting); ``l1``: |x0_pred - target|; ``combiner``: hole L1 of the
combiner output vs the stage's ground truth (stages > 0); ``term_j``: loss-term callbacks
(:class:`callbacks.boundary_loss.BoundaryLoss`, :class:`callbacks.consistency_loss.UpsamplingConsistencyLoss`)
evaluated on ctx ``{x0_pred, target, mask, condition (stages > 0, detached), stage}``.
Logged: ``train/s{k}/<term>`` (only at steps that trained stage ``k``), ``train/loss``;
``val/s{k}/<term>``, ``val/loss`` (mean over the trained stages).

Checkpoints carry the model's ``"c2f_model"`` entry, so :meth:`diffusion.c2f.C2FModel.from_checkpoint`
(and :class:`inpainters.c2f.C2FInpainter`) load them without Lightning.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn

from diffusion.c2f import C2F_FORMAT, C2F_META_KEY, C2FModel, C2FSampling, category_ids
from diffusion.c2f_sampling import sample_c2f
from diffusion.denoiser import Prediction
from diffusion.guidance import GuidanceMode, drop_condition, resolve_cond_drop_prob
from diffusion.sampling import TimestepSpacing
from diffusion.schedules import ScheduleName
from diffusion.training import batch_categories, check_inpainting_batch, combine_loss_terms
from evaluation.grids import masked_view
from lightning_modules.loss_term_host import LossTermHost
from masks.types import Category
from networks.c2f.category_embedding import EmbeddingConfig, load_lcg_embedding
from networks.c2f.unet import UNetConfig
from networks.checkpoints import read_checkpoint
from optim.schedules import optimizers_and_schedule

__all__ = ["C2FDiffusionModule"]


class C2FDiffusionModule(LossTermHost, LightningModule):
    """Trains the coarse-to-fine LCG diffusion inpainter (:class:`diffusion.c2f.C2FModel`) stage by stage.

    Args:
        unets: one U-Net architecture per stage (:class:`networks.c2f.unet.UNetConfig`: channels,
            channel_mults, attention_levels, ...); token width and condition channels are set by the model.
        embedding: size of the LCG category embedding (:class:`networks.c2f.category_embedding.EmbeddingConfig`);
            must match the LCG checkpoint.
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
        init_checkpoint: a C2F checkpoint whose weights initialise this module (e.g. the run that
            trained stage 0, before training stage 1); same architecture required.
        train_stages: stage indices trained by this run (one is sampled per step); None = all.
            Stages not listed are frozen and get no optimizer state.
        condition_blur_sigma: (min, max) Gaussian sigma (pixels of the lower stage) of the
            ground-truth degradation that stands in for the lower stage's output in training.
        condition_noise_std: (min, max) std of the noise of that degradation.
        combiner_width: feature channels of each guidance combiner.
        combiner_depth: residual blocks of each guidance combiner.
        combiner: ``"learned"`` guidance combiner, or ``"paste"`` (ablation: known pixels pasted, no correction).
        lcg: use latent category guidance (False: ablation with one shared token set).
        schedule: noise schedule of every stage (``scaled_linear``, ``linear``, ``cosine``).
        num_train_timesteps: training timesteps ``T``.
        hole_weight: diffusion-loss weight of hole pixels.
        known_weight: diffusion-loss weight of known pixels.
        prediction: network target of every stage: ``epsilon``, ``v`` or ``x0``. Default ``v`` with
            ``min_snr_gamma: 5``: in docs/results.md they reach the mean-fill error 4x sooner than epsilon
            and end lowest.
        min_snr_gamma: min-SNR-gamma loss weighting (Hang et al. 2023) with this gamma; None = off.
        zero_terminal_snr: rescale the schedule to zero terminal SNR (Lin et al. 2024; v / x0 only); one value
            or one per stage (docs/schedules.md).
        shift_base: simple-diffusion log-SNR shift ``2 log(shift_base / resolution)`` at each stage's
            resolution (Hoogeboom et al. 2023: 64); null = no shift; one value or one per stage.
        timestep_spacing: DDIM timesteps, ``linspace`` (T-1 .. 0) or ``trailing`` (Lin et al. 2024, with
            zero terminal SNR); one value or one per stage.
        noise_weight: weight of the mask-weighted diffusion loss.
        l1_weight: weight of the image L1 on the predicted x0.
        combiner_weight: weight of the combiner's hole L1 (stages > 0).
        guidance: ``"fg_bg"`` (the requested category ``c`` against the other one ``c'``, ``x_c' + s (x_c - x_c')``; PixelHacker's form for foreground fills)
            or ``"learned_null"`` (learned null tokens with condition dropout, ``x_null + s (x_c - x_null)``).
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
        lr_scheduler: learning-rate schedule factory (``LRSchedulerCallable``, e.g.
            :class:`optim.schedules.WarmupCosineLR`), stepped every optimizer step; None = constant.
    """

    loss_term_inputs = frozenset({"x0_pred", "target", "mask", "condition", "stage"})
    #: called after every DDIM step of ``predict_step`` (set by :class:`callbacks.sampling_progress.SamplingProgress`)
    sampling_callback = None
    #: options that only initialise weights from other files; a checkpoint of this module holds every weight
    weight_init_args = ("lcg_checkpoint", "lcg_load_unet", "init_checkpoint")

    def __init__(
        self,
        unets: list[UNetConfig],
        embedding: EmbeddingConfig | None = None,
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
        combiner: Literal["learned", "paste"] = "learned",
        lcg: bool = True,
        schedule: ScheduleName = "scaled_linear",
        num_train_timesteps: int = 1000,
        hole_weight: float = 1.0,
        known_weight: float = 0.1,
        prediction: Prediction = "v",
        min_snr_gamma: float | None = 5.0,
        zero_terminal_snr: bool | list[bool] = False,
        shift_base: int | None | list[int | None] = None,
        timestep_spacing: TimestepSpacing | list[TimestepSpacing] = "linspace",
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
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
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
        self.model = C2FModel(
            unets, embedding, resolutions, guidance, combiner_width, combiner_depth, combiner, lcg, schedule,
            num_train_timesteps, hole_weight, known_weight, prediction, min_snr_gamma, zero_terminal_snr, shift_base,
            timestep_spacing, sampling=C2FSampling(list(sampling_steps), list(guidance_gains), sample_eta, cfg_batched),
        )
        if val_sampling_steps is not None:
            self.model.check_sampling(val_sampling_steps, guidance_gains, "C2FDiffusionModule val_sampling_steps")
        # hyper-parameters as plain data (a checkpoint must load with weights_only=True)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "unets", "embedding"])
        self.hparams["unets"] = [u.to_dict() for u in self.model.unet_configs]
        self.hparams["embedding"] = self.model.embedding_config.to_dict()
        self.cond_drop_prob = resolve_cond_drop_prob(guidance, cond_drop_prob, self.model.embedding, "C2FDiffusionModule")
        if lcg_checkpoint is not None:
            load_lcg_embedding(lcg_checkpoint, self.model.embedding, self.model.stages[0].unet if lcg_load_unet else None)
        elif lcg_load_unet:
            raise ValueError("C2FDiffusionModule: lcg_load_unet=true needs lcg_checkpoint")
        if init_checkpoint is not None:
            self.load_c2f_weights(init_checkpoint)
        self.val_sampling_steps = None if val_sampling_steps is None else [int(s) for s in val_sampling_steps]
        self.train_stages = stages
        self.condition_blur_sigma, self.condition_noise_std = tuple(condition_blur_sigma), tuple(condition_noise_std)
        self.noise_weight, self.l1_weight, self.combiner_weight = noise_weight, l1_weight, combiner_weight
        self.degenerate_masks, self.seed = degenerate_masks, seed
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self._freeze_untrained(train_embedding)

    # ------------------------------------------------------------------ structure
    @property
    def num_stages(self) -> int:
        """Number of pyramid stages."""
        return self.model.num_stages

    @property
    def resolutions(self) -> list[int]:
        """Stage resolutions, coarse to fine."""
        return self.model.resolutions

    def _freeze_untrained(self, train_embedding: bool) -> None:
        self.model.embedding.requires_grad_(train_embedding)
        for s in range(self.num_stages):
            on = s in self.train_stages
            self.model.stages[s].requires_grad_(on)
            if s > 0:
                self.model.combiners[s - 1].requires_grad_(on)

    def load_c2f_weights(self, path: str) -> None:
        """Initialise every weight from a C2F checkpoint (training run or standalone file) of the same architecture.

        Raises:
            networks.checkpoints.CheckpointError: missing, unsafe or unreadable file, another
                module's checkpoint, another stage layout, or weights that do not fit (names the keys).
        """
        self.model.load_weights_from(read_checkpoint(path, C2F_FORMAT), str(path))

    def setup(self, stage: str) -> None:
        # Joint training samples ONE stage per step, so the other trained stages get no gradient in that step;
        # DDP must be told (it otherwise fails on step 2 with "parameters that were not used").
        ddp_kwargs = getattr(self.trainer.strategy, "_ddp_kwargs", None) if self._trainer is not None else None
        if stage == "fit" and len(self.train_stages) > 1 and isinstance(ddp_kwargs, dict):
            if ddp_kwargs.get("find_unused_parameters") is False:
                raise ValueError(
                    f"C2FDiffusionModule: train_stages={self.train_stages} trains one sampled stage per step, so under DDP the "
                    "others are unused in that step; do not set find_unused_parameters=false (or train one stage per run)"
                )
            ddp_kwargs["find_unused_parameters"] = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[C2F_META_KEY] = self.model.checkpoint_entry(prefix="model.")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # --ckpt_path: refuse another module's checkpoint or another stage layout before Lightning loads weights
        self.model.check_layout(self.model.checkpoint_meta(checkpoint, "checkpoint (--ckpt_path)"), "checkpoint (--ckpt_path)")

    # ------------------------------------------------------------------ losses
    def stage_losses(
        self, batch: Mapping[str, Any], stage: int, generator: torch.Generator | None = None, drop: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-sample total loss ``(B,)`` of ``stage`` and every term ``(B,)`` by name (``loss`` included)."""
        inp = self.model.stage_inputs(
            batch["image"], batch["mask"], batch_categories(batch), stage,
            self.condition_blur_sigma, self.condition_noise_std, generator,
        )
        target, m, cond, tokens = inp["target"], inp["mask"], inp["condition"], inp["tokens"]
        context = drop_condition(tokens, self.model.embedding, self.cond_drop_prob) if drop else tokens
        out = self.model.stages[stage].loss(target, m, context, cond=cond, generator=generator)
        terms = {"noise": (self.noise_weight, out["noise"]), "l1": (self.l1_weight, out["l1"])}
        if cond is not None:
            hole = m.sum(dim=(1, 2, 3)).clamp_min(1.0) * 3
            terms["combiner"] = (self.combiner_weight, ((cond - target).abs() * m).sum(dim=(1, 2, 3)) / hole)
        ctx: dict[str, Any] = {"x0_pred": out["x0_pred"], "target": target, "mask": m, "stage": stage}
        if cond is not None:
            ctx["condition"] = cond.detach()
        terms.update(self.extra_loss_terms(ctx))
        per_sample, values = combine_loss_terms(terms)
        values["loss"] = per_sample
        return per_sample, values

    def _pick_stage(self) -> int:
        if len(self.train_stages) == 1:
            return self.train_stages[0]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.global_step))
        return self.train_stages[int(torch.randint(len(self.train_stages), (1,), generator=g))]

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        check_inpainting_batch(batch, self.degenerate_masks, "training batch")
        self.model.check_size(*batch["image"].shape[-2:], "training batch")
        stage = self._pick_stage()
        per_sample, terms = self.stage_losses(batch, stage, drop=True)
        self.last_loss_terms = {f"s{stage}/{k}": v for k, v in terms.items()}  # named if the loss turns non-finite
        b = per_sample.shape[0]
        loss = per_sample.mean()
        for name, value in terms.items():
            self.log(f"train/s{stage}/{name}", value.mean(), batch_size=b)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        check_inpainting_batch(batch, "warn", "validation batch")
        self.model.check_size(*batch["image"].shape[-2:], "validation batch")
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

    def configure_optimizers(self) -> Any:
        return optimizers_and_schedule(self.parameters(), self.optimizer_factory, self.lr_scheduler_factory)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def inpaint(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        category: int | str | torch.Tensor | list[int] = "background",
        steps: list[int] | None = None,
        gains: list[float] | None = None,
        eta: float | None = None,
        generator: torch.Generator | None = None,
        cfg_batched: bool | None = None,
        return_stages: bool = False,
        callback: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """All-stage inpainting with :func:`diffusion.c2f_sampling.sample_c2f` (arguments as there).

        Returns the ``(B, 3, H, W)`` result, equal to ``image`` bit for bit where ``mask == 0``
        (and the stage outputs when ``return_stages``).
        """
        out, stages = sample_c2f(self.model, image, mask, category, steps, gains, eta=eta, cfg_batched=cfg_batched,
                                 generator=generator, callback=callback)
        return (out, stages) if return_stages else out

    def log_images(self, batch: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
        """Grid for :class:`callbacks.image_logger.ImageLogger`, one row per sample, labelled columns:
        masked input | stage 0 | ... | output | target (coarse stages enlarged to the image size).

        Sampled with ``val_sampling_steps`` (or ``sampling_steps``) and a fixed seed.
        """
        image, mask = batch["image"], batch["mask"]
        g = torch.Generator(device=image.device).manual_seed(self.seed)
        out, outs = self.inpaint(image, mask, batch_categories(batch), steps=self.val_sampling_steps, generator=g,
                                 return_stages=True)
        columns = {"masked input": masked_view(image, mask)}
        for s, stage_out in enumerate(outs[:-1]):
            columns[f"stage {s} ({stage_out.shape[-1]} px)"] = stage_out
        columns["output"] = out
        columns["target"] = image
        return {"stages": columns}

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Inpaint a batch (``image``, ``mask``, optional ``category`` / ``image_uint8`` / ``key``).

        Returns ``{"inpainted", "mask", "key", "image_uint8"}`` for
        :class:`callbacks.prediction_writer.InpaintingPredictionWriter`. Seeded per batch.
        """
        image, mask = batch["image"], batch["mask"]
        b = image.shape[0]
        category = category_ids(batch.get("category", int(Category.BACKGROUND)), b, image.device)
        g = torch.Generator(device=image.device).manual_seed(self.seed + batch_idx)
        out = self.inpaint(image, mask, category, generator=g, callback=self.sampling_callback)
        keys = batch.get("key", [f"{batch_idx:06d}_{i}" for i in range(b)])
        return {"inpainted": out, "mask": (mask > 0.5).float(), "key": list(keys), "image_uint8": batch.get("image_uint8")}

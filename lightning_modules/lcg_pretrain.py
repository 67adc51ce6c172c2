"""LCG pretraining: the inpainting U-Net and the foreground / background category embeddings.

Trains at one (base) resolution on ShardDataModule batches (``image``, ``mask``, ``mask_type``,
``category``; docs/conventions.md). Per-sample loss::

    noise_weight * mask-weighted noise loss + l1_weight * L1(x0_pred, image) + sum_k w_k * term_k

where ``term_k`` are the loss-term callbacks in ``trainer.callbacks`` (ctx: ``x0_pred``,
``target``, ``mask``). Logs ``train/loss``, ``train/noise``, ``train/l1``, ``train/<term>``,
``val/loss``, ``val/noise``, ``val/l1`` and ``val/loss_<mask type>`` (``val/loss_fg_object``,
``val/loss_bg_object``, ``val/loss_bg_random``, ``val/loss_bg_replacement``). Validation uses a
fixed RNG (timesteps and noise seeded per batch) so ``val/loss`` is comparable across epochs.

Its checkpoint (keys ``embedding.*`` and ``denoiser.unet.*``; EMA weights in ``state_dict`` when
``callbacks.ema.EMA`` is used) is what the C2F stages load through
:func:`networks.c2f.category_embedding.load_lcg_embedding`.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from diffusion.denoiser import InpaintingDenoiser, Prediction
from diffusion.guidance import GuidanceMode, drop_condition, guidance_contexts, resolve_cond_drop_prob
from diffusion.sampling import TimestepSpacing, sample_ddim
from diffusion.schedules import ScheduleName
from diffusion.training import batch_categories, check_inpainting_batch, combine_loss_terms
from lightning_modules.loss_term_host import LossTermHost
from masks.types import MaskType
from networks.c2f.category_embedding import LatentCategoryEmbedding
from networks.c2f.unet import InpaintingUNet
from optim.schedules import optimizers_and_schedule

__all__ = ["LCGPretrainModule"]

class LCGPretrainModule(LossTermHost, LightningModule):
    """Trains the inpainting U-Net and the LCG foreground / background embeddings.

    Images are in [-1, 1] (docs/conventions.md); a batch outside that range, a mask that does
    not match the image size or is not binary raises ``ValueError``. Masks without holes or
    without known pixels raise too (``degenerate_masks: warn`` only warns).

    Args:
        unet: the noise-prediction U-Net (``networks.c2f.unet.InpaintingUNet``).
        embedding: the category embedding; its ``dim`` must equal ``unet.context_dim``.
        schedule: noise schedule (``scaled_linear``, ``linear``, ``cosine``).
        num_train_timesteps: training timesteps ``T``.
        hole_weight: diffusion-loss weight of hole pixels.
        known_weight: diffusion-loss weight of known pixels.
        prediction: network target (``epsilon``, ``v``, ``x0``; see :mod:`diffusion.denoiser`); default ``v``
            with ``min_snr_gamma: 5`` as the C2F stages (docs/results.md).
        min_snr_gamma: min-SNR-gamma loss weighting with this gamma (None = off).
        zero_terminal_snr: rescale the schedule to zero terminal SNR (Lin et al. 2024; v / x0 only; docs/schedules.md).
        shift_resolution: training resolution in px for the simple-diffusion log-SNR shift
            ``2 log(64 / shift_resolution)`` (Hoogeboom et al. 2023); None = no shift. Use the C2F
            stage-0 setting when this U-Net initialises stage 0.
        timestep_spacing: DDIM timesteps of the logged samples: ``linspace`` or ``trailing``.
        noise_weight: weight of the mask-weighted diffusion loss (``noise``) in the total.
        l1_weight: weight of the image L1 on the predicted x0.
        guidance: ``"fg_bg"`` (the requested category ``c`` against the other one ``c'``, ``x_c' + s (x_c - x_c')``; PixelHacker's form for foreground fills)
            or ``"learned_null"`` (learned null tokens, condition dropout, ``x_null + s (x_c - x_null)``).
        cond_drop_prob: probability of replacing a sample's tokens by the null tokens in training;
            None means 0.1 with ``guidance="learned_null"``; must be None or 0 with ``"fg_bg"``.
        guidance_scale: CFG gain ``s`` used for the logged samples.
        sample_steps: DDIM steps for the logged samples.
        sample_eta: DDIM eta for the logged samples.
        degenerate_masks: ``"error"`` or ``"warn"`` on masks with no hole or no known pixel.
        val_seed: seed of the validation timesteps/noise and of the logged samples.
        optimizer: optimizer factory (``OptimizerCallable``), e.g. AdamW with its lr.
        lr_scheduler: learning-rate schedule factory (``LRSchedulerCallable``, e.g.
            :class:`optim.schedules.WarmupCosineLR`), stepped every optimizer step; None = constant.
    """

    loss_term_inputs = frozenset({"x0_pred", "target", "mask"})

    def __init__(
        self,
        unet: InpaintingUNet,
        embedding: LatentCategoryEmbedding,
        schedule: ScheduleName = "scaled_linear",
        num_train_timesteps: int = 1000,
        hole_weight: float = 1.0,
        known_weight: float = 0.1,
        prediction: Prediction = "v",
        min_snr_gamma: float | None = 5.0,
        zero_terminal_snr: bool = False,
        shift_resolution: int | None = None,
        timestep_spacing: TimestepSpacing = "linspace",
        noise_weight: float = 1.0,
        l1_weight: float = 0.1,
        guidance: GuidanceMode = "fg_bg",
        cond_drop_prob: float | None = None,
        guidance_scale: float = 4.5,
        sample_steps: int = 50,
        sample_eta: float = 0.0,
        degenerate_masks: Literal["error", "warn"] = "error",
        val_seed: int = 0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        # the networks are weights (state_dict), not hyper-parameters: pickling modules into the
        # checkpoint would make it unloadable with weights_only=True
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "unet", "embedding"])
        for name, net in (("unet", unet), ("embedding", embedding)):  # their configs, as the CLI writes them
            if hasattr(net, "init_args"):
                self.hparams[name] = {"class_path": f"{type(net).__module__}.{type(net).__qualname__}", "init_args": dict(net.init_args)}
        if embedding.dim != unet.context_dim:
            raise ValueError(
                f"LCGPretrainModule: embedding.dim={embedding.dim} must equal unet.context_dim={unet.context_dim}"
            )
        cond_drop_prob = resolve_cond_drop_prob(guidance, cond_drop_prob, embedding, "LCGPretrainModule")
        if degenerate_masks not in ("error", "warn"):
            raise ValueError(f"LCGPretrainModule: degenerate_masks must be 'error' or 'warn', got {degenerate_masks!r}")
        self.denoiser = InpaintingDenoiser(
            unet, schedule, num_train_timesteps, hole_weight, known_weight, prediction, min_snr_gamma, zero_terminal_snr,
            shift_resolution, timestep_spacing=timestep_spacing,
        )
        self.embedding = embedding
        self.noise_weight, self.l1_weight = noise_weight, l1_weight
        self.guidance, self.cond_drop_prob, self.guidance_scale = guidance, cond_drop_prob, guidance_scale
        self.sample_steps, self.sample_eta = sample_steps, sample_eta
        self.degenerate_masks, self.val_seed = degenerate_masks, val_seed
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self._val_sums: torch.Tensor | None = None
        self._val_counts: torch.Tensor | None = None

    # ---------------------------------------------------------------- helpers
    def _check(self, batch: Mapping[str, Any], where: str) -> None:
        check_inpainting_batch(batch, self.degenerate_masks, where)
        f = self.denoiser.unet.downsample_factor
        h, w = batch["image"].shape[-2:]
        if h % f or w % f:
            raise ValueError(
                f"{where}: image size {h}x{w} is not divisible by the U-Net's downsampling factor {f}; "
                "set data resolution to a multiple of it or change unet.channel_mults"
            )

    def _losses(
        self, batch: Mapping[str, Any], generator: torch.Generator | None, drop: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image, mask = batch["image"], batch["mask"]
        context = self.embedding.tokens(batch_categories(batch))
        if drop:
            context = drop_condition(context, self.embedding, self.cond_drop_prob)
        out = self.denoiser.loss(image, mask, context, generator=generator)
        terms = {"noise": (self.noise_weight, out["noise"]), "l1": (self.l1_weight, out["l1"])}
        terms.update(self.extra_loss_terms({"x0_pred": out["x0_pred"], "target": image, "mask": mask}))
        return combine_loss_terms(terms)

    # ---------------------------------------------------------------- steps
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        self._check(batch, "training batch")
        per_sample, terms = self._losses(batch, None, drop=True)
        self.last_loss_terms = terms  # named in the error if the loss turns non-finite (callbacks.finite_loss_guard)
        b = per_sample.shape[0]
        loss = per_sample.mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        for name, value in terms.items():
            self.log(f"train/{name}", value.mean(), batch_size=b)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(len(MaskType), device=self.device, dtype=torch.float64)
        self._val_counts = torch.zeros(len(MaskType), device=self.device, dtype=torch.float64)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        self._check(batch, "validation batch")
        generator = torch.Generator().manual_seed(self.val_seed + batch_idx)
        per_sample, terms = self._losses(batch, generator, drop=False)
        b = per_sample.shape[0]
        loss = per_sample.mean()
        self.log("val/loss", loss, prog_bar=True, batch_size=b, sync_dist=True)
        for name, value in terms.items():
            self.log(f"val/{name}", value.mean(), batch_size=b, sync_dist=True)
        if "mask_type" in batch and self._val_sums is not None:
            mt = batch["mask_type"].long().to(self.device)
            self._val_sums.index_add_(0, mt, per_sample.detach().double())
            self._val_counts.index_add_(0, mt, torch.ones_like(per_sample, dtype=torch.float64))
        return loss

    def on_validation_epoch_end(self) -> None:
        if self._val_sums is None:
            return
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        counts = self.trainer.strategy.reduce(self._val_counts, reduce_op="sum")
        for mt in MaskType:
            if counts[mt] > 0:
                self.log(f"val/loss_{mt.name.lower()}", (sums[mt] / counts[mt]).float(), sync_dist=False)
        self._val_sums = self._val_counts = None

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def inpaint(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        category: torch.Tensor,
        steps: int | None = None,
        guidance_scale: float | None = None,
        eta: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """DDIM inpainting with CFG (this module's guidance mode); known pixels kept exactly.

        Args:
            image: ``(B, 3, H, W)`` in [-1, 1].
            mask: ``(B, 1, H, W)``, 1 = hole.
            category: ``(B,)`` category ids (0 foreground, 1 background): the fill's category in both guidance modes.
            steps, guidance_scale, eta: override ``sample_steps`` / ``guidance_scale`` / ``sample_eta``.
            generator: RNG on ``image``'s device.
        """
        cond, uncond = guidance_contexts(self.embedding, category.to(image.device), self.guidance)
        extra = dict(masked_image=image * (1 - mask), mask=mask, context=cond, uncond_context=uncond,
                     cond_scale=self.guidance_scale if guidance_scale is None else guidance_scale)
        return sample_ddim(
            self.denoiser.forward_with_cond_scale, image, mask, self.denoiser.alphas_cumprod,
            self.sample_steps if steps is None else steps, extra,
            eta=self.sample_eta if eta is None else eta, spacing=self.denoiser.timestep_spacing, generator=generator,
        )

    def log_images(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``{"inpainting": masked input | output | target}`` side by side, ``(B, 3, H, 3W)`` in [-1, 1].

        The masked input shows holes in white. Sampling uses a fixed seed (``val_seed``).
        """
        self._check(batch, "log_images batch")
        image, mask = batch["image"], batch["mask"]
        generator = torch.Generator(device=image.device).manual_seed(self.val_seed)
        out = self.inpaint(image, mask, batch_categories(batch), generator=generator)
        shown = torch.where(mask > 0.5, torch.ones_like(image), image)
        return {"inpainting": torch.cat([shown, out, image], dim=-1)}

    def configure_optimizers(self) -> Any:
        return optimizers_and_schedule(self.parameters(), self.optimizer_factory, self.lr_scheduler_factory)

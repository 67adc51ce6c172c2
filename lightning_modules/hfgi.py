"""HFGI training: consultation encoder + ADA on a frozen StyleGAN2 + e4e (seed 004's base system).

Training step (official HFGI ``pSp.forward`` / ``Coach.calc_loss``):

1. ``w = e4e(x) + latent_avg`` and ``lo = resize(clamp(G(w)), R)`` with both networks frozen.
2. Distortion map ``res = x - lo``; a random perspective warp (Kornia, distortion 0.15,
   p 0.9) gives ``res_w``; ADA must undo it from ``cat(res_w, lo)``: ``aligned``.
3. ``(scale, shift) = E_c(aligned)`` fused into G at the fusion layer -> ``y_hat`` (resized to R).
4. ``loss = l2 * MSE(y_hat, x) + lpips * LPIPS(y_hat, x) + id * ID(y_hat, x) + align * L1(aligned - res)``
   plus any loss-term callbacks (ctx ``x0_pred = y_hat``, ``target = x``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from PIL import Image

from lightning_modules.loss_term_host import LossTermHost
from networks.hfgi.editing import load_directions
from networks.hfgi.pipeline import HFGIPipeline, resize_images
from optim.ranger import Ranger
from optim.schedules import optimizers_and_schedule
from safe_io import output_path

__all__ = ["HFGIModule"]


def _to_resolution(x: torch.Tensor, size: int) -> torch.Tensor:
    """Generator output -> working resolution (average pooling for integer shrink, as the official face_pool)."""
    if x.shape[-1] > size and x.shape[-1] % size == 0 and x.shape[-2] % size == 0:
        return F.adaptive_avg_pool2d(x, (size, size))
    return resize_images(x, size)


def _write_png(image: torch.Tensor, path: Path) -> None:
    """Save one ``(3, H, W)`` image in [-1, 1] as an 8-bit RGB PNG."""
    arr = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


class HFGIModule(LossTermHost, LightningModule):
    """Trains HFGI's consultation encoder and ADA; predicts InterfaceGAN edits.

    The generator and e4e encoder are frozen (``requires_grad=False`` and kept in eval mode).
    Official checkpoints are optional: without them every network is randomly initialised
    (tiny CPU configs and tests only; such a model inverts nothing real).

    Args:
        size: generator resolution (1024 for FFHQ config-f).
        style_dim: latent width (512 officially).
        n_mlp: mapping-network depth (8 officially).
        channel_multiplier: generator channel multiplier (2 = config-f).
        max_channels: cap on generator channels (None = official; small values for tiny configs,
            not checkpoint-compatible).
        fusion_layer: generator W+ index where (scale, shift) are fused (7 = 64x64 block).
        resolution: e4e input / distortion-map / loss resolution (256 officially). Batches of
            another size are resized to it (warned once).
        e4e_checkpoint: official ``e4e_ffhq_encode.pt`` (encoder + generator + latent_avg).
        stylegan2_checkpoint: official ``stylegan2-ffhq-config-f.pt`` (loads ``g_ema``).
        hfgi_checkpoint: official HFGI ``ckpt.pt`` (all four networks; fine-tuning / editing).
        arcface_checkpoint: ``model_ir_se50.pth``; enables the identity loss when given.
        directions: ``{name: path}`` of InterfaceGAN direction files (age, smile, pose) used by
            the edit grids and ``predict``.
        degrees: edit degrees applied to every direction in grids and ``predict``.
        direction_degrees: per-direction degree lists overriding ``degrees`` (e.g. ``{pose: [3.0]}``).
        l2_weight: weight of the MSE reconstruction loss.
        lpips_weight: weight of LPIPS (0 disables it).
        lpips_net: LPIPS backbone (``alex`` as HFGI).
        lpips_pretrained_backbone: load the ImageNet LPIPS backbone from ``$TORCH_HOME`` (offline,
            clear error when absent); False = random backbone (tiny configs/tests only).
        id_weight: weight of the ArcFace identity loss (used only with ``arcface_checkpoint``).
        align_weight: weight of the ADA alignment L1 loss.
        warp_distortion: distortion scale of the random perspective warp ADA learns to undo.
        warp_p: probability of warping a sample.
        train_randomize_noise: fresh generator noise in training (official); evaluation and
            prediction always use the fixed noise buffers.
        encoder_bn_drift: keep e4e in train mode so its BatchNorm statistics drift with the
            training data, as the official code does (it calls ``net.train()``). Off by default:
            the frozen encoder stays in eval mode.
        predict_dir: folder ``predict`` writes ``<name>/<degree>/<key>.png`` and
            ``reconstruction/<key>.png`` into.
        optimizer: optimizer factory for E_c + ADA (``OptimizerCallable``); the official setting is
            ``optim.Ranger`` with ``lr: 0.0001`` (configs/hfgi/ffhq_1024.yaml).
        lr_scheduler: learning-rate schedule factory (``LRSchedulerCallable``), stepped every optimizer
            step; None = constant (HFGI trains at a constant rate).
    """

    loss_term_inputs = frozenset({"x0_pred", "target"})
    #: options that only initialise weights from official files; a Lightning checkpoint of this module holds them
    weight_init_args = ("e4e_checkpoint", "stylegan2_checkpoint", "hfgi_checkpoint")

    def __init__(
        self,
        size: int = 1024,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        max_channels: int | None = None,
        fusion_layer: int = 7,
        resolution: int = 256,
        e4e_checkpoint: str | None = None,
        stylegan2_checkpoint: str | None = None,
        hfgi_checkpoint: str | None = None,
        arcface_checkpoint: str | None = None,
        directions: dict[str, str] | None = None,
        degrees: list[float] = [-3.0, 3.0],
        direction_degrees: dict[str, list[float]] | None = None,
        l2_weight: float = 1.0,
        lpips_weight: float = 0.8,
        lpips_net: str = "alex",
        lpips_pretrained_backbone: bool = True,
        id_weight: float = 0.1,
        align_weight: float = 0.1,
        warp_distortion: float = 0.15,
        warp_p: float = 0.9,
        train_randomize_noise: bool = True,
        encoder_bn_drift: bool = False,
        predict_dir: str = "predictions/hfgi",
        optimizer: OptimizerCallable = Ranger,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        for name, value in (("l2_weight", l2_weight), ("lpips_weight", lpips_weight), ("id_weight", id_weight), ("align_weight", align_weight)):
            if value < 0:
                raise ValueError(f"HFGIModule: {name} must be >= 0, got {value}")
        self.pipeline = HFGIPipeline.build(
            size=size,
            style_dim=style_dim,
            n_mlp=n_mlp,
            channel_multiplier=channel_multiplier,
            max_channels=max_channels,
            fusion_layer=fusion_layer,
            resolution=resolution,
        )
        self._load_official(e4e_checkpoint, stylegan2_checkpoint, hfgi_checkpoint)
        for frozen in (self.pipeline.encoder, self.pipeline.generator):
            frozen.requires_grad_(False)
        self.directions = (
            load_directions(directions, self.pipeline.n_styles, self.pipeline.style_dim) if directions else {}
        )
        unknown = sorted(set(direction_degrees or {}) - set(self.directions))
        if unknown:
            raise ValueError(f"direction_degrees names {unknown} which are not in directions {sorted(self.directions)}")
        self.lpips = None
        if lpips_weight > 0:
            from evaluation.weights import build_lpips

            self.lpips = build_lpips(net=lpips_net, pretrained_backbone=lpips_pretrained_backbone)
        self.id_loss = None
        if arcface_checkpoint is not None and id_weight > 0:
            from networks.hfgi.arcface import IdentityLoss

            self.id_loss = IdentityLoss(arcface_checkpoint)
        import kornia.augmentation as K

        self.warp = K.RandomPerspective(distortion_scale=warp_distortion, p=warp_p)
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.train()  # Lightning keeps the modes set here: frozen parts start (and stay) in eval mode

    # ------------------------------------------------------------------ setup
    def _load_official(self, e4e: str | None, stylegan2: str | None, hfgi: str | None) -> None:
        if not (e4e or stylegan2 or hfgi):
            return
        self.pipeline.load_official(hfgi=hfgi, e4e=e4e, stylegan2=stylegan2)

    def train(self, mode: bool = True) -> "HFGIModule":
        """Train mode for E_c and ADA; the frozen generator and e4e stay in eval mode."""
        super().train(mode)
        self.pipeline.generator.eval()
        self.pipeline.encoder.train(mode and self.hparams.encoder_bn_drift)
        if self.lpips is not None:
            self.lpips.eval()
        if self.id_loss is not None:
            self.id_loss.eval()
        return self

    def degrees_for(self, name: str) -> list[float]:
        """Edit degrees used for direction ``name``."""
        return list((self.hparams.direction_degrees or {}).get(name, self.hparams.degrees))

    # ------------------------------------------------------------------ core
    def _images(self, batch: Any) -> torch.Tensor:
        x = batch["image"] if isinstance(batch, dict) else batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.pipeline.prepare(x)

    def _forward_losses(self, x: torch.Tensor, warp: bool) -> dict[str, torch.Tensor]:
        pipe = self.pipeline
        with torch.no_grad():
            w = pipe.invert(x)
            lo = pipe.low_fidelity(w)
        res = x - lo
        res_in = self.warp(res) if warp else res
        aligned, conditions = pipe.consult(res_in, lo)
        y_hat = _to_resolution(pipe.synthesize(w, conditions), self.hparams.resolution)
        out = {"y_hat": y_hat, "lo": lo}
        out["l2"] = F.mse_loss(y_hat, x, reduction="none").flatten(1).mean(1)
        out["align"] = (aligned - res).abs().flatten(1).mean(1)
        total = self.hparams.l2_weight * out["l2"] + self.hparams.align_weight * out["align"]
        if self.lpips is not None:
            out["lpips"] = self.lpips(y_hat, x).flatten()
            total = total + self.hparams.lpips_weight * out["lpips"]
        if self.id_loss is not None:
            out["id"] = self.id_loss(y_hat, x)
            total = total + self.hparams.id_weight * out["id"]
        out["loss"] = total
        return out

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = self._images(batch)
        self.pipeline.randomize_noise = self.hparams.train_randomize_noise
        try:
            out = self._forward_losses(x, warp=True)
        finally:
            self.pipeline.randomize_noise = False
        loss = out["loss"].mean()
        extra = self.extra_loss_terms({"x0_pred": out["y_hat"], "target": x})
        self.last_loss_terms = {k: v for k, v in out.items() if isinstance(v, torch.Tensor) and k in ("loss", "l2", "lpips", "align", "id")}
        for name, (weight, value) in extra.items():
            loss = loss + weight * value.mean()
            self.last_loss_terms[name] = value
            self.log(f"train/{name}", value.mean())
        for term in ("l2", "lpips", "align", "id"):
            if term in out:
                self.log(f"train/{term}", out[term].mean())
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = self._images(batch)
        out = self._forward_losses(x, warp=False)  # deterministic: no warp, fixed noise
        b = x.shape[0]
        self.log("val/loss", out["loss"].mean(), prog_bar=True, sync_dist=True, batch_size=b)
        for term in ("l2", "lpips", "align", "id"):
            if term in out:
                self.log(f"val/{term}", out[term].mean(), sync_dist=True, batch_size=b)
        # e4e (low-fidelity) reconstruction error, the baseline HFGI improves on
        self.log("val/l2_e4e", F.mse_loss(out["lo"], x), sync_dist=True, batch_size=b)

    # ------------------------------------------------------------------ images
    @torch.no_grad()
    def log_images(self, batch: Any) -> dict[str, torch.Tensor]:
        """Grids for :class:`callbacks.image_logger.ImageLogger` (images in [-1, 1]).

        ``inversion``: rows input / e4e / HFGI. ``edit_<name>``: one row per degree of each direction.
        """
        pipe = self.pipeline
        x = self._images(batch)
        w = pipe.invert(x)
        lo = pipe.low_fidelity(w)
        rec = _to_resolution(pipe.reconstruct_from_latents(x, w), pipe.resolution)
        grids = {"inversion": torch.cat([x, lo, rec], dim=0)}
        for name, direction in self.directions.items():
            rows = [_to_resolution(pipe.edit_from_latents(x, w, direction, dg), pipe.resolution) for dg in self.degrees_for(name)]
            grids[f"edit_{name}"] = torch.cat([x, *rows], dim=0)
        return grids

    # ------------------------------------------------------------------ predict
    @torch.no_grad()
    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> list[str]:
        """Invert images and write ``reconstruction/<key>.png`` and ``<direction>/<degree>/<key>.png``.

        Images are written at the generator's resolution. Returns the written paths.
        """
        x = self._images(batch)
        keys = batch.get("key") if isinstance(batch, dict) else None
        if keys is None:
            keys = [f"{batch_idx:06d}_{i:03d}" for i in range(x.shape[0])]
        root = Path(self.hparams.predict_dir)
        pipe = self.pipeline
        w = pipe.invert(x)
        written: list[str] = []
        outputs = {("reconstruction", None): pipe.reconstruct_from_latents(x, w)}
        for name, direction in self.directions.items():
            for dg in self.degrees_for(name):
                outputs[(name, dg)] = pipe.edit_from_latents(x, w, direction, dg)
        for (name, dg), images in outputs.items():
            folder = root / name if dg is None else root / name / f"{dg:+g}"
            for key, image in zip(keys, images):
                path = output_path(folder, key, ".png", "the batch's keys")
                _write_png(image, path)
                written.append(str(path))
        return written

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> Any:
        params = list(self.pipeline.consultation.parameters()) + list(self.pipeline.aligner.parameters())
        return optimizers_and_schedule(params, self.optimizer_factory, self.lr_scheduler_factory)


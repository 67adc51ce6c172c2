"""FID, LPIPS, PSNR and SSIM of inpainted images against their originals, as synced torchmetrics.

All images are project-range ``(B, 3, H, W)`` floats in [-1, 1]. Both the inpainted and the
original images are quantised to 8 bits first (what a saved PNG holds, and what FID is
defined on), so figures match an evaluation of files on disk.

- FID: torchmetrics ``FrechetInceptionDistance`` with an injected feature extractor
  (:class:`evaluation.feature_extractors.InceptionFeatures` for reportable figures,
  :class:`~evaluation.feature_extractors.RandomConvFeatures` for tests). Real = originals,
  fake = inpainted outputs, over the whole evaluation set.
- LPIPS: the ``lpips`` package network (:func:`evaluation.weights.build_lpips`), mean of
  per-image distances.
- PSNR (dB, data range of [0, 1] images, capped at :data:`PSNR_CAP_DB` for identical images)
  and SSIM (Gaussian 11x11, sigma 1.5): means of per-image values.

Every state is a torchmetrics state with a sum reduction, so under DDP ``compute()`` returns
the figures of the union of all ranks' samples.
"""
from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.image.fid import FrechetInceptionDistance

__all__ = ["InpaintingMetrics", "to_uint8", "PSNR_CAP_DB", "METRIC_NAMES"]

#: PSNR of an image identical to its target is infinite; per-image values are capped here.
PSNR_CAP_DB = 100.0
#: names of the figures :meth:`InpaintingMetrics.compute` returns.
METRIC_NAMES = ("fid", "lpips", "psnr", "ssim")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 in [0, 255] (rounded, clamped)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class InpaintingMetrics(nn.Module):
    """FID + LPIPS + PSNR + SSIM accumulated over an evaluation set (DDP-synced torchmetrics).

    Args:
        fid_features: FID feature extractor: uint8 ``(N,3,H,W)`` -> ``(N, d)`` with a
            ``num_features`` attribute.
        lpips_net: LPIPS network taking two [-1, 1] image batches and returning ``(N,1,1,1)``
            (:func:`evaluation.weights.build_lpips`).
    """

    def __init__(self, fid_features: nn.Module, lpips_net: nn.Module) -> None:
        super().__init__()
        if not isinstance(getattr(fid_features, "num_features", None), int):
            raise ValueError(
                f"InpaintingMetrics: fid_features ({type(fid_features).__name__}) needs an int `num_features` "
                "attribute (its output dimension)"
            )
        self.fid = FrechetInceptionDistance(feature=fid_features, reset_real_features=True)
        self._features: list[torch.Tensor] = []  # what the FID extractor returned during the last update
        self.fid.inception.register_forward_hook(self._keep_features)
        self.last_features: tuple[torch.Tensor, torch.Tensor] | None = None
        self.lpips_net = lpips_net.eval().requires_grad_(False)
        self.lpips = MeanMetric()
        self.psnr = MeanMetric()
        self.ssim = MeanMetric()

    def _keep_features(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self._features.append(output.detach())

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Add a batch; returns the per-image ``lpips``, ``psnr``, ``ssim`` values ``(B,)`` (float32, same device).

        The FID extractor's per-image features of this batch stay in :attr:`last_features` (``(real, fake)``, each
        ``(B, d)``), for per-group FIDs without a second extractor pass.

        Args:
            pred: inpainted images ``(B,3,H,W)`` in [-1, 1].
            target: original images ``(B,3,H,W)`` in [-1, 1].
        """
        if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(
                f"InpaintingMetrics.update: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                "must both be (B,3,H,W)"
            )
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred8, target8 = to_uint8(pred), to_uint8(target)
            self._features.clear()
            self.fid.update(target8, real=True)
            self.fid.update(pred8, real=False)
            self.last_features = (self._features[0], self._features[1])  # per-image (real, fake) FID features
            self._features.clear()
            pred01, target01 = pred8.float() / 255.0, target8.float() / 255.0
            lpips = self.lpips_net(pred01 * 2 - 1, target01 * 2 - 1).flatten().float()
            psnr = peak_signal_noise_ratio(pred01, target01, data_range=1.0, reduction="none", dim=(1, 2, 3))
            psnr = torch.nan_to_num(psnr, posinf=PSNR_CAP_DB).clamp(max=PSNR_CAP_DB)
            ssim = structural_similarity_index_measure(pred01, target01, data_range=1.0, reduction="none")
            self.lpips.update(lpips)
            self.psnr.update(psnr)
            self.ssim.update(ssim)
        return {"lpips": lpips, "psnr": psnr, "ssim": ssim}

    def compute(self) -> dict[str, float]:
        """The figures of everything added since the last :meth:`reset` (all ranks under DDP)."""
        return {
            "fid": float(self.fid.compute()),
            "lpips": float(self.lpips.compute()),
            "psnr": float(self.psnr.compute()),
            "ssim": float(self.ssim.compute()),
        }

    def num_images(self) -> int:
        """Number of inpainted images added on this rank (FID's fake-sample count)."""
        return int(self.fid.fake_features_num_samples)

    def reset(self) -> None:
        """Clear all states."""
        for metric in (self.fid, self.lpips, self.psnr, self.ssim):
            metric.reset()

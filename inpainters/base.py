"""The inpainter interface shared by the ripple-removal and inpainting evaluators.

Every inpainter takes and returns project-range tensors (``image`` ``(B,3,H,W)`` in [-1, 1],
``mask`` ``(B,1,H,W)`` in {0, 1} with 1 = hole) and keeps the known pixels bit-exactly:
``out = mask * pred + (1 - mask) * image``, implemented as a select so that not even a NaN in the
prediction can leak into a known pixel.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def composite_known(pred: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mask * pred + (1 - mask) * image`` for a binary mask, exact on known pixels (``mask == 0``).

    Args:
        pred: ``(B,C,H,W)`` prediction.
        image: ``(B,C,H,W)`` original image.
        mask: ``(B,1,H,W)`` {0,1}, 1 = hole.
    """
    return torch.where(mask > 0.5, pred.to(image.dtype), image)


class Inpainter(nn.Module):
    """Base class: subclasses implement :meth:`predict`; :meth:`forward` checks inputs and composites.

    ``forward(image, mask) -> image``: ``image`` ``(B,3,H,W)`` float in [-1, 1], ``mask``
    ``(B,1,H,W)`` float in {0, 1} (1 = hole, values > 0.5 count as hole). The output is in
    [-1, 1], equals ``image`` exactly where ``mask == 0`` and the prediction inside the hole.
    Inpainters are used for inference: wrap calls in ``torch.no_grad()`` / ``inference_mode``.
    """

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Raw prediction ``(B,3,H,W)`` in [-1, 1] for the whole frame (only the hole is used)."""
        raise NotImplementedError

    def output_region(self, mask: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` {0, 1}: the pixels :meth:`forward` may change (the hole; wider with paste-back options)."""
        return (mask > 0.5).to(mask.dtype)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_image_mask(image, mask, type(self).__name__)
        mask = (mask > 0.5).to(image.dtype)
        if not bool(mask.any()):
            return image.clone()
        pred = self.predict(image, mask)
        if pred.shape != image.shape:
            raise RuntimeError(f"{type(self).__name__}.predict returned shape {tuple(pred.shape)}, "
                               f"expected {tuple(image.shape)}")
        return composite_known(pred.clamp(-1, 1), image, mask)


def check_image_mask(image: torch.Tensor, mask: torch.Tensor, who: str = "inpainter") -> None:
    """Raise ``ValueError`` naming the problem when ``image``/``mask`` break the conventions."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"{who}: image must be (B,3,H,W), got {tuple(image.shape)}")
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"{who}: mask must be (B,1,H,W), got {tuple(mask.shape)}")
    if mask.shape[0] != image.shape[0] or mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"{who}: mask {tuple(mask.shape)} does not match image {tuple(image.shape)} "
                         "(same batch size and H, W required)")
    if not image.is_floating_point():
        raise ValueError(f"{who}: image must be a float tensor in [-1, 1], got dtype {image.dtype}")

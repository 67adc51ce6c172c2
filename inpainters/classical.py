"""Weight-free baseline inpainters: mean fill, harmonic (Laplace) fill and OpenCV's Telea method.

They need no checkpoint, so the inpainting evaluator, the ripple remover and the ablation study
(``benchmarks/quality.py``) can always compare against them.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from inpainters.base import Inpainter

__all__ = ["MeanFillInpainter", "HarmonicInpainter", "TeleaInpainter"]


class MeanFillInpainter(Inpainter):
    """Fills the hole with the mean colour of the image's known pixels (per channel)."""

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        known = 1 - mask
        mean = (image * known).sum(dim=(2, 3), keepdim=True) / known.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
        return mean.expand_as(image).clone()


def harmonic_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Solve Laplace's equation in the hole with the known pixels as Dirichlet boundary.

    Every hole pixel equals the mean of its 4 neighbours (neighbours outside the image are
    dropped); solved exactly as one sparse linear system shared by the channels.

    Args:
        image: ``(H, W, C)`` float array.
        hole: ``(H, W)`` bool array.

    Returns:
        ``(H, W, C)`` with the hole filled (known pixels unchanged).
    """
    h, w = hole.shape
    idx = -np.ones((h, w), dtype=np.int64)
    ys, xs = np.nonzero(hole)
    n = len(ys)
    out = image.astype(np.float64).copy()
    if n == 0:
        return out
    if n == h * w:
        out[:] = 0.0
        return out
    idx[ys, xs] = np.arange(n)
    rows, cols, vals = [], [], []
    rhs = np.zeros((n, image.shape[2]))
    degree = np.zeros(n)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        degree += inside
        ny, nx, src = ny[inside], nx[inside], np.nonzero(inside)[0]
        unknown = idx[ny, nx] >= 0
        rows.append(src[unknown])
        cols.append(idx[ny[unknown], nx[unknown]])
        vals.append(-np.ones(int(unknown.sum())))
        np.add.at(rhs, src[~unknown], out[ny[~unknown], nx[~unknown]])
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(degree)
    a = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    solution = scipy.sparse.linalg.spsolve(a.tocsc(), rhs)
    out[ys, xs] = solution.reshape(n, -1)
    return out


def _per_image(image: torch.Tensor, mask: torch.Tensor, fill) -> torch.Tensor:
    out = []
    for img, m in zip(image.detach().cpu(), mask.detach().cpu()):
        arr = img.permute(1, 2, 0).double().numpy()
        out.append(torch.from_numpy(np.ascontiguousarray(fill(arr, m[0].numpy() > 0.5))).permute(2, 0, 1))
    return torch.stack(out).to(device=image.device, dtype=image.dtype)


class HarmonicInpainter(Inpainter):
    """Harmonic (Laplace) fill: the smoothest continuation of the hole border (exact sparse solve)."""

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _per_image(image, mask, harmonic_fill)


class TeleaInpainter(Inpainter):
    """OpenCV's fast-marching inpainting (Telea 2004, ``cv2.inpaint(..., cv2.INPAINT_TELEA)``), a weight-free baseline.

    Works on 8-bit images: the [-1, 1] input is rounded to uint8 for OpenCV; the known pixels of the
    result are still the exact input values (:class:`inpainters.base.Inpainter` composites).

    Args:
        radius: neighbourhood radius in pixels that each filled pixel is estimated from.
    """

    def __init__(self, radius: float = 3.0) -> None:
        super().__init__()
        if radius <= 0:
            raise ValueError(f"TeleaInpainter: radius must be > 0 pixels, got {radius}")
        self.radius = float(radius)

    def _fill(self, arr: np.ndarray, hole: np.ndarray) -> np.ndarray:
        import cv2

        u8 = np.clip(np.rint((arr + 1) * 127.5), 0, 255).astype(np.uint8)
        filled = cv2.inpaint(np.ascontiguousarray(u8), hole.astype(np.uint8), self.radius, cv2.INPAINT_TELEA)
        return filled.astype(np.float64) / 127.5 - 1

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _per_image(image, mask, self._fill)

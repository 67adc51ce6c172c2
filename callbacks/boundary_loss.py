"""Mask-boundary loss: L1 between the predicted and the true image on a band around the hole border."""
from __future__ import annotations

from typing import Mapping

import torch

from callbacks.loss_term import LossTerm
from masks.morphology import boundary_band


class BoundaryLoss(LossTerm):
    """Mask-boundary loss: mean |x0_pred - target| over the band around the hole border.

    Seams appear where generated and known content meet; this term weights exactly that band
    (found with Kornia morphology, see :func:`masks.morphology.boundary_band`). Per-sample value: the L1 summed over
    the band and the channels divided by the number of band pixels x channels (0 for a sample with
    an empty band). Needs ctx keys ``x0_pred``, ``target``, ``mask`` (the LCG and C2F modules provide
    them; HFGI has no mask and refuses the callback). Logged as ``train/<prefix>boundary``.

    Args:
        weight: multiplier of this term in the total training loss.
        width: band half-width in pixels at the resolution of the ctx tensors (>= 1).
    """

    name = "boundary"
    requires = frozenset({"x0_pred", "target", "mask"})

    def __init__(self, weight: float = 1.0, width: int = 3) -> None:
        super().__init__(weight)
        if width < 1:
            raise ValueError(f"BoundaryLoss: width must be >= 1 pixel, got {width}")
        self.width = int(width)

    def compute(self, ctx: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Per-sample boundary L1 (B,)."""
        x0, target, mask = ctx["x0_pred"], ctx["target"], ctx["mask"]
        band = boundary_band(mask.to(x0.dtype), self.width)
        err = ((x0 - target).abs() * band).sum(dim=(1, 2, 3))
        count = band.sum(dim=(1, 2, 3)) * x0.shape[1]
        return err / count.clamp_min(1.0)

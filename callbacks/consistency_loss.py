"""Upsampling-consistency loss: a stage's prediction must agree, at low frequencies, with its condition."""
from __future__ import annotations

import math
from typing import Mapping

import kornia.filters
import torch

from callbacks.loss_term import LossTerm


class UpsamplingConsistencyLoss(LossTerm):
    """L1 between Gaussian-blurred ``x0_pred`` and the Gaussian-blurred upsampled lower-stage condition.

    A higher stage should add detail, not change the layout the lower stage chose. Blurring
    both with the same Gaussian (``kornia.filters.gaussian_blur2d``, sigma ``sigma`` px,
    reflect border) keeps only the frequencies the lower stage could represent; the per-sample
    loss is ``mean |blur(x0_pred) - blur(condition)|``: exactly 0 when the two agree and
    growing with their disagreement. Needs a module whose training step has a lower-stage
    ``condition`` (the C2F module; LCG and HFGI refuse the callback); at C2F stage 0, which has no
    condition, the term drops out. ctx keys: ``x0_pred``, ``condition`` (both (B, 3, H, W)).
    Logged as ``train/<prefix>consistency``.

    Args:
        weight: multiplier of this term in the total training loss.
        sigma: std of the Gaussian in pixels at the current stage; about the upsampling factor
            (2 for 256 -> 512) keeps what the lower stage resolves.
    """

    name = "consistency"
    requires = frozenset({"x0_pred", "condition"})

    def __init__(self, weight: float = 1.0, sigma: float = 2.0) -> None:
        super().__init__(weight)
        if sigma <= 0:
            raise ValueError(f"UpsamplingConsistencyLoss: sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)
        k = 2 * math.ceil(3 * self.sigma) + 1
        self.kernel_size = (k, k)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """The Gaussian low-pass used on both sides."""
        return kornia.filters.gaussian_blur2d(x, self.kernel_size, (self.sigma, self.sigma), border_type="reflect")

    def compute(self, ctx: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """Per-sample consistency L1 (B,), or None at a stage without a lower-stage ``condition``."""
        cond, x0 = ctx.get("condition"), ctx["x0_pred"]
        if cond is None:
            return None
        if cond.shape != x0.shape:
            raise ValueError(
                f"UpsamplingConsistencyLoss: condition {tuple(cond.shape)} and x0_pred {tuple(x0.shape)} differ; "
                "upsample the lower-stage output to the current stage first"
            )
        return (self.blur(x0) - self.blur(cond)).abs().mean(dim=(1, 2, 3))

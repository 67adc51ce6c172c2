"""The project's coarse-to-fine LCG diffusion model behind the :class:`inpainters.base.Inpainter` interface.

Loads a :class:`diffusion.c2f.C2FModel` (a training checkpoint or a standalone model file) and
samples with :func:`diffusion.c2f_sampling.sample_c2f`; importing or running it does not import
Lightning.
"""
from __future__ import annotations

import torch

from diffusion.c2f import C2FModel
from diffusion.c2f_sampling import sample_c2f
from inpainters.base import Inpainter


class C2FInpainter(Inpainter):
    """Inpaints with a trained C2F model (:class:`diffusion.c2f.C2FModel` checkpoint).

    Background filling (ripple removal, object removal) uses the LCG ``background`` category.
    Sampling is seeded per call, so the same input gives the same output.

    Args:
        checkpoint: C2F checkpoint: a training run's ``runs/<run>/checkpoints/last.ckpt`` or a
            standalone model file (e.g. ``assets/c2f_synthetic_demo.ckpt``).
        category: LCG category of the fill: ``"background"`` or ``"foreground"``.
        steps: DDIM steps per stage (``None``: the checkpoint's sampling steps).
        gains: classifier-free guidance gain per stage (``None``: the checkpoint's).
        eta: DDIM eta (``None``: the checkpoint's).
        seed: seed of the sampling noise (same for every call).
    """

    def __init__(self, checkpoint: str, category: str = "background", steps: list[int] | None = None,
                 gains: list[float] | None = None, eta: float | None = None, seed: int = 0) -> None:
        super().__init__()
        if category not in ("background", "foreground"):
            raise ValueError(f"C2FInpainter: category must be 'background' or 'foreground', got {category!r}")
        self.model = C2FModel.from_checkpoint(checkpoint)
        self.model.requires_grad_(False)
        if steps is not None or gains is not None:
            self.model.check_sampling(steps or self.model.sampling.steps, gains or self.model.sampling.gains, "C2FInpainter")
        self.category, self.steps, self.gains, self.eta, self.seed = category, steps, gains, eta, seed

    def train(self, mode: bool = True) -> "C2FInpainter":
        """The diffusion model always runs in eval mode."""
        super().train(mode)
        self.model.eval()
        return self

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device=image.device).manual_seed(self.seed)
        out, _ = sample_c2f(self.model, image, mask, self.category, self.steps, self.gains, eta=self.eta, generator=gen)
        return out

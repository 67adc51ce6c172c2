"""The project's coarse-to-fine LCG diffusion model behind the :class:`inpainters.base.Inpainter` interface."""
from __future__ import annotations

from pathlib import Path

import torch

from inpainters.base import Inpainter


class C2FInpainter(Inpainter):
    """Inpaints with a trained :class:`lightning_modules.c2f_diffusion.C2FDiffusionModule` checkpoint.

    Background filling (ripple removal, object removal) uses the LCG ``background`` category.
    Sampling is seeded per call, so the same input gives the same output.

    Args:
        checkpoint: C2F Lightning checkpoint (``runs/<c2f run>/checkpoints/last.ckpt``).
        category: LCG category of the fill: ``"background"`` or ``"foreground"``.
        steps: DDIM steps per stage (``None``: the checkpoint's ``sampling_steps``).
        gains: classifier-free guidance gain per stage (``None``: the checkpoint's).
        eta: DDIM eta (``None``: the checkpoint's ``sample_eta``).
        seed: seed of the sampling noise (same for every call).
    """

    def __init__(self, checkpoint: str, category: str = "background", steps: list[int] | None = None,
                 gains: list[float] | None = None, eta: float | None = None, seed: int = 0) -> None:
        super().__init__()
        from lightning_modules.c2f_diffusion import C2FDiffusionModule

        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"C2F checkpoint not found: {path}. Train one with "
                                    "`python -m main fit --config configs/c2f/<dataset>.yaml` and point "
                                    "the inpainter's checkpoint at runs/<run>/checkpoints/last.ckpt")
        if category not in ("background", "foreground"):
            raise ValueError(f"C2FInpainter: category must be 'background' or 'foreground', got {category!r}")
        self.model = C2FDiffusionModule.from_checkpoint(path)
        self.model.requires_grad_(False)
        self.category, self.steps, self.gains, self.eta, self.seed = category, steps, gains, eta, seed

    def train(self, mode: bool = True) -> "C2FInpainter":
        """The diffusion model always runs in eval mode."""
        super().train(mode)
        self.model.eval()
        return self

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device=image.device).manual_seed(self.seed)
        return self.model.inpaint(image, mask, category=self.category, steps=self.steps, gains=self.gains,
                                  eta=self.eta, generator=gen)

"""The project's coarse-to-fine LCG diffusion model behind the :class:`inpainters.base.Inpainter` interface.

Loads a :class:`diffusion.c2f.C2FModel` (a training checkpoint, a standalone model file or a
``.safetensors`` export) and samples with :func:`diffusion.c2f_sampling.sample_c2f`, under a
``full`` / ``resize`` / ``crop`` strategy for photos larger than the model's last resolution
(:mod:`inpainters.strategies`) and with PixelHacker's inference options
(:mod:`diffusion.fill_options`); importing or running it does not import Lightning.
"""
from __future__ import annotations

import torch

from diffusion.c2f import C2FModel
from diffusion.c2f_sampling import sample_c2f
from diffusion.fill_options import check_fill_options, fill_with_options
from masks.morphology import dilate_hole
from inpainters.base import Inpainter, check_image_mask
from inpainters.strategies import InpaintStrategy, StrategyName


class C2FInpainter(Inpainter):
    """Inpaints with a trained C2F model (:class:`diffusion.c2f.C2FModel` checkpoint or ``.safetensors``).

    Background filling (ripple removal, object removal) uses the LCG ``background`` category.
    Sampling is seeded per call, so the same input gives the same output.

    Args:
        checkpoint: C2F checkpoint: a training run's ``runs/<run>/checkpoints/last.ckpt``, a
            standalone model file (e.g. ``assets/c2f_synthetic_demo.ckpt``) or its ``.safetensors``
            export (``python -m inpainters.export``).
        category: LCG category of the fill: ``"background"`` or ``"foreground"``.
        steps: DDIM steps per stage (``None``: the checkpoint's sampling steps).
        gains: classifier-free guidance gain per stage (``None``: the checkpoint's).
        eta: DDIM eta (``None``: the checkpoint's).
        seed: seed of the sampling noise (same for every call).
        strategy: how an image larger than the model's last resolution is inpainted: ``crop`` (each
            hole with a margin, brought to the model's scale), ``resize`` (the whole image downscaled
            to ``resize_limit``) or ``full`` (the last stage at the image's size); known pixels stay
            exact in each (:mod:`inpainters.strategies`).
        crop_margin: context in pixels around each hole's bounding box (``crop``).
        resize_limit: longest side for ``resize`` (default: the model's last resolution).
        mask_dilation: grow each hole by this many pixels first (PixelHacker's mask dilation).
        feather: paste the fill back through a blurred border reaching ``2 * feather`` px outside the
            (dilated) hole; the pixels there are regenerated and blended (0 = hard, exact paste).
        color_match: shift each fill to the mean colour of the known pixels around it.
    """

    def __init__(self, checkpoint: str, category: str = "background", steps: list[int] | None = None,
                 gains: list[float] | None = None, eta: float | None = None, seed: int = 0,
                 strategy: StrategyName = "crop", crop_margin: int = 32, resize_limit: int | None = None,
                 mask_dilation: int = 0, feather: int = 0, color_match: bool = False) -> None:
        super().__init__()
        if category not in ("background", "foreground"):
            raise ValueError(f"C2FInpainter: category must be 'background' or 'foreground', got {category!r}")
        check_fill_options(mask_dilation, feather, "C2FInpainter")
        self.model = C2FModel.from_checkpoint(checkpoint)
        self.model.requires_grad_(False)
        if steps is not None or gains is not None:
            self.model.check_sampling(steps or self.model.sampling.steps, gains or self.model.sampling.gains, "C2FInpainter")
        self.category, self.steps, self.gains, self.eta, self.seed = category, steps, gains, eta, seed
        self.strategy = InpaintStrategy(strategy, self.working_size, crop_margin, resize_limit)
        self.mask_dilation, self.feather, self.color_match = int(mask_dilation), int(feather), bool(color_match)

    @property
    def working_size(self) -> int:
        """The model's last stage resolution: the scale the ``crop`` / ``resize`` strategies bring images to."""
        return int(self.model.resolutions[-1])

    def train(self, mode: bool = True) -> "C2FInpainter":
        """The diffusion model always runs in eval mode."""
        super().train(mode)
        self.model.eval()
        return self

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device=image.device).manual_seed(self.seed)
        out, _ = sample_c2f(self.model, image, mask, self.category, self.steps, self.gains, eta=self.eta, generator=gen)
        return out

    def output_region(self, mask: torch.Tensor) -> torch.Tensor:
        """The hole grown by ``mask_dilation + 2 * feather`` px: the pixels :meth:`forward` may change."""
        return dilate_hole((mask > 0.5).to(mask.dtype), self.mask_dilation + 2 * self.feather)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Inpaint under the strategy and the fill options; see the class docstring for which pixels change."""
        check_image_mask(image, mask, type(self).__name__)
        fill = super().forward

        def under_strategy(img: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
            return self.strategy.apply(fill, img, hole)

        return fill_with_options(under_strategy, image, mask, mask_dilation=self.mask_dilation, feather=self.feather,
                                 color_match=self.color_match)

"""Image / mask pyramids for coarse-to-fine (C2F) inpainting, and the training-time degradation
that stands in for a lower stage's output.

Pure tensor functions (no Lightning, no parameters). Conventions (docs/conventions.md): images
``(B, 3, H, W)`` in [-1, 1], masks ``(B, 1, H, W)`` in {0, 1} with 1 = hole.

* Images go down with area averaging (``F.interpolate(mode="area")``), the anti-aliased
  choice for integer factors.
* Masks go down with max pooling, so a low-resolution pixel is a hole as soon as any of
  the pixels it covers is a hole: holes never shrink and no known low-resolution pixel
  contains unknown content.
* A stage's output goes up with bilinear interpolation (:func:`upsample`).
* During training, stage ``s > 0`` is conditioned on :func:`degrade_condition` of the ground
  truth instead of the real output of stage ``s - 1``, so every stage trains on its own.
"""
from __future__ import annotations

from typing import Sequence

import kornia.filters
import torch
import torch.nn.functional as F


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def downsample_image(image: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Area-downsample ``image`` (B, C, H, W) to ``size`` (int or (h, w)); identity at equal size."""
    size = _size(size)
    if tuple(image.shape[-2:]) == size:
        return image
    if size[0] > image.shape[-2] or size[1] > image.shape[-1]:
        raise ValueError(f"downsample_image: target size {size} is larger than the input {tuple(image.shape[-2:])}")
    return F.interpolate(image, size=size, mode="area")


def downsample_mask(mask: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Max-pool ``mask`` (B, 1, H, W), 1 = hole, to ``size``: a low-res pixel is a hole if any pixel under it is."""
    size = _size(size)
    if tuple(mask.shape[-2:]) == size:
        return mask
    if size[0] > mask.shape[-2] or size[1] > mask.shape[-1]:
        raise ValueError(f"downsample_mask: target size {size} is larger than the input {tuple(mask.shape[-2:])}")
    return F.adaptive_max_pool2d(mask, size)


def upsample(x: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bilinear upsampling of a stage's output to the next stage's ``size`` (identity at equal size)."""
    size = _size(size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def stage_sizes(full_size: Sequence[int], resolutions: Sequence[int]) -> list[tuple[int, int]]:
    """Per-stage (h, w) for an image of ``full_size`` (h, w) processed by the last stage.

    Stage ``s`` works at ``full_size * resolutions[s] / resolutions[-1]``; with the defaults
    [256, 512, 1024] a 1024x768 image gives 256x192, 512x384, 1024x768. Sizes must divide
    exactly: pad the image first (:func:`pad_to_multiple` with :func:`pyramid_factor`).
    """
    h, w = int(full_size[0]), int(full_size[1])
    top = int(resolutions[-1])
    out = []
    for r in resolutions:
        if (h * r) % top or (w * r) % top:
            raise ValueError(
                f"image size {h}x{w} does not scale exactly to stage resolution {r} (last stage {top}); "
                f"pad it to a multiple of {pyramid_factor(resolutions)} first"
            )
        out.append((h * r // top, w * r // top))
    return out


def pyramid_factor(resolutions: Sequence[int], network_factor: int = 1) -> int:
    """Multiple that an image size must have so every stage size is an integer divisible by ``network_factor``."""
    top = int(resolutions[-1])
    factor = 1
    for r in resolutions:
        if top % r:
            raise ValueError(f"stage resolutions must each divide the last one; {r} does not divide {top}")
        factor = max(factor, top // r)
    return factor * int(network_factor)


def build_pyramid(
    image: torch.Tensor, mask: torch.Tensor, sizes: Sequence[int | Sequence[int]]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Images (area) and masks (max-pool) at every stage size, coarse to fine."""
    if image.shape[-2:] != mask.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)} have different sizes")
    images = [downsample_image(image, s) for s in sizes]
    masks = [downsample_mask(mask, s) for s in sizes]
    return images, masks


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B, C, H, W) at the bottom / right to the next multiple, reflecting the border.

    Falls back to replicate padding when the image is too small to reflect. Returns the
    padded tensor and the original (H, W) for :func:`crop_to`.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def crop_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size`` (h, w)."""
    return x[..., : int(size[0]), : int(size[1])]


def degrade_condition(
    target_low: torch.Tensor,
    mask_low: torch.Tensor,
    size: int | Sequence[int],
    blur_sigma: Sequence[float] = (0.0, 1.0),
    noise_std: Sequence[float] = (0.0, 0.05),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Imitate the upsampled output of a lower stage from the ground truth (training condition).

    For every sample a blur sigma and a noise std are drawn uniformly from the given
    ``(min, max)`` ranges; the low-resolution ground truth is Gaussian-blurred
    (``kornia.filters.gaussian_blur2d``) and perturbed with Gaussian noise inside the hole
    only (a real lower stage keeps its known pixels exactly), clamped to [-1, 1], then
    upsampled bilinearly to ``size`` exactly like a real stage output.

    Args:
        target_low: ground truth at the lower stage's resolution, (B, 3, h, w) in [-1, 1].
        mask_low: hole mask at the same resolution, (B, 1, h, w), 1 = hole.
        size: the current stage's (H, W) (or int).
        blur_sigma: (min, max) Gaussian sigma in low-resolution pixels; 0 means no blur.
        noise_std: (min, max) std of the additive Gaussian noise (image range [-1, 1]).
        generator: optional RNG for reproducible draws.

    Returns:
        (B, 3, H, W) condition in [-1, 1].
    """
    for name, rng in (("blur_sigma", blur_sigma), ("noise_std", noise_std)):
        if len(rng) != 2 or rng[0] < 0 or rng[1] < rng[0]:
            raise ValueError(f"degrade_condition: {name} must be (min, max) with 0 <= min <= max, got {list(rng)}")
    b = target_low.shape[0]
    dev, dt = target_low.device, target_low.dtype

    def draw(lo: float, hi: float) -> torch.Tensor:
        u = torch.rand(b, generator=generator, device=generator.device if generator is not None else "cpu")
        return (lo + (hi - lo) * u).to(device=dev, dtype=dt)

    x = target_low
    if blur_sigma[1] > 0:
        sigma = draw(*blur_sigma).clamp_min(1e-3)  # ~delta kernel at the lower end
        k = 2 * int(torch.ceil(torch.tensor(3.0 * blur_sigma[1])).item()) + 1
        k = max(3, k)
        x = kornia.filters.gaussian_blur2d(x, (k, k), torch.stack([sigma, sigma], dim=1), border_type="reflect")
    if noise_std[1] > 0:
        std = draw(*noise_std).view(b, 1, 1, 1)
        noise = torch.randn(x.shape, generator=generator, device=generator.device if generator is not None else "cpu")
        x = x + std * noise.to(device=dev, dtype=dt)
    x = mask_low * x + (1 - mask_low) * target_low
    return upsample(x.clamp(-1, 1), size)

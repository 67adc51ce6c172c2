"""Coarse-to-fine sampling as a pure function (k-diffusion style): ``sample_c2f(model, image, mask, ...)``.

Every stage samples with :func:`diffusion.sampling.sample_ddim` (DDIM + classifier-free guidance,
one gain per stage) at its pyramid size, conditioned on the combiner-corrected upsampled output of
the stage below; the conditioning travels as ``extra_args`` of the stage's denoiser, not in
closures. Known pixels are kept exactly at every stage and in the result.

PixelHacker's inference options (mask dilation, feathered paste-back, colour compensation;
:mod:`diffusion.fill_options`) are keyword options, all off by default; with them, the pixels within
``mask_dilation + 2 * feather`` px of the hole may change and all others stay exact.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import torch

from diffusion.c2f import C2FModel, category_ids
from diffusion.fill_options import check_fill_options, fill_with_options
from diffusion.pyramid import crop_to, downsample_image, downsample_mask, pad_to_multiple, stage_sizes, upsample
from diffusion.sampling import paste_known, sample_ddim

__all__ = ["sample_c2f"]


def _with_stage(callback: Callable[[dict], None], stage: int, info: dict) -> None:
    callback({"stage": stage, **info})


@torch.no_grad()
def sample_c2f(
    model: C2FModel,
    image: torch.Tensor,
    mask: torch.Tensor,
    category: int | str | torch.Tensor | Sequence[int] = "background",
    steps: Sequence[int] | None = None,
    gains: Sequence[float] | None = None,
    *,
    eta: float | None = None,
    cfg_batched: bool | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    mask_dilation: int = 0,
    feather: int = 0,
    color_match: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Inpaint ``image`` where ``mask == 1`` with every stage of ``model``, coarse to fine.

    The image is padded (reflect, bottom / right) to ``model.size_multiple``, the pyramid is built
    (area / max-pool), each stage samples at its size and the result is cropped back.

    Args:
        model: the C2F model (eval mode).
        image: ``(B, 3, H, W)`` in [-1, 1], any H, W (the last stage runs at H x W, stage ``s`` at
            ``H * resolutions[s] / resolutions[-1]``).
        mask: ``(B, 1, H, W)``, 1 (> 0.5) = hole.
        category: LCG category of the fill: ``"background"`` (object removal), ``"foreground"``,
            an id (0 fg, 1 bg) or one id per image (used by ``learned_null`` guidance and the combiners).
        steps: DDIM steps per stage (default ``model.sampling.steps``).
        gains: CFG gain per stage (default ``model.sampling.gains``).
        eta: DDIM eta (default ``model.sampling.eta``).
        cfg_batched: one doubled forward (True) or two forwards per step (default ``model.sampling.cfg_batched``).
        generator: RNG on ``image``'s device (reproducible samples).
        callback: called after every DDIM step with ``{"stage", "i", "t", "x", "x0_pred"}``.
        mask_dilation: grow the hole by this many pixels before sampling (PixelHacker's mask dilation).
        feather: sample over the hole grown by ``2 * feather`` px more and paste back through a
            Gaussian-blurred border (:func:`diffusion.fill_options.feather_weight`); 0 = hard paste.
        color_match: shift the fill to the mean colour of the known pixels around it
            (:func:`diffusion.fill_options.colour_compensate`).

    Returns:
        ``(out, stage_outputs)``: ``out`` ``(B, 3, H, W)`` equals ``image`` bit for bit where
        ``mask == 0`` (with the options: farther than ``mask_dilation + 2 * feather`` px from the
        hole); ``stage_outputs[s]`` is stage ``s``'s output at its own (padded) size, the last one
        cropped (the sampled image before the options' paste-back).
    """
    if image.ndim != 4 or image.shape[1] != 3 or mask.ndim != 4 or mask.shape[1] != 1 or \
            mask.shape[0] != image.shape[0] or mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"sample_c2f: image must be (B, 3, H, W) and mask (B, 1, H, W) of the same size, got "
            f"{tuple(image.shape)} and {tuple(mask.shape)}"
        )
    defaults = model.sampling
    steps = [int(s) for s in (defaults.steps if steps is None else steps)]
    gains = [float(g) for g in (defaults.gains if gains is None else gains)]
    model.check_sampling(steps, gains, "sample_c2f")
    check_fill_options(mask_dilation, feather, "sample_c2f")
    if mask_dilation or feather or color_match:
        outputs: list[torch.Tensor] = []

        def fill(img: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
            out, stage_outputs = sample_c2f(model, img, hole, category, steps, gains, eta=eta, cfg_batched=cfg_batched,
                                            generator=generator, callback=callback)
            outputs.extend(stage_outputs)
            return out

        out = fill_with_options(fill, image, mask, mask_dilation=mask_dilation, feather=feather, color_match=color_match)
        return out, outputs
    eta = defaults.eta if eta is None else eta
    batched = defaults.cfg_batched if cfg_batched is None else cfg_batched
    dtype = next(model.parameters()).dtype
    hole_full = (mask > 0.5).to(image.dtype)
    category = category_ids(category, image.shape[0], image.device)
    padded, size = pad_to_multiple(image.to(dtype), model.size_multiple)
    pmask, _ = pad_to_multiple(hole_full.to(dtype), model.size_multiple)
    sizes = stage_sizes(padded.shape[-2:], model.resolutions)
    tokens = model.category_tokens(category)
    context, uncond_context = model.guidance_tokens(category)
    outputs: list[torch.Tensor] = []
    previous = None
    for s, denoiser in enumerate(model.stages):
        img_s, m_s = downsample_image(padded, sizes[s]), downsample_mask(pmask, sizes[s])
        masked = img_s * (1 - m_s)
        cond = None if previous is None else model.condition(s, upsample(previous, sizes[s]), masked, m_s, tokens)
        extra = dict(masked_image=masked, mask=m_s, context=context, uncond_context=uncond_context,
                     cond_scale=gains[s], cond=cond, batched=batched)
        stage_callback = None if callback is None else partial(_with_stage, callback, s)
        previous = sample_ddim(denoiser.forward_with_cond_scale, img_s, m_s, denoiser.alphas_cumprod, steps[s], extra,
                               eta=eta, spacing=denoiser.timestep_spacing, generator=generator, callback=stage_callback)
        outputs.append(previous)
    out = paste_known(crop_to(previous, size).to(image.dtype), image, hole_full)
    outputs[-1] = out
    return out, outputs

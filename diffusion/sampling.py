"""DDIM sampling for inpainting as a pure function, with exact paste-back of known pixels.

k-diffusion style: ``sample_ddim(model, image, mask, alphas_cumprod, steps, extra_args, ...)`` calls
``model(x_t, t, **extra_args)``, which returns the (guided) DENOISED image ``x0`` (every prediction
target converts to it; see :class:`diffusion.denoiser.InpaintingDenoiser`). Conditioning is passed
as arguments, e.g.::

    x = sample_ddim(denoiser.forward_with_cond_scale, image, mask, denoiser.alphas_cumprod, 50,
                    dict(masked_image=masked, mask=mask, context=c, uncond_context=u, cond_scale=4.5))

At every step the predicted ``x0`` takes the known pixels of ``image`` and the known region of
the next ``x_{t-1}`` is replaced by ``q(x_{t-1} | image)`` (forward-noised image), so the network
always sees a consistent noisy known region. The returned image is
``torch.where(mask, x0, image)``: known pixels are bit-exact copies of ``image``.
"""
from __future__ import annotations

from typing import Any, Callable, Literal, Mapping

import torch

__all__ = ["ddim_timesteps", "paste_known", "sample_ddim", "TimestepSpacing", "SPACINGS"]

#: ``model(x_t (B,3,H,W), t (B,) long, **extra_args) -> denoised x0 (B,3,H,W)``
DenoiserFn = Callable[..., torch.Tensor]


TimestepSpacing = Literal["linspace", "trailing"]
SPACINGS = ("linspace", "trailing")


def ddim_timesteps(num_train_timesteps: int, steps: int, spacing: TimestepSpacing = "linspace") -> torch.Tensor:
    """``steps`` decreasing training timesteps (long), always starting at ``T - 1``.

    ``linspace``: evenly spaced from ``T - 1`` down to 0 (rounded). ``trailing`` (Lin et al. 2024,
    Table 2): ``round(arange(T, 0, -T / S)) - 1``, e.g. 999, 899, ..., 99 for ``T = 1000, S = 10``;
    with a zero-terminal-SNR schedule it starts sampling exactly where training saw pure noise.
    """
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"DDIM steps must be in 1..{num_train_timesteps} (training timesteps), got {steps}")
    if spacing == "linspace":
        return torch.linspace(num_train_timesteps - 1, 0, steps, dtype=torch.float64).round().long()
    if spacing == "trailing":  # T - i T / S for i < S (arange without its floating-point end-point risk)
        t = num_train_timesteps - torch.arange(steps, dtype=torch.float64) * (num_train_timesteps / steps)
        return t.round().long() - 1
    raise ValueError(f"timestep spacing must be one of {SPACINGS}, got {spacing!r}")


def paste_known(pred: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mask * pred + (1 - mask) * image`` for a {0,1} mask, computed as a select (bit-exact)."""
    return torch.where(mask > 0.5, pred, image)


def sample_ddim(
    model: DenoiserFn,
    image: torch.Tensor,
    mask: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    steps: int,
    extra_args: Mapping[str, Any] | None = None,
    *,
    eta: float = 0.0,
    spacing: TimestepSpacing = "linspace",
    x_T: torch.Tensor | None = None,
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
) -> torch.Tensor:
    """Inpaint ``image`` where ``mask == 1`` with DDIM.

    Args:
        model: ``model(x_t (B,3,H,W), t (B,) long, **extra_args) -> denoised x0 (B,3,H,W)``.
        image: ``(B, 3, H, W)`` in [-1, 1]; its hole pixels are ignored.
        mask: ``(B, 1, H, W)`` in {0, 1}, 1 = hole.
        alphas_cumprod: ``(T,)`` cumulative alphas of the training schedule.
        steps: number of DDIM steps.
        extra_args: keyword arguments of every ``model`` call (conditioning, guidance gain).
        eta: DDIM stochasticity (0 = deterministic DDIM, 1 = DDPM-like variance).
        spacing: DDIM timestep spacing (:func:`ddim_timesteps`; ``trailing`` for zero-terminal-SNR schedules).
        x_T: starting sample (default: Gaussian noise from ``generator``); e.g. a noised
            upsampled coarse output in a coarse-to-fine pipeline.
        clip_x0: clamp the predicted ``x0`` to [-1, 1] (eps is recomputed from the pasted x0).
        generator: RNG for the initial noise and the stochastic terms (on ``image``'s device).
        callback: called after every step with ``{"i", "t", "x", "x0_pred"}`` (x0 pasted).

    Returns:
        ``(B, 3, H, W)``; known pixels equal ``image`` bit for bit.
    """
    if image.shape[0] != mask.shape[0] or image.shape[-2:] != mask.shape[-2:] or mask.shape[1] != 1:
        raise ValueError(f"sample_ddim: mask must be (B, 1, H, W) matching image {tuple(image.shape)}, got {tuple(mask.shape)}")
    if eta < 0:
        raise ValueError(f"sample_ddim: eta must be >= 0, got {eta}")
    abar = alphas_cumprod.to(device=image.device, dtype=torch.float32)
    ts = ddim_timesteps(abar.shape[0], steps, spacing).to(image.device)
    hole = mask > 0.5

    def randn() -> torch.Tensor:
        return torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)

    x = randn() if x_T is None else x_T.to(image.dtype)
    a_T = abar[ts[0]]
    x = torch.where(hole, x, a_T.sqrt() * image + (1 - a_T).sqrt() * randn())
    x0 = image
    extra_args = dict(extra_args or {})
    for i, t in enumerate(ts):
        a = abar[t]
        a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else torch.ones((), device=abar.device)
        t_b = t.expand(image.shape[0])
        x0 = model(x, t_b, **extra_args).to(image.dtype)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
        x0 = paste_known(x0, image, mask)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp(min=0).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0 and i + 1 < len(ts):
            x = x + sigma * randn()
        if i + 1 < len(ts):
            x = torch.where(hole, x, a_prev.sqrt() * image + (1 - a_prev).sqrt() * randn())
        if callback is not None:
            callback({"i": i, "t": int(t), "x": x, "x0_pred": x0})
    return paste_known(x0, image, mask)

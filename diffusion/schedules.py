"""Noise schedules as standalone functions (float64 tensors of length ``num_timesteps``).

- :func:`linear_betas`: DDPM, ``beta_t`` linear from ``beta_start`` to ``beta_end``.
- :func:`scaled_linear_betas`: Stable Diffusion / PixelHacker, ``sqrt(beta_t)`` linear
  (defaults 0.00085 .. 0.012).
- :func:`cosine_betas`: Nichol & Dhariwal (2021),
  ``alpha_bar(t) = f(t) / f(0)``, ``f(t) = cos(((t / T) + s) / (1 + s) * pi / 2) ** 2``,
  ``beta_t = min(1 - alpha_bar(t + 1) / alpha_bar(t), max_beta)``.

:func:`alphas_cumprod` turns betas into ``alpha_bar_t = prod_{i<=t} (1 - beta_i)``;
:func:`make_alphas_cumprod` builds it from a schedule name (config choice) and applies the two
pixel-space corrections (docs/schedules.md), each a pure function of ``alpha_bar``:

- :func:`rescale_zero_terminal_snr`: Lin et al. 2024 ("Common diffusion noise schedules and sample
  steps are flawed", Algorithm 1): shift and scale ``sqrt(alpha_bar)`` so that the last is exactly 0
  (zero terminal SNR: the last training step is pure noise, as sampling starts) and the first is
  unchanged. Needs a v or x0 target (epsilon is undefined at SNR 0) and trailing DDIM timesteps
  (:func:`diffusion.sampling.ddim_timesteps`).
- :func:`shift_log_snr` with :func:`resolution_shift`: Hoogeboom et al. 2023 (simple diffusion):
  ``logSNR'(t) = logSNR(t) + 2 log(base / resolution)``, so a stage at ``resolution`` px sees the
  noise a ``base`` px image sees at the coarse scale. We shift the stage's DISCRETE schedule (any
  of the betas above), not the paper's continuous cosine log-SNR; with ``schedule: cosine`` it is
  the paper's recipe discretised at ``T`` steps.

Order in :func:`make_alphas_cumprod`: betas -> ``alpha_bar`` -> zero-terminal rescale -> shift (the
shift keeps a zero terminal SNR at zero and moves every other log-SNR by exactly the shift).
"""
from __future__ import annotations

import math
from typing import Literal

import torch

__all__ = [
    "linear_betas",
    "scaled_linear_betas",
    "cosine_betas",
    "alphas_cumprod",
    "make_betas",
    "make_alphas_cumprod",
    "rescale_zero_terminal_snr",
    "shift_log_snr",
    "resolution_shift",
    "log_snr",
    "ScheduleName",
]

ScheduleName = Literal["scaled_linear", "linear", "cosine"]


def _check_steps(num_timesteps: int) -> None:
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM linear betas ``linspace(beta_start, beta_end, num_timesteps)``."""
    _check_steps(num_timesteps)
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def scaled_linear_betas(num_timesteps: int, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """Stable-Diffusion betas ``linspace(sqrt(beta_start), sqrt(beta_end), num_timesteps) ** 2``."""
    _check_steps(num_timesteps)
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal cosine schedule betas (clipped at ``max_beta``)."""
    _check_steps(num_timesteps)
    t = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """``alpha_bar_t = prod_{i<=t} (1 - beta_i)`` (float64)."""
    betas = betas.to(torch.float64)
    if betas.ndim != 1 or (betas <= 0).any() or (betas >= 1).any():
        raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
    return torch.cumprod(1 - betas, dim=0)


def make_betas(name: ScheduleName, num_timesteps: int) -> torch.Tensor:
    """Betas of the named schedule with its default parameters."""
    builders = {"scaled_linear": scaled_linear_betas, "linear": linear_betas, "cosine": cosine_betas}
    if name not in builders:
        raise ValueError(f"unknown noise schedule {name!r}; choose one of {sorted(builders)}")
    return builders[name](num_timesteps)


def log_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``log(alpha_bar / (1 - alpha_bar))`` (float64; ``-inf`` where ``alpha_bar == 0``)."""
    a = alphas_cumprod.to(torch.float64)
    return torch.log(a) - torch.log1p(-a)


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, Algorithm 1: ``sqrt(alpha_bar)`` shifted and scaled to end at exactly 0, first value kept.

    ``s' = (s - s_T) * s_0 / (s_0 - s_T)`` with ``s = sqrt(alpha_bar)``; returns ``s' ** 2`` (float64).
    """
    s = alphas_cumprod.to(torch.float64).sqrt()
    if s.ndim != 1 or s.numel() < 2 or not bool((s[1:] < s[:-1]).all()):
        raise ValueError("rescale_zero_terminal_snr: alphas_cumprod must be a strictly decreasing 1-D tensor of >= 2 steps")
    s0, sT = s[0].clone(), s[-1].clone()
    out = ((s - sT) * (s0 / (s0 - sT))) ** 2
    out[-1] = 0.0  # exactly, whatever the rounding of s - sT
    out[0] = alphas_cumprod[0].to(torch.float64)
    return out


def resolution_shift(resolution: int, base: int = 64) -> float:
    """Hoogeboom et al. 2023 log-SNR shift of a ``resolution`` px stage: ``2 log(base / resolution)``."""
    if resolution <= 0 or base <= 0:
        raise ValueError(f"resolution_shift: resolution and base must be > 0 pixels, got {resolution} and {base}")
    return 2.0 * math.log(base / resolution)


def shift_log_snr(alphas_cumprod: torch.Tensor, shift: float) -> torch.Tensor:
    """``alpha_bar'`` with ``logSNR'(t) = logSNR(t) + shift`` at every ``t``: ``sigmoid(logSNR(t) + shift)`` (float64).

    A zero terminal SNR stays exactly zero (``sigmoid(-inf) = 0``).
    """
    return torch.sigmoid(log_snr(alphas_cumprod) + shift)


def make_alphas_cumprod(
    name: ScheduleName,
    num_timesteps: int,
    zero_terminal_snr: bool = False,
    shift_resolution: int | None = None,
    shift_base: int = 64,
) -> torch.Tensor:
    """``alpha_bar`` of the named schedule, optionally rescaled to zero terminal SNR, then log-SNR shifted.

    Args:
        name: base betas (``scaled_linear``, ``linear``, ``cosine``).
        num_timesteps: ``T``.
        zero_terminal_snr: apply :func:`rescale_zero_terminal_snr`.
        shift_resolution: stage resolution in px for the :func:`resolution_shift`; None = no shift.
        shift_base: the shift's base resolution (64 in simple diffusion).
    """
    abar = alphas_cumprod(make_betas(name, num_timesteps))
    if zero_terminal_snr:
        abar = rescale_zero_terminal_snr(abar)
    if shift_resolution is not None:
        abar = shift_log_snr(abar, resolution_shift(shift_resolution, shift_base))
    return abar

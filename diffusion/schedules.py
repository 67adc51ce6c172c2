"""Noise schedules as standalone functions (float64 tensors of length ``num_timesteps``).

- :func:`linear_betas`: DDPM, ``beta_t`` linear from ``beta_start`` to ``beta_end``.
- :func:`scaled_linear_betas`: Stable Diffusion / PixelHacker, ``sqrt(beta_t)`` linear
  (defaults 0.00085 .. 0.012).
- :func:`cosine_betas`: Nichol & Dhariwal (2021),
  ``alpha_bar(t) = f(t) / f(0)``, ``f(t) = cos(((t / T) + s) / (1 + s) * pi / 2) ** 2``,
  ``beta_t = min(1 - alpha_bar(t + 1) / alpha_bar(t), max_beta)``.

:func:`alphas_cumprod` turns betas into ``alpha_bar_t = prod_{i<=t} (1 - beta_i)``;
:func:`make_alphas_cumprod` builds it from a schedule name (config choice).
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


def make_alphas_cumprod(name: ScheduleName, num_timesteps: int) -> torch.Tensor:
    """``alphas_cumprod(make_betas(name, num_timesteps))``."""
    return alphas_cumprod(make_betas(name, num_timesteps))

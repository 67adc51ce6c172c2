"""InterfaceGAN latent editing: direction files and ``w + degree * direction``.

Official direction files (HFGI / e4e ``editings/interfacegan_directions/``): ``age.pt`` and
``smile.pt`` hold a ``(1, 512)`` tensor (one direction for every W+ layer), ``pose.pt`` a
``(1, 18, 512)`` tensor saved on ``cuda:0``; they are always loaded with ``map_location="cpu"``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch

from networks.checkpoints import CheckpointMismatchError, read_checkpoint
from networks.hfgi.official_checkpoints import OFFICIAL_FORMATS

__all__ = ["normalize_direction", "load_direction", "load_directions", "edit_latents"]


def normalize_direction(direction: torch.Tensor, n_styles: int, style_dim: int, where: str = "direction") -> torch.Tensor:
    """A direction as ``(1, style_dim)`` (all layers) or ``(1, n_styles, style_dim)`` (per layer).

    Accepts ``(D,)``, ``(1, D)``, ``(n_styles, D)`` and ``(1, n_styles, D)``; anything else is a
    ``ValueError`` naming ``where`` and the expected shapes.
    """
    if not isinstance(direction, torch.Tensor):
        raise ValueError(f"{where}: expected a tensor, got {type(direction).__name__}")
    t = direction.detach().float().cpu()
    shape = tuple(t.shape)
    if shape == (style_dim,):
        return t.unsqueeze(0)
    if shape == (1, style_dim):
        return t
    if shape == (n_styles, style_dim):
        return t.unsqueeze(0)
    if shape == (1, n_styles, style_dim):
        return t
    raise ValueError(
        f"{where}: direction has shape {shape}; expected (1, {style_dim}) (e.g. age/smile) or "
        f"(1, {n_styles}, {style_dim}) (e.g. pose) for a generator with {n_styles} W+ layers of width {style_dim}"
    )


def load_direction(path: str | os.PathLike, n_styles: int, style_dim: int) -> torch.Tensor:
    """Load one InterfaceGAN direction file on CPU and validate its shape (see :func:`normalize_direction`)."""
    obj = read_checkpoint(Path(path), OFFICIAL_FORMATS["direction"])
    if isinstance(obj, Mapping):
        tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
        if len(tensors) != 1:
            raise CheckpointMismatchError(f"{path}: expected a direction tensor, found a dict with keys {sorted(obj)}")
        obj = tensors[0]
    return normalize_direction(obj, n_styles, style_dim, where=str(path))


def load_directions(paths: Mapping[str, str | os.PathLike], n_styles: int, style_dim: int) -> dict[str, torch.Tensor]:
    """Load ``{name: path}`` direction files (e.g. age, smile, pose) -> ``{name: direction}``."""
    return {name: load_direction(p, n_styles, style_dim) for name, p in paths.items()}


def edit_latents(w: torch.Tensor, direction: torch.Tensor, degree: float | torch.Tensor) -> torch.Tensor:
    """``w + degree * direction`` in W+.

    Args:
        w: W+ codes ``(B, n_styles, D)``.
        direction: ``(1, D)``/``(D,)`` (applied to every layer) or ``(1, n_styles, D)``.
        degree: a number, or a ``(B,)`` tensor of per-sample degrees.

    Returns:
        Edited codes, same shape as ``w``.
    """
    if w.ndim != 3:
        raise ValueError(f"edit_latents expects W+ codes (B, n_styles, D), got {tuple(w.shape)}")
    d = direction.to(device=w.device, dtype=w.dtype)
    if d.ndim == 1:
        d = d.view(1, 1, -1)
    elif d.ndim == 2:
        d = d.unsqueeze(1)  # (1, 1, D): every layer
    if d.ndim != 3 or d.shape[-1] != w.shape[-1] or d.shape[1] not in (1, w.shape[1]):
        raise ValueError(f"direction of shape {tuple(direction.shape)} does not fit W+ codes {tuple(w.shape)}")
    if isinstance(degree, torch.Tensor) and degree.ndim > 0:
        degree = degree.to(w).view(-1, 1, 1)
    return w + degree * d

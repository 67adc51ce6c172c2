"""Loaders and writers for the official StyleGAN2 / e4e / HFGI / ArcFace files.

Formats (read off the public code):

* StyleGAN2 (rosinality, ``stylegan2-ffhq-config-f.pt``): ``{"g_ema": state_dict,
  "latent_avg": (512,)}`` plus optional ``"g"``, ``"d"`` (and optimiser state).
* e4e (``e4e_ffhq_encode.pt``): ``{"state_dict": {"encoder.*", "decoder.*"}, "opts": dict,
  "latent_avg": (18, 512)}``.
* HFGI (``ckpt.pt``): ``{"state_dict": {"encoder.*", "decoder.*", "residue.*", "grid_align.*"},
  "opts": dict, "latent_avg": (18, 512)}``.

Every loader maps to CPU, checks keys and shapes strictly and raises :class:`CheckpointError`
naming the file, the kind it looks like, and the missing / unexpected / mis-shaped keys.
A missing file raises ``FileNotFoundError`` naming where it goes and where it comes from.
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "OFFICIAL_FILES",
    "read_checkpoint",
    "checkpoint_kind",
    "check_state_dict",
    "load_stylegan2",
    "load_e4e",
    "load_hfgi",
    "load_arcface",
    "hfgi_opts",
    "normalize_latent_avg",
    "save_stylegan2",
    "save_e4e",
    "save_hfgi",
    "generator_size_of",
]

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint file exists but is not what the loader expects."""


#: official file -> (documented location, where it comes from)
OFFICIAL_FILES: dict[str, tuple[str, str]] = {
    "stylegan2": (
        "pretrained/stylegan2-ffhq-config-f.pt",
        "the FFHQ config-f generator converted to PyTorch (rosinality/stylegan2-pytorch README; "
        "also linked from the e4e and HFGI READMEs)",
    ),
    "e4e": ("pretrained/e4e_ffhq_encode.pt", "the 'FFHQ Inversion' model of the omertov/encoder4editing README"),
    "hfgi": ("pretrained/ckpt.pt", "the pretrained model linked from the Tengfei-Wang/HFGI README"),
    "arcface": (
        "pretrained/model_ir_se50.pth",
        "the IR-SE50 ArcFace model of TreB1eN/InsightFace_Pytorch (linked from the pSp/e4e READMEs)",
    ),
    "direction": (
        "pretrained/editings/interfacegan_directions/{age,smile,pose}.pt",
        "editings/interfacegan_directions/ in the Tengfei-Wang/HFGI (or encoder4editing) repository",
    ),
}


def _missing_file(path: Path, kind: str) -> FileNotFoundError:
    where, source = OFFICIAL_FILES[kind]
    return FileNotFoundError(
        f"{kind} checkpoint not found: {str(path)!r}. Place the official file at {where!r} "
        f"(or pass its path in the config); it is {source}. No weights are downloaded automatically."
    )


def read_checkpoint(path: PathLike, kind: str) -> Any:
    """``torch.load(path, map_location="cpu")`` with a clear error for a missing or unreadable file.

    Tries ``weights_only=True`` first; official files that pickle other objects are re-read
    with ``weights_only=False`` (only load files you trust).
    """
    path = Path(path)
    if not path.is_file():
        raise _missing_file(path, kind)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        warnings.warn(f"{path}: not loadable with weights_only=True; loading the full pickle (trusted file)")
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError) as err:
        raise CheckpointError(f"{path}: cannot read {kind} checkpoint ({err}); the file is corrupt or not a torch file") from err


def checkpoint_kind(obj: Any) -> str:
    """Best guess of what a loaded file is: stylegan2, e4e, hfgi, lightning, state_dict or unknown."""
    if not isinstance(obj, Mapping):
        return "tensor" if isinstance(obj, torch.Tensor) else "unknown"
    if "g_ema" in obj:
        return "stylegan2"
    sd = obj.get("state_dict")
    if isinstance(sd, Mapping):
        if "pytorch-lightning_version" in obj:
            return "lightning"
        prefixes = {k.split(".", 1)[0] for k in sd}
        if {"residue", "grid_align"} & prefixes:
            return "hfgi"
        if "encoder" in prefixes:
            return "e4e"
        return "state_dict"
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return "state_dict"
    return "unknown"


def _fmt(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`CheckpointError` listing missing, unexpected and mis-shaped keys of ``state``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = [f"{what} does not match {type(model).__name__}:"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_fmt(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {_fmt(shapes, 6)}")
        raise CheckpointError("\n  ".join(parts))


def _sub(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}


def _generator_size(state: Mapping[str, torch.Tensor]) -> int | None:
    n = sum(1 for k in state if k.startswith("noises.noise_"))
    return 2 ** ((n + 3) // 2) if n else None


def _check_generator_resolution(generator: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    size = _generator_size(state)
    if size is not None and size != generator.size:
        raise CheckpointError(
            f"{where} holds a {size}x{size} StyleGAN2 generator but the model is configured for "
            f"size={generator.size}; use the matching checkpoint or set the generator size to {size}"
        )


def _wrong_kind(path: Path, expected: str, found: str) -> CheckpointError:
    hints = {
        "stylegan2": "load it with load_stylegan2 / the `stylegan2` path",
        "e4e": "load it with load_e4e / the `e4e` path",
        "hfgi": "load it with load_hfgi / the `hfgi` path",
        "lightning": "it is a Lightning training checkpoint; pass it as --ckpt_path instead",
    }
    hint = hints.get(found, "it is not one of the official formats")
    return CheckpointError(f"{path}: expected a {expected} checkpoint but the file looks like a {found} file ({hint})")


def normalize_latent_avg(latent_avg: torch.Tensor | None, n_styles: int, style_dim: int, where: str) -> torch.Tensor | None:
    """``latent_avg`` as ``(n_styles, style_dim)`` (accepts ``(style_dim,)``, ``(1, D)``, ``(n_styles, D)``)."""
    if latent_avg is None:
        return None
    t = latent_avg.detach().float().cpu()
    if t.ndim == 1 and t.shape[0] == style_dim:
        return t.unsqueeze(0).repeat(n_styles, 1)
    if t.ndim == 2 and t.shape == (1, style_dim):
        return t.repeat(n_styles, 1)
    if t.ndim == 2 and t.shape == (n_styles, style_dim):
        return t.clone()
    raise CheckpointError(
        f"{where}: latent_avg has shape {tuple(t.shape)}, expected ({style_dim},) or ({n_styles}, {style_dim})"
    )


# --------------------------------------------------------------------------- loaders
def load_stylegan2(path: PathLike, generator: nn.Module, key: str = "g_ema") -> torch.Tensor | None:
    """Load ``ckpt[key]`` (default ``g_ema``) strictly into ``generator``.

    Returns the file's ``latent_avg`` as ``(n_latent, style_dim)`` or None when absent.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, "stylegan2")
    kind = checkpoint_kind(ckpt)
    if kind != "stylegan2":
        raise _wrong_kind(path, "StyleGAN2 (rosinality: {'g_ema', 'latent_avg'})", kind)
    if key not in ckpt:
        raise CheckpointError(f"{path}: no {key!r} entry (found {sorted(ckpt)})")
    state = ckpt[key]
    _check_generator_resolution(generator, state, f"{path} [{key}]")
    check_state_dict(generator, state, f"{path} [{key}]")
    generator.load_state_dict(state, strict=True)
    return normalize_latent_avg(ckpt.get("latent_avg"), generator.n_latent, generator.style_dim, str(path))


def _load_pSp_like(path: Path, kind: str, parts: dict[str, nn.Module | None]) -> tuple[torch.Tensor | None, dict]:
    ckpt = read_checkpoint(path, kind)
    found = checkpoint_kind(ckpt)
    if found != kind:
        layout = {
            "e4e": "{'state_dict': {encoder.*, decoder.*}, 'opts', 'latent_avg'}",
            "hfgi": "{'state_dict': {encoder.*, decoder.*, residue.*, grid_align.*}, 'opts', 'latent_avg'}",
        }[kind]
        raise _wrong_kind(path, f"{kind} {layout}", found)
    state = ckpt["state_dict"]
    known = set(parts)
    stray = sorted({k for k in state if k.split(".", 1)[0] not in known})
    if stray:
        raise CheckpointError(f"{path}: unexpected keys outside {sorted(known)} ({len(stray)}): {_fmt(stray)}")
    decoder = parts.get("decoder")
    if decoder is not None:
        _check_generator_resolution(decoder, _sub(state, "decoder"), f"{path} [decoder]")
    for prefix, module in parts.items():
        sub = _sub(state, prefix)
        if module is None:
            continue
        check_state_dict(module, sub, f"{path} [{prefix}.*]")
    for prefix, module in parts.items():
        if module is not None:
            module.load_state_dict(_sub(state, prefix), strict=True)
    opts = ckpt.get("opts") or {}
    if not isinstance(opts, dict):
        opts = dict(vars(opts)) if hasattr(opts, "__dict__") else {}
    la = ckpt.get("latent_avg")
    if la is not None and decoder is not None:
        la = normalize_latent_avg(la, decoder.n_latent, decoder.style_dim, str(path))
    return la, opts


def load_e4e(path: PathLike, encoder: nn.Module, generator: nn.Module | None = None) -> torch.Tensor | None:
    """Load an official e4e file: ``encoder.*`` into ``encoder`` and ``decoder.*`` into ``generator``.

    ``generator=None`` skips the decoder weights (still checked to exist as a prefix).
    Returns ``latent_avg`` (``(n_styles, style_dim)`` when a generator is given) or None.
    """
    latent_avg, _ = _load_pSp_like(Path(path), "e4e", {"encoder": encoder, "decoder": generator})
    return latent_avg


def load_hfgi(
    path: PathLike,
    encoder: nn.Module | None,
    generator: nn.Module | None,
    consultation: nn.Module | None,
    aligner: nn.Module | None,
) -> torch.Tensor | None:
    """Load an official HFGI checkpoint into e4e encoder, generator, consultation encoder and ADA.

    A module given as None is skipped. Returns ``latent_avg`` or None.
    """
    latent_avg, _ = _load_pSp_like(
        Path(path),
        "hfgi",
        {"encoder": encoder, "decoder": generator, "residue": consultation, "grid_align": aligner},
    )
    return latent_avg


def hfgi_opts(path: PathLike, kind: str = "hfgi") -> dict:
    """The ``opts`` dict stored in an e4e/HFGI file (e.g. ``stylegan_size``); {} when absent."""
    ckpt = read_checkpoint(Path(path), kind)
    opts = ckpt.get("opts") if isinstance(ckpt, Mapping) else None
    if opts is None:
        return {}
    return dict(opts) if isinstance(opts, Mapping) else dict(vars(opts))


def load_arcface(path: PathLike, model: nn.Module) -> None:
    """Load ``model_ir_se50.pth`` (a plain IR-SE50 ArcFace state dict) strictly into ``model``."""
    path = Path(path)
    state = read_checkpoint(path, "arcface")
    kind = checkpoint_kind(state)
    if kind != "state_dict":
        raise _wrong_kind(path, "ArcFace IR-SE50 state dict", kind)
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- writers
def _cpu(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in sd.items()}


def save_stylegan2(
    path: PathLike,
    generator: nn.Module,
    latent_avg: torch.Tensor | None = None,
    g: nn.Module | None = None,
    d: nn.Module | None = None,
) -> None:
    """Write ``{"g_ema", "latent_avg"}`` (+ ``g``, ``d`` when given) like the official files.

    ``latent_avg`` defaults to :meth:`StyleGAN2Generator.mean_latent` (``(style_dim,)``).
    """
    if latent_avg is None:
        latent_avg = generator.mean_latent(4096)[0]
    out: dict[str, Any] = {"g_ema": _cpu(generator.state_dict()), "latent_avg": latent_avg.detach().cpu()}
    if g is not None:
        out["g"] = _cpu(g.state_dict())
    if d is not None:
        out["d"] = _cpu(d.state_dict())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)


def _default_opts(generator: nn.Module, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    opts = {"stylegan_size": int(generator.size), "encoder_type": "Encoder4Editing", "start_from_latent_avg": True}
    opts.update(extra or {})
    return opts


def save_e4e(
    path: PathLike,
    encoder: nn.Module,
    generator: nn.Module,
    latent_avg: torch.Tensor,
    opts: Mapping[str, Any] | None = None,
) -> None:
    """Write ``{"state_dict": {encoder.*, decoder.*}, "opts", "latent_avg"}`` (e4e layout)."""
    sd = {f"encoder.{k}": v for k, v in _cpu(encoder.state_dict()).items()}
    sd.update({f"decoder.{k}": v for k, v in _cpu(generator.state_dict()).items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd, "opts": _default_opts(generator, opts), "latent_avg": latent_avg.detach().cpu()}, path)


def save_hfgi(
    path: PathLike,
    encoder: nn.Module,
    generator: nn.Module,
    consultation: nn.Module,
    aligner: nn.Module,
    latent_avg: torch.Tensor,
    opts: Mapping[str, Any] | None = None,
) -> None:
    """Write ``{"state_dict": {encoder.*, decoder.*, residue.*, grid_align.*}, "opts", "latent_avg"}``."""
    sd: dict[str, torch.Tensor] = {}
    for prefix, module in (("encoder", encoder), ("decoder", generator), ("residue", consultation), ("grid_align", aligner)):
        sd.update({f"{prefix}.{k}": v for k, v in _cpu(module.state_dict()).items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd, "opts": _default_opts(generator, opts), "latent_avg": latent_avg.detach().cpu()}, path)


def generator_size_of(path: PathLike, kind: str = "hfgi") -> int | None:
    """Resolution of the generator stored in a StyleGAN2/e4e/HFGI file (from its noise buffers).

    ``kind`` only selects the missing-file message.
    """
    ckpt = read_checkpoint(Path(path), kind)
    kind = checkpoint_kind(ckpt)
    if kind == "stylegan2":
        return _generator_size(ckpt["g_ema"])
    if kind in ("e4e", "hfgi"):
        return _generator_size(_sub(ckpt["state_dict"], "decoder"))
    return None


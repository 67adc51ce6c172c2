"""Loaders and writers for the official StyleGAN2 / e4e / HFGI / ArcFace files.

Formats (read off the public code):

* StyleGAN2 (rosinality, ``stylegan2-ffhq-config-f.pt``): ``{"g_ema": state_dict,
  "latent_avg": (512,)}`` plus optional ``"g"``, ``"d"`` (and optimiser state).
* e4e (``e4e_ffhq_encode.pt``): ``{"state_dict": {"encoder.*", "decoder.*"}, "opts": dict,
  "latent_avg": (18, 512)}``.
* HFGI (``ckpt.pt``): ``{"state_dict": {"encoder.*", "decoder.*", "residue.*", "grid_align.*"},
  "opts": dict, "latent_avg": (18, 512)}``.

``opts`` (and rosinality's ``args``) may also be an ``argparse.Namespace``; it is read as an inert
stand-in (:mod:`networks.checkpoints`), never unpickled for real.

Every loader reads the file with :func:`networks.checkpoints.read_checkpoint` (CPU, weights only),
checks keys, shapes, dtypes and finiteness strictly with :func:`networks.checkpoints.check_state`
and raises a :class:`networks.checkpoints.CheckpointError` naming the file, the kind it looks like,
and the offending keys. A missing file (``CheckpointNotFoundError``, a ``FileNotFoundError``)
names where it goes and where it comes from.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from networks.checkpoints import (
    CheckpointFormat,
    CheckpointMismatchError,
    StandIn,
    check_state,
    extract_state,
    read_checkpoint,
)

__all__ = [
    "OFFICIAL_FORMATS",
    "checkpoint_kind",
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


def _official(name: str, where: str, source: str, stand_ins: tuple[str, ...] = ()) -> CheckpointFormat:
    return CheckpointFormat(
        name=name,
        origin=f"Place the official file at {where!r} (or pass its path in the config); it is {source}. "
        "No weights are downloaded automatically.",
        stand_ins=stand_ins,
    )


#: official file kind -> its format (documented location, origin, pickled objects it may hold)
OFFICIAL_FORMATS: dict[str, CheckpointFormat] = {
    # rosinality's train.py pickles its argparse.Namespace as "args"; pSp/e4e/HFGI store opts
    # as a dict or an argparse.Namespace.
    "stylegan2": _official(
        "stylegan2 checkpoint",
        "pretrained/stylegan2-ffhq-config-f.pt",
        "the FFHQ config-f generator converted to PyTorch (rosinality/stylegan2-pytorch README; "
        "also linked from the e4e and HFGI READMEs)",
        ("argparse.Namespace",),
    ),
    "e4e": _official(
        "e4e checkpoint", "pretrained/e4e_ffhq_encode.pt", "the 'FFHQ Inversion' model of the omertov/encoder4editing README",
        ("argparse.Namespace",),
    ),
    "hfgi": _official(
        "hfgi checkpoint", "pretrained/ckpt.pt", "the pretrained model linked from the Tengfei-Wang/HFGI README",
        ("argparse.Namespace",),
    ),
    "arcface": _official(
        "arcface checkpoint",
        "pretrained/model_ir_se50.pth",
        "the IR-SE50 ArcFace model of TreB1eN/InsightFace_Pytorch (linked from the pSp/e4e READMEs)",
    ),
    "direction": _official(
        "InterfaceGAN direction",
        "pretrained/editings/interfacegan_directions/{age,smile,pose}.pt",
        "editings/interfacegan_directions/ in the Tengfei-Wang/HFGI (or encoder4editing) repository",
    ),
}


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


def _sub(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}


def _opts_dict(opts: Any) -> dict:
    """``opts`` as a dict: stored as a dict, or as an ``argparse.Namespace`` (read as a :class:`StandIn`)."""
    if isinstance(opts, StandIn):
        return opts.as_dict()
    return dict(opts) if isinstance(opts, Mapping) else {}


def _fmt(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _generator_size(state: Mapping[str, torch.Tensor]) -> int | None:
    n = sum(1 for k in state if k.startswith("noises.noise_"))
    return 2 ** ((n + 3) // 2) if n else None


def _check_generator_resolution(generator: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    size = _generator_size(state)
    if size is not None and size != generator.size:
        raise CheckpointMismatchError(
            f"{where} holds a {size}x{size} StyleGAN2 generator but the model is configured for "
            f"size={generator.size}; use the matching checkpoint or set the generator size to {size}"
        )


def _wrong_kind(path: Path, expected: str, found: str) -> CheckpointMismatchError:
    hints = {
        "stylegan2": "load it with load_stylegan2 / the `stylegan2` path",
        "e4e": "load it with load_e4e / the `e4e` path",
        "hfgi": "load it with load_hfgi / the `hfgi` path",
        "lightning": "it is a Lightning training checkpoint; pass it as --ckpt_path instead",
    }
    hint = hints.get(found, "it is not one of the official formats")
    return CheckpointMismatchError(f"{path}: expected a {expected} checkpoint but the file looks like a {found} file ({hint})")


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
    raise CheckpointMismatchError(
        f"{where}: latent_avg has shape {tuple(t.shape)}, expected ({style_dim},) or ({n_styles}, {style_dim})"
    )


# --------------------------------------------------------------------------- loaders
def load_stylegan2(path: PathLike, generator: nn.Module, key: str = "g_ema") -> torch.Tensor | None:
    """Load ``ckpt[key]`` (default ``g_ema``) strictly into ``generator``.

    Returns the file's ``latent_avg`` as ``(n_latent, style_dim)`` or None when absent.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, OFFICIAL_FORMATS["stylegan2"])
    kind = checkpoint_kind(ckpt)
    if kind != "stylegan2":
        raise _wrong_kind(path, "StyleGAN2 (rosinality: {'g_ema', 'latent_avg'})", kind)
    if key not in ckpt:
        raise CheckpointMismatchError(f"{path}: no {key!r} entry (found {sorted(ckpt)})")
    state = ckpt[key]
    _check_generator_resolution(generator, state, f"{path} [{key}]")
    check_state(generator, state, f"{path} [{key}]")
    generator.load_state_dict(state, strict=True)
    return normalize_latent_avg(ckpt.get("latent_avg"), generator.n_latent, generator.style_dim, str(path))


def _load_pSp_like(path: Path, kind: str, parts: dict[str, nn.Module | None]) -> tuple[torch.Tensor | None, dict]:
    ckpt = read_checkpoint(path, OFFICIAL_FORMATS[kind])
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
        raise CheckpointMismatchError(f"{path}: unexpected keys outside {sorted(known)} ({len(stray)}): {_fmt(stray)}")
    decoder = parts.get("decoder")
    if decoder is not None:
        _check_generator_resolution(decoder, _sub(state, "decoder"), f"{path} [decoder]")
    for prefix, module in parts.items():
        sub = _sub(state, prefix)
        if module is None:
            continue
        check_state(module, sub, f"{path} [{prefix}.*]")
    for prefix, module in parts.items():
        if module is not None:
            module.load_state_dict(_sub(state, prefix), strict=True)
    opts = _opts_dict(ckpt.get("opts"))
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
    ckpt = read_checkpoint(Path(path), OFFICIAL_FORMATS[kind])
    return _opts_dict(ckpt.get("opts") if isinstance(ckpt, Mapping) else None)


def load_arcface(path: PathLike, model: nn.Module) -> None:
    """Load ``model_ir_se50.pth`` (a plain IR-SE50 ArcFace state dict) strictly into ``model``."""
    path = Path(path)
    state = read_checkpoint(path, OFFICIAL_FORMATS["arcface"])
    kind = checkpoint_kind(state)
    if kind != "state_dict":
        raise _wrong_kind(path, "ArcFace IR-SE50 state dict", kind)
    check_state(model, state, str(path))
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
    ckpt = read_checkpoint(Path(path), OFFICIAL_FORMATS[kind])
    kind = checkpoint_kind(ckpt)
    if kind == "stylegan2":
        return _generator_size(ckpt["g_ema"])
    if kind in ("e4e", "hfgi"):
        return _generator_size(_sub(ckpt["state_dict"], "decoder"))
    return None


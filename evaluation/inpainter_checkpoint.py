"""Map a Lightning checkpoint (of a training module, of an evaluator, or an official one) onto an inpainter.

``python -m main test --config configs/eval/x.yaml --ckpt_path runs/.../last.ckpt`` hands the
checkpoint to :class:`lightning_modules.inpainting_evaluator.InpaintingEvaluator`, whose
``on_load_checkpoint`` calls :func:`inpainter_state_from_checkpoint` to find the inpainter's
weights in it:

1. if the inpainter defines ``state_dict_from_checkpoint(checkpoint) -> state_dict`` (e.g. to pick
   EMA weights out of a training checkpoint), that is used;
2. otherwise the inpainter's own keys (or, for a wrapper that keeps the trained module in one
   attribute such as ``C2FInpainter.model``, its keys without that leading component) are looked
   up under one prefix of the checkpoint's ``state_dict``: the given ``prefix``, else the unique
   prefix under which *every* inpainter key exists (``""``, ``"inpainter."`` for an evaluator checkpoint, ``"model."``, ``"generator."``'s
   parent for LaMa's ``best.ckpt``, ...). Extra keys (discriminators, losses, optimiser-only
   parts) are ignored; a missing key or an ambiguous prefix is an error that says what to set.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["inpainter_state_from_checkpoint"]


def inpainter_state_from_checkpoint(
    checkpoint: Mapping[str, Any], inpainter: nn.Module, prefix: str | None = None, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """The inpainter's state dict taken from a Lightning checkpoint dict.

    Args:
        checkpoint: the loaded checkpoint (a dict with ``state_dict``).
        inpainter: the module whose keys are wanted.
        prefix: the key prefix of the inpainter's weights in ``checkpoint["state_dict"]``
            (e.g. ``"model."``); ``None`` finds the unique prefix that holds every inpainter key.
        source: name of the checkpoint (file path) for error messages.

    Raises:
        KeyError: no ``state_dict``, keys missing under ``prefix``, or no / several matching prefixes.
    """
    adapter = getattr(inpainter, "state_dict_from_checkpoint", None)
    if callable(adapter):
        return dict(adapter(checkpoint))
    if "state_dict" not in checkpoint:
        raise KeyError(f"{source} has no 'state_dict' (keys: {sorted(checkpoint)[:10]}); it is not a Lightning checkpoint")
    state = checkpoint["state_dict"]
    wanted = list(inpainter.state_dict().keys())
    if not wanted:
        return {}
    if prefix is not None:
        missing = [k for k in wanted if prefix + k not in state]
        if missing:
            raise KeyError(
                f"{source}: {len(missing)} of {len(wanted)} keys of {type(inpainter).__name__} are missing under "
                f"prefix {prefix!r}, e.g. {[prefix + k for k in missing[:5]]}; checkpoint keys look like "
                f"{list(state)[:5]}. Set the evaluator's checkpoint_prefix to the right prefix."
            )
        return {k: state[prefix + k] for k in wanted}
    # The inpainter may hold the trained module one level down (``C2FInpainter.model``): also try its
    # keys with their common leading components stripped.
    strips = [""]
    parts = wanted[0].split(".")
    for depth in range(1, len(parts)):
        lead = ".".join(parts[:depth]) + "."
        if all(k.startswith(lead) for k in wanted):
            strips.append(lead)
    # the least stripping that matches wins (every wrapper level below would match as well)
    matching: list[tuple[str, str]] = []
    for strip in strips:
        inner = [k[len(strip):] for k in wanted]
        anchor = inner[0]
        candidates = sorted({key[: len(key) - len(anchor)] for key in state if key.endswith(anchor)})
        for p in candidates:
            if (p == "" or p.endswith(".")) and all(p + k in state for k in inner):
                matching.append((p, strip))
        if matching:
            break
    if len(matching) == 1:
        p, strip = matching[0]
        return {k: state[p + k[len(strip):]] for k in wanted}
    if not matching:
        raise KeyError(
            f"{source}: no prefix holds all {len(wanted)} keys of {type(inpainter).__name__} "
            f"(first key {wanted[0]!r}; checkpoint keys look like {list(state)[:5]}). The checkpoint belongs to "
            "another architecture or configuration: check the inpainter's config, or set checkpoint_prefix."
        )
    raise KeyError(
        f"{source}: the weights of {type(inpainter).__name__} exist under several prefixes "
        f"{sorted(p for p, _ in matching)}; set the evaluator's checkpoint_prefix to the one to evaluate "
        "(e.g. the EMA copy)."
    )

"""Export a trained C2F model to ``.safetensors`` (weights + its config as JSON in the metadata).

    python -m inpainters.export assets/c2f_synthetic_demo.ckpt assets/c2f_synthetic_demo.safetensors
    python -m inpainters.export runs/<run>/checkpoints/last.ckpt model.safetensors

The input is any C2F checkpoint :meth:`diffusion.c2f.C2FModel.from_checkpoint` reads (a training
run's ``last.ckpt`` / ``best-*.ckpt``, a standalone model file); it is read weights-only. The output
loads with ``C2FModel.from_checkpoint``, ``inpainters.c2f.C2FInpainter`` and ``inpainters.api.load_inpainter``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffusion.c2f import SAFETENSORS_SUFFIX, C2FModel
from networks.checkpoints import CheckpointError


def export_safetensors(checkpoint: str | Path, out: str | Path) -> Path:
    """Read the C2F model in ``checkpoint`` and write it to ``out`` (must end in ``.safetensors``)."""
    out = Path(out)
    if out.suffix != SAFETENSORS_SUFFIX:
        raise ValueError(f"output {out} must end in {SAFETENSORS_SUFFIX}")
    return C2FModel.from_checkpoint(checkpoint).save(out)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m inpainters.export CHECKPOINT OUT.safetensors``."""
    parser = argparse.ArgumentParser(prog="python -m inpainters.export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="C2F checkpoint to export (training last.ckpt or a standalone model file)")
    parser.add_argument("out", help="output file, ending in .safetensors")
    args = parser.parse_args(argv)
    try:
        path = export_safetensors(args.checkpoint, args.out)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

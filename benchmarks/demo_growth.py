"""How the demo model's quality grows with training: the re-score of checkpoints taken along one training run.

Each ``--checkpoint`` (a ``C2FDiffusionModule`` ``last.ckpt`` copied at a validation of the last stage, or an exported
model) is scored by :mod:`benchmarks.rescore` on the same unseen scenes (``--scenes``, ``--k`` samples per case) with the
same cases as the full re-score (its first ``--scenes`` scenes); the training step is read from the checkpoint,
``--labels`` say where in the recipe each one was taken.

    python benchmarks/demo_growth.py --checkpoint snap/stage2_a.ckpt snap/stage2_b.ckpt assets/c2f_synthetic_demo.ckpt \
        --scenes 32 --k 2

Writes ``benchmarks/results/demo_growth.json``; ``python benchmarks/results_report.py`` renders it into docs/results.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import rescore  # noqa: E402
from evaluation.rows import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "demo_growth.json"
KEEP = ("swd", "mae_mean_k", "mae_sample", "residue", "texture_ratio_set")


def checkpoint_step(path: Path) -> int | None:
    """The optimizer step stored in a Lightning checkpoint (None for an exported model file)."""
    raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(raw["global_step"]) if "global_step" in raw else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", nargs="+", required=True, help="checkpoints of one run, in training order")
    parser.add_argument("--labels", nargs="+", default=None, help="a label per checkpoint (default: its step)")
    parser.add_argument("--scenes", type=int, default=32, help="unseen scenes scored per checkpoint")
    parser.add_argument("--k", type=int, default=2, help="samples per case (MAE of the mean of K)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--out", default=str(RESULTS), help="JSON result file")
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.checkpoint):
        parser.error(f"--labels: {len(args.labels)} labels for {len(args.checkpoint)} checkpoints")
    out = Path(args.out)
    points = []
    for i, ckpt in enumerate(map(Path, args.checkpoint)):
        if not ckpt.is_file():
            parser.error(f"--checkpoint {ckpt} does not exist")
        scored = rescore.main(["--scenes", str(args.scenes), "--k", str(args.k), "--chunk", str(args.scenes),
                               "--threads", str(args.threads), "--model", str(ckpt),
                               "--out", str(out.with_name(f"{out.stem}_{i}.json")),
                               "--work-dir", str(out.with_name(f"{out.stem}_chunks_{i}"))])
        tables = scored["tables"]
        row = {"checkpoint": str(ckpt), "step": checkpoint_step(ckpt),
               "label": args.labels[i] if args.labels else None,
               "model": {k: tables[rescore.MODEL_NAME][0].get(k) for k in KEEP},
               "removal": {k: v for k, v in next(r for r in tables[rescore.MODEL_NAME] if r["value"] == "fg object (removal)").items() if k in KEEP},
               "telea": {k: tables["Telea"][0].get(k) for k in KEEP}}
        points.append(row)
        print(f"{row['label'] or row['step']}: " + "  ".join(f"{k} {v:.4g}" for k, v in row["model"].items() if v is not None), flush=True)
    result = {"benchmark": "demo_growth", "command": "python benchmarks/demo_growth.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "settings": {"scenes": args.scenes, "k": args.k}, "points": points, "torch": torch.__version__,
              "machine": platform.platform(), "date": time.strftime("%Y-%m-%d")}
    write_json(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()

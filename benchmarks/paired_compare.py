"""Paired comparison of two re-scores of the same cases: is model A's difference from model B more than case noise?

Both work folders hold the chunks of ``benchmarks/rescore.py`` run on the same scenes (same ``--scenes``, ``--k``,
cases); the per-case rows of one inpainter in each are paired by key, and for each metric the mean difference
(A - B) gets a 95 % bootstrap interval over cases (``--resamples`` draws, seed 0), with the count of cases where A is
lower / higher. Only case sampling is covered: the noise of training (another training seed) is not.

    python benchmarks/paired_compare.py --a benchmarks/results/rescore_chunks --b old/rescore_chunks

Writes ``benchmarks/results/paired_compare.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evaluation.rows import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "paired_compare.json"
METRICS = ("residue", "clean_mae", "mae_mean_k", "mae_sample", "texture_ratio")


def case_rows(work_dir: Path, inpainter: str) -> dict[str, dict]:
    """Per-case rows of one inpainter from a re-score work folder, by case key."""
    chunks = sorted(work_dir.glob("chunk_*.pt"))
    if not chunks:
        raise SystemExit(f"paired_compare: {work_dir} holds no chunk_*.pt (a benchmarks/rescore.py work folder)")
    rows = {}
    for chunk in chunks:
        part = torch.load(chunk, map_location="cpu", weights_only=True)
        if inpainter not in part["rows"]:
            raise SystemExit(f"paired_compare: {chunk} has no rows of {inpainter!r} (has {sorted(part['rows'])})")
        rows.update({r["key"]: r for r in part["rows"][inpainter]})
    return rows


def paired(a: np.ndarray, b: np.ndarray, resamples: int, rng: np.random.Generator) -> dict[str, float]:
    """Mean of A - B, its 95 % bootstrap interval over cases, and how many cases A is lower / higher."""
    diff = a - b
    boots = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return {"n": len(diff), "a": float(a.mean()), "b": float(b.mean()), "diff": float(diff.mean()),
            "ci95": [float(low), float(high)], "a_lower": int((diff < 0).sum()), "a_higher": int((diff > 0).sum())}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="re-score work folder of model A (e.g. the new model)")
    parser.add_argument("--b", required=True, help="re-score work folder of model B, same cases")
    parser.add_argument("--inpainter", default="C2F demo model", help="row name of the model in both re-scores")
    parser.add_argument("--resamples", type=int, default=5000, help="bootstrap draws")
    parser.add_argument("--out", default=str(RESULTS), help="JSON result file")
    args = parser.parse_args(argv)
    a, b = case_rows(Path(args.a), args.inpainter), case_rows(Path(args.b), args.inpainter)
    if set(a) != set(b):
        raise SystemExit(f"paired_compare: the two re-scores hold other cases ({len(a)} vs {len(b)} keys, "
                         f"{len(set(a) ^ set(b))} not in both); run both with the same --scenes")
    rng = np.random.default_rng(0)
    groups = {"all cases": sorted(a), "object removal": sorted(k for k in a if a[k]["removal"])}
    result: dict = {"benchmark": "paired_compare", "a": args.a, "b": args.b, "inpainter": args.inpainter,
                    "command": "python benchmarks/paired_compare.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "groups": {}}
    for group, keys in groups.items():
        result["groups"][group] = {}
        for metric in METRICS:
            pairs = [(a[k][metric], b[k][metric]) for k in keys if a[k][metric] is not None and b[k][metric] is not None]
            pairs = [(x, y) for x, y in pairs if np.isfinite(x) and np.isfinite(y)]
            if pairs:
                xa, xb = np.array(pairs, dtype=np.float64).T
                result["groups"][group][metric] = paired(xa, xb, args.resamples, rng)
    print(f"{'group':16} {'metric':14} {'A':>8} {'B':>8} {'A-B':>8} {'95% CI':>20} {'A lower/higher':>15}")
    for group, metrics in result["groups"].items():
        for metric, r in metrics.items():
            print(f"{group:16} {metric:14} {r['a']:8.4f} {r['b']:8.4f} {r['diff']:8.4f} "
                  f"[{r['ci95'][0]:8.4f}, {r['ci95'][1]:8.4f}] {r['a_lower']:>7}/{r['a_higher']}")
    write_json(Path(args.out), result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()

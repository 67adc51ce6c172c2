"""Pixel-space noise schedules x prediction target on the coarsest C2F stage (docs/schedules.md).

Runs :mod:`benchmarks.convergence` (real Lightning Trainer, held-out synthetic scenes never used in
training, DDIM at guidance gain 1) for the schedule options of :mod:`diffusion.schedules`:

- 32 px and 64 px: ``scaled_linear`` (today), ``zero_terminal_snr`` (+ trailing DDIM steps) and
  ``shifted`` (simple-diffusion log-SNR shift, base 64; a no-op at 64 px) x (``v`` + min-SNR-5,
  ``epsilon``); epsilon at zero terminal SNR is refused by the denoiser and recorded as such;
- 32 px, second training seed of ``scaled_linear`` / ``v+minsnr5``: the seed spread the differences
  are read against;
- 128 px: ``shifted`` vs ``scaled_linear`` (``v`` + min-SNR-5), a small budget.

Metric: hole MAE of the MEAN of ``K`` samples per scene (the posterior-mean error; one sample's MAE
rewards blur less than it rewards luck), with the paired per-scene difference to ``scaled_linear``
of the same target (mean and its standard error over the scenes). Every run is resumable: each
size writes its own file under ``--work`` after every row and ``--resume`` keeps finished rows.

    nice -n 10 python benchmarks/schedules.py                 # about 25 CPU-minutes on a loaded 2-core machine
    nice -n 10 python benchmarks/schedules.py --scale 0.1     # a quick look (a tenth of the steps)
    python benchmarks/schedules.py --report-only              # merge the finished runs, redraw the figure

Writes ``benchmarks/results/schedules.json`` and ``docs/figures/schedules.png``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import convergence  # noqa: E402
from benchmarks.inpainting_study import save_figure  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "schedules.json"
FIGURE = ROOT / "docs" / "figures" / "schedules.png"

#: (name, size, steps, probes, batch, held-out scenes, samples per scene, schedules, targets, seed)
RUNS = [
    ("32px", 32, 120, [60, 120], 16, 24, 4, ["scaled_linear", "zero_terminal_snr", "shifted"], ["v+minsnr5"], 0),
    ("32px_seed1", 32, 120, [60, 120], 16, 24, 4, ["scaled_linear"], ["v+minsnr5"], 1),
    ("32px_eps", 32, 120, [60, 120], 16, 24, 4, ["scaled_linear", "zero_terminal_snr", "shifted"], ["epsilon"], 0),
    ("64px", 64, 60, [30, 60], 16, 16, 2, ["scaled_linear", "zero_terminal_snr", "shifted"], ["v+minsnr5"], 0),
    ("64px_eps", 64, 60, [30, 60], 16, 16, 2, ["scaled_linear", "zero_terminal_snr", "shifted"], ["epsilon"], 0),
    ("128px", 128, 20, [20], 8, 8, 2, ["scaled_linear", "shifted"], ["v+minsnr5"], 0),
]


def run_args(run: tuple, scale: float, work: Path, data_dir: str, ddim_steps: int, threads: int,
             only_schedules: list[str] | None = None) -> list[str]:
    """The :func:`benchmarks.convergence.main` arguments of one entry of :data:`RUNS`.

    ``only_schedules`` runs that subset of the entry's schedules into ``work/parts/<run>/<schedules>.json``
    (to spread one entry over processes); :func:`report` merges the parts.
    """
    name, size, steps, probes, batch, held_out, samples, schedules, targets, seed = run
    out = work / f"{name}.json"
    if only_schedules:
        schedules = [x for x in schedules if x in only_schedules]
        out = work / "parts" / name / ("+".join(schedules) + ".json")
    steps_s = max(2, round(steps * scale))
    probes_s = sorted({max(1, round(p * scale)) for p in probes})
    return [
        "--size", str(size), "--steps", str(steps_s), "--probes", *map(str, probes_s), "--batch-size", str(batch),
        "--warmup", str(max(1, round(20 * scale))), "--train-images", str(max(8, min(1000, steps_s * batch))),
        "--held-out", str(held_out), "--ddim-steps", str(ddim_steps), "--samples", str(samples), "--seed", str(seed),
        "--schedules", *schedules, "--only", *targets, "--threads", str(threads), "--data-dir", data_dir,
        "--out", str(out), "--resume",
    ]


def paired(rows: dict[str, dict], label: str, reference: str) -> dict | None:
    """Mean per-scene difference (``label`` - ``reference``) of the final MAE of the mean, and its standard error."""
    a, b = rows.get(label, {}).get("final_per_image_mae_of_mean"), rows.get(reference, {}).get("final_per_image_mae_of_mean")
    if not a or not b or label == reference:
        return None
    d = [x - y for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y))]
    m = sum(d) / len(d)
    se = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1) / len(d)) if len(d) > 1 else float("nan")
    return {"reference": reference, "mean_difference": m, "standard_error": se, "scenes": len(d)}


def report(work: Path, out: Path, figure: Path) -> dict:
    """Merge the per-size files of ``work`` into one result (table rows with paired differences) and draw the figure."""
    runs, table = {}, []
    for run in RUNS:
        path = work / f"{run[0]}.json"
        parts = sorted((work / "parts" / run[0]).glob("*.json"))
        if not path.is_file() and not parts:
            continue
        res = json.loads((path if path.is_file() else parts[0]).read_text())
        labels = {r["label"] for r in res["rows"]}
        for part in parts:
            extra = json.loads(part.read_text())
            if extra["settings_key"] != res["settings_key"]:
                raise ValueError(f"{part} was run with other settings than {path}; remove it or rerun")
            res["rows"] += [r for r in extra["rows"] if r["label"] not in labels]
            labels |= {r["label"] for r in extra["rows"]}
        runs[run[0]] = res
        by_label = {r["label"]: r for r in res["rows"]}
        for r in res["rows"]:
            reference = convergence.label_of("scaled_linear", r["prediction"], r["min_snr_gamma"])
            table.append({
                "run": run[0], "size": res["settings"]["size"], "seed": res["settings"]["seed"], "label": r["label"],
                "schedule": r["schedule"], "prediction": r["prediction"], "min_snr_gamma": r["min_snr_gamma"],
                "skipped": r.get("skipped"), "final_step": r["curve"][-1][0] if r.get("curve") else None,
                "final_hole_mae_one_sample": r.get("final_hole_mae"), "final_mae_of_mean": r.get("final_mae_of_mean"),
                "final_swd": r.get("final_swd"), "mean_of_samples_curve": r.get("mean_of_samples_curve"),
                "swd_curve": r.get("swd_curve"), "train_seconds": r.get("train_seconds"),
                "mean_fill_hole_mae": res["mean_fill_hole_mae"], "samples": res["settings"]["samples"],
                "held_out": res["settings"]["held_out"], "vs_scaled_linear": paired(by_label, r["label"], reference),
            })
    seed = [t for t in table if t["size"] == 32 and t["label"] == "v+minsnr5" and t["final_mae_of_mean"] is not None]
    seed_spread = None
    if len(seed) == 2:
        ra, rb = (next(r for r in runs[t["run"]]["rows"] if r["label"] == "v+minsnr5") for t in seed)
        seed_spread = {"size": 32, "label": "v+minsnr5", "seeds": [t["seed"] for t in seed],
                       "final_mae_of_mean": [t["final_mae_of_mean"] for t in seed],
                       "difference": paired({"a": ra, "b": rb}, "b", "a")}
    result = {
        "benchmark": "schedules", "command": "python benchmarks/schedules.py", "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
        "runs": {k: {"command": v["command"], "settings": v["settings"]} for k, v in runs.items()},
        "seed_spread": seed_spread, "table": table,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if table:
        plot(table, figure)
    return result


def markdown(result: dict) -> str:
    """The result as a Markdown table (one row per run and combination) and the seed-spread line."""
    num = lambda v, f="{:.4f}": "-" if v is None else f.format(v)  # noqa: E731
    lines = ["| size | seed | schedule / target | final step | hole MAE, 1 sample | MAE of the mean of K (K) | patch SWD | "
             "vs scaled_linear (paired, +- s.e.) | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for t in result["table"]:
        if t["skipped"]:
            lines.append(f"| {t['size']} | {t['seed']} | {t['label']} | {t['skipped']} ||||||")
            continue
        d = t["vs_scaled_linear"]
        diff = "-" if d is None else f"{d['mean_difference']:+.4f} +- {d['standard_error']:.4f} ({d['scenes']} scenes)"
        lines.append(f"| {t['size']} | {t['seed']} | {t['label']} | {t['final_step']} | {num(t['final_hole_mae_one_sample'])} | "
                     f"{num(t['final_mae_of_mean'])} ({t['samples']}) | {num(t['final_swd'], '{:.1f}')} | {diff} | "
                     f"{num(t['train_seconds'], '{:.0f}')} |")
    spread = result.get("seed_spread")
    if spread and spread["difference"]:
        d = spread["difference"]
        lines.append(f"\nSeed spread (32 px, v+minsnr5, seeds {spread['seeds']}): MAE of the mean "
                     f"{spread['final_mae_of_mean'][0]:.4f} vs {spread['final_mae_of_mean'][1]:.4f}, paired difference "
                     f"{d['mean_difference']:+.4f} +- {d['standard_error']:.4f}.")
    return "\n".join(lines)


def plot(table: list[dict], path: Path) -> None:
    """Hole MAE of the mean of K samples vs optimizer steps, one panel per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({t["size"] for t in table})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.6), dpi=110, squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for t in table:
            if t["size"] != size or not t["mean_of_samples_curve"]:
                continue
            steps, maes = zip(*t["mean_of_samples_curve"])
            label = t["label"] + (f" (seed {t['seed']})" if t["run"].endswith("seed1") or (size == 32 and t["label"] == "v+minsnr5") else "")
            ax.plot(steps, maes, marker="o", ms=3, label=label, ls="-" if t["prediction"] == "v" else "--")
        fill = next(t["mean_fill_hole_mae"] for t in table if t["size"] == size)
        ax.axhline(fill, color="gray", lw=1, ls=":", label="mean-of-known fill")
        ax.set_title(f"stage 0 at {size} px")
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel("hole MAE of the mean of K samples")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each run's optimizer steps and probes")
    parser.add_argument("--runs", nargs="*", default=None, help="run names to do (default all): " + ", ".join(r[0] for r in RUNS))
    parser.add_argument("--only-schedules", nargs="*", default=None,
                        help="run only these schedules of the chosen runs (into --work/parts/<run>/; merged by the report)")
    parser.add_argument("--ddim-steps", type=int, default=10, help="DDIM steps of every probe")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--work", default=str(ROOT / "data" / "studies" / "schedules"), help="per-size result files")
    parser.add_argument("--data-dir", default=str(ROOT / "data" / "studies"), help="where the synthetic sets go")
    parser.add_argument("--report-only", action="store_true", help="only merge finished runs and draw the figure")
    parser.add_argument("--out", default=str(RESULTS), help="merged JSON result file")
    args = parser.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for run in RUNS:
            if args.runs is None or run[0] in args.runs:
                print(f"== {run[0]}", flush=True)
                convergence.main(run_args(run, args.scale, work, args.data_dir, args.ddim_steps, args.threads,
                                          args.only_schedules))
    result = report(work, out, FIGURE if args.out == str(RESULTS) else out.with_suffix(".png"))
    print(markdown(result))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()

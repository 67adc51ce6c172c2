"""Re-score the bundled demo model and the weight-free fills with the measures of issue 20, per hole-area bin.

The demo model (``assets/c2f_synthetic_demo.ckpt``, 128 px, three stages) and mean / harmonic / Telea fills on
``--scenes`` unseen synthetic scenes (dataset seed ``HELD_OUT_SEED``, never used for training), every mask type
and object removal scored against the clean plate (``benchmarks.inpainting_study.held_out_cases``), ``--k``
samples per case for the model (the weight-free fills are deterministic: K = 1). Per case: MAE / PSNR of one
sample and of the mean of K, seam error, removal residue and clean-plate MAE, texture ratio; per group (whole set,
ten hole-area bins, cases): those means plus the SWD of the group's fills (``evaluation/binned_table.py``).

Resumable: each chunk of ``--chunk`` scenes is written to ``<work-dir>/chunk_NNNN.pt`` when done, and a restart
with the same settings skips the chunks already there (different settings in the same work dir are refused).
Parallel: a second process with ``--last-first`` on the same work dir computes the chunks from the end; each
process skips a chunk the other has finished (at worst the two compute the same chunk once).

    python benchmarks/rescore.py --scenes 256 --k 8            # the full re-score (hours on one CPU core)
    python benchmarks/rescore.py --scenes 8 --k 2 --chunk 4 --steps 10 6 4 --out /tmp/rescore.json   # a smoke test

Writes ``benchmarks/results/rescore.json`` (settings, the tables per inpainter, wall time) and
``docs/figures/rescore_grid.png``; ``python benchmarks/results_report.py`` renders them into docs/results.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.inpainting_study import HELD_OUT_SEED, case_table, held_out_cases, save_png, score_fills  # noqa: E402
from diffusion.c2f import C2FModel  # noqa: E402
from diffusion.c2f_sampling import sample_c2f  # noqa: E402
from evaluation.grids import labelled_grid, masked_view  # noqa: E402
from evaluation.targets import case_label  # noqa: E402
from inpainters.classical import HarmonicInpainter, MeanFillInpainter, TeleaInpainter  # noqa: E402
from masks.random import key_seed  # noqa: E402

MODEL = ROOT / "assets" / "c2f_synthetic_demo.ckpt"
RESULTS = ROOT / "benchmarks" / "results" / "rescore.json"
GRID = ROOT / "docs" / "figures" / "rescore_grid.png"
SIZE = 128
MODEL_NAME = "C2F demo model"
BASELINES = {"mean fill": MeanFillInpainter, "harmonic": HarmonicInpainter, "Telea": TeleaInpainter}
PREVIEW = 6  # cases of the first chunk kept for the grid


def model_samples(model: C2FModel, cases, k: int, steps: list[int] | None, color_match: bool = False) -> torch.Tensor:
    """``(k, N, 3, H, W)`` samples of the demo model, each case asking for its own category; seeds from the keys."""
    outs = []
    for j in range(k):
        gen = torch.Generator().manual_seed(key_seed("|".join(cases.keys), j))
        with torch.inference_mode():
            out, _ = sample_c2f(model, cases.image, cases.mask, cases.category, steps, generator=gen,
                                color_match=color_match)
        outs.append(out.float())
    return torch.stack(outs)


def run_chunk(model: C2FModel, cases, k: int, steps: list[int] | None, swd_patches: int,
              color_match: bool = False) -> dict[str, Any]:
    """Rows and SWD patches of every inpainter on one chunk of cases (plus preview fills)."""
    start = time.perf_counter()
    fills = {MODEL_NAME: model_samples(model, cases, k, steps, color_match)}
    model_seconds = time.perf_counter() - start
    with torch.inference_mode():
        for name, cls in BASELINES.items():
            fills[name] = cls()(cases.image, cases.mask)[None]
    out: dict[str, Any] = {"rows": {}, "descriptors": {}, "model_seconds": model_seconds}
    for name, samples in fills.items():
        rows, desc = score_fills(samples, cases, swd_patches)
        out["rows"][name], out["descriptors"][name] = rows, desc
    out["preview"] = {name: samples[0, :PREVIEW].clone() for name, samples in fills.items()}
    out["preview"]["_input"] = torch.stack([masked_view(cases.image[i], cases.mask[i]) for i in range(min(PREVIEW, len(cases)))])
    out["preview"]["_target"] = cases.target[:PREVIEW].clone()
    out["preview_keys"] = cases.keys[:PREVIEW]
    out["preview_labels"] = [case_label(int(t), bool(r)) for t, r in zip(cases.mask_type[:PREVIEW], cases.removal[:PREVIEW])]
    return out


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"scenes": args.scenes, "k": args.k, "chunk": args.chunk, "steps": args.steps, "swd_patches": args.swd_patches,
            "color_match": args.color_match,
            "size": SIZE, "held_out_seed": HELD_OUT_SEED, "model": str(Path(args.model).resolve()),
            "model_sha256": file_sha256(Path(args.model))}  # a retrained file at the same path must not reuse chunks


def _check_work_dir(work: Path, settings: dict[str, Any]) -> None:
    """Create the work dir with its settings, or refuse one holding chunks of other settings."""
    work.mkdir(parents=True, exist_ok=True)
    marker = work / "settings.json"
    if marker.is_file():
        old = json.loads(marker.read_text())
        if {k: v for k, v in old.items() if k != "scenes"} != {k: v for k, v in settings.items() if k != "scenes"}:
            raise SystemExit(f"rescore: {work} holds chunks of other settings ({old}); pass another --work-dir or "
                             f"delete it to start over (asked: {settings})")
    marker.write_text(json.dumps(settings, indent=1))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=256, help="held-out scenes (one case each, cycling the cases)")
    parser.add_argument("--k", type=int, default=8, help="samples per case of the demo model (mean-of-K metrics)")
    parser.add_argument("--chunk", type=int, default=16, help="scenes per chunk (the unit that is saved and resumed)")
    parser.add_argument("--steps", type=int, nargs="+", default=None,
                        help="DDIM steps per stage of the demo model (default: the steps stored in the model)")
    parser.add_argument("--swd-patches", type=int, default=128, help="7x7 patches per image and pyramid level for SWD")
    parser.add_argument("--color-match", action="store_true",
                        help="shift the model's fills to the known pixels' mean colour (configs/c2f/demo.yaml does)")
    parser.add_argument("--model", default=str(MODEL), help="C2F model file (weights-only checkpoint)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--last-first", action="store_true",
                        help="compute the chunks last to first: a second process on the same work dir shares the work")
    parser.add_argument("--work-dir", default=None, help="where finished chunks are kept (default: beside --out)")
    parser.add_argument("--out", default=str(RESULTS), help="JSON result file (the grid goes beside it unless default)")
    args = parser.parse_args(argv)
    if args.scenes < 1 or args.k < 1 or args.chunk < 1:
        parser.error("--scenes, --k and --chunk must be >= 1")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    grid = GRID if out == RESULTS else out.with_suffix(".png")
    work = Path(args.work_dir) if args.work_dir else out.with_name(out.stem + "_chunks")
    settings = _settings(args)
    _check_work_dir(work, settings)
    model = C2FModel.from_checkpoint(args.model)
    model.eval()
    if args.steps is not None:
        model.check_sampling(args.steps, model.sampling.gains, "rescore --steps")
    start_all = time.perf_counter()
    chunks = range(0, args.scenes, args.chunk)
    order = list(enumerate(chunks))
    for index, first in (reversed(order) if args.last_first else order):
        path = work / f"chunk_{index:04d}.pt"
        count = min(args.chunk, args.scenes - first)
        if path.is_file():
            print(f"chunk {index + 1}/{len(chunks)}: done before, skipped", flush=True)
            continue
        t0 = time.perf_counter()
        cases = held_out_cases(count, SIZE, HELD_OUT_SEED, "test", start=first)
        result = run_chunk(model, cases, args.k, args.steps, args.swd_patches, args.color_match)
        tmp = path.with_suffix(".tmp")
        torch.save({**result, "first": first, "count": count}, tmp)
        os.replace(tmp, path)  # a chunk file exists only when complete
        print(f"chunk {index + 1}/{len(chunks)}: {count} scenes in {time.perf_counter() - t0:.0f} s "
              f"(model {result['model_seconds']:.0f} s for {count * args.k} samples)", flush=True)
    rows: dict[str, list] = {}
    descriptors: dict[str, dict] = {}
    model_seconds, preview = 0.0, None
    for index in range(len(chunks)):
        part = torch.load(work / f"chunk_{index:04d}.pt", weights_only=True)
        model_seconds += part["model_seconds"]
        if index == 0:
            preview = part
        for name, r in part["rows"].items():
            rows.setdefault(name, []).extend(r)
            descriptors.setdefault(name, {}).update(part["descriptors"][name])
    tables = {name: case_table(r, descriptors[name]) for name, r in rows.items()}
    names = list(tables)
    show = preview["preview_keys"]
    grid_rows = [("masked input", list(preview["preview"]["_input"]))]
    grid_rows += [(n, list(preview["preview"][n])) for n in names]
    grid_rows += [("target (removal: clean plate)", list(preview["preview"]["_target"]))]
    columns = [f"{k.rsplit('_', 1)[-1].lstrip('0') or '0'}: {label}" for k, label in zip(show, preview["preview_labels"])]
    save_png(labelled_grid(grid_rows, columns, scale=1), grid)
    result = {
        "benchmark": "rescore",
        "command": "python benchmarks/rescore.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {**settings, "model": os.path.relpath(settings["model"], ROOT),
                     "steps_used": args.steps or list(model.sampling.steps), "gains_used": list(model.sampling.gains)},
        "cases_per_kind": {v: sum(1 for r in rows[MODEL_NAME] if r["case"] == v) for v in dict.fromkeys(r["case"] for r in rows[MODEL_NAME])},
        "tables": tables,
        "grid": str(grid.relative_to(ROOT)) if grid.is_relative_to(ROOT) else str(grid),
        "grid_keys": show,
        "model_seconds_per_sample": model_seconds / (args.scenes * args.k),
        "wall_seconds_this_run": round(time.perf_counter() - start_all),
        "torch": torch.__version__, "machine": platform.platform(), "date": time.strftime("%Y-%m-%d"),
    }
    from evaluation.rows import write_json

    write_json(out, result)
    print(f"\n{'inpainter':16} {'SWD':>8} {'MAE mean-K':>11} {'MAE 1':>8} {'residue':>8} {'texture':>8}")
    for name, table in tables.items():
        a = table[0]
        print(f"{name:16} {a.get('swd', float('nan')):8.1f} {a['mae_mean_k']:11.4f} {a['mae_sample']:8.4f} "
              f"{a['residue']:8.3f} {a['texture_ratio_set']:8.3f}")
    print(f"wrote {out} and {grid}")
    return result


if __name__ == "__main__":
    main()

"""``python -m main predict`` speed: seconds per image of the demo config, before / after the fast predict changes.

Runs the real predict path (Lightning ``Trainer.predict`` with
:class:`lightning_modules.inpainting_predictor.InpaintingPredictor`, the demo model
``assets/c2f_synthetic_demo.ckpt`` (gains 1 / 1 / 1), :class:`datamodules.image_files.ImageFilesDataModule`
and the PNG writer) on the bundled 128 px examples (``assets/examples``), on ``--threads`` CPU
threads (default 1), one configuration per fresh subprocess:

- ``before``: what predict did before: batch size 1, the doubled CFG batch every DDIM step (gains
  ``1 + 1e-6``: the same result to float precision, forced through the doubled batch);
- ``fast_path_b1``: the gain-1 fast path (one conditional forward per step), batch size 1;
- ``fast_path_b6``: the fast path with the six equal-size images in one batch (``batch_size: 6``).

Every run is timed after a warm-up predict on the same data (seconds per image of the second pass:
wall clock, and the process's CPU time, which a busy shared machine inflates much less).
Lightning's predict loop already ran under ``torch.inference_mode``; the API's ``inpaint_tensor``
keeps it for Python callers.

    nice -n 10 python benchmarks/predict_speed.py

Prints a table and writes ``benchmarks/results/predict_speed.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from evaluation.rows import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "predict_speed.json"
EXAMPLES = ROOT / "assets" / "examples"
CASES = {"before": (1, 1.0 + 1e-6), "fast_path_b1": (1, 1.0), "fast_path_b6": (6, 1.0)}


def run_case(name: str) -> dict:
    from lightning.pytorch import Trainer

    from callbacks.prediction_writer import InpaintingPredictionWriter
    from datamodules.image_files import ImageFilesDataModule
    from inpainters.c2f import C2FInpainter
    from lightning_modules.inpainting_predictor import InpaintingPredictor

    batch_size, gain = CASES[name]
    inpainter = C2FInpainter(str(ROOT / "assets" / "c2f_synthetic_demo.ckpt"), gains=[gain] * 3)
    predictor = InpaintingPredictor(inpainter)
    n = len(list((EXAMPLES / "images").glob("*.png")))
    times = []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(2):  # warm-up pass, timed pass
            trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                              callbacks=[InpaintingPredictionWriter(out, overwrite=True)], default_root_dir=out)
            dm = ImageFilesDataModule(str(EXAMPLES / "images"), str(EXAMPLES / "masks"), batch_size=batch_size)
            t0, c0 = time.perf_counter(), time.process_time()
            trainer.predict(predictor, datamodule=dm, return_predictions=False)
            times.append(time.perf_counter() - t0)
            cpu = time.process_time() - c0
    return {"case": name, "batch_size": batch_size, "gains": [gain] * 3, "images": n,
            "seconds_per_image": round(times[-1] / n, 3), "cpu_seconds_per_image": round(cpu / n, 3),
            "warmup_seconds_per_image": round(times[0] / n, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args._child:
        print(json.dumps(run_case(args._child)))
        return
    load_start = os.getloadavg()[0]
    rows = []
    for name in CASES:
        out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--_child", name],
                             check=True, capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "WANDB_MODE": "disabled"})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {name:14} batch {rows[-1]['batch_size']}: {rows[-1]['seconds_per_image']:.3f} s/image", flush=True)
    base, base_cpu = rows[0]["seconds_per_image"], rows[0]["cpu_seconds_per_image"]
    for r in rows:
        r["speedup_vs_before"] = round(base / r["seconds_per_image"], 2)
        r["cpu_speedup_vs_before"] = round(base_cpu / r["cpu_seconds_per_image"], 2)
    info = {
        "benchmark": "predict_speed", "model": "assets/c2f_synthetic_demo.ckpt (32/64/128 px, 50/30/20 steps)",
        "data": "assets/examples: 6 images, 128x128", "torch": torch.__version__, "cpu_threads": args.threads,
        "machine": platform.platform(), "load_average_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "rows": rows,
    }
    write_json(RESULTS, info)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

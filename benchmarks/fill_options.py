"""Do PixelHacker's inference options help object removal? Demo C2F model, held-out synthetic scenes, clean plates.

Each scene (``datamodules.synthetic.synthetic_scene_layers`` of dataset seed ``--dataset-seed``, default
13, test split: 128 px scenes the demo model never saw; it trained on dataset seed 0) has its objects drawn over a known background (the clean plate).
The hole is every object pixel (1 to 4 objects); the demo model fills it with the background category,
once per option setting (same sampling seed), and Telea gives a reference row. Scores, against the
clean plate, as means over the scenes:

- ``hole_mae``: mean |fill - clean plate| in the hole ([-1, 1] scale);
- ``residue``: fraction of hole pixels whose blurred fill is far from the blurred clean plate
  (``evaluation.removal_metrics.residue_fraction``: object left or drawn);
- ``seam_error``: mean |fill - clean plate| over hole pixels within 2 px of the hole border;
- ``ring_mae``: mean |output - input| over the known pixels the option changed (hole grown by
  ``mask_dilation + 2 * feather``, minus the hole): 0 when every known pixel is kept.

    nice -n 10 python benchmarks/fill_options.py          # about 2 CPU-minutes on one thread

Prints a table and writes ``benchmarks/results/fill_options.json``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datamodules.synthetic import scene_seed, synthetic_scene_layers  # noqa: E402
from masks.morphology import dilate_hole  # noqa: E402
from evaluation.hole_metrics import hole_mae, seam_error  # noqa: E402
from evaluation.removal_metrics import residue_fraction  # noqa: E402
from inpainters.api import load_inpainter  # noqa: E402
from evaluation.rows import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "fill_options.json"
#: (name, C2FInpainter options); "telea" is the weight-free reference
SETTINGS = [
    ("off (default)", {}),
    ("mask_dilation 2", {"mask_dilation": 2}),
    ("feather 2", {"feather": 2}),
    ("color_match", {"color_match": True}),
    ("dilation 2 + feather 2 + color_match", {"mask_dilation": 2, "feather": 2, "color_match": True}),
    ("telea", None),
]


def scenes(n: int, dataset_seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, clean plates (``(N, 3, H, W)`` in [-1, 1]) and object masks ``(N, 1, H, W)``."""
    imgs, cleans, masks = [], [], []
    for i in range(n):
        image, seg, clean, _ = synthetic_scene_layers(scene_seed(dataset_seed, "test", i), size)
        hole = seg >= 10  # the "thing" classes: every object pixel
        if not hole.any():
            continue
        imgs.append(image), cleans.append(clean), masks.append(hole)
    to = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    return to(imgs), to(cleans), torch.from_numpy(np.stack(masks))[:, None].float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=16, help="held-out scenes")
    parser.add_argument("--dataset-seed", type=int, default=13, help="synthetic dataset seed (test split) of the scenes")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image, clean, mask = scenes(args.scenes, args.dataset_seed, 128)
    rows = []
    for name, options in SETTINGS:
        model = load_inpainter("telea") if options is None else load_inpainter("demo", **options)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model(image, mask)
        seconds = time.perf_counter() - t0
        grown = dilate_hole(mask, (options or {}).get("mask_dilation", 0) + 2 * (options or {}).get("feather", 0))
        ring = (grown - mask).clamp(0, 1)
        ring_px = ring.sum(dim=(1, 2, 3)).clamp_min(1)
        rows.append({
            "setting": name, "scenes": int(image.shape[0]),
            "hole_mae": round(float(hole_mae(out, clean, mask).mean()), 4),
            "residue": round(float(residue_fraction(out, clean, mask).mean()), 4),
            "seam_error": round(float(seam_error(out, clean, mask).nanmean()), 4),
            "ring_mae": round(float((((out - image).abs().mean(1, keepdim=True) * ring).sum(dim=(1, 2, 3)) / ring_px).mean()), 4),
            "seconds": round(seconds, 1),
        })
        r = rows[-1]
        print(f"  {name:38} hole MAE {r['hole_mae']:.4f}  residue {r['residue']:.4f}  seam {r['seam_error']:.4f}  "
              f"ring {r['ring_mae']:.4f}  {r['seconds']:.1f} s", flush=True)
    info = {
        "benchmark": "fill_options", "model": "assets/c2f_synthetic_demo.safetensors (background fill, its own steps / gains)",
        "data": f"{int(image.shape[0])} synthetic scenes, 128 px, dataset seed {args.dataset_seed} test split, hole = every object pixel "
                f"({float(mask.mean()):.1%} of the pixels); scores against the clean plate",
        "torch": torch.__version__, "cpu_threads": args.threads, "machine": platform.platform(),
        "load_average_1m": round(os.getloadavg()[0], 2), "rows": rows,
    }
    write_json(RESULTS, info)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""Why a background fill of an object hole does not remove the object: what each mask type teaches (issue 21 s. 2).

No training: it reads the real data path (``ShardDataModule`` over synthetic shards with clean plates, the
configured ``mask_probabilities``) and reports, from the drawn masks themselves:

1. how often each LCG mask type is drawn in the training stream (after the sampler's fall-backs) and the share
   of hole pixels per type; among object-SHAPED holes (types 0 and 3), the share that trains the background
   token (type 3, an object shape over background: the only mask that teaches removal);
2. where the type-3 shapes come from (the shape bank: procedural blobs vs objects harvested from donor samples)
   and how they compare with the holes of object removal at evaluation (a foreground object's mask, dilated by
   :func:`evaluation.targets.evaluation_targets`): area, solidity (area / convex-hull area), bounding-box
   aspect, vertical position of the centroid;
3. whether evaluation object masks are dilated (by how many pixels, against the growth of the training masks).

    python benchmarks/mask_diagnosis.py                  # about 1 CPU-minute
    python benchmarks/mask_diagnosis.py --size 128 --train 2000

Writes ``benchmarks/results/mask_diagnosis.json`` and ``docs/figures/mask_diagnosis.png`` (type-3 holes of the
training stream beside object-removal holes of the held-out set).
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.spatial import ConvexHull  # noqa: E402

from benchmarks.inpainting_study import save_figure  # noqa: E402
from datamodules.shard_datamodule import ShardDataModule  # noqa: E402
from evaluation.targets import OBJECT_DILATION, evaluation_targets  # noqa: E402
from masks.morphology import dilate_hole  # noqa: E402
from masks.types import MaskType  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "mask_diagnosis.json"
FIGURE = ROOT / "docs" / "figures" / "mask_diagnosis.png"
NAMES = {int(t): t.name.lower() for t in MaskType}


def shape_stats(hole: np.ndarray) -> dict[str, float] | None:
    """Area fraction, solidity, bbox aspect (short / long side) and centroid height (y / H) of a boolean hole."""
    ys, xs = np.nonzero(hole)
    if len(ys) < 3:
        return None
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]).astype(np.float64)
    try:
        hull = ConvexHull(corners).volume  # the area of the hull of the pixel squares
    except Exception:  # noqa: BLE001 (degenerate: a line of pixels)
        return None
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    return {"area": float(hole.mean()), "solidity": float(len(ys) / hull), "aspect": float(min(h, w) / max(h, w)),
            "centroid_y": float(ys.mean() / hole.shape[0])}


def summary(stats: list[dict[str, float]]) -> dict[str, list[float]]:
    """Quartiles ``[q25, median, q75]`` of every descriptor."""
    return {k: [round(float(q), 4) for q in np.quantile([s[k] for s in stats], [0.25, 0.5, 0.75])] for k in stats[0]} if stats else {}


def collect(loader, limit: int) -> dict[str, torch.Tensor]:
    """Concatenate ``image``, ``mask``, ``mask_type`` (and clean plates) of up to ``limit`` samples."""
    parts: dict[str, list] = {}
    n = 0
    for batch in loader:
        for k in ("image", "mask", "mask_type", "clean_plate", "has_clean_plate"):
            if k in batch:
                parts.setdefault(k, []).append(batch[k])
        n += batch["image"].shape[0]
        if n >= limit:
            break
    return {k: torch.cat(v)[:limit] for k, v in parts.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="scene and training resolution in pixels")
    parser.add_argument("--train", type=int, default=1024, help="training-stream samples drawn")
    parser.add_argument("--held-out", type=int, default=256, help="held-out samples drawn (object-removal holes)")
    parser.add_argument("--probabilities", type=float, nargs=4, default=[0.25, 0.25, 0.25, 0.25],
                        help="mask_probabilities of the four types (configs/data/synthetic.yaml: 0.25 each)")
    parser.add_argument("--replacement-shapes", choices=["mixed", "objects"], default="mixed",
                        help="type-3 silhouettes in training (ShardDataModule replacement_shapes)")
    parser.add_argument("--replacement-scale", type=float, nargs=2, default=[0.2, 0.6],
                        help="type-3 longer side as a fraction of the image side (ShardDataModule replacement_scale)")
    parser.add_argument("--replacement-dilation", type=float, default=0.0,
                        help="type-3 growth as a fraction of the image side (ShardDataModule replacement_dilation)")
    parser.add_argument("--data-dir", default=str(ROOT / "data" / "studies"), help="where the synthetic shards go")
    parser.add_argument("--out", default=str(RESULTS), help="JSON result file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(args.data_dir) / f"diagnosis_{args.size}px"
    dm = ShardDataModule(synthetic_dir=str(root), synthetic_samples=(max(256, args.train // 4), 16, args.held_out),
                         synthetic_size=args.size, resolution=args.size, batch_size=32, val_batch_size=32, num_workers=0,
                         samples_per_epoch=args.train, mask_probabilities=tuple(args.probabilities), seed=0, crop="center",
                         replacement_shapes=args.replacement_shapes, replacement_scale=tuple(args.replacement_scale),
                         replacement_dilation=args.replacement_dilation)
    dm.prepare_data()
    dm.setup("fit")
    train = collect(dm.train_dataloader(), args.train)
    bank = dm._processor("train").sampler.shape_bank
    bank_makeup = {"procedural": len(bank.procedural), "harvested_objects": len(bank.harvested),
                   "p_type3_shape_is_an_object": len(bank.harvested) / max(1, len(bank))}
    dm.setup("test")
    test = collect(dm.test_dataloader(), args.held_out)

    types = train["mask_type"].numpy()
    hole_px = train["mask"].flatten(1).sum(1).numpy()
    frequency = {NAMES[t]: round(float((types == t).mean()), 4) for t in range(4)}
    pixel_share = {NAMES[t]: round(float(hole_px[types == t].sum() / hole_px.sum()), 4) for t in range(4)}
    n0, n3 = int((types == 0).sum()), int((types == 3).sum())

    type3 = [s for s in (shape_stats(m[0].numpy() > 0.5) for m in train["mask"][types == 3]) if s]
    blobs = [s for s in (shape_stats(np.pad(b, 8)) for b in bank.procedural) if s]
    for s in blobs:  # a blob alone in its padded crop: area and centroid are meaningless, keep the form descriptors
        s.pop("area"), s.pop("centroid_y")
    obj = test["mask_type"] == int(MaskType.FG_OBJECT)
    targets = evaluation_targets(test["image"][obj], test["mask"][obj], test["mask_type"][obj],
                                 torch.ones(int(obj.sum()), dtype=torch.long), test.get("clean_plate", test["image"])[obj])
    removal = [s for s in (shape_stats(m[0].numpy() > 0.5) for m in targets.mask) if s]
    px = max(1, round(OBJECT_DILATION * args.size))

    # the object holes of evaluation are the type-0 sampler's masks (grown by 0..max_dilation) dilated again
    sampler = dm._processor("test").sampler
    growth = int(sampler.max_dilation * args.size)
    dilation = {
        "removal_cases": int(obj.sum()), "evaluation_dilation_px": px, "evaluation_dilation_fraction": OBJECT_DILATION,
        "type0_sampler_growth_px": [0, growth], "type3_extra_dilation_px": round(args.replacement_dilation * args.size),
        "area_ratio_removal_to_type3_median": round(summary(removal)["area"][1] / summary(type3)["area"][1], 3)
        if removal and type3 else None,
    }

    result = {
        "benchmark": "mask_diagnosis", "command": "python benchmarks/mask_diagnosis.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "data_dir")},
        "machine": platform.platform(), "date": time.strftime("%Y-%m-%d"),
        "training_stream": {"samples": len(types), "type_frequency": frequency, "hole_pixel_share": pixel_share,
                            "object_shaped_holes_training_background_token": round(n3 / max(1, n0 + n3), 4)},
        "shape_bank": bank_makeup,
        "shapes": {"type3_training_holes": summary(type3), "procedural_blobs": summary(blobs),
                   "removal_holes_at_evaluation": summary(removal)},
        "removal_mask_dilation": dilation,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("training_stream", "shape_bank", "shapes", "removal_mask_dilation")}, indent=2))
    figure(train["mask"][types == 3][:16], targets.mask[:16], test["image"][obj][:16],
           FIGURE if args.out == str(RESULTS) else out.with_suffix(".png"))
    print(f"wrote {out}")
    return result


def figure(type3: torch.Tensor, removal: torch.Tensor, images: torch.Tensor, path: Path) -> None:
    """Row 1: type-3 holes of the training stream; row 2: object-removal holes (dilated) over their scenes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(8, type3.shape[0], removal.shape[0])
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.0), dpi=110, squeeze=False)
    for i in range(n):
        axes[0, i].imshow(type3[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        shown = ((images[i].permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy().copy()
        shown[removal[i, 0].numpy() > 0.5] = (1.0, 1.0, 1.0)
        axes[1, i].imshow(shown)
        for ax in axes[:, i]:
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("type 3\n(training)", fontsize=7)
    axes[1, 0].set_ylabel("removal\n(evaluation)", fontsize=7)
    save_figure(fig, path)


if __name__ == "__main__":
    main()

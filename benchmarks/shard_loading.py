"""Shard-loading throughput: ShardDataModule (decode + crop + masks) vs raw PIL decoding of the same images.

Writes ``--count`` synthetic scenes as JPEG files (+ segmentation PNGs) into a temporary folder,
converts them to shards with the project's writer, then measures images/s for

* ``pil_decode``: PIL open + RGB conversion of the JPEG files (no WebDataset, no resizing);
* ``pil_decode_crop``: the same plus resizing the shorter side to ``--resolution`` and a centre crop;
* ``wds_read``: iterating the tar shards with WebDataset (no decoding);
* ``datamodule_images``: ``ShardDataModule(with_masks=False)`` training batches;
* ``datamodule_masks``: ``ShardDataModule`` training batches with the four mask types;
* ``datamodule_val_masks``: the deterministic validation loader (key-seeded masks).

DataModule rates are steady state: the clock starts at the first batch (worker start-up excluded).

    python benchmarks/shard_loading.py [--count 512 --size 256 --resolution 256 --workers 0 2]

Prints a table and saves ``benchmarks/results/shard_loading.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.shard_datamodule import ShardDataModule  # noqa: E402
from datamodules.shard_files import resolve_shards  # noqa: E402
from datamodules.shards import write_image_folder  # noqa: E402
from datamodules.synthetic import SYNTHETIC_CLASSES, synthetic_scene  # noqa: E402


def _write_inputs(root: Path, count: int, size: int) -> tuple[Path, Path, Path]:
    images, segs = root / "images", root / "segs"
    images.mkdir()
    segs.mkdir()
    for i in range(count):
        image, seg = synthetic_scene(i, size)
        Image.fromarray(image).save(images / f"{i:06d}.jpg", quality=90)
        Image.fromarray(seg).save(segs / f"{i:06d}.png")
    classes = root / "classes.json"
    classes.write_text(json.dumps({"classes": SYNTHETIC_CLASSES}))
    return images, segs, classes


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def bench_pil(files: list[Path], resolution: int | None) -> float:
    start = time.perf_counter()
    for path in files:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        if resolution is not None:
            w, h = image.size
            scale = resolution / min(w, h)
            image = image.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))), Image.BICUBIC)
            left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
            np.asarray(image.crop((left, top, left + resolution, top + resolution)))
    return _rate(len(files), time.perf_counter() - start)


def bench_wds_read(pattern: str) -> float:
    start = time.perf_counter()
    n = sum(1 for _ in wds.DataPipeline(wds.SimpleShardList(resolve_shards(pattern)), wds.tarfile_to_samples()))
    return _rate(n, time.perf_counter() - start)


def bench_loader(loader) -> tuple[float, int]:
    iterator = iter(loader)
    first = next(iterator)
    start = time.perf_counter()
    seen = 0
    for batch in iterator:
        seen += batch["image"].shape[0]
    del first
    return _rate(seen, time.perf_counter() - start), seen


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=512, help="number of images")
    parser.add_argument("--size", type=int, default=256, help="stored image size")
    parser.add_argument("--resolution", type=int, default=256, help="DataModule output resolution")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to measure")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "shard_loading.json"))
    args = parser.parse_args(argv)

    results = {
        "config": vars(args) | {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "machine": platform.platform(), "processor": platform.processor()},
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images, segs, classes = _write_inputs(root, args.count, args.size)
        summary = write_image_folder(images, root / "shards", segs, classes, prefix="train", max_count=128, progress=False)
        pattern = str(root / "shards" / "train-*.tar")
        files = sorted(images.glob("*.jpg"))
        rows = results["rows"]
        rows.append({"what": "pil_decode (files, no WebDataset)", "workers": 0, "images_per_s": bench_pil(files, None)})
        rows.append({"what": "pil_decode_crop (files, no WebDataset)", "workers": 0, "images_per_s": bench_pil(files, args.resolution)})
        rows.append({"what": "wds_read (tar iteration, no decode)", "workers": 0, "images_per_s": bench_wds_read(pattern)})
        for workers in args.workers:
            for with_masks in (False, True):
                dm = ShardDataModule(
                    pattern, pattern, resolution=args.resolution, batch_size=args.batch_size, num_workers=workers,
                    with_masks=with_masks, samples_per_epoch=args.count,
                )
                dm.setup("fit")
                rate, seen = bench_loader(dm.train_dataloader())
                name = "datamodule_masks (decode+crop+masks)" if with_masks else "datamodule_images (decode+crop)"
                rows.append({"what": name, "workers": workers, "images_per_s": rate, "images": seen})
            rate, seen = bench_loader(dm.val_dataloader())
            rows.append({"what": "datamodule_val_masks (key-seeded)", "workers": workers, "images_per_s": rate, "images": seen})
        results["shards"] = len(summary.shards)

    width = max(len(r["what"]) for r in results["rows"])
    print(f"{'what':<{width}}  workers  images/s")
    for r in results["rows"]:
        print(f"{r['what']:<{width}}  {r['workers']:>7}  {r['images_per_s']:>8.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"saved {out}")
    return results


if __name__ == "__main__":
    main()

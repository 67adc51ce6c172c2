"""Shared pieces of the learning studies (``benchmarks/convergence.py``, ``benchmarks/quality.py``,
``benchmarks/train_demo.py``): synthetic train / held-out sets, a fixed evaluation batch, training a
C2F configuration with the real Lightning Trainer, scoring inpainters and labelled image grids.

The held-out set is generated with a dataset seed that is never used for training
(:data:`HELD_OUT_SEED`), and its masks are fixed per key, so every variant is scored on the same
images and holes.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from PIL import Image

from datamodules.shard_datamodule import ShardDataModule
from datamodules.shards import write_synthetic_shards
from evaluation.grids import to_pil
from evaluation.hole_metrics import hole_metrics

__all__ = [
    "HELD_OUT_SEED", "TRAIN_SEED", "EvalBatch", "synthetic_sets", "eval_batch", "train_module", "score", "summarise",
    "mean_and_spread", "save_png",
]

TRAIN_SEED = 0  # dataset seed of the training scenes
HELD_OUT_SEED = 7  # dataset seed of the held-out scenes (never used for training)


def synthetic_sets(root: Path, size: int, train: int, held_out: int) -> tuple[str, str, str]:
    """Generate (once) the training scenes and a held-out set from another seed; returns (train, val, test) globs."""
    train_dir, test_dir = root / f"train_{size}px_{train}", root / f"held_out_{size}px_{held_out}"
    if not (train_dir / ".done").is_file():
        write_synthetic_shards(train_dir, train=train, val=16, test=0, size=size, seed=TRAIN_SEED, progress=False)
        (train_dir / ".done").write_text("ok")
    if not (test_dir / ".done").is_file():
        write_synthetic_shards(test_dir, train=0, val=0, test=held_out, size=size, seed=HELD_OUT_SEED, progress=False)
        (test_dir / ".done").write_text("ok")
    return str(train_dir / "train-*.tar"), str(train_dir / "val-*.tar"), str(test_dir / "test-*.tar")


@dataclass
class EvalBatch:
    """The fixed held-out images, masks and LCG categories every variant is scored on."""

    image: torch.Tensor
    mask: torch.Tensor
    category: torch.Tensor
    keys: list[str]


def eval_batch(test_glob: str, size: int, count: int, seed: int = 0) -> EvalBatch:
    """``count`` held-out images at ``size`` px with their key-seeded masks (the four LCG mask types)."""
    dm = ShardDataModule(test_shards=test_glob, resolution=size, batch_size=count, val_batch_size=count,
                         num_workers=0, samples_per_epoch=count, seed=seed, crop="center")
    dm.setup("test")
    parts: dict[str, list] = {"image": [], "mask": [], "category": [], "key": []}
    for batch in dm.test_dataloader():
        for k in parts:
            parts[k].append(batch[k])
    image, mask = torch.cat(parts["image"])[:count], torch.cat(parts["mask"])[:count]
    return EvalBatch(image, mask, torch.cat(parts["category"])[:count], [k for ks in parts["key"] for k in ks][:count])


def train_module(
    module: torch.nn.Module,
    train_glob: str,
    val_glob: str,
    size: int,
    steps: int,
    batch_size: int,
    seed: int,
    callbacks: Sequence[Any] = (),
    log_dir: Path | None = None,
) -> float:
    """Fit ``module`` for ``steps`` optimizer steps with the real Trainer on CPU; returns the wall time in s."""
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.loggers import CSVLogger

    seed_everything(seed, workers=True, verbose=False)
    dm = ShardDataModule(train_shards=train_glob, val_shards=val_glob, resolution=size, batch_size=batch_size,
                         num_workers=0, samples_per_epoch=batch_size * steps, seed=seed)
    trainer = Trainer(
        accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=list(callbacks), logger=CSVLogger(str(log_dir), name="") if log_dir else False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=50,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(module, datamodule=dm)
    return time.perf_counter() - start


def score(fill: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], data: EvalBatch,
          chunk: int = 16) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run ``fill(image, mask, category)`` over the eval batch in chunks; per-image metrics and the fills."""
    outs = []
    with torch.no_grad():
        for i in range(0, data.image.shape[0], chunk):
            sl = slice(i, i + chunk)
            outs.append(fill(data.image[sl], data.mask[sl], data.category[sl]).float())
    filled = torch.cat(outs)
    return hole_metrics(filled, data.image, data.mask), filled


def summarise(per_image: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Mean of every per-image metric (NaNs, i.e. images without a hole, left out)."""
    return {k: float(torch.nanmean(v.double())) for k, v in per_image.items()}


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = [x for x in values if not math.isnan(x)]
    if not v:
        return float("nan"), float("nan")
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, sd


def save_png(image: Image.Image, path: Path) -> Path:
    """Write ``image`` as PNG (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path



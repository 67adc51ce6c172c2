"""Shared pieces of the learning studies (``benchmarks/convergence.py``, ``benchmarks/quality.py``,
``benchmarks/train_demo.py``): synthetic train / held-out sets, a fixed evaluation batch, training a
C2F configuration with the real Lightning Trainer, scoring inpainters and labelled image grids.

The held-out set is generated with a dataset seed that is never used for training
(:data:`HELD_OUT_SEED`), and its masks are fixed per key, so every variant is scored on the same
images and holes. :func:`held_out_cases` builds the scored cases of issue 20 (every mask type, object removal
against the clean plate); :func:`choose` is the rule by which settings are chosen (:data:`SELECTION_RULE`).
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

import numpy as np

from datamodules.shard_datamodule import ShardDataModule
from datamodules.shards import write_synthetic_shards
from datamodules.synthetic import SYNTHETIC_CLASSES, scene_seed, synthetic_scene_layers
from evaluation.binned_table import binned_table
from evaluation.case_scores import ROW_METRICS, score_cases
from evaluation.grids import to_pil
from evaluation.hole_metrics import hole_metrics
from evaluation.targets import evaluation_targets
from inpainters.base import composite_known
from masks.random import key_seed
from masks.sampler import MaskSampler
from masks.types import Category, MaskType, category_of

__all__ = [
    "HELD_OUT_SEED", "TRAIN_SEED", "EvalBatch", "synthetic_sets", "eval_batch", "train_module", "score", "summarise",
    "mean_and_spread", "save_png", "save_figure", "CASES", "Cases", "held_out_cases", "score_fills", "case_table", "SELECTION_RULE",
    "selection_key", "choose",
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


#: the held-out cases, cycled over scenes: (label, mask type, category) -- every mask type, and object holes both
#: filled with an object (foreground) and removed (background, scored against the clean plate)
CASES = (
    ("fg object", MaskType.FG_OBJECT, Category.FOREGROUND),
    ("fg object (removal)", MaskType.FG_OBJECT, Category.BACKGROUND),
    ("bg object", MaskType.BG_OBJECT, Category.BACKGROUND),
    ("bg random", MaskType.BG_RANDOM, Category.BACKGROUND),
    ("bg replacement", MaskType.BG_REPLACEMENT, Category.BACKGROUND),
)


@dataclass
class Cases:
    """Held-out cases with their targets (``evaluation.targets``): what every inpainter is scored on."""

    image: torch.Tensor  #: ``(N, 3, H, W)`` originals in [-1, 1]
    mask: torch.Tensor  #: ``(N, 1, H, W)`` holes (object holes dilated)
    target: torch.Tensor  #: ``(N, 3, H, W)`` originals, or clean plates in removal holes
    clean: torch.Tensor  #: ``(N, 3, H, W)`` clean plates
    removal: torch.Tensor  #: ``(N,)`` bool
    mask_type: torch.Tensor  #: ``(N,)`` long
    category: torch.Tensor  #: ``(N,)`` long, the category each fill is asked for
    keys: list[str]

    def __len__(self) -> int:
        return len(self.keys)

    def slice(self, start: int, stop: int) -> "Cases":
        """Cases ``start:stop``."""
        sl = slice(start, stop)
        return Cases(self.image[sl], self.mask[sl], self.target[sl], self.clean[sl], self.removal[sl],
                     self.mask_type[sl], self.category[sl], self.keys[sl])


def held_out_cases(count: int, size: int, seed: int = HELD_OUT_SEED, split: str = "test", start: int = 0) -> Cases:
    """Scenes ``start .. start + count`` of a synthetic split (the shard writer's scenes) with one case each.

    Scene ``i`` gets case ``CASES[i % 5]``; its mask of that type is drawn from ``key_seed(key, seed)`` with the
    shard data module's mask sampler (without shape harvesting, so a scene's mask does not depend on the others);
    a scene without a usable region for the type falls back as the sampler does (the row says which type it got).
    Targets, removal flags and object-hole dilation come from :func:`evaluation.targets.evaluation_targets`.
    """
    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 127.5 - 1  # noqa: E731
    things = [c["id"] for c in SYNTHETIC_CLASSES if c["kind"] == "thing"]
    stuff = [c["id"] for c in SYNTHETIC_CLASSES if c["kind"] == "stuff"]
    parts: dict[str, list] = {"image": [], "clean": [], "mask": [], "type": [], "category": [], "key": []}
    for i in range(start, start + count):
        key = f"{split}_{i:07d}"
        image, seg, clean, _ = synthetic_scene_layers(scene_seed(seed, split, i), size)
        _, mask_type, category = CASES[i % len(CASES)]
        probabilities = [float(t == mask_type) for t in range(4)]
        sampler = MaskSampler(probabilities, thing_ids=things, stuff_ids=stuff, harvest_shapes=False)
        mask, got = sampler(size, size, key_seed(key, seed), seg)
        parts["image"].append(to_tensor(image))
        parts["clean"].append(to_tensor(clean))
        parts["mask"].append(torch.from_numpy(mask)[None])
        parts["type"].append(int(got))
        parts["category"].append(int(category) if got == mask_type else int(category_of(got)))
        parts["key"].append(key)
    image, clean, mask = torch.stack(parts["image"]), torch.stack(parts["clean"]), torch.stack(parts["mask"])
    mask_type, category = torch.tensor(parts["type"]), torch.tensor(parts["category"])
    targets = evaluation_targets(image, mask, mask_type, category, clean)
    return Cases(image, targets.mask, targets.target, clean, targets.removal, mask_type, category, parts["key"])


def score_fills(samples: torch.Tensor, cases: Cases, swd_patches: int = 128) -> tuple[list[dict], dict]:
    """Per-case rows and SWD patches of ``(K, N, 3, H, W)`` fills (composited here) of ``cases``."""
    samples = torch.stack([composite_known(s.float().clamp(-1, 1), cases.image, cases.mask) for s in samples])
    return score_cases(samples, cases.mask, cases.target, cases.keys, cases.removal, cases.clean, cases.mask_type,
                       swd_patches)


def case_table(rows: Sequence[Mapping[str, Any]], descriptors: Mapping[str, list] | None) -> list[dict[str, Any]]:
    """The per-group table (whole set, hole-area bins, cases) of scored fills (no FID: no weight files needed)."""
    return binned_table(rows, ROW_METRICS, descriptors)


#: how settings are chosen on validation scenes (docs/results.md): realism and removal first, never one sample's MAE
SELECTION_RULE = ("lowest SWD of the fills in the holes plus 1000 x the removal residue (both 'lower is better', on "
                  "comparable scales: SWD is x 1e3), ties within 2 % broken by the lower MAE of the mean of K samples")


def selection_key(overall: Mapping[str, Any]) -> tuple[float, float]:
    """Sort key of :data:`SELECTION_RULE` for an ``all`` table row: (realism + removal score, MAE of the mean of K)."""
    swd = float(overall.get("swd", float("nan")))
    residue = overall.get("residue")
    residue = 0.0 if residue is None or not math.isfinite(float(residue)) else float(residue)
    return swd + 1000.0 * residue, float(overall.get("mae_mean_k", float("nan")))


def choose(candidates: Sequence[tuple[Any, Mapping[str, Any]]]) -> Any:
    """The setting :data:`SELECTION_RULE` picks from ``(setting, overall table row)`` pairs."""
    scored = [(selection_key(row), setting) for setting, row in candidates]
    best = min(k[0] for k, _ in scored)
    close = [(k, setting) for k, setting in scored if k[0] <= best * 1.02 + 1e-12]
    return min(close, key=lambda item: item[0][1])[1]


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


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out a matplotlib figure, write it (parents created) and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path



"""A fixed, seeded evaluation set (images + masks) that every run and every rank agree on.

Images come from WebDataset shards (the project's shard format, ``datamodules/shards.py``: the
``<key>.jpg|png`` member of each sample) or from an image folder. The set is sorted by sample key
and cut to ``num_images``, so its content does not depend on shard order, worker count or world size.

Masks come from a protocol of ``masks.protocols`` (``mat_large``, ``mat_small``, ``lama_thin``,
``lama_medium``, ``lama_thick``), drawn for each sample from ``key_seed(key, seed)``: a sample's
mask depends only on its key and the seed. Or they are read from a folder (e.g. MAT's released
evaluation masks); the folder's convention must be stated (``mask_convention``): ``white_is_hole``
(the project's / LaMa's) or ``mat_black_is_hole`` (MAT's, converted with ``masks.protocols.from_mat_mask``).

Distributed evaluation: rank ``r`` of ``W`` gets the contiguous slice
``[r * N // W, (r + 1) * N // W)`` of the sorted set, so each sample is evaluated exactly once.
The dataset is an ``IterableDataset`` (dataloader workers split the rank's slice further), so
Lightning's ``use_distributed_sampler`` never wraps it in a ``DistributedSampler`` (which would pad
with duplicated samples); ranks may get one sample more or less than others.

Batches: ``image`` ``(B,3,H,W)`` in [-1, 1], ``mask`` ``(B,1,H,W)`` {0,1} (1 = hole), ``key`` list of str.

Scoring another tool's outputs (LaMa's, PixelHacker's, ...): ``predictions_dir`` is a folder with one inpainted
image per evaluation image, named by the image's key (its relative path without extension, any image extension);
batches then also carry ``prediction`` ``(B,3,H,W)`` in [-1, 1], which the evaluator scores instead of running an
inpainter. The folder is checked before anything is scored: keys without a prediction, predictions without an
evaluation image and predictions of another size than the (preprocessed) image are listed in one error.

Images and mask files are decoded by ``safe_io.image_decoding`` (EXIF orientation, true bit depth,
minimum size 8 px, decompression-bomb limit). Unlike training, a bad evaluation image is never skipped:
it stops the run with an error naming the file (a skipped sample would change the metric silently).
"""
from __future__ import annotations

import io
import os
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from datamodules.shard_datamodule import split_range
from safe_io.image_decoding import decode_mask, read_image
from datamodules.shard_files import IMAGE_EXTENSIONS, ShardError, resolve_shards
from datamodules.shards import sample_key
from masks.protocols import PROTOCOLS, from_mat_mask, protocol_mask
from masks.random import key_seed

__all__ = ["EvalItem", "EvalSet", "EvalDataModule", "PredictionFolderError", "attach_predictions", "list_shard_images",
           "list_folder_images", "load_image"]

MASK_CONVENTIONS = ("white_is_hole", "mat_black_is_hole")

# Lightning warns that an IterableDataset with __len__ may duplicate data across workers; EvalSet
# splits its slice between workers itself (position % num_workers), so the warning does not apply.
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")


@dataclass(frozen=True)
class EvalItem:
    """One evaluation sample: its key and where its image (and optionally its mask file) are.

    Attributes:
        key: sample key (sort order of the set).
        path: image file, or the shard holding it.
        offset: byte offset of the image inside the shard (``-1`` for a plain file).
        size: byte size of the image inside the shard.
        mask_path: mask file when masks come from a folder.
        prediction_path: another tool's inpainted image of this sample (``predictions_dir``).
    """

    key: str
    path: str
    offset: int = -1
    size: int = 0
    mask_path: str | None = None
    prediction_path: str | None = None

    def read_image_bytes(self) -> bytes:
        """The encoded image bytes (a direct seek into the shard, no tar parsing)."""
        with open(self.path, "rb") as f:
            if self.offset < 0:
                return f.read()
            f.seek(self.offset)
            return f.read(self.size)


def list_shard_images(shards: str | list[str]) -> list[EvalItem]:
    """Every sample's image in the shards, sorted by key (reads tar headers only).

    Raises:
        FileNotFoundError: the shard pattern matches nothing.
        ShardError: a shard is unreadable, or a key appears twice.
    """
    items: dict[str, EvalItem] = {}
    for path in resolve_shards(shards, "evaluation shards"):
        try:
            with tarfile.open(path, "r:") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    directory, _, base = member.name.rpartition("/")
                    stem, _, suffix = base.partition(".")
                    if suffix.lower() not in IMAGE_EXTENSIONS:
                        continue  # seg.png, json, ...
                    key = f"{directory}/{stem}" if directory else stem
                    if key in items:
                        raise ShardError(f"sample key {key!r} appears twice ({items[key].path} and {path}); keys must be unique")
                    items[key] = EvalItem(key, path, member.offset_data, member.size)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ShardError(f"evaluation shard {path} is not a readable tar archive ({err}); rewrite or remove it") from err
    if not items:
        raise ShardError(f"evaluation shards {shards!r} hold no image members ({', '.join(IMAGE_EXTENSIONS)})")
    return [items[k] for k in sorted(items)]


def _images_under(root: Path, what: str) -> dict[str, Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"{what} {root} is not a directory")
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS and not p.name.startswith("."):
            files[sample_key(p.relative_to(root))] = p
    if not files:
        raise FileNotFoundError(f"{what} {root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def list_folder_images(image_dir: str | os.PathLike) -> list[EvalItem]:
    """Every image under ``image_dir`` (recursive), keyed like the shard writer keys them, sorted by key."""
    files = _images_under(Path(image_dir), "image_dir")
    return [EvalItem(k, str(files[k])) for k in sorted(files)]


def attach_mask_files(items: list[EvalItem], mask_dir: str | os.PathLike, match: str) -> list[EvalItem]:
    """Pair each item with a mask file of ``mask_dir``: by key (relative path without extension) or by sorted order.

    Raises:
        FileNotFoundError: a key has no mask, or (``order``) there are fewer masks than images.
    """
    masks = _images_under(Path(mask_dir), "mask_dir")
    if match == "key":
        missing = [it.key for it in items if it.key not in masks]
        if missing:
            raise FileNotFoundError(
                f"mask_dir {mask_dir} has no mask for {len(missing)} image key(s), e.g. {missing[:3]}; name masks like "
                f"the images (same relative path, any image extension) or set mask_match: order"
            )
        return [EvalItem(it.key, it.path, it.offset, it.size, str(masks[it.key]), it.prediction_path) for it in items]
    if match == "order":
        ordered = [masks[k] for k in sorted(masks)]
        if len(ordered) < len(items):
            raise FileNotFoundError(f"mask_dir {mask_dir} has {len(ordered)} masks for {len(items)} images (mask_match: order)")
        return [EvalItem(it.key, it.path, it.offset, it.size, str(m), it.prediction_path) for it, m in zip(items, ordered)]
    raise ValueError(f"mask_match must be 'key' or 'order', got {match!r}")


class PredictionFolderError(ValueError):
    """A predictions folder does not match the evaluation set (missing, extra or wrongly sized files)."""


def attach_predictions(items: list[EvalItem], predictions_dir: str | os.PathLike, resolution: int | None,
                       shown: int = 20) -> list[EvalItem]:
    """Pair each item with its prediction file in ``predictions_dir`` (matched by key); check the whole folder first.

    Raises:
        FileNotFoundError: the folder does not exist or holds no image.
        PredictionFolderError: one message listing every key without a prediction, every prediction without an
            evaluation image, and every prediction whose size differs from the image's (after ``resolution``).
    """
    folder = Path(predictions_dir)
    predictions = _images_under(folder, "predictions_dir")
    keys = {it.key for it in items}
    missing = [it.key for it in items if it.key not in predictions]
    extra = sorted(str(predictions[k].relative_to(folder)) for k in predictions if k not in keys)
    wrong_size = []
    for it in items:
        path = predictions.get(it.key)
        if path is None:
            continue
        try:
            with Image.open(path) as pred:
                got = pred.size
        except Exception as err:  # noqa: BLE001 - any unreadable file is listed, never a bare traceback
            wrong_size.append(f"{path.relative_to(folder)} (unreadable: {type(err).__name__})")
            continue
        if resolution is not None:
            expected = (resolution, resolution)
        else:
            with Image.open(io.BytesIO(it.read_image_bytes())) as original:
                expected = original.size
        if got != expected:
            wrong_size.append(f"{path.relative_to(folder)} is {got[0]}x{got[1]}, image {it.key} is {expected[0]}x{expected[1]}")
    problems = []
    for title, names in (("evaluation images without a prediction (expected <key>.png or any image extension)", missing),
                         ("predictions without an evaluation image", extra),
                         ("predictions of the wrong size", wrong_size)):
        if names:
            listed = "\n    ".join(names[:shown]) + (f"\n    ... and {len(names) - shown} more" if len(names) > shown else "")
            problems.append(f"  {len(names)} {title}:\n    {listed}")
    if problems:
        raise PredictionFolderError(
            f"predictions_dir {folder} does not match the {len(items)} evaluation images:\n" + "\n".join(problems)
            + "\nName each prediction like its evaluation image's key (relative path without extension), one per "
            "image, at the evaluated size (`resolution`)."
        )
    return [EvalItem(it.key, it.path, it.offset, it.size, it.mask_path, str(predictions[it.key])) for it in items]


def load_image(data: bytes, resolution: int | None, what: str) -> np.ndarray:
    """Decode to RGB uint8 ``(H, W, 3)`` (``safe_io.image_decoding`` rules); with ``resolution``, resize the
    shorter side to it (bicubic, antialiased) and centre-crop a square.

    Raises:
        ImageDecodeError: a ``ValueError`` naming ``what``: undecodable, too small, a decompression bomb, or a
            mode without a faithful 8-bit conversion.
    """
    image = read_image(data, what).image
    if resolution is not None:
        w, h = image.size
        if min(w, h) != resolution:
            scale = resolution / min(w, h)
            image = image.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))), Image.BICUBIC)
            w, h = image.size
        left, top = (w - resolution) // 2, (h - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    return np.asarray(image, dtype=np.uint8)


class EvalSet(IterableDataset):
    """The slice of an evaluation set that one rank evaluates, as ``{"image", "mask", "key"}`` samples.

    Args:
        items: the whole sorted set (every rank gets the same list).
        masks: a protocol of ``masks.protocols.PROTOCOLS`` or ``"folder"`` (items carry mask files).
        resolution: square side of the images (``None`` keeps the stored size).
        seed: seed of the protocol masks (mask of a sample = f(key, seed)).
        mask_convention: for ``"folder"`` masks: ``white_is_hole`` or ``mat_black_is_hole``.
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(
        self,
        items: list[EvalItem],
        masks: str,
        resolution: int | None,
        seed: int = 0,
        mask_convention: str | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        self.items = items
        self.masks = masks
        self.resolution = resolution
        self.seed = seed
        self.mask_convention = mask_convention
        self.indices = range(*split_range(len(items), world_size, rank))

    def __len__(self) -> int:
        return len(self.indices)

    def keys(self) -> list[str]:
        """Keys of this rank's samples, in order."""
        return [self.items[i].key for i in self.indices]

    def load(self, item: EvalItem) -> dict[str, Any]:
        """Decode one sample (image in [-1, 1], mask 1 = hole)."""
        rgb = load_image(item.read_image_bytes(), self.resolution, f"{item.key} ({item.path})")
        height, width = rgb.shape[:2]
        if self.masks == "folder":
            mask_img = decode_mask(item.mask_path, f"mask {item.mask_path}")
            if mask_img.shape != (height, width):
                raise ValueError(
                    f"mask {item.mask_path} is {mask_img.shape[1]}x{mask_img.shape[0]} but image {item.key} is "
                    f"{width}x{height} after preprocessing (resolution={self.resolution}); masks must match the images"
                )
            if self.mask_convention == "mat_black_is_hole":
                mask = from_mat_mask(mask_img)
            else:
                mask = (mask_img >= 128).astype(np.float32)
        else:
            mask = protocol_mask(self.masks, (height, width), key_seed(item.key, self.seed))
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1.0
        out = {"image": image, "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None], "key": item.key}
        if item.prediction_path is not None:
            with open(item.prediction_path, "rb") as f:
                pred = load_image(f.read(), None, f"prediction {item.prediction_path}")
            if pred.shape != rgb.shape:
                raise ValueError(f"prediction {item.prediction_path} is {pred.shape[1]}x{pred.shape[0]} but image {item.key} "
                                 f"is {width}x{height}; predictions must have the evaluated image's size")
            out["prediction"] = torch.from_numpy(pred.copy()).permute(2, 0, 1).float() / 127.5 - 1.0
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for position, index in enumerate(self.indices):
            if position % workers == worker:
                yield self.load(self.items[index])


class EvalDataModule(LightningDataModule):
    """Fixed, seeded evaluation set for ``python -m main test`` (see the module docstring).

    Args:
        shards: WebDataset shards of the evaluation images (brace pattern, glob or list), e.g. the test
            split written by ``python -m datamodules.shards``. Exactly one of ``shards`` / ``image_dir``.
        image_dir: folder of evaluation images (searched recursively).
        resolution: square side the images are resized (shorter side, bicubic) and centre-cropped to;
            ``None`` keeps stored sizes (then use ``batch_size: 1`` unless all sizes agree).
        num_images: evaluate the first ``num_images`` samples in key order (``None`` = all).
        masks: a mask protocol (``mat_large``, ``mat_small``, ``lama_thin``, ``lama_medium``,
            ``lama_thick``) or ``folder`` (read from ``mask_dir``).
        mask_dir: folder of mask images (``masks: folder``).
        mask_convention: how ``mask_dir`` marks holes: ``white_is_hole`` (pixel >= 128 = hole; the
            project / LaMa) or ``mat_black_is_hole`` (MAT's released masks: 0 = hole). Required for
            ``masks: folder`` so the conversion is always explicit.
        mask_match: pair masks with images by ``key`` (same relative path, any extension) or by sorted ``order``.
        seed: seed of the protocol masks (each sample's mask comes from ``key_seed(key, seed)``).
        batch_size: per-rank batch size.
        num_workers: dataloader workers per rank.
        synthetic_dir: generate the procedural synthetic scene set here on first use (``prepare_data``,
            via ``datamodules.shard_datamodule.ShardDataModule``) and evaluate its test split; for CI
            and tiny configs. Replaces ``shards`` / ``image_dir``.
        synthetic_count: number of synthetic test images to generate.
        synthetic_size: side of the generated synthetic images.
        predictions_dir: folder of another tool's inpainted images, one per evaluation image named by its key;
            the evaluator scores them instead of running an inpainter (see the module docstring).
    """

    def __init__(
        self,
        shards: str | list[str] | None = None,
        image_dir: str | None = None,
        resolution: int | None = 512,
        num_images: int | None = None,
        masks: str = "mat_large",
        mask_dir: str | None = None,
        mask_convention: Literal["white_is_hole", "mat_black_is_hole"] | None = None,
        mask_match: Literal["key", "order"] = "key",
        seed: int = 0,
        batch_size: int = 8,
        num_workers: int = 2,
        synthetic_dir: str | None = None,
        synthetic_count: int = 16,
        synthetic_size: int = 64,
        predictions_dir: str | None = None,
    ) -> None:
        super().__init__()
        if sum(x is not None for x in (shards, image_dir, synthetic_dir)) != 1:
            raise ValueError(
                "EvalDataModule: give exactly one of `shards` (WebDataset tars), `image_dir` (a folder) or "
                f"`synthetic_dir` (generated scenes); got shards={shards!r}, image_dir={image_dir!r}, "
                f"synthetic_dir={synthetic_dir!r}"
            )
        if synthetic_dir is not None:
            shards = str(Path(synthetic_dir) / "test-*.tar")
        if masks != "folder" and masks not in PROTOCOLS:
            raise ValueError(f"EvalDataModule: masks={masks!r}; use one of {PROTOCOLS} or 'folder' (with mask_dir)")
        if masks == "folder":
            if mask_dir is None:
                raise ValueError("EvalDataModule: masks: folder needs mask_dir")
            if mask_convention not in MASK_CONVENTIONS:
                raise ValueError(
                    f"EvalDataModule: masks: folder needs mask_convention, one of {MASK_CONVENTIONS} "
                    f"(got {mask_convention!r}); MAT's released masks are 'mat_black_is_hole' (0 = hole)"
                )
        elif mask_dir is not None:
            raise ValueError(f"EvalDataModule: mask_dir is set but masks={masks!r}; set masks: folder to read it")
        if num_images is not None and num_images < 1:
            raise ValueError(f"EvalDataModule: num_images must be >= 1 or null, got {num_images}")
        if resolution is not None and resolution < 8:
            raise ValueError(f"EvalDataModule: resolution must be >= 8 or null, got {resolution}")
        self.shards = shards
        self.image_dir = image_dir
        self.resolution = resolution
        self.num_images = num_images
        self.masks = masks
        self.mask_dir = mask_dir
        self.mask_convention = mask_convention
        self.mask_match = mask_match
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.synthetic_dir = synthetic_dir
        self.synthetic_count = synthetic_count
        self.synthetic_size = synthetic_size
        self.predictions_dir = predictions_dir
        self._items: list[EvalItem] | None = None
        self._test_set: EvalSet | None = None

    def prepare_data(self) -> None:
        """Generate the synthetic test set into ``synthetic_dir`` when it is set and not there yet."""
        if self.synthetic_dir is None:
            return
        from datamodules.shard_datamodule import ShardDataModule

        ShardDataModule(
            synthetic_dir=self.synthetic_dir, synthetic_samples=(0, 0, self.synthetic_count),
            synthetic_size=self.synthetic_size, resolution=self.synthetic_size,
        ).prepare_data()

    def items(self) -> list[EvalItem]:
        """The whole evaluation set, sorted by key and cut to ``num_images`` (same on every rank)."""
        if self._items is None:
            items = list_shard_images(self.shards) if self.shards is not None else list_folder_images(self.image_dir)
            if self.num_images is not None:
                if self.num_images > len(items):
                    raise ValueError(
                        f"EvalDataModule: num_images={self.num_images} but the set has only {len(items)} images "
                        f"({self.shards or self.image_dir})"
                    )
                items = items[: self.num_images]
            if self.masks == "folder":
                items = attach_mask_files(items, self.mask_dir, self.mask_match)
            if self.predictions_dir is not None:
                items = attach_predictions(items, self.predictions_dir, self.resolution)
            self._items = items
        return self._items

    def test_dataset(self, rank: int = 0, world_size: int = 1) -> EvalSet:
        """The samples ``rank`` of ``world_size`` evaluates."""
        return EvalSet(self.items(), self.masks, self.resolution, self.seed, self.mask_convention, rank, world_size)

    def _rank(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

    def setup(self, stage: str) -> None:
        if stage in ("test", "validate", "predict"):
            self._test_set = self.test_dataset(*self._rank())

    def test_dataloader(self) -> DataLoader:
        if self._test_set is None:
            self.setup("test")
        return DataLoader(
            self._test_set, batch_size=self.batch_size, num_workers=self.num_workers,
            persistent_workers=False, pin_memory=torch.cuda.is_available(),
        )

    def describe(self) -> dict[str, Any]:
        """What the evaluation set is (goes into the report)."""
        masks = self.masks if self.masks != "folder" else f"folder:{self.mask_dir} ({self.mask_convention})"
        return {
            "source": str(self.shards if self.shards is not None else self.image_dir),
            "num_images": len(self.items()),
            "resolution": self.resolution,
            "masks": masks,
            "mask_seed": self.seed,
            "predictions_dir": self.predictions_dir,
        }

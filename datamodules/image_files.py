"""Images + masks from files or folders on disk, for ``python -m main predict`` (inpainting).

Layout::

    images: photo.jpg            or a folder  in/   a.png  b.jpg  notes.txt
    masks:  photo_mask.png       or a folder  masks/ a.png b.png

A folder is matched by file stem (``in/a.png`` <-> ``masks/a.png``; extensions may differ). In a
folder, files without an image extension (``.png .jpg .jpeg .bmp .webp .tif .tiff``) are skipped
with a warning. Masks: any mode, converted to grayscale, pixel >= 128 = hole (white = fill).
Images: any mode converted to RGB (RGBA: the alpha channel is dropped, the colour values are kept;
grayscale / palette: expanded). Both are decoded by ``safe_io.image_decoding``: EXIF orientation
applied, 16-bit files scaled by their bit depth, images below 8 px refused, decompression bombs named.
Sizes are kept as they are; the inpainting module pads to its stage factor (reflect) and crops back.
Images of equal size are batched together (up to ``batch_size``), whatever their order in the folder.

``setup`` decodes and checks every pair before anything is predicted: a missing, undecodable or too
small file, or a mask whose size differs from its image, is collected, and all of them are reported in
one :class:`PredictInputError`, so a bad file can never stop a run half-way. Masks that are probably
not what was meant give a :class:`MaskWarning` per image: no hole, all hole, or a soft (grey) mask most
of whose marked area stays below the hole threshold 128.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from safe_io.image_decoding import ImageDecodeError, decode_mask, read_image
from masks.types import Category

HOLE_THRESHOLD = 128
"""Mask pixels >= this (of 0..255) are hole."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _list_images(path: Path, what: str) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"{what} path {path} does not exist")
    if path.is_file():
        return [path]
    files, skipped = [], []
    for p in sorted(path.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        (files if p.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(p)
    if skipped:
        warnings.warn(f"{what} folder {path}: skipping {len(skipped)} non-image file(s): {', '.join(p.name for p in skipped[:5])}")
    if not files:
        raise ValueError(f"{what} folder {path} contains no image files ({' '.join(IMAGE_EXTENSIONS)}); point it at a folder of images")
    return files


class PredictInputError(ValueError):
    """Some predict inputs cannot be used; the message lists every bad file (nothing was predicted)."""


class MaskWarning(UserWarning):
    """A mask is probably not what was meant (no hole, all hole, or a soft mask mostly below the threshold)."""


def mask_problem(mask: np.ndarray, name: str) -> str | None:
    """Why a uint8 grey mask (``>= 128`` = hole) is suspicious, or None: no hole, all hole, or a soft mask whose
    thresholded hole is much smaller (under half) than the area it marks with grey (values strictly in 1..254)."""
    hole = float((mask >= HOLE_THRESHOLD).mean())
    grey = float(((mask > 0) & (mask < 255)).mean())
    marked = float((mask > 0).mean())
    if grey >= 0.01 and hole < 0.5 * marked:
        return (
            f"{name}: soft mask: {grey:.0%} of pixels are grey (between 0 and 255) but only {hole:.0%} reach the hole "
            f"threshold {HOLE_THRESHOLD}; the rest is kept as known pixels. Binarise the mask (white = hole) if the "
            f"grey area should be filled"
        )
    if hole == 0.0:
        return f"{name}: the mask has no hole (no pixel >= {HOLE_THRESHOLD}); the output will equal the input"
    if hole == 1.0:
        return f"{name}: the mask is all hole; nothing of the image is kept, the output is generated from scratch"
    return None


def _decode_pair(img_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 (H, W, 3), grey mask uint8 (H, W)) of one pair; errors name the file(s)."""
    rgb = read_image(img_path).array()
    mask = decode_mask(mask_path, f"mask {mask_path}")
    if mask.shape != rgb.shape[:2]:
        raise ValueError(_size_mismatch(img_path, rgb, mask_path, mask))
    return rgb, mask


def _size_mismatch(img_path: Path, rgb: np.ndarray, mask_path: Path, mask: np.ndarray) -> str:
    return (
        f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {img_path} is "
        f"{rgb.shape[1]}x{rgb.shape[0]} (WxH); the mask must have the image's size"
    )


def validate_pairs(pairs: list[tuple[Path, Path]]) -> list[tuple[int, int]]:
    """Decode every (image, mask) pair; warn about suspicious masks, raise one error listing every bad file.

    Returns:
        the (H, W) of every image, in order (used to batch equal sizes together).

    Raises:
        PredictInputError: naming each unusable file and why (missing, undecodable, too small, decompression
            bomb, no faithful 8-bit conversion, mask size differs from the image).
    """
    problems: list[str] = []
    sizes: list[tuple[int, int]] = []
    bad_pairs = 0
    for img_path, mask_path in pairs:
        found: list[str] = []
        rgb = mask = None
        try:
            rgb = read_image(img_path).array()
        except (ImageDecodeError, FileNotFoundError) as err:
            found.append(str(err))
        try:
            mask = decode_mask(mask_path, f"mask {mask_path}")
        except (ImageDecodeError, FileNotFoundError) as err:
            found.append(str(err))
        if rgb is not None and mask is not None:
            if mask.shape != rgb.shape[:2]:
                found.append(_size_mismatch(img_path, rgb, mask_path, mask))
            elif (message := mask_problem(mask, str(mask_path))) is not None:
                warnings.warn(message, MaskWarning, stacklevel=3)
        problems.extend(found)
        bad_pairs += bool(found)
        sizes.append(tuple(rgb.shape[:2]) if rgb is not None else (0, 0))
    if problems:
        listed = "\n  ".join(problems)
        raise PredictInputError(
            f"{bad_pairs} of {len(pairs)} predict input(s) (image + mask) cannot be used, so nothing was predicted; "
            f"fix or remove them and run again:\n  {listed}"
        )
    return sizes


def size_batches(sizes: list[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size`` images of one size (sizes in order of first
    appearance, files in their order within a size): a folder of mixed sizes needs no ``batch_size: 1``."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(tuple(size), []).append(i)
    return [idx[k : k + batch_size] for idx in groups.values() for k in range(0, len(idx), batch_size)]


# Lightning warns that it cannot set drop_last=False on a custom batch sampler; this one yields every index
# exactly once (no batch is ever dropped), so the warning would only alarm predict users.
warnings.filterwarnings("ignore", message=r"You are using a custom batch sampler `SizeBatchSampler`")


class SizeBatchSampler(Sampler[list[int]]):
    """The fixed batches of :func:`size_batches` as a batch sampler (one pass, always the same order).

    Under DDP each of ``world_size`` processes takes every ``world_size``-th batch from ``rank`` on
    (Lightning does not shard a custom batch sampler), so every image is predicted exactly once.
    """

    def __init__(self, sizes: list[tuple[int, int]], batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.batches = size_batches(sizes, batch_size)[rank::world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter([list(b) for b in self.batches])

    def __len__(self) -> int:
        return len(self.batches)


def pair_images_and_masks(images: str | Path, masks: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) path pairs: a single file pair, or two folders matched by stem."""
    image_files = _list_images(Path(images), "images")
    mask_files = _list_images(Path(masks), "masks")
    if Path(images).is_file():
        if Path(masks).is_file():
            return [(image_files[0], mask_files[0])]
        match = [m for m in mask_files if m.stem == image_files[0].stem]
        if not match:
            raise FileNotFoundError(f"no mask named {image_files[0].stem}.* in {masks} for image {images}")
        return [(image_files[0], match[0])]
    if Path(masks).is_file():
        raise ValueError(f"images is a folder ({images}) but masks is a single file ({masks}); give a folder of masks")
    by_stem = {}
    for m in mask_files:
        if m.stem in by_stem:
            raise ValueError(f"two masks share the stem {m.stem!r}: {by_stem[m.stem]} and {m}; keep one")
        by_stem[m.stem] = m
    missing = [p.name for p in image_files if p.stem not in by_stem]
    if missing:
        raise FileNotFoundError(
            f"no mask in {masks} for image(s) {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}; masks are matched by file stem (a.jpg <-> a.png)"
        )
    stems = {p.stem for p in image_files}
    if len(stems) != len(image_files):
        raise ValueError(f"two images in {images} share a stem; outputs are named <stem>.png, rename one")
    extra = [m.name for m in mask_files if m.stem not in stems]
    if extra:
        warnings.warn(f"masks without an image are ignored: {', '.join(extra[:5])}")
    return [(p, by_stem[p.stem]) for p in image_files]


class ImageFilesDataset(Dataset):
    """One (image, mask) pair per item, as the batch dict of docs/conventions.md plus the 8-bit original.

    Item keys: ``image`` (3, H, W) float in [-1, 1]; ``mask`` (1, H, W) {0, 1}, 1 = hole;
    ``image_uint8`` (3, H, W) uint8 (the exact decoded RGB, used to write known pixels
    bit-exactly); ``category`` long; ``key`` the image stem (the output file is ``<key>.png``).
    """

    def __init__(self, pairs: list[tuple[Path, Path]], category: int) -> None:
        self.pairs = pairs
        self.category = int(category)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        img_path, mask_path = self.pairs[i]
        rgb, grey = _decode_pair(img_path, mask_path)  # checked in setup; a file changed since is still an error
        u8 = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
        mask = torch.from_numpy((grey >= HOLE_THRESHOLD).astype(np.float32))[None]
        return {
            "image": u8.float() / 127.5 - 1.0,
            "mask": mask,
            "image_uint8": u8,
            "category": torch.tensor(self.category, dtype=torch.long),
            "key": img_path.stem,
        }


def collate_same_size(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items of one size (:func:`size_batches` groups them; a file resized since ``setup`` is an error)."""
    sizes = {tuple(it["image"].shape[-2:]) for it in items}
    if len(sizes) > 1:
        raise ValueError(
            f"images {[it['key'] for it in items]} have different sizes {sorted(sizes)} in one batch (did a file "
            "change after the inputs were checked?); run again"
        )
    out: dict[str, Any] = {"key": [it["key"] for it in items]}
    for k in ("image", "mask", "image_uint8", "category"):
        out[k] = torch.stack([it[k] for it in items])
    return out


class ImageFilesDataModule(LightningDataModule):
    """Predict-only DataModule: images and hole masks from files or folders (see module docstring).

    ``setup`` decodes and checks every pair first and raises one :class:`PredictInputError` listing all the
    bad files, so nothing is predicted (or written) from a partly broken folder.

    Args:
        images: an image file, or a folder of images.
        masks: the mask file for a single image, or a folder of masks matched by stem.
            White (>= 128) = hole to fill.
        category: LCG category used to fill the holes: ``background`` (object removal, the usual
            case) or ``foreground``.
        batch_size: images per predict batch (at most); images are batched with others of their size,
            so mixed folders work at any batch size.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        images: str,
        masks: str,
        category: Literal["background", "foreground"] = "background",
        batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if category not in ("background", "foreground"):
            raise ValueError(f"category must be 'background' or 'foreground', got {category!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images, self.masks = images, masks
        self.category = Category.BACKGROUND if category == "background" else Category.FOREGROUND
        self.batch_size, self.num_workers = batch_size, num_workers
        self.dataset: ImageFilesDataset | None = None
        self.sizes: list[tuple[int, int]] = []

    def setup(self, stage: str | None = None) -> None:
        """Pair images with masks and decode / check every pair (see the module docstring), once."""
        if self.dataset is None:
            pairs = pair_images_and_masks(self.images, self.masks)
            self.sizes = validate_pairs(pairs)
            self.dataset = ImageFilesDataset(pairs, self.category)

    @property
    def sample_keys(self) -> list[str]:
        """Stems of every image, in predict order (the output files are ``<key>.png``)."""
        self.setup()
        return [self.dataset.pairs[i][0].stem for batch in size_batches(self.sizes, self.batch_size) for i in batch]

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (int(trainer.global_rank), int(trainer.world_size)) if trainer is not None else (0, 1)

    def predict_dataloader(self) -> DataLoader:
        """Batches of up to ``batch_size`` images of one size (:func:`size_batches`), in a fixed order."""
        self.setup()
        return DataLoader(
            self.dataset, batch_sampler=SizeBatchSampler(self.sizes, self.batch_size, *self._rank_and_world()),
            num_workers=self.num_workers,
            collate_fn=collate_same_size,
        )

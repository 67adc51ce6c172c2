"""Images + masks from files or folders on disk, for ``python -m main predict`` (inpainting).

Layout::

    images: photo.jpg            or a folder  in/   a.png  b.jpg  notes.txt
    masks:  photo_mask.png       or a folder  masks/ a.png b.png

A folder is matched by file stem (``in/a.png`` <-> ``masks/a.png``; extensions may differ). In a
folder, files without an image extension (``.png .jpg .jpeg .bmp .webp .tif .tiff``) are skipped
with a warning; a file that has an image extension (or is given explicitly) but cannot be decoded
is an error naming it. Masks: any mode, converted to grayscale, pixel >= 128 = hole (white = fill).
Images: any mode converted to RGB (RGBA: the alpha channel is dropped, the colour values are kept;
grayscale / palette: expanded). Sizes are kept as they are; the
inpainting module pads to its stage factor (reflect) and crops back.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from masks.types import Category

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


def _open(path: Path, mode: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode)  # RGBA: alpha dropped, colour values kept; L/P: expanded to RGB
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path} is not a readable image ({e}); remove it or convert it to PNG/JPEG") from e


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
        img = _open(img_path, "RGB")
        msk = _open(mask_path, "L")
        if img.size != msk.size:
            raise ValueError(
                f"mask {mask_path} is {msk.size[0]}x{msk.size[1]} but image {img_path} is "
                f"{img.size[0]}x{img.size[1]} (WxH); the mask must have the image's size"
            )
        u8 = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
        mask = torch.from_numpy((np.asarray(msk, dtype=np.uint8) >= 128).astype(np.float32))[None]
        return {
            "image": u8.float() / 127.5 - 1.0,
            "mask": mask,
            "image_uint8": u8,
            "category": torch.tensor(self.category, dtype=torch.long),
            "key": img_path.stem,
        }


def collate_same_size(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items; images of different sizes in one batch are an error (use batch_size 1)."""
    sizes = {tuple(it["image"].shape[-2:]) for it in items}
    if len(sizes) > 1:
        raise ValueError(
            f"images {[it['key'] for it in items]} have different sizes {sorted(sizes)}; "
            "set data.init_args.batch_size=1 for folders of mixed sizes"
        )
    out: dict[str, Any] = {"key": [it["key"] for it in items]}
    for k in ("image", "mask", "image_uint8", "category"):
        out[k] = torch.stack([it[k] for it in items])
    return out


class ImageFilesDataModule(LightningDataModule):
    """Predict-only DataModule: images and hole masks from files or folders (see module docstring).

    Args:
        images: an image file, or a folder of images.
        masks: the mask file for a single image, or a folder of masks matched by stem.
            White (>= 128) = hole to fill.
        category: LCG category used to fill the holes: ``background`` (object removal, the usual
            case) or ``foreground``.
        batch_size: images per predict batch; images in one batch must share a size (1 is safe).
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

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = ImageFilesDataset(pair_images_and_masks(self.images, self.masks), self.category)

    @property
    def sample_keys(self) -> list[str]:
        """Stems of every image, in order (the output files are ``<key>.png``)."""
        self.setup()
        return [p.stem for p, _ in self.dataset.pairs]

    def predict_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(
            self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers, collate_fn=collate_same_size
        )

"""One raw shard sample -> tensors: decode (``safe_io.image_decoding``), geometry (resize / crop / flip),
segmentation and masks; ``collate`` stacks processed samples into a batch dict."""
from __future__ import annotations

import io
import logging
import warnings
from collections import Counter
from typing import Callable

import numpy as np
import torch
from PIL import Image

from datamodules.class_list import ClassList
from safe_io.image_decoding import ImageDecodeError, read_image
from datamodules.sample_counts import NO_IMAGE, SKIP_REASONS, USED, WITHOUT_SEGMENTATION, SampleCounts, SkippedSampleWarning
from datamodules.shard_files import CLEAN_PLATE_MEMBER, CLEAN_PLATE_SEG_MEMBER, IMAGE_EXTENSIONS, SEG_MEMBER
from masks.objects import foreground_object_mask
from masks.sampler import MaskSampler
from masks.types import category_of

log = logging.getLogger(__name__)


def _nearest_resize_crop(seg: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int] | None) -> np.ndarray:
    """Nearest-neighbour resize of a class-id map to ``size`` (w, h) followed by ``box`` crop, by index arithmetic."""
    height, width = seg.shape
    left, top, right, bottom = box if box is not None else (0, 0, size[0], size[1])
    rows = np.minimum(((np.arange(top, bottom) + 0.5) * height / size[1]).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(left, right) + 0.5) * width / size[0]).astype(np.int64), width - 1)
    return seg[np.ix_(rows, cols)]


class SampleProcessor:
    """Decodes one raw shard sample and turns it into tensors (image, optional mask, type, category, key).

    Args:
        resolution: output size (square).
        crop: ``random`` (shorter side -> resolution, random crop), ``center`` (same, centre crop) or
            ``resize`` (squash to resolution x resolution).
        class_list: thing / stuff ids for the mask sampler.
        sampler: mask sampler, None for image-only batches.
        horizontal_flip: random left-right flip in training.
        slots: processes that may count samples (``num_workers + 1``), see :class:`SampleCounts`.
    """

    def __init__(
        self, resolution: int, crop: str, class_list: ClassList, sampler: MaskSampler | None, horizontal_flip: bool,
        slots: int = 1,
    ) -> None:
        self.resolution = resolution
        self.crop = crop
        self.known = np.zeros(65536, dtype=bool)  # lookup table: id -> listed in the class list
        self.known[sorted(class_list.ids)] = True
        self.has_classes = len(class_list) > 0
        self.sampler = sampler
        self.horizontal_flip = horizontal_flip
        self.counts = SampleCounts(slots)
        self._warned_ids: set[str] = set()

    @property
    def skipped(self) -> Counter:
        """Skipped samples by reason, over every process of this loader."""
        return Counter({k: v for k, v in self.counts.totals().items() if k in SKIP_REASONS and v})

    def _skip(self, sample: dict, reason: str, detail: str = "") -> None:
        self.counts.add(reason)
        message = (
            f"skipped sample {sample.get('__key__')!r} of shard {sample.get('__url__')}: {reason}"
            f"{': ' + detail if detail else ''} (rewrite the shard with `python -m datamodules.shards write` to drop it for good)"
        )
        warnings.warn(message, SkippedSampleWarning, stacklevel=2)
        log.warning(message)

    def _geometry(
        self, image: Image.Image, seg: np.ndarray | None, rng: np.random.Generator, train: bool,
        plate: Image.Image | None = None, plate_seg: np.ndarray | None = None,
    ):
        """One draw of resize / crop / flip applied alike to the image, its seg map and its clean plate (+ seg)."""
        res = self.resolution
        if self.crop == "resize":
            box, size = None, (res, res)
        else:
            w, h = image.size
            scale = res / min(w, h)
            size = (max(res, round(w * scale)), max(res, round(h * scale)))
            if self.crop == "random" and train:
                left, top = int(rng.integers(0, size[0] - res + 1)), int(rng.integers(0, size[1] - res + 1))
            else:
                left, top = (size[0] - res) // 2, (size[1] - res) // 2
            box = (left, top, left + res, top + res)
        flip = bool(train and self.horizontal_flip and rng.random() < 0.5)

        def pixels(picture: Image.Image) -> np.ndarray:
            if picture.size != size:
                picture = picture.resize(size, Image.BICUBIC, reducing_gap=3.0)
            if box is not None:
                picture = picture.crop(box)
            array = np.array(picture, dtype=np.uint8)  # a writable copy
            return array[:, ::-1] if flip else array

        def ids(map_: np.ndarray | None) -> np.ndarray | None:
            if map_ is None:
                return None
            map_ = _nearest_resize_crop(map_, size, box)
            return map_[:, ::-1] if flip else map_

        return pixels(image), ids(seg), (None if plate is None else pixels(plate)), ids(plate_seg)

    def __call__(self, sample: dict, rng: np.random.Generator, train: bool) -> dict | None:
        """Process one raw sample (``{"__key__", "__url__", "<ext>": bytes}``); None when it must be skipped."""
        key = sample.get("__key__", "?")
        image_ext = next((ext for ext in IMAGE_EXTENSIONS if ext in sample), None)
        if image_ext is None:
            self._skip(sample, NO_IMAGE, f"no {'/'.join(IMAGE_EXTENSIONS)} member, only {sorted(k for k in sample if not k.startswith('__'))}")
            return None
        try:
            image = read_image(sample[image_ext], f"its .{image_ext} member").image
        except ImageDecodeError as err:
            self._skip(sample, err.reason, str(err))
            return None
        self.counts.add(USED)
        seg = None
        if self.sampler is not None and SEG_MEMBER in sample:
            seg = self._segmentation(sample, image.size)
        plate, plate_seg = self._clean_plate(sample, image.size)
        array, seg, plate, plate_seg = self._geometry(image, seg, rng, train, plate, plate_seg)
        # uint8 CHW per sample; collate() converts the whole batch to [-1, 1] float at once
        out = {"image": torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))), "key": key}
        if plate is not None:
            out["clean_plate"] = torch.from_numpy(np.ascontiguousarray(plate.transpose(2, 0, 1)))
        if plate_seg is not None:
            out["clean_plate_seg"] = torch.from_numpy(np.ascontiguousarray(plate_seg).astype(np.int64))
        if self.sampler is not None:
            mask, mask_type = self.sampler(self.resolution, self.resolution, rng, seg)
            out["mask"] = torch.from_numpy(mask)[None]
            out["mask_type"] = int(mask_type)
            out["category"] = int(category_of(mask_type))
        return out

    def stock_shape_bank(self, read: Callable[[int], dict], donors: list[int], rng: np.random.Generator) -> None:
        """Replace the harvested shapes of the mask sampler's bank by the foreground objects of the ``donors`` samples.

        The training stream calls this when a pass starts, with donors drawn from (seed, epoch), so the replacement
        masks (type 3) of a sample depend on its position only, not on the samples read before it in this process.

        Args:
            read: sample number -> raw sample (``ShardIndex.read``).
            donors: sample numbers.
            rng: draws the object of each donor.
        """
        if self.sampler is None:
            return
        bank = self.sampler.shape_bank
        bank.harvested.clear()
        bank._next = 0
        if not self.sampler.thing_ids:
            return
        for number in donors:
            try:
                raw = read(number)
                if SEG_MEMBER not in raw:
                    continue
                with Image.open(io.BytesIO(raw[SEG_MEMBER])) as opened:
                    seg = np.asarray(opened).astype(np.int32)
            except Exception:  # noqa: BLE001 (a broken donor only means one shape fewer; the stream reports it)
                continue
            if seg.ndim != 2:
                continue
            seg = np.where(self.known[np.clip(seg, 0, 65535)], seg, -1)
            seg = _nearest_resize_crop(seg, (self.resolution, self.resolution), None)
            hole = foreground_object_mask(
                seg, self.sampler.thing_ids, rng, self.sampler.min_object_area, self.sampler.max_object_area,
                self.sampler.max_dilation,
            )
            if hole is not None:
                bank.add(hole)

    def _clean_plate(self, sample: dict, image_size: tuple[int, int]) -> tuple[Image.Image | None, np.ndarray | None]:
        """The ``bg.png`` clean plate (RGB) and its ``bgseg.png`` ids, when present, decodable and of the image's size."""
        if CLEAN_PLATE_MEMBER not in sample:
            return None, None
        try:
            plate = read_image(sample[CLEAN_PLATE_MEMBER], f"its .{CLEAN_PLATE_MEMBER} member").image
        except ImageDecodeError as err:
            self._warn_plate(sample, f"clean plate not used: {err}")
            return None, None
        if plate.size != image_size:
            self._warn_plate(sample, f"clean plate of size {plate.size[0]}x{plate.size[1]} for a {image_size[0]}x{image_size[1]} image; not used")
            return None, None
        plate_seg = None
        if CLEAN_PLATE_SEG_MEMBER in sample:
            try:
                with Image.open(io.BytesIO(sample[CLEAN_PLATE_SEG_MEMBER])) as opened:
                    plate_seg = np.asarray(opened).astype(np.int32)
            except Exception as err:
                self._warn_plate(sample, f"undecodable clean-plate segmentation ({type(err).__name__}); not used")
            else:
                if plate_seg.shape != (image_size[1], image_size[0]):
                    self._warn_plate(sample, f"clean-plate segmentation of size {plate_seg.shape[::-1]} for a {image_size[0]}x{image_size[1]} image; not used")
                    plate_seg = None
        return plate, plate_seg

    def _warn_plate(self, sample: dict, reason: str) -> None:
        warnings.warn(
            f"sample {sample.get('__key__')!r} of shard {sample.get('__url__')}: {reason}. Rewrite the shard with a "
            f"clean plate of the image's size.",
            SkippedSampleWarning,
            stacklevel=3,
        )

    def _segmentation(self, sample: dict, image_size: tuple[int, int]) -> np.ndarray | None:
        try:
            with Image.open(io.BytesIO(sample[SEG_MEMBER])) as opened:
                seg = np.asarray(opened)
        except Exception as err:
            self._skip_seg(sample, f"undecodable segmentation map ({type(err).__name__})")
            return None
        if seg.ndim != 2 or seg.shape != (image_size[1], image_size[0]):
            self._skip_seg(
                sample, f"segmentation map of size {seg.shape[::-1]} for a {image_size[0]}x{image_size[1]} image"
            )
            return None
        if not self.has_classes:
            return None
        seg = seg.astype(np.int32)
        unknown = ~self.known[np.clip(seg, 0, 65535)]
        if unknown.any():
            url = str(sample.get("__url__"))
            if url not in self._warned_ids:
                self._warned_ids.add(url)
                warnings.warn(
                    f"shard {url} (sample {sample.get('__key__')!r}) has segmentation ids "
                    f"{sorted(set(np.unique(seg[unknown]).tolist()))} missing from the class list; they are ignored "
                    f"for masks. Add them to classes.json (as thing / stuff / ignore).",
                    SkippedSampleWarning,
                    stacklevel=2,
                )
            seg = np.where(unknown, -1, seg)
        return seg

    def _skip_seg(self, sample: dict, reason: str) -> None:
        self.counts.add(WITHOUT_SEGMENTATION)
        warnings.warn(
            f"sample {sample.get('__key__')!r} of shard {sample.get('__url__')}: {reason}; the sample is used without "
            f"segmentation (random / replacement masks only). Rewrite the shard with matching seg maps.",
            SkippedSampleWarning,
            stacklevel=2,
        )


def _unit_range(pictures: list[torch.Tensor]) -> torch.Tensor:
    """uint8 ``(3, H, W)`` tensors -> one float32 ``(B, 3, H, W)`` batch in [-1, 1]."""
    # numpy's uint8 -> float32 conversion is ~10x faster than torch's on CPU (measured in benchmarks/shard_loading.py)
    stacked = np.stack([p.numpy() for p in pictures]).astype(np.float32)
    stacked *= np.float32(1 / 127.5)
    stacked -= np.float32(1.0)
    return torch.from_numpy(stacked)


def collate(samples: list[dict]) -> dict:
    """Stack processed samples into a batch dict (see docs/conventions.md); images become float in [-1, 1].

    When at least one sample has a clean plate: ``clean_plate`` ``(B, 3, H, W)`` in [-1, 1] (a sample without one gets
    its own image) and ``has_clean_plate`` ``(B,)`` bool; with clean-plate seg maps also ``clean_plate_seg``
    ``(B, H, W)`` long, -1 for samples without one.
    """
    images = _unit_range([s["image"] for s in samples])
    batch = {"image": images, "key": [s["key"] for s in samples]}
    if any("clean_plate" in s for s in samples):  # samples without one get their own image and False
        batch["clean_plate"] = _unit_range([s["clean_plate"] if "clean_plate" in s else s["image"] for s in samples])
        batch["has_clean_plate"] = torch.tensor(["clean_plate" in s for s in samples], dtype=torch.bool)
    if any("clean_plate_seg" in s for s in samples):  # -1 where a sample has no clean-plate segmentation
        h, w = images.shape[-2:]
        batch["clean_plate_seg"] = torch.stack(
            [s["clean_plate_seg"] if "clean_plate_seg" in s else torch.full((h, w), -1, dtype=torch.int64) for s in samples]
        )
    if "mask" in samples[0]:
        batch["mask"] = torch.stack([s["mask"] for s in samples])
        batch["mask_type"] = torch.tensor([s["mask_type"] for s in samples], dtype=torch.long)
        batch["category"] = torch.tensor([s["category"] for s in samples], dtype=torch.long)
    return batch

"""(original, edit) image pairs from two folders, for ripple removal of edits made by any editor.

Folder layout (flat folders; any of the image extensions ``png``, ``jpg``, ``jpeg``, ``webp``, ``bmp``)::

    originals/<stem>.<ext>         the unedited photos
    edits/<stem>.<ext>             the edit of each photo (same stem, same width x height)
    person_masks/<stem>.png        optional: person mask of the original (8-bit, >= 128 = person)
    person_masks/<stem>_edit.png   optional: person mask of the edit

Pairs are matched by file stem and sorted by it. A stem without a partner, two files with one
stem, an edit whose size differs from its original, or (with ``person_masks``) a missing mask or
one of another size is an error naming the files. With ``person_masks`` both masks of every pair
are required; :class:`lightning_modules.ripple_removal.EditPairsRippleRemoval` then reads them with
:class:`ripple.parsers.MaskFolderParser` (keys ``<stem>`` and ``<stem>_edit``) instead of running a
parser network.

Batches: ``image`` (originals) and ``edit`` ``(B,3,H,W)`` in [-1, 1], ``key`` (stems) and
``edit_key`` (``<stem>_edit``, the edit's mask key). Photos of different sizes need ``batch_size: 1``
(the default). Under DDP rank ``r`` of ``W`` gets a contiguous slice of the sorted pairs
(``datamodules.shard_datamodule.split_range``), so each pair is processed exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from datamodules.shard_datamodule import distributed_rank_world, split_range
from datamodules.shard_files import IMAGE_EXTENSIONS
from safe_io.image_decoding import decode_image

__all__ = ["EDIT_MASK_SUFFIX", "EditPair", "list_stems", "match_pairs", "EditPairsSet", "EditPairsDataModule"]

#: file-name ending of the edit's person mask (``person_masks/<stem>_edit.png``) and of its parser key.
EDIT_MASK_SUFFIX = "_edit"


@dataclass(frozen=True)
class EditPair:
    """One (original, edit) pair.

    Attributes:
        key: the common file stem.
        original: the original image file.
        edit: the edited image file.
        size: ``(width, height)`` of both.
    """

    key: str
    original: Path
    edit: Path
    size: tuple[int, int]


def list_stems(folder: str | Path, what: str) -> dict[str, Path]:
    """Image files directly in ``folder`` by stem (hidden files skipped).

    Raises:
        FileNotFoundError: the folder does not exist or holds no image.
        ValueError: two files share a stem (e.g. ``a.png`` and ``a.jpg``).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"EditPairsDataModule: {what} folder {root} does not exist")
    files: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower().lstrip(".") not in IMAGE_EXTENSIONS:
            continue
        if path.stem in files:
            raise ValueError(f"EditPairsDataModule: {files[path.stem]} and {path} have the same stem {path.stem!r}; "
                             f"keep one file per stem in the {what} folder")
        files[path.stem] = path
    if not files:
        raise FileNotFoundError(f"EditPairsDataModule: {what} folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size
    except Exception as err:  # PIL raises several types for broken files
        raise ValueError(f"EditPairsDataModule: cannot read image {path}: {err}") from err


def match_pairs(originals: str | Path, edits: str | Path) -> list[EditPair]:
    """Pairs of ``originals`` and ``edits`` by stem, sorted by stem.

    Raises:
        ValueError: a stem has no partner (all such files are named), or an edit's size differs from its original's.
    """
    orig, edit = list_stems(originals, "originals"), list_stems(edits, "edits")
    only_orig, only_edit = sorted(set(orig) - set(edit)), sorted(set(edit) - set(orig))
    if only_orig or only_edit:
        parts = []
        if only_orig:
            parts.append(f"originals without an edit: {[orig[s].name for s in only_orig[:10]]}")
        if only_edit:
            parts.append(f"edits without an original: {[edit[s].name for s in only_edit[:10]]}")
        raise ValueError(f"EditPairsDataModule: pairs are matched by file stem and {'; '.join(parts)} "
                         f"(in {originals} / {edits}); rename or remove them")
    pairs = []
    for stem in sorted(orig):
        size_o, size_e = _size(orig[stem]), _size(edit[stem])
        if size_o != size_e:
            raise ValueError(f"EditPairsDataModule: edit {edit[stem]} is {size_e[0]}x{size_e[1]} but original "
                             f"{orig[stem]} is {size_o[0]}x{size_o[1]}; an edit must have its original's size")
        pairs.append(EditPair(stem, orig[stem], edit[stem], size_o))
    return pairs


def check_person_masks(pairs: list[EditPair], person_masks: str | Path) -> None:
    """Every pair has ``<stem>.png`` and ``<stem>_edit.png`` in ``person_masks``, each of the pair's size.

    Raises:
        FileNotFoundError: the folder or masks are missing (all missing files are named).
        ValueError: a mask's size differs from its image's.
    """
    root = Path(person_masks)
    if not root.is_dir():
        raise FileNotFoundError(f"EditPairsDataModule: person_masks folder {root} does not exist")
    missing = [str(root / f"{p.key}{end}.png") for p in pairs for end in ("", EDIT_MASK_SUFFIX)
               if not (root / f"{p.key}{end}.png").is_file()]
    if missing:
        raise FileNotFoundError(
            f"EditPairsDataModule: {len(missing)} person mask(s) missing, e.g. {missing[:6]}; person_masks needs "
            f"<stem>.png (original) and <stem>{EDIT_MASK_SUFFIX}.png (edit) for every pair, or leave person_masks out "
            "to parse the people with the model's parser")
    for p in pairs:
        for end in ("", EDIT_MASK_SUFFIX):
            path = root / f"{p.key}{end}.png"
            size = _size(path)
            if size != p.size:
                raise ValueError(f"EditPairsDataModule: person mask {path} is {size[0]}x{size[1]} but image "
                                 f"{p.original if not end else p.edit} is {p.size[0]}x{p.size[1]}; masks must have "
                                 "their image's size")


def _read_rgb(path: Path) -> torch.Tensor:
    arr = decode_image(path)  # upright 8-bit RGB, or an error naming the file (safe_io.image_decoding)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


class EditPairsSet(IterableDataset):
    """The slice of the pairs one rank processes, as ``{"image", "edit", "key", "edit_key"}`` samples.

    Args:
        pairs: all pairs, sorted (every rank gets the same list).
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(self, pairs: list[EditPair], rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"EditPairsSet: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.pairs = pairs
        start, stop = split_range(len(pairs), world_size, rank)
        self.indices = range(start, stop)

    def keys(self) -> list[str]:
        """Stems of this rank's pairs, in order."""
        return [self.pairs[i].key for i in self.indices]

    @staticmethod
    def load(pair: EditPair) -> dict[str, Any]:
        """Decode one pair (images in [-1, 1])."""
        return {"image": _read_rgb(pair.original), "edit": _read_rgb(pair.edit), "key": pair.key,
                "edit_key": f"{pair.key}{EDIT_MASK_SUFFIX}"}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        lo, hi = split_range(len(self.indices), workers, worker)
        for position in range(lo, hi):
            yield self.load(self.pairs[self.indices[position]])


class EditPairsDataModule(LightningDataModule):
    """(original, edit) pairs matched by file stem, for ``test`` (metrics) and ``predict`` (cleaned files).

    See the module docstring for the folder layout.

    Args:
        originals: folder of the original images.
        edits: folder of the edited images (same stems and sizes as the originals).
        person_masks: optional folder of person masks, ``<stem>.png`` (original) and ``<stem>_edit.png``
            (edit), 8-bit, >= 128 = person; ``None`` = the model's parser finds the people.
        num_images: use the first ``num_images`` pairs in stem order (``None`` = all).
        batch_size: pairs per batch (1 unless every photo has the same size).
        num_workers: dataloader workers per rank.
    """

    def __init__(
        self,
        originals: str,
        edits: str,
        person_masks: str | None = None,
        num_images: int | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0 or (num_images is not None and num_images < 1):
            raise ValueError(f"EditPairsDataModule: need batch_size >= 1, num_workers >= 0, num_images >= 1 or null; got "
                             f"{batch_size}, {num_workers}, {num_images}")
        self.originals = originals
        self.edits = edits
        self.person_masks = person_masks
        self.num_images = num_images
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._pairs: list[EditPair] | None = None
        self._set: EditPairsSet | None = None

    def pairs(self) -> list[EditPair]:
        """All pairs (checked: partners, sizes, masks), sorted by stem and cut to ``num_images``."""
        if self._pairs is None:
            pairs = match_pairs(self.originals, self.edits)
            if self.num_images is not None:
                if self.num_images > len(pairs):
                    raise ValueError(f"EditPairsDataModule: num_images={self.num_images} but {self.originals} has only "
                                     f"{len(pairs)} pairs")
                pairs = pairs[: self.num_images]
            if self.person_masks is not None:
                check_person_masks(pairs, self.person_masks)
            if self.batch_size > 1:
                odd = next((p for p in pairs if p.size != pairs[0].size), None)
                if odd is not None:
                    raise ValueError(
                        f"EditPairsDataModule: batch_size={self.batch_size} but the photos differ in size "
                        f"({pairs[0].original} is {pairs[0].size[0]}x{pairs[0].size[1]}, {odd.original} is "
                        f"{odd.size[0]}x{odd.size[1]}); set batch_size: 1")
            self._pairs = pairs
        return self._pairs

    def _rank(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        return distributed_rank_world()

    def setup(self, stage: str) -> None:
        """Check the folders and take this rank's slice of the pairs."""
        self._set = EditPairsSet(self.pairs(), *self._rank())

    def _loader(self) -> DataLoader:
        if self._set is None:
            self.setup("test")
        return DataLoader(self._set, batch_size=self.batch_size, num_workers=self.num_workers,
                          pin_memory=torch.cuda.is_available())

    def test_dataloader(self) -> DataLoader:
        """This rank's pairs (each pair exactly once over all ranks)."""
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        """The same pairs as ``test``."""
        return self._loader()

    def describe(self) -> dict[str, Any]:
        """What the pairs are (goes into the report)."""
        return {"originals": str(self.originals), "edits": str(self.edits),
                "person_masks": None if self.person_masks is None else str(self.person_masks),
                "num_pairs": len(self.pairs())}

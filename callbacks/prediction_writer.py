"""Writes inpainted images from ``predict_step`` as PNG files."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from evaluation.metrics import to_uint8
from safe_io import output_path


class OutputDirError(ValueError):
    """``output_dir`` cannot take the predictions: it is a file, or not writable."""


def write_png_atomically(array: np.ndarray, path: Path) -> None:
    """Save ``array`` (uint8 HxWx3) as the PNG ``path`` via a temporary file in the same folder and ``os.replace``:
    the file appears complete or not at all (an interrupted run leaves no truncated PNG, an old file is replaced,
    never rewritten in place)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:  # a new file with the usual permissions (umask)
            Image.fromarray(np.ascontiguousarray(array)).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class InpaintingPredictionWriter(BasePredictionWriter):
    """Saves each predicted image as ``<output_dir>/<key>.png``, known pixels bit-exact.

    ``predict_step`` must return a dict with ``inpainted`` ((B, 3, H, W) in [-1, 1]), ``mask``
    ((B, 1, H, W), 1 = hole) and ``key`` (list of names). When it also returns ``image_uint8``
    (the decoded 8-bit input, as :class:`datamodules.image_files.ImageFilesDataModule` provides),
    the final composite is done in uint8: ``where(mask, round(inpainted), image_uint8)``, so the
    known pixels of the file equal the input file exactly.

    Before anything is predicted (in ``setup``, after the datamodule has checked its inputs) the writer
    checks ``output_dir``: an existing file or a folder it cannot write to is an :class:`OutputDirError`
    naming it. Existing files are never silently replaced: with ``overwrite: false`` a clear
    ``FileExistsError`` names them (checked for every image before anything is predicted when the
    datamodule exposes ``sample_keys``, and again for each file). Each PNG is written to a temporary file
    in ``output_dir`` and renamed into place, so a run that stops never leaves a truncated image.

    Args:
        output_dir: folder for the PNG files (created if missing).
        overwrite: replace existing ``<key>.png`` files instead of failing.
    """

    def __init__(self, output_dir: str, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.overwrite = bool(overwrite)

    def path_for(self, key: str) -> Path:
        """Output file of sample ``key``, inside ``output_dir`` (``safe_io.UnsafeNameError`` for an absolute, ``..``,
        NUL or over-long key)."""
        return output_path(self.output_dir, key, ".png", "the predicted batch's keys")

    def _check(self, path: Path) -> None:
        if path.exists() and not self.overwrite:
            raise FileExistsError(
                f"{path} already exists; choose another output_dir or set overwrite: true on "
                f"{type(self).__name__} to replace it"
            )

    def check_output_dir(self, keys: Sequence[str] = ()) -> None:
        """Create ``output_dir`` and check it can take ``<key>.png`` for every key (see the class docstring).

        Raises:
            OutputDirError: ``output_dir`` is an existing file or cannot be written to.
            FileExistsError: some ``<key>.png`` exist and ``overwrite`` is false (the message lists them).
        """
        folder = self.output_dir
        if folder.exists() and not folder.is_dir():
            raise OutputDirError(
                f"output_dir {folder} is an existing file, not a folder; choose a folder for the predicted PNGs"
            )
        paths = [self.path_for(k) for k in keys]  # every key checked before anything is predicted
        existing = [p for p in paths if p.exists()]
        if existing and not self.overwrite:
            more = f" (and {len(existing) - 1} more: {', '.join(p.name for p in existing[1:4])}{', ...' if len(existing) > 4 else ''})" if len(existing) > 1 else ""
            raise FileExistsError(
                f"{existing[0]} already exists{more}; choose another output_dir or set overwrite: true on "
                f"{type(self).__name__} to replace them"
            )
        probe = folder / f".write-test-{uuid.uuid4().hex[:12]}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.touch(exist_ok=False)  # permission bits say nothing for root or a read-only mount: try it
            probe.unlink()
        except OSError as err:
            raise OutputDirError(
                f"output_dir {folder} is not writable ({err.strerror or err}); choose a writable folder or fix its "
                f"permissions. Nothing was predicted"
            ) from err

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        keys = getattr(trainer.datamodule, "sample_keys", None) if trainer.datamodule is not None else None
        self.check_output_dir(list(keys or []))

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not isinstance(prediction, dict) or "inpainted" not in prediction or "key" not in prediction:
            raise TypeError(
                f"{type(self).__name__} needs predict_step to return a dict with 'inpainted' and 'key', "
                f"got {type(prediction).__name__}"
            )
        out = to_uint8(prediction["inpainted"]).cpu()
        if prediction.get("image_uint8") is not None:
            hole = prediction["mask"].cpu() > 0.5
            out = torch.where(hole, out, prediction["image_uint8"].cpu())
        paths = [self.path_for(key) for key in prediction["key"]]  # the whole batch checked before writing any
        for path, img in zip(paths, out):
            self._check(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_png_atomically(img.permute(1, 2, 0).numpy(), path)

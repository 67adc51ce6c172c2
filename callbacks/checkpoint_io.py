"""Lightning checkpoint I/O that never runs code from a file and never leaves a partial checkpoint.

``main.py`` installs :class:`SafeCheckpointIO` in every Trainer (unless a config names another
``CheckpointIO``), so ``--ckpt_path``, resuming, ``last.ckpt`` and ``best-*.ckpt`` all go through it.
"""
from __future__ import annotations

from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from networks.checkpoints import CheckpointFormat, atomic_save, read_checkpoint

__all__ = ["SafeCheckpointIO", "LIGHTNING_FORMAT"]

LIGHTNING_FORMAT = CheckpointFormat(
    name="Lightning checkpoint",
    origin="Pass the path of a checkpoint written by a run of this project (runs/<name>/<version>/checkpoints/*.ckpt), "
    "or --ckpt_path last to resume the run directory's newest state.",
)


class SafeCheckpointIO(TorchCheckpointIO):
    """Atomic saves and safe loads for Lightning checkpoints.

    Save: a temporary file in the destination directory, flushed and fsynced, then ``os.replace``d
    over the target (:func:`networks.checkpoints.atomic_save`): a crash or ``kill -9`` at any moment
    leaves the previous checkpoint or the new one, never a truncated file, whatever ``TMPDIR`` is.
    Load: :func:`networks.checkpoints.read_checkpoint` (``weights_only=True``; a damaged, empty or
    non-checkpoint file is an error naming it; no advice to unpickle untrusted files).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"SafeCheckpointIO does not take storage_options, got {storage_options!r}")
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path, LIGHTNING_FORMAT)

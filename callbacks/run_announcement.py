"""Say where a run's files go: one line at the start of every run, printed by rank 0."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from callbacks.image_logger import ImageLogger
from callbacks.loss_curves import LossCurves
from callbacks.run_directory import run_directory

__all__ = ["RunAnnouncement", "run_contents"]


def _same_dir(a: str | Path, b: Path) -> bool:
    return Path(a).resolve() == b.resolve()


def run_contents(trainer: Trainer, run_dir: Path, stage: str) -> list[str]:
    """What the run writes into ``run_dir`` (for the announcement), e.g. ``["config.yaml", "metrics.csv"]``.

    Args:
        trainer: The trainer of the run (callbacks and loggers attached).
        run_dir: The run directory (:func:`callbacks.run_directory.run_directory`).
        stage: ``fit``, ``validate``, ``test`` or ``predict``.
    """
    items: list[str] = []
    if any(isinstance(cb, SaveConfigCallback) for cb in trainer.callbacks):
        items.append("config.yaml")
    csv_here = any(isinstance(lg, CSVLogger) and _same_dir(lg.log_dir, run_dir) for lg in trainer.loggers)
    if csv_here:
        items.append("metrics.csv")
    if any(isinstance(lg, TensorBoardLogger) and _same_dir(lg.log_dir, run_dir) for lg in trainer.loggers):
        items.append("events.out.tfevents.*")
    if stage != "predict" and any(isinstance(cb, ImageLogger) for cb in trainer.callbacks):
        items.append("images/")
    if stage == "fit" and csv_here and any(isinstance(cb, LossCurves) for cb in trainer.callbacks):
        items.append("loss_curves.png")
    if stage == "fit":
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, ModelCheckpoint):
            items.append("checkpoints/" if checkpoint.dirpath is None else f"checkpoints in {checkpoint.dirpath}")
    return items


class RunAnnouncement(Callback):
    """Print ``restorelab: run directory <dir> (<what goes there>)`` when a run starts (rank 0 only).

    Predict runs also name the folder of each prediction writer (``output_dir``).
    The main CLI adds it to every trainer.
    """

    def __init__(self) -> None:
        #: the last line printed (for tests)
        self.message: str | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        run_dir = run_directory(trainer)  # a collective under DDP: every rank calls it
        if not trainer.is_global_zero:
            return
        contents = run_contents(trainer, run_dir, stage)
        message = f"restorelab: run directory {run_dir}" + (f" ({', '.join(contents)})" if contents else "")
        outputs = [str(cb.output_dir) for cb in trainer.callbacks
                   if isinstance(cb, BasePredictionWriter) and getattr(cb, "output_dir", None) is not None]
        if stage == "predict" and outputs:
            message += f"; predictions go to {', '.join(outputs)}"
        self.message = message
        print(message, flush=True)

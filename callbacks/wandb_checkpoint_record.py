"""Record the run directory and checkpoint paths on the W&B run (summary), so a run found in the
W&B UI says where its files are."""
from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from callbacks.last_checkpoint import LastCheckpoint
from callbacks.run_directory import run_directory


class WandbCheckpointRecord(Callback):
    """Put ``run_dir``, ``checkpoints/best``, ``checkpoints/best_score`` and ``checkpoints/last``
    into the summary of every ``WandbLogger`` run; a no-op for other loggers.

    Updated after every validation (the paths of the checkpoints saved so far) and at the end of
    fit, so a run killed by its time limit still names the checkpoint it will resume from.
    The main CLI adds it to every trainer.
    """

    def __init__(self) -> None:
        self._run_dir: str | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
            self._run_dir = str(run_directory(trainer))

    @rank_zero_only
    def _record(self, trainer: Trainer) -> None:
        runs = [logger.experiment for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not runs:
            return
        record: dict[str, object] = {"run_dir": self._run_dir}
        checkpoint = next((cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)), None)
        if checkpoint is not None:
            record["checkpoints/dir"] = checkpoint.dirpath
            record["checkpoints/best"] = checkpoint.best_model_path or None
            score = checkpoint.best_model_score
            record["checkpoints/best_score"] = float(score) if score is not None else None
            record["checkpoints/last"] = checkpoint.last_model_path or None
        last = next((cb for cb in trainer.callbacks if isinstance(cb, LastCheckpoint)), None)
        if last is not None and last.path is not None and last.path.is_file():
            record["checkpoints/last"] = str(last.path)
        for run in runs:
            run.summary.update(record)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer)

"""``last.ckpt`` that always holds the newest training state, independent of validation."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_debug, rank_zero_info

from callbacks.run_directory import run_directory

__all__ = ["LastCheckpoint"]


class LastCheckpoint(Checkpoint):
    """Write ``<run directory>/checkpoints/last.ckpt`` every N steps / minutes, after every validation and at the end.

    Lightning's ``ModelCheckpoint(save_last=True)`` with a monitored metric only refreshes
    ``last.ckpt`` when a best checkpoint is saved, so a run whose ``val/loss`` stops improving (or a
    crash between validations) resumes from an old step. This callback saves the newest state by
    itself; ``ModelCheckpoint`` keeps the best-on-``val/loss`` files separately. Saves are atomic
    (:class:`callbacks.checkpoint_io.SafeCheckpointIO`) and never write non-finite weights: if any
    parameter is NaN or Inf the save is refused and training stops, so ``last.ckpt`` keeps the last
    good state.

    It is a Lightning ``Checkpoint`` callback, so Lightning runs it after the other callbacks and after
    ``ModelCheckpoint`` (checkpoint callbacks keep their order): the ``last.ckpt`` written after a
    validation holds the best-k tracker that this validation updated (resuming restores it).

    Args:
        every_n_train_steps: save every this many optimizer steps (None or 0: off).
        every_n_minutes: save when this many minutes passed since the last save (None: off); checked
            at step boundaries, rank 0's clock decides for all ranks.
        on_validation_end: also save after every validation run.
        filename: file name (without ``.ckpt``) in the run's ``checkpoints/`` folder.
    """

    def __init__(
        self,
        every_n_train_steps: int | None = None,
        every_n_minutes: float | None = None,
        on_validation_end: bool = True,
        filename: str = "last",
    ) -> None:
        if every_n_train_steps is not None and every_n_train_steps < 0:
            raise ValueError(f"LastCheckpoint: every_n_train_steps must be >= 0, got {every_n_train_steps}")
        if every_n_minutes is not None and every_n_minutes <= 0:
            raise ValueError(f"LastCheckpoint: every_n_minutes must be > 0, got {every_n_minutes}")
        self.every_n_train_steps = every_n_train_steps or 0
        self.every_n_minutes = every_n_minutes
        self.save_on_validation_end = on_validation_end
        self.filename = filename
        self.path: Path | None = None
        self._last_saved_step = -1
        self._last_time = time.monotonic()

    @property
    def state_key(self) -> str:
        return f"LastCheckpoint{{'filename': {self.filename!r}}}"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.path = run_directory(trainer) / "checkpoints" / f"{self.filename}.ckpt"
            self._last_time = time.monotonic()

    def save(self, trainer: Trainer, pl_module: LightningModule, why: str) -> None:
        """Save the full training state to :attr:`path` now (all ranks call it; skipped when this step is saved)."""
        if self.path is None or trainer.sanity_checking or trainer.global_step == self._last_saved_step:
            return
        finite = all(bool(torch.isfinite(p.detach()).all()) for p in pl_module.parameters() if p.is_floating_point())
        if not trainer.strategy.reduce_boolean_decision(finite, all=True):
            raise RuntimeError(
                f"step {trainer.global_step}: the model has NaN or Inf weights; not overwriting {self.path}, which keeps "
                f"step {max(self._last_saved_step, 0)}. Resume from it with a lower learning rate or gradient clipping."
            )
        # a SAVE of the full training state (optimizer, loops) to resume from, whatever ModelCheckpoint's
        # save_weights_only says; it loads nothing
        trainer.save_checkpoint(self.path, weights_only=False)
        self._last_saved_step = trainer.global_step
        self._last_time = time.monotonic()
        (rank_zero_info if why == "end of training" else rank_zero_debug)(f"saved {self.path} at step {trainer.global_step} ({why})")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        due = self.every_n_train_steps > 0 and step > 0 and step % self.every_n_train_steps == 0
        if self.every_n_minutes is not None:
            late = time.monotonic() - self._last_time >= 60 * self.every_n_minutes
            due = due or bool(trainer.strategy.broadcast(late))
        if due:
            self.save(trainer, pl_module, "periodic")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.save_on_validation_end and trainer.state.fn == "fit":
            self.save(trainer, pl_module, "after validation")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.save(trainer, pl_module, "end of training")

    def state_dict(self) -> dict:
        return {"last_saved_step": self._last_saved_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self._last_saved_step = int(state_dict.get("last_saved_step", -1))

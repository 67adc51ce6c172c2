"""SIGTERM / SIGINT during training: save ``last.ckpt`` at the end of the current batch, then exit 143 / 130."""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from callbacks.last_checkpoint import LastCheckpoint

__all__ = ["StopOnSignal", "signal_exit_code"]

#: the signals handled, in the order they are tried
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def signal_exit_code(signum: int) -> int:
    """The shell's exit status of a process ended by ``signum`` (128 + number: 143 SIGTERM, 130 SIGINT)."""
    return 128 + int(signum)


class StopOnSignal(Callback):
    """Save ``last.ckpt`` and stop on ``SIGTERM`` (preemption, ``kill``, container stop) or ``SIGINT`` (Ctrl+C).

    Lightning's own SIGTERM handling stops the loops with ``SIGTERMException``, saves nothing and exits
    with status 0, and Ctrl+C stops in the middle of a step with status 1. Here, from the start of
    training, both signals only set a flag. At the end of the current training batch (after a
    validation run in progress) the ranks OR their flags, all of them save ``last.ckpt`` through
    :class:`callbacks.last_checkpoint.LastCheckpoint` (the state after that batch, logged metrics
    flushed), and the loops stop through Lightning's SIGTERM path. ``main.py`` then exits with
    ``128 + signal`` (:func:`signal_exit_code`: 143 / 130). A second Ctrl+C stops at once
    (``KeyboardInterrupt``) without saving. Under SLURM, :class:`callbacks.slurm_requeue.SlurmRequeue`
    requeues the job after a SIGTERM stop. ``main.py`` adds this callback to every run.
    """

    def __init__(self) -> None:
        self.received: int | None = None  # the first signal since training started (this rank)
        self.stopped_by: int | None = None  # the signal that stopped the run (all ranks agree)
        self.saved_step: int | None = None
        self.saved_path: Path | None = None  # the last.ckpt written on the signal
        self._previous: dict[int, object] = {}

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            self._restore()
            raise KeyboardInterrupt  # Ctrl+C twice: stop now
        if self.received is None:
            self.received = signum
            note = (f"{signal.Signals(signum).name} received: saving last.ckpt at the end of this training batch, then "
                    "stopping (Ctrl+C again stops at once without saving)\n")
            os.write(2, note.encode())  # print() is not safe inside a signal handler

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after Lightning registered its SIGTERM handler (Trainer._run), which this replaces until training ends
        self.received = self.stopped_by = self.saved_step = self.saved_path = None
        self._install()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if not self._previous or not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        signum = int(trainer.strategy.broadcast(int(self.received or signal.SIGTERM)))
        last = [c for c in trainer.callbacks if isinstance(c, LastCheckpoint)]
        if last:
            last[0].save(trainer, pl_module, f"{signal.Signals(signum).name} received")
            self.saved_step, self.saved_path = trainer.global_step, last[0].path
            rank_zero_info(f"{signal.Signals(signum).name}: saved {last[0].path} at step {trainer.global_step}; stopping")
        else:
            rank_zero_warn(f"{signal.Signals(signum).name}: no LastCheckpoint callback in this trainer; stopping without a save")
        self.stopped_by = signum
        self._restore()
        # Lightning stops the loops (SIGTERMException) after this batch's metrics reached the loggers
        trainer._signal_connector.received_sigterm = True

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.received is not None and self.stopped_by is None:
            self.stopped_by = self.received  # arrived during the last batch's validation: the end-of-training save holds it
        self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, SIGTERMException) and self.stopped_by is None:
            self.stopped_by = signal.SIGTERM  # Lightning's own handler, before training started (sanity check)
        elif isinstance(exception, KeyboardInterrupt) and self.stopped_by is None:
            self.stopped_by = signal.SIGINT

    @property
    def exit_code(self) -> int | None:
        """``128 + signal`` when a signal stopped the run, else ``None``."""
        return None if self.stopped_by is None else signal_exit_code(self.stopped_by)

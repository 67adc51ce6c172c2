"""Save-and-requeue on SLURM's warning signal, at a step boundary that all DDP ranks agree on."""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from callbacks.stop_on_signal import StopOnSignal


class SlurmRequeue(Callback):
    """On ``SIGUSR1`` (``sbatch --signal=SIGUSR1@90``): checkpoint, stop, flush the loggers, ``scontrol requeue``.

    Lightning's own handler (``SLURMEnvironment(auto_requeue=True)``) saves the checkpoint inside
    the signal handler, wherever each rank happens to be; under DDP one rank can enter the
    checkpoint barrier while another is in a gradient all-reduce, and the job hangs until SLURM
    kills it (seen with gloo on the CI cluster). Here the handler only sets a flag; after every
    training batch the ranks OR their flags with one tiny all-reduce, and when any rank was
    signalled all of them save ``<default_root_dir>/hpc_ckpt_<n>.ckpt`` together (Lightning's name,
    so ``Trainer.fit`` resumes from it by itself on the requeued job) and training stops; at teardown
    the loggers are flushed and rank 0 requeues the job. ``main.py`` adds this callback and turns Lightning's handler off
    (``SLURMEnvironment(auto_requeue=False)``) in SLURM jobs; outside SLURM it does nothing.

    ``SIGTERM`` (preemption, the time limit, ``scancel``) is handled by
    :class:`callbacks.stop_on_signal.StopOnSignal`, which saves ``checkpoints/last.ckpt`` at the end
    of the current batch and stops; this callback then flushes the loggers and requeues the job the
    same way, and the requeued job resumes from that ``last.ckpt`` (the newest state:
    ``main.RestoreLabCLI._resume_after_node_failure``). ``scontrol requeue`` fails for a job that
    is not requeueable (``--no-requeue``, ``JobRequeue=0``): the job then ends with status 143.

    Args:
        signal_name: the signal SLURM sends before the time limit (``--signal=<name>@<seconds>``).
    """

    def __init__(self, signal_name: str = "SIGUSR1") -> None:
        if not hasattr(signal, signal_name):
            raise ValueError(f"SlurmRequeue: unknown signal {signal_name!r}; use e.g. 'SIGUSR1'")
        self.signal_name = signal_name
        self._signalled = False
        self._active = False
        self._previous_handler = None
        self._requeue_pending = False
        self.saved_path: Path | None = None

    @staticmethod
    def job_id() -> str | None:
        """The id to requeue (``<array job>_<task>`` for array jobs), ``None`` outside SLURM batch jobs."""
        if not SLURMEnvironment.detect():
            return None
        array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"{array_job}_{array_task}" if array_job and array_task else os.environ.get("SLURM_JOB_ID")

    def _on_signal(self, signum, frame) -> None:
        self._signalled = True

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._active = stage == "fit" and self.job_id() is not None
        if self._active:
            self._previous_handler = signal.signal(getattr(signal, self.signal_name), self._on_signal)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._active and self._previous_handler is not None:
            signal.signal(getattr(signal, self.signal_name), self._previous_handler)
        self._active = False
        if self._requeue_pending:
            self._requeue_pending = False
            self._requeue(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """A SIGTERM stop (``StopOnSignal`` saved ``last.ckpt``): requeue the job, as after SIGUSR1."""
        if not self._active or not isinstance(exception, SIGTERMException):
            return
        stops = [c for c in trainer.callbacks if isinstance(c, StopOnSignal)]
        if stops and stops[0].stopped_by == signal.SIGINT:
            return  # Ctrl+C on an interactive step: the user wants it to end
        self._requeue_pending = False
        self.saved_path = stops[0].saved_path if stops and stops[0].saved_path else self.saved_path
        rank_zero_info(f"SIGTERM in SLURM job {self.job_id()}: requeueing it")
        self._requeue(trainer)

    def _requeue(self, trainer: Trainer) -> None:
        """Flush the loggers (``scontrol requeue`` ends this process at once), then requeue the job (rank 0)."""
        for logger in trainer.loggers:
            logger.save()
        if not trainer.is_global_zero:
            return
        job = self.job_id()
        result = subprocess.run(["scontrol", "requeue", str(job)], capture_output=True, text=True)
        if result.returncode == 0:
            rank_zero_info(f"Requeued SLURM job {job}; it resumes from {self.saved_path}")
        else:
            rank_zero_warn(
                f"`scontrol requeue {job}` failed ({result.stderr.strip()}); the job was not requeued. "
                f"Resubmit with the same run directory to resume from {self.saved_path}, and check that the "
                "cluster allows requeueing (JobRequeue=1 or sbatch --requeue)."
            )

    def _next_hpc_path(self, trainer: Trainer) -> Path:
        folder = Path(trainer.default_root_dir)
        numbers = [int(m.group(1)) for p in folder.glob("hpc_ckpt_*.ckpt") if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))]
        return folder / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if not self._active:
            return
        if not trainer.strategy.reduce_boolean_decision(self._signalled, all=False):
            return
        path = Path(trainer.strategy.broadcast(str(self._next_hpc_path(trainer))))
        rank_zero_info(f"{self.signal_name} received: saving {path} at step {trainer.global_step} and requeueing")
        trainer.save_checkpoint(path)
        self.saved_path = path
        # requeue at teardown, after this step's metrics reached the loggers: requeueing here lost them
        # whenever SLURM ended the process before Lightning logged the step
        self._requeue_pending = True
        self._signalled = False
        trainer.should_stop = True

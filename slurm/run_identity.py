"""SLURM run identity: a job keeps its run directory, checkpoints and W&B run across requeues.

``main.py`` calls these before it builds anything when it runs inside a SLURM batch job.
"""
from __future__ import annotations

import os
from pathlib import Path

from jsonargparse import Namespace


class SlurmTaskMismatchError(ValueError):
    """The SLURM allocation and ``--trainer.devices`` / ``--trainer.num_nodes`` disagree."""


def slurm_job_tag(environ: dict[str, str] | None = None) -> str | None:
    """The SLURM job id that stays the same across requeues (``<array job>_<task>`` for arrays).

    Args:
        environ: The environment to read (default ``os.environ``).

    Returns:
        The tag, or ``None`` outside a (non-interactive) SLURM job.
    """
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def _logger_entries(trainer_cfg: Namespace) -> list[Namespace]:
    logger = trainer_cfg.get("logger")
    entries = logger if isinstance(logger, list) else [logger]
    return [e for e in entries if isinstance(e, Namespace) and e.get("class_path")]


def pin_slurm_run(cfg: Namespace, job_tag: str, cluster: str | None = None) -> Path | None:
    """Make the run identity of ``cfg`` a function of the SLURM job, so requeues continue the run.

    Loggers without an explicit version get ``version=slurm_<job>`` (CSV/TensorBoard) or
    ``id=slurm-<cluster>-<job>`` with ``resume="allow"`` (W&B). ``trainer.default_root_dir``, where
    Lightning saves and looks for its ``hpc_ckpt_*.ckpt`` on SIGUSR1 / requeue, becomes the run
    directory unless set explicitly. Edits ``cfg`` in place.

    Args:
        cfg: The subcommand's config (with a ``trainer`` group).
        job_tag: See ``slurm_job_tag``.
        cluster: ``SLURM_CLUSTER_NAME``, put in the W&B run id so ids stay unique across clusters.

    Returns:
        The run directory (``None`` when it cannot be known before the loggers exist).
    """
    trainer_cfg = cfg.trainer
    run_dir: Path | None = None
    for i, entry in enumerate(_logger_entries(trainer_cfg)):
        args = entry.get("init_args") or Namespace()
        entry.init_args = args
        if entry.class_path.endswith("WandbLogger"):
            # A sweep agent (or the user) names the run through WANDB_RUN_ID: keep it.
            if args.get("id") is None and args.get("version") is None and not os.environ.get("WANDB_RUN_ID"):
                args.id = f"slurm-{cluster}-{job_tag}" if cluster else f"slurm-{job_tag}"
            if args.get("resume") is None:
                args.resume = "allow"
            name = args.get("project") or os.environ.get("WANDB_PROJECT", "lightning_logs")
            version = args.get("id") or args.get("version") or os.environ.get("WANDB_RUN_ID")
            save_dir = args.get("save_dir") or "."
        elif "version" in args or entry.class_path.endswith(("CSVLogger", "TensorBoardLogger")):
            if args.get("version") is None:
                args.version = f"slurm_{job_tag}"
            name = args.get("name") or ""
            version = args.version if isinstance(args.version, str) else f"version_{args.version}"
            save_dir = args.get("save_dir") or trainer_cfg.get("default_root_dir") or "."
        else:
            continue
        if i == 0:
            run_dir = Path(save_dir, str(name), str(version))
    if trainer_cfg.get("logger") in (None, False):
        run_dir = Path(trainer_cfg.get("default_root_dir") or "runs", f"slurm_{job_tag}")
    if trainer_cfg.get("default_root_dir") is None and run_dir is not None:
        trainer_cfg.default_root_dir = str(run_dir)
    return run_dir


def keep_previous_metrics(run_dir: Path) -> Path | None:
    """Move an earlier attempt's ``metrics.csv`` aside before the CSV logger starts.

    Lightning's CSV logger deletes ``metrics.csv`` when it opens a run directory that has one; a
    requeued SLURM job reopens its directory, so the rows before the requeue are kept as
    ``metrics.attempt-<n>.csv`` (n = 0, 1, ... in order) and ``metrics.csv`` holds the current attempt.

    Args:
        run_dir: The run directory.

    Returns:
        The new name of the moved file, or ``None`` when there was nothing to move.
    """
    current = run_dir / "metrics.csv"
    if not current.is_file():
        return None
    n = len(list(run_dir.glob("metrics.attempt-*.csv")))
    target = run_dir / f"metrics.attempt-{n}.csv"
    current.rename(target)
    return target

"""Helpers of the ops tests (test_cli, test_ddp, test_slurm): run ``python -m main`` for real in a
subprocess on a tiny LCG pretraining config fed by the session's synthetic shards."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "lcg" / "tiny.yaml"


def tiny_fit_args(shards, max_steps: int = 4, val_every: int = 2) -> list[str]:
    """Arguments after ``python -m main fit`` for a few-second CPU run of ``configs/lcg/tiny.yaml``
    on the ``synthetic_shards`` fixture (32 px, batch 2, 2 validation batches)."""
    return [
        "--config", str(TINY_CONFIG),
        "--data.init_args.synthetic_dir=null",
        f"--data.init_args.train_shards={shards.train}",
        f"--data.init_args.val_shards={shards.val}",
        f"--data.init_args.test_shards={shards.test}",
        f"--data.init_args.class_list={shards.class_list}",
        "--data.init_args.resolution=32",
        "--data.init_args.batch_size=2",
        "--data.init_args.samples_per_epoch=1000",
        "--data.init_args.num_workers=0",
        "--model.init_args.sample_steps=2",
        f"--trainer.max_steps={max_steps}",
        f"--trainer.val_check_interval={val_every}",
        "--trainer.limit_val_batches=2",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_model_summary=false",
    ]


def main_env(**extra: str) -> dict[str, str]:
    """Environment of a ``python -m main`` subprocess: the repo importable, one thread, W&B off."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        OMP_NUM_THREADS="1",
        WANDB_MODE="disabled",
        PYTHONUNBUFFERED="1",
    )
    for key in [k for k in env if k.startswith("SLURM_")]:
        del env[key]  # a test running inside a Slurm job must not look like a Slurm task
    # An in-process W&B test leaves this test process's wandb-core address in WANDB_SERVICE; a child
    # that inherited it would register its runs with that service (a requeued job then finds its
    # own run id "in use").
    env.pop("WANDB_SERVICE", None)
    env.update(extra)
    return env


def run_main(args: list[str], cwd: Path, timeout: float = 180, check: bool = True, **env: str):
    """Run ``python -m main <args>`` in ``cwd``; on failure (or timeout) fail with the output's tail."""
    cmd = [sys.executable, "-m", "main", *args]
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=main_env(**env), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"")[-3000:] if isinstance(err.stdout, bytes) else (err.stdout or "")[-3000:]
        raise AssertionError(f"`python -m main {args[0]}` did not finish within {timeout}s:\n{out}") from None
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`python -m main {' '.join(args[:1])}` failed with exit code {proc.returncode}:\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def read_metrics(run_dir: Path, name: str = "metrics.csv") -> list[dict[str, str]]:
    """The rows of a CSVLogger ``metrics.csv`` (or another file of the run directory)."""
    with open(run_dir / name, newline="") as f:
        return list(csv.DictReader(f))


def logged(rows: list[dict[str, str]], key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every row where ``key`` was logged."""
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]

"""SIGTERM (preemption, ``kill``, container stop) and SIGINT (Ctrl+C) during ``python -m main fit``.

Real processes and real signals: the run saves ``last.ckpt`` at the step it reached, exits 143 / 130
(never 0), and a resume from that file continues from that step.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from networks.checkpoints import read_checkpoint
from ops_runs import REPO, logged, main_env, read_metrics, run_main, tiny_fit_args

pytestmark = pytest.mark.slow


def _fit_args(shards, save_dir: Path, max_steps: int) -> list[str]:
    # no validation and no periodic save before the signal: a last.ckpt can only come from the signal
    return [*tiny_fit_args(shards, max_steps=max_steps, val_every=400), f"--trainer.logger.init_args.save_dir={save_dir}",
            "--trainer.logger.init_args.name=sig", "--trainer.logger.init_args.flush_logs_every_n_steps=1",
            "--trainer.num_sanity_val_steps=0"]


def _train_until(proc: subprocess.Popen, run_dir: Path, step: int, timeout: float = 120) -> int:
    """Wait until metrics.csv shows ``step`` trained; returns the newest logged step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early ({proc.returncode}):\n{proc.communicate()[1][-3000:]}"
        try:
            steps = [s for s, _ in logged(read_metrics(run_dir), "train/loss")]
        except (FileNotFoundError, KeyError, ValueError):
            steps = []
        if steps and steps[-1] >= step:
            return steps[-1]
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no step {step} in {run_dir}/metrics.csv within {timeout:.0f}s")


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_last_checkpoint_at_the_step_reached_and_exits_with_the_signal_status(
    synthetic_shards, tmp_path, signum, status
):
    max_steps = 400
    run_dir = tmp_path / "sig" / "version_0"
    # Ctrl+C reaches the whole foreground process group, DataLoader workers included: a session of its own, 2 workers
    workers = ["--data.init_args.num_workers=2"] if signum == signal.SIGINT else []
    proc = subprocess.Popen([sys.executable, "-m", "main", "fit", *_fit_args(synthetic_shards, tmp_path, max_steps), *workers],
                            cwd=REPO, env=main_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        seen = _train_until(proc, run_dir, 3)
        assert not (run_dir / "checkpoints" / "last.ckpt").exists()  # nothing saved it yet
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)  # kill <pid>, a container stop: the main process only
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    saved = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    step = int(saved["global_step"])
    logged_steps = [s for s, _ in logged(read_metrics(run_dir), "train/loss")]
    # the state after the batch that was running when the signal came: at or after the last step seen, far from the end
    assert seen + 1 <= step < max_steps, (seen, step)
    assert logged_steps[-1] == step - 1, (logged_steps[-3:], step)  # that batch's metrics were flushed too
    if signum != signal.SIGTERM:
        return
    # resume from it: the step counter continues, training ends normally
    resumed = run_main(["fit", *_fit_args(synthetic_shards, tmp_path, step + 2), "--trainer.logger.init_args.version=0",
                        "--ckpt_path=last"], cwd=REPO)
    assert resumed.returncode == 0
    assert int(read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"]) == step + 2
    assert [s for s, _ in logged(read_metrics(run_dir), "train/loss")] == [step, step + 1]


def test_a_requeued_job_resumes_from_the_newer_of_last_and_hpc_checkpoints(tmp_path):
    """SIGTERM writes last.ckpt, SIGUSR1 hpc_ckpt_<n>.ckpt: the requeued job takes the later global step."""
    import torch

    from cli.checkpoint_args import newest_training_state

    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert newest_training_state(tmp_path) is None  # nothing to resume from
    torch.save({"global_step": 10}, tmp_path / "hpc_ckpt_1.ckpt")
    torch.save({"global_step": 10}, last)  # saved after the SIGUSR1 stop: Lightning's own hpc resume stays
    assert newest_training_state(tmp_path) is None
    torch.save({"global_step": 25}, last)  # a later SIGTERM stop
    assert newest_training_state(tmp_path) == last
    torch.save({"global_step": 30}, tmp_path / "hpc_ckpt_2.ckpt")
    assert newest_training_state(tmp_path) is None

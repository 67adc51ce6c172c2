"""One live run per run directory (``cli/run_lock.py``): real processes, a real second run, a real dead PID."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from cli.run_lock import RunLockedError, acquire_run_lock
from ops_runs import REPO, logged, main_env, read_metrics, run_main, tiny_fit_args

pytestmark = pytest.mark.slow


def _args(shards, tmp_path, max_steps: int) -> list[str]:
    return [*tiny_fit_args(shards, max_steps=max_steps, val_every=400), f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.logger.init_args.name=lock", "--trainer.logger.init_args.version=shared",
            "--trainer.logger.init_args.flush_logs_every_n_steps=1", "--trainer.num_sanity_val_steps=0"]


def test_a_second_run_into_a_live_run_directory_is_refused_before_it_writes(synthetic_shards, tmp_path):
    run_dir = tmp_path / "lock" / "shared"
    first = subprocess.Popen([sys.executable, "-m", "main", "fit", *_args(synthetic_shards, tmp_path, 400)], cwd=REPO,
                             env=main_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "metrics.csv").is_file() or not logged(read_metrics(run_dir), "train/loss"):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
            time.sleep(0.2)
        lock = json.loads((run_dir / "run.lock").read_text())
        assert lock["pid"] == first.pid and lock["host"] == socket.gethostname() and lock["command"] == "fit"
        config = (run_dir / "config.yaml").read_text()
        second = run_main(["fit", *_args(synthetic_shards, tmp_path, 4)], cwd=REPO, check=False)
        assert second.returncode == 2, second.stderr[-3000:]
        assert "Traceback" not in second.stderr
        assert f"is in use by another run: PID {first.pid} on {socket.gethostname()} (fit, started" in second.stderr
        assert "--trainer.logger.init_args.version=<new name>" in second.stderr
        # the second run touched nothing: metrics.csv not moved aside, config.yaml not replaced
        assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(("metrics", "config"))) == ["config.yaml", "metrics.csv"]
        assert (run_dir / "config.yaml").read_text() == config
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, err[-3000:]
    assert not (run_dir / "run.lock").exists()  # released at exit, also after a signal
    rows = read_metrics(run_dir)
    assert len({tuple(r) for r in rows}) == 1 and [s for s, _ in logged(rows, "train/loss")] == list(range(len(logged(rows, "train/loss"))))


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_dir / "run.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "fit",
                                                  "started": "2026-01-01 00:00:00 UTC", "slurm_job": None}))
    with pytest.warns(UserWarning, match=rf"taking over the lock of PID {dead.pid} on .*: its process {dead.pid} is no longer running"):
        lock = acquire_run_lock(run_dir, "fit")
    assert json.loads((run_dir / "run.lock").read_text())["pid"] == os.getpid()
    # a live holder (this process) is not taken over: the message names it and what to do
    with pytest.raises(RunLockedError, match=rf"in use by another run: PID {os.getpid()} on {socket.gethostname()} \(fit, started"):
        acquire_run_lock(run_dir, "test")
    lock.release()
    assert not (run_dir / "run.lock").exists()
    # an earlier attempt of the same SLURM job (on another host) is gone: SLURM never runs a job twice
    (run_dir / "run.lock").write_text(json.dumps({"pid": 1, "host": "node-elsewhere", "command": "fit", "slurm_job": "77"}))
    with pytest.raises(RunLockedError, match=r"PID 1 on node-elsewhere .*delete .*run.lock"):
        acquire_run_lock(run_dir, "fit", slurm_job="78")
    with pytest.warns(UserWarning, match=r"earlier attempt of this SLURM job 77"):
        acquire_run_lock(run_dir, "fit", slurm_job="77").release()


def test_a_new_run_without_a_version_takes_the_next_free_folder(synthetic_shards, tmp_path):
    """version_0 is held by a live run (this test process): a new numbered run writes version_1, all of it."""
    import yaml

    from main import cli_main

    held = acquire_run_lock(tmp_path / "lock" / "version_0", "fit")
    try:
        args = [a for a in _args(synthetic_shards, tmp_path, 1) if not a.startswith("--trainer.logger.init_args.version")]
        cli_main(["fit", *args])
        assert sorted(p.name for p in (tmp_path / "lock").iterdir()) == ["version_0", "version_1"]
        assert [p.name for p in (tmp_path / "lock" / "version_0").iterdir()] == ["run.lock"]  # nothing written there
    finally:
        held.release()
    assert not (tmp_path / "lock" / "version_0").exists()  # the lock's own empty folder goes with it
    run_dir = tmp_path / "lock" / "version_1"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "metrics.csv").is_file()
    assert not (run_dir / "run.lock").exists()
    # the snapshot keeps version: null, so a rerun from it starts a new run instead of overwriting this one
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["logger"]["init_args"]["version"] is None

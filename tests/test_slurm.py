"""The real SLURM path: slurm/fit.sbatch submitted to a running cluster (2 CPU tasks, gloo), and
SIGUSR1 mid-training -> hpc checkpoint -> requeue -> resume with the global step continuing.

Needs slurmctld + slurmd + munge (CI: .ci/slurm_up.sh); skipped with the reason otherwise.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from ops_runs import REPO, logged, main_env, read_metrics, tiny_fit_args

FIT_SBATCH = REPO / "slurm" / "fit.sbatch"
AUDIT_ONLY = "trainer:\n  callbacks:\n    - class_path: callbacks.sample_audit.SampleAudit\n"
# CSV first (it names the run directory), W&B offline second (its run id must survive the requeue).
CSV_AND_WANDB = """\
  logger:
    - class_path: lightning.pytorch.loggers.CSVLogger
      init_args: {save_dir: runs, name: lcg_tiny, flush_logs_every_n_steps: 1}
    - class_path: lightning.pytorch.loggers.WandbLogger
      init_args: {project: restorelab, save_dir: runs}
"""


def _skip_reason() -> str | None:
    for tool in ("sinfo", "sbatch", "squeue", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found: no Slurm here (CI starts a one-node cluster with .ci/slurm_up.sh)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%t %c"], capture_output=True, text=True, timeout=20)
    if proc.returncode != 0:
        return f"sinfo failed (is slurmctld running? .ci/slurm_up.sh starts it): {proc.stderr.strip()}"
    nodes = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    usable = [n for n in nodes if n[0].rstrip("*~#!%$@^-") in ("idle", "mix") and int(n[1]) >= 2]
    if not usable:
        return f"no idle Slurm node with >= 2 CPUs (sinfo: {nodes}); run .ci/slurm_up.sh"
    return None


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


def _submit(tmp_path: Path, main_args: list[str], time_limit: str = "10", template: Path = FIT_SBATCH, **env: str) -> str:
    """sbatch a real template: one node, 2 tasks, no GPUs (the template adds accelerator=cpu)."""
    cmd = [
        "sbatch", "--parsable", "--job-name=restorelab-test", "--nodes=1", "--ntasks-per-node=2",
        "--gpus-per-node=0", "--cpus-per-task=1", f"--time={time_limit}", f"--chdir={tmp_path}",
        f"--output={tmp_path}/slurm-%j.out", str(template), *main_args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=main_env(PYTHON=sys.executable, **env))
    assert proc.returncode == 0, f"sbatch failed: {proc.stderr}"
    return proc.stdout.strip().split(";")[0]


def _state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()
    return out or "GONE"


def _job_info(job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _log(tmp_path: Path, job: str, tail: int | None = 5000) -> str:
    path = tmp_path / f"slurm-{job}.out"
    text = path.read_text() if path.exists() else "(no job output yet)"
    return text[-tail:] if tail else text


def _wait(job: str, tmp_path: Path, until, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return
        time.sleep(1)
    subprocess.run(["scancel", job])
    pytest.fail(f"job {job}: {what} did not happen within {timeout:.0f}s (state {_state(job)}).\n{_log(tmp_path, job)}")


def _trained_steps(run_dir: Path, steps: int) -> bool:
    """The run logged ``train/loss`` at step ``steps`` or later."""
    try:
        return any(step >= steps for step, _ in logged(read_metrics(run_dir), "train/loss"))
    except (FileNotFoundError, KeyError, ValueError):
        return False


def _release_requeued(job: str) -> bool:
    """A requeued job waits ~2 minutes (BeginTime) before it may start again: once it is pending, let it start now."""
    if _state(job) != "PENDING":
        return _state(job) != "COMPLETING"
    update = ["scontrol", "update", f"JobId={job}", "StartTime=now"]
    return subprocess.run(update, capture_output=True, timeout=30).returncode == 0


def _check_resumed_at(run_dir: Path, saved_step: int, max_steps: int) -> None:
    """Same run directory for both attempts: the first attempt's metrics are kept aside, the second attempt starts at
    the step the first saved (not at 0) and ends with last.ckpt at ``max_steps``."""
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == max_steps
    first = [s for s, _ in logged(read_metrics(run_dir, "metrics.attempt-0.csv"), "train/loss")]
    assert first[0] == 0 and first[-1] >= saved_step - 1, (first, saved_step)
    second = [s for s, _ in logged(read_metrics(run_dir), "train/loss")]
    assert second == list(range(saved_step, max_steps)), (saved_step, second)


def _wait_done(job: str, tmp_path: Path, timeout: float) -> dict[str, str]:
    _wait(job, tmp_path, lambda: _state(job) == "GONE", timeout, "completion")
    info = _job_info(job)
    assert info.get("JobState") == "COMPLETED" and info.get("ExitCode") == "0:0", (
        f"job {job} ended {info.get('JobState')} exit {info.get('ExitCode')}:\n{_log(tmp_path, job)}"
    )
    return info


@pytest.mark.parametrize("template", ["fit.sbatch", "test.sbatch", "sweep_agent.sbatch"])
def test_templates_are_valid_bash_with_the_requeue_contract(template):
    text = (REPO / "slurm" / template).read_text()
    assert subprocess.run(["bash", "-n", str(REPO / "slurm" / template)]).returncode == 0
    if template == "fit.sbatch":
        for line in ("#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue", "#SBATCH --open-mode=append"):
            assert line in text
        assert '--trainer.devices="$SLURM_NTASKS_PER_NODE"' in text and '--trainer.num_nodes="$SLURM_NNODES"' in text


def test_submit_fills_in_the_resources(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("trainer: {}\n")
    cmd = [sys.executable, "-m", "slurm.submit", "fit", "--config", str(config), "--nodes", "2", "--gpus-per-node", "4",
           "--time", "12:00:00", "--partition", "gpu", "--dry-run", "--", "--model.init_args.l1_weight=0.2"]
    proc = subprocess.run(cmd, cwd=REPO, env=main_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    for part in ("sbatch ", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--time=12:00:00",
                 "--partition=gpu", f"slurm/fit.sbatch --config {config} --model.init_args.l1_weight=0.2"):
        assert part in line, (part, line)
    bad = subprocess.run([*cmd[:8], "--tasks-per-node", "2", "--dry-run"], cwd=REPO, env=main_env(), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "one process per GPU" in bad.stderr


@pytest.mark.slurm
@pytest.mark.slow
def test_fit_sbatch_trains_with_two_tasks(slurm_cluster, synthetic_shards, tmp_path):
    (tmp_path / "audit.yaml").write_text(AUDIT_ONLY)
    job = _submit(tmp_path, [*tiny_fit_args(synthetic_shards, max_steps=4), "--config", str(tmp_path / "audit.yaml")])
    _wait_done(job, tmp_path, timeout=240)

    run_dir = tmp_path / "runs" / "lcg_tiny" / f"slurm_{job}"  # the version is the job id
    assert run_dir.is_dir(), f"no run directory {run_dir}: {list((tmp_path / 'runs').rglob('*'))[:20]}"
    audits = [json.loads((run_dir / "sample_audit" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(a["rank"], a["world_size"], a["global_step"]) for a in audits] == [(0, 2, 4), (1, 2, 4)]
    snapshot = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]
    assert str(snapshot["devices"]) == "2" and snapshot["num_nodes"] == 1 and snapshot["accelerator"] == "cpu"
    assert snapshot["logger"]["init_args"]["version"] == f"slurm_{job}"
    assert snapshot["default_root_dir"] == str(Path("runs", "lcg_tiny", f"slurm_{job}"))
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 4
    assert f"[fit.sbatch] job {job} restart 0" in _log(tmp_path, job, tail=None)


@pytest.mark.slurm
@pytest.mark.slow
def test_test_sbatch_evaluates_every_image_once_with_two_tasks(slurm_cluster, tmp_path):
    job = _submit(
        tmp_path,
        ["--config", str(REPO / "configs" / "eval" / "tiny_synthetic.yaml"),
         f"--data.init_args.synthetic_dir={tmp_path / 'eval_data'}", "--data.init_args.synthetic_count=8"],
        template=REPO / "slurm" / "test.sbatch",
    )
    _wait_done(job, tmp_path, timeout=180)
    run_dir = tmp_path / "runs" / "eval_tiny_synthetic" / f"slurm_{job}"
    rows = read_metrics(run_dir)
    assert logged(rows, "test/num_images") == [(0, 8.0)]  # two ranks, disjoint halves, counted once
    assert "[test.sbatch]" in _log(tmp_path, job, tail=None)


@pytest.mark.slurm
@pytest.mark.slow
def test_sigusr1_requeues_and_resumes_from_the_hpc_checkpoint(slurm_cluster, synthetic_shards, tmp_path):
    max_steps = 24
    (tmp_path / "loggers.yaml").write_text(AUDIT_ONLY + CSV_AND_WANDB)
    job = _submit(
        tmp_path,
        [*tiny_fit_args(synthetic_shards, max_steps=max_steps, val_every=8), "--config", str(tmp_path / "loggers.yaml")],
        WANDB_MODE="offline",
    )
    run_dir = tmp_path / "runs" / "lcg_tiny" / f"slurm_{job}"

    _wait(job, tmp_path, lambda: _trained_steps(run_dir, 3), 180, "3 training steps")
    # What SLURM does 90 s before the time limit (--signal=SIGUSR1@90): SIGUSR1 to the tasks of the
    # job steps, i.e. the Python processes started by srun. (--batch would signal only the batch
    # shell, which does not forward it.)
    subprocess.run(["scancel", "--signal=USR1", job], check=True, timeout=30)
    _wait(job, tmp_path, lambda: any(run_dir.glob("hpc_ckpt_*.ckpt")), 60, "the hpc checkpoint")
    _wait(job, tmp_path, lambda: _job_info(job).get("Restarts", "0") != "0", 60, "the requeue")
    _wait(job, tmp_path, lambda: _release_requeued(job), 60, "the release of the requeued job")
    info = _wait_done(job, tmp_path, timeout=240)
    assert info.get("Restarts") == "1"

    log = _log(tmp_path, job, tail=None)
    assert f"[fit.sbatch] job {job} restart 0" in log and f"[fit.sbatch] job {job} restart 1" in log
    hpc = torch.load(run_dir / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=False)
    saved_step = hpc["global_step"]
    assert 3 <= saved_step < max_steps, saved_step
    _check_resumed_at(run_dir, saved_step, max_steps)
    audits = [json.loads((run_dir / "sample_audit" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [len(a["train"]) for a in audits] == [max_steps - saved_step] * 2  # batches of the 2nd attempt

    # Both attempts logged to the same W&B run (id derived from the job id, resume="allow").
    attempts = sorted((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    run_ids = {p.name.split("-", 3)[-1] for p in attempts}
    assert len(attempts) == 2 and len(run_ids) == 1, attempts
    assert run_ids.pop().endswith(f"-{job}") and run_ids == set()


@pytest.mark.slurm
@pytest.mark.slow
def test_sigterm_saves_last_and_requeues_like_sigusr1(slurm_cluster, synthetic_shards, tmp_path):
    """Preemption / time limit: SLURM sends SIGTERM to the tasks. The run saves last.ckpt at the end of the batch,
    requeues itself (the job is requeueable), and the second attempt resumes at the saved step, not at 0."""
    max_steps = 24
    (tmp_path / "loggers.yaml").write_text(AUDIT_ONLY)
    job = _submit(tmp_path, [*tiny_fit_args(synthetic_shards, max_steps=max_steps, val_every=8),
                             "--config", str(tmp_path / "loggers.yaml")])
    run_dir = tmp_path / "runs" / "lcg_tiny" / f"slurm_{job}"

    _wait(job, tmp_path, lambda: _trained_steps(run_dir, 3), 180, "3 training steps")
    subprocess.run(["scancel", "--signal=TERM", job], check=True, timeout=30)
    saved = re.compile(r"SIGTERM: saved \S+last\.ckpt at step (\d+); stopping")
    _wait(job, tmp_path, lambda: saved.search(_log(tmp_path, job, tail=None)) is not None, 60, "the SIGTERM save")
    _wait(job, tmp_path, lambda: _job_info(job).get("Restarts", "0") != "0", 60, "the requeue")

    _wait(job, tmp_path, lambda: _release_requeued(job), 60, "the release of the requeued job")
    info = _wait_done(job, tmp_path, timeout=240)
    assert info.get("Restarts") == "1"
    log = _log(tmp_path, job, tail=None)
    saved_step = int(saved.search(log).group(1))
    assert 3 <= saved_step < max_steps, saved_step
    assert not list(run_dir.glob("hpc_ckpt_*.ckpt"))  # SIGTERM saved last.ckpt, not an hpc checkpoint
    _check_resumed_at(run_dir, saved_step, max_steps)

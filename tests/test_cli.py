"""The `python -m main` entry point: real fits in subprocesses, config composition, overrides,
--print_config, parser errors naming the key, run directories and config snapshots, help that names
the project's classes, W&B as an optional extra, and CI's Slurm daemons stopped on exit."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ops_runs import REPO, TINY_CONFIG, logged, read_metrics, run_main, tiny_fit_args

sys.path.insert(0, str(REPO))
import main  # noqa: E402


@pytest.mark.slow
def test_fit_writes_checkpoints_losses_and_snapshot_and_reruns_safely(synthetic_shards, tmp_path):
    args = ["fit", *tiny_fit_args(synthetic_shards), "--trainer.logger.init_args.version=fixed"]
    run_main(args, cwd=tmp_path)
    run_dir = tmp_path / "runs" / "lcg_tiny" / "fixed"
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts), ckpts
    rows = read_metrics(run_dir)
    train_loss = logged(rows, "train/loss")
    assert [s for s, _ in train_loss] == [0, 1, 2, 3], train_loss
    assert all(v == v and v > 0 for _, v in train_loss)  # finite, positive
    assert len(logged(rows, "val/loss")) == 2
    snapshot = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert snapshot["trainer"]["max_steps"] == 4
    assert snapshot["model"]["class_path"] == "lightning_modules.lcg_pretrain.LCGPretrainModule"

    # Same run directory again (config.yaml exists), resuming from its last checkpoint with one
    # changed key: no crash, a warning naming the difference, the old snapshot kept.
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = run_main([*args, "--trainer.max_steps=6", f"--ckpt_path={last}"], cwd=tmp_path)
    assert "differs from the snapshot" in proc.stderr and "trainer.max_steps: 4 -> 6" in proc.stderr, proc.stderr[-3000:]
    assert len(list(run_dir.glob("config.superseded-*.yaml"))) == 1
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["max_steps"] == 6
    steps = [s for s, _ in logged(read_metrics(run_dir), "train/loss")]
    assert steps[-2:] == [4, 5], steps  # resumed: the global step continued from 4


def test_configs_compose_and_override(synthetic_shards, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("trainer:\n  max_steps: 11\nmodel:\n  init_args:\n    l1_weight: 0.5\n")
    cfg = main.parse_config(
        ["fit", "--config", str(TINY_CONFIG), "--config", str(extra), "--model.init_args.hole_weight=3"]
    ).fit
    assert cfg.trainer.max_steps == 11  # the second file wins
    assert cfg.model.init_args.l1_weight == 0.5
    assert cfg.model.init_args.hole_weight == 3.0  # the command line wins
    assert cfg.model.init_args.known_weight == 0.1  # untouched keys keep the first file's value
    wandb_cfg = main.parse_config(["fit", "--config", str(TINY_CONFIG), "--config", str(REPO / "configs/logger/wandb.yaml")]).fit
    assert wandb_cfg.trainer.logger.class_path == "lightning.pytorch.loggers.WandbLogger"
    assert wandb_cfg.trainer.logger.init_args.project == "restorelab"


def test_print_config_prints_the_resolved_config(tmp_path):
    proc = run_main(["fit", "--config", str(TINY_CONFIG), "--model.init_args.l1_weight=0.25", "--print_config"], cwd=tmp_path, timeout=120)
    printed = yaml.safe_load(proc.stdout)
    assert printed["model"]["init_args"]["l1_weight"] == 0.25
    # best-on-val/loss by ModelCheckpoint; last.ckpt (newest state) by LastCheckpoint, independent of val/loss
    assert printed["checkpoint"]["monitor"] == "val/loss" and printed["checkpoint"]["save_last"] is False
    assert printed["last_checkpoint"]["every_n_minutes"] == 30.0 and printed["last_checkpoint"]["on_validation_end"] is True


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("--model.init_args.no_such_weight=1", "no_such_weight"),
        ("--model.init_args.l1_weight=heavy", "l1_weight"),
        ("--trainer.max_steps=many", "trainer.max_steps"),
        ("--data.init_args.resolutoin=32", "resolutoin"),
    ],
)
def test_bad_keys_and_types_name_the_key(override, named):
    with pytest.raises(main.ConfigError) as err:
        main.parse_config(["fit", "--config", str(TINY_CONFIG), override])
    assert named in str(err.value), str(err.value)


def test_bad_key_from_the_command_line_exits_with_the_parser_message(tmp_path):
    proc = run_main(["fit", "--config", str(TINY_CONFIG), "--model.init_args.no_such_weight=1"], cwd=tmp_path, check=False, timeout=120)
    assert proc.returncode == 2
    assert "no_such_weight" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_devices_not_matching_slurm_tasks_is_explained(synthetic_shards, tmp_path):
    # The variables srun sets for a 1-node job with --ntasks-per-node=2 (task 0 of 2).
    slurm = dict(
        SLURM_JOB_ID="4242", SLURM_JOB_NAME="fit", SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="2", SLURM_NNODES="1",
        SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NODELIST="localhost",
    )
    proc = run_main(
        ["fit", *tiny_fit_args(synthetic_shards), "--trainer.devices=1"], cwd=tmp_path, check=False, timeout=120, **slurm
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "--ntasks-per-node=2" in proc.stderr and "--trainer.devices=$SLURM_NTASKS_PER_NODE" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_wandb_goes_offline_without_credentials(tmp_path):
    env = {"HOME": str(tmp_path)}
    assert main.configure_wandb_mode(env) == "offline" and env["WANDB_MODE"] == "offline"
    assert main.configure_wandb_mode({"WANDB_API_KEY": "x"}) is None
    assert main.configure_wandb_mode({"WANDB_MODE": "disabled"}) is None
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    os.chmod(netrc, 0o600)
    assert main.configure_wandb_mode({"NETRC": str(netrc)}) is None


def test_slurm_run_identity_is_the_job_id():
    cfg = main.parse_config(["fit", "--config", str(TINY_CONFIG), "--config", str(REPO / "configs/logger/wandb.yaml")]).fit
    run_dir = main.pin_slurm_run(cfg, "77", cluster="c1")
    assert cfg.trainer.logger.init_args.id == "slurm-c1-77" and cfg.trainer.logger.init_args.resume == "allow"
    assert run_dir == Path("runs/restorelab/slurm-c1-77") and cfg.trainer.default_root_dir == str(run_dir)
    csv_cfg = main.parse_config(["fit", "--config", str(TINY_CONFIG)]).fit
    assert main.pin_slurm_run(csv_cfg, "77_3") == Path("runs/lcg_tiny/slurm_77_3")
    assert main.slurm_job_tag({"SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "5", "SLURM_ARRAY_TASK_ID": "2"}) == "5_2"
    assert main.slurm_job_tag({"SLURM_JOB_ID": "9", "SLURM_JOB_NAME": "interactive"}) is None


@pytest.mark.slow
def test_wandb_offline_run_records_config_checkpoints_and_images(synthetic_shards, tmp_path):
    pytest.importorskip("wandb", reason='W&B is an optional extra: pip install -e ".[wandb]"')
    run_main(
        ["fit", *tiny_fit_args(synthetic_shards), "--config", str(REPO / "configs" / "logger" / "wandb.yaml")],
        cwd=tmp_path, WANDB_MODE="offline",
    )
    (offline,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    run_id = offline.name.rsplit("-", 1)[-1]
    run_dir = tmp_path / "runs" / "restorelab" / run_id  # {save_dir}/{project}/{run id}
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    # The run's record log (what `wandb sync` uploads) holds the resolved config under "cli" and
    # the summary entries with the config and checkpoint paths.
    records = next(offline.glob("run-*.wandb")).read_bytes()
    assert b"\n\x03cli" in records and b'"max_steps":4' in records
    for key in (b"config_path", b"checkpoints/best", b"checkpoints/last", b"run_dir"):
        assert key in records, key
    # the summary names this run's own last.ckpt (relative to the run's working directory, as the logger saw it)
    assert b"runs/restorelab/" + run_id.encode() + b"/checkpoints/last.ckpt" in records
    # Image grids went to W&B as images.
    assert list((offline / "files" / "media" / "images").rglob("*.png"))


# ----------------------------------------------------------------------------- help and short class names
PROJECT_MODULES = ("LCGPretrainModule", "C2FDiffusionModule", "HFGIModule", "RippleRemovalEvaluator", "InpaintingEvaluator")
PROJECT_DATAMODULES = ("ShardDataModule", "ImageFilesDataModule", "EvalDataModule")


def test_main_help_says_what_restorelab_does_and_lists_the_jobs(tmp_path):
    proc = run_main(["--help"], cwd=tmp_path, timeout=120)
    assert proc.stdout.startswith("usage: python -m main "), proc.stdout[:300]
    assert "main.py" not in proc.stdout and "Lightning Trainer command line tool" not in proc.stdout
    assert "C2F diffusion inpainting" in proc.stdout and "HFGI" in proc.stdout
    for job, config in (("fit", "configs/quickstart.yaml"), ("validate", "--ckpt_path"),
                        ("test", "configs/eval/places2_mat_large.yaml"), ("predict", "configs/c2f/predict.yaml")):
        assert f"\n  {job} " in proc.stdout and config in proc.stdout, (job, config)
    for name in ("csv", "tensorboard", "wandb"):  # every logger config the help points to exists
        assert (REPO / "configs" / "logger" / f"{name}.yaml").is_file()
    for path in ("configs/quickstart.yaml", "configs/lcg/tiny.yaml", "configs/c2f/tiny.yaml", "configs/hfgi/tiny.yaml",
                 "configs/eval/places2_mat_large.yaml", "configs/ripple/tiny.yaml", "configs/c2f/predict.yaml"):
        assert path in proc.stdout.replace("\n", " ") and (REPO / path).is_file(), path


def test_fit_help_lists_the_project_modules_and_data_modules(tmp_path):
    proc = run_main(["fit", "--help"], cwd=tmp_path, timeout=120)
    flat = "".join(proc.stdout.split())  # argparse wraps long class paths mid-word
    model_help = flat[flat.index("foranysubclassofLightningModule."):flat.index("foranysubclassofLightningDataModule.")]
    data_help = flat[flat.index("foranysubclassofLightningDataModule."):]
    data_help = data_help[:data_help.index("--", 2)]
    for name in PROJECT_MODULES:
        assert f".{name}" in model_help, name
    for name in PROJECT_DATAMODULES:
        assert f".{name}" in data_help, name


@pytest.mark.parametrize(("option", "name", "expected"), [
    ("--model.help", "C2FDiffusionModule", "--model.resolutions"),
    ("--data.help", "ShardDataModule", "--data.train_shards"),
])
def test_class_help_takes_short_class_names(tmp_path, option, name, expected):
    proc = run_main(["fit", option, name], cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expected in proc.stdout and "usage: python -m main" in proc.stdout, proc.stdout[:1000]


def test_short_class_names_in_configs_and_on_the_command_line(tmp_path):
    config = tmp_path / "short.yaml"
    config.write_text(
        "model:\n  class_path: LCGPretrainModule\n"
        "data:\n  class_path: ShardDataModule\n"
        "trainer:\n  callbacks:\n    - class_path: ImageLogger\n      init_args: {max_images: 1}\n"
    )
    cfg = main.parse_config(["fit", "--config", str(TINY_CONFIG), "--config", str(config)]).fit
    assert cfg.model.class_path == "lightning_modules.lcg_pretrain.LCGPretrainModule"
    assert cfg.data.class_path == "datamodules.ShardDataModule"
    assert [c.class_path for c in cfg.trainer.callbacks] == ["callbacks.image_logger.ImageLogger"]
    proc = run_main(["fit", "--config", str(TINY_CONFIG), "--trainer.logger", "TensorBoardLogger", "--print_config"],
                    cwd=tmp_path, timeout=120)
    assert yaml.safe_load(proc.stdout)["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.TensorBoardLogger"


# ----------------------------------------------------------------------------- W&B is optional
@pytest.fixture
def without_wandb(tmp_path):
    """A PYTHONPATH entry whose sitecustomize makes ``import wandb`` fail, as in an install without the extra."""
    site = tmp_path / "no_wandb"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None  # as if not installed\n")
    return f"{site}{os.pathsep}{REPO}"


@pytest.mark.slow
def test_without_wandb_a_wandb_config_names_the_extra_and_csv_runs_work(synthetic_shards, tmp_path, without_wandb):
    wandb_logger = ["--config", str(REPO / "configs" / "logger" / "wandb.yaml")]
    proc = run_main(["fit", *tiny_fit_args(synthetic_shards), *wandb_logger], cwd=tmp_path, check=False, timeout=120,
                    PYTHONPATH=without_wandb)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'pip install -e ".[wandb]"' in proc.stderr and "WandbLogger" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # it stopped before building anything

    run_main(["fit", *tiny_fit_args(synthetic_shards, max_steps=2), "--trainer.logger.init_args.version=csv"], cwd=tmp_path,
             PYTHONPATH=without_wandb)
    run_dir = tmp_path / "runs" / "lcg_tiny" / "csv"
    assert [s for s, _ in logged(read_metrics(run_dir), "train/loss")] == [0, 1]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    probe = subprocess.run([sys.executable, "-c", "import wandb"], env={**os.environ, "PYTHONPATH": without_wandb},
                           capture_output=True, text=True)
    assert probe.returncode != 0  # the simulation really hides wandb


# ----------------------------------------------------------------------------- CI stops its Slurm daemons
def _sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


def _gone(proc: subprocess.Popen, timeout: float = 15.0) -> bool:
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def test_slurm_up_down_stops_only_the_daemons_it_recorded(tmp_path):
    started, before, reused = _sleeper(), _sleeper(), _sleeper()
    try:
        pidfile = tmp_path / "pids"
        # "started" was recorded by slurm_up.sh; "reused" is recorded under another program's name
        # (its pid now belongs to something else); "before" was never recorded (it ran before CI).
        pidfile.write_text(f"sleep {started.pid}\nslurmd {reused.pid}\n")
        proc = subprocess.run(["bash", str(REPO / ".ci" / "slurm_up.sh"), "--down", str(pidfile)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert _gone(started), "the recorded daemon is still running"
        assert before.poll() is None and reused.poll() is None, "a daemon that CI did not start was stopped"
    finally:
        for p in (started, before, reused):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


FAKE_SLURM_UP = """#!/usr/bin/env bash
# stands in for .ci/slurm_up.sh: "starts" a daemon (a sleep) and records it as the real one does
set -euo pipefail
if [ "${1:-}" = --down ]; then exec bash "$REAL_SLURM_UP" --down "$2"; fi
setsid sleep 300 </dev/null >/dev/null 2>&1 &
echo "sleep $!" >> "$SLURM_UP_PIDFILE"
echo $! > "$FAKE_DAEMON_PID"
"""
FAKE_TOOL = """#!/usr/bin/env bash
# python3 -m venv DIR | python -m pip ... | pip ... | python -m pytest ... (exit $PYTEST_RC)
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; echo 'export PATH="$PATH"' > "$3/bin/activate"; exit 0; fi
if [ "$1 $2" = "-m pytest" ]; then exit "$PYTEST_RC"; fi
exit 0
"""


@pytest.mark.parametrize("pytest_rc", [0, 3])
def test_ci_run_stops_the_daemons_it_started_on_success_and_failure(tmp_path, pytest_rc):
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", repo / ".ci" / "run")
    (repo / ".ci" / "slurm_up.sh").write_text(FAKE_SLURM_UP)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python3", "python", "pip"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    before = _sleeper()
    daemon_pid = tmp_path / "daemon.pid"
    try:
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTEST_RC": str(pytest_rc),
               "REAL_SLURM_UP": str(REPO / ".ci" / "slurm_up.sh"), "FAKE_DAEMON_PID": str(daemon_pid), "TMPDIR": str(tmp_path)}
        proc = subprocess.run(["bash", str(repo / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == pytest_rc, proc.stdout + proc.stderr  # the exit status survives the cleanup
        pid = int(daemon_pid.read_text())
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the daemon .ci/run started (pid {pid}) still runs after it exited")
        assert "stopping sleep" in proc.stdout
        assert before.poll() is None, "a process running before .ci/run was stopped"
        assert not list(tmp_path.glob("restorelab-ci-daemons.*")), "the pid file was left behind"
    finally:
        if before.poll() is None:
            os.kill(before.pid, signal.SIGKILL)
            before.wait()
        if daemon_pid.is_file():  # a run that failed to stop its daemon must not leave it to the next test
            pid = int(daemon_pid.read_text())
            if Path(f"/proc/{pid}/comm").is_file() and Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize(("extra", "expected"), [
    (["--config", "{bad}"], r"^error: {bad}:3:6: invalid YAML: expected ',' or '\]', but got ':' \(while parsing a flow sequence at line 2, column 14\)$"),
    (["--config", "{tmp}/absent.yaml"], r"^error: Parser key \"config\": File does not exist: '.*absent.yaml'$"),
    (["--config", "configs/lcg/tiny.yaml", "--data.init_args.synthetic_dir=null", "--data.init_args.train_shards={tmp}/none-{{000..001}}.tar"],
     r"^error: train_shards: 2 shard file\(s\) of '.*none-\{000..001\}.tar' do not exist: .*none-000.tar, .*none-001.tar; check the path"),
    (["--config", "configs/lcg/tiny.yaml", "--data.init_args.resolution=-5"],
     r"^error: invalid configuration: resolution=-5 is too small; use at least 8 pixels$"),
], ids=["bad-yaml", "missing-config", "missing-data", "bad-value"])
def test_config_and_input_errors_print_one_error_line_and_exit_2(tmp_path, extra, expected):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_steps: [1\n  foo: 2\n")
    args = [a.format(bad=bad, tmp=tmp_path) for a in extra]
    proc = run_main(["fit", *args, "--trainer.max_steps=1", f"--trainer.logger.init_args.save_dir={tmp_path}"], cwd=REPO, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert re.search(expected.replace("{bad}", re.escape(str(bad))), last), last

"""The `python -m main` entry point: real fits in subprocesses, config composition, overrides,
--print_config, parser errors naming the key, run directories and config snapshots."""
from __future__ import annotations

import os
import sys
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
    assert printed["checkpoint"]["monitor"] == "val/loss" and printed["checkpoint"]["save_last"] is True


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
    assert str(run_dir / "checkpoints" / "last.ckpt").encode() in records or b"last.ckpt" in records
    # Image grids went to W&B as images.
    assert list((offline / "files" / "media" / "images").rglob("*.png"))

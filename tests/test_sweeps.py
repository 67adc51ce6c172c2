"""Sweep files: expanded exactly as `wandb agent` would (wandb's own helpers) and parsed with the
project's CLI parser; bad parameters are caught offline."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from ops_runs import REPO, main_env

sys.path.insert(0, str(REPO))
from sweeps.check import SweepError, check_sweep, expand_command, load_sweep  # noqa: E402

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def test_both_sweeps_exist():
    assert {p.name for p in SWEEPS} >= {"guidance_gains.yaml", "loss_weights.yaml"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_expands_and_parses(path, monkeypatch):
    monkeypatch.chdir(REPO)  # the agent runs from the repository root; config paths are relative to it
    runs = check_sweep(path)
    sweep = load_sweep(path)
    assert sweep["metric"]["name"].startswith("val/") and sweep["metric"]["goal"] == "minimize"
    listed = [len(spec["values"]) - 1 for spec in sweep["parameters"].values() if "values" in spec]
    assert len(runs) >= 1 + sum(listed)  # every listed value was parsed at least once
    for run in runs:
        assert run.argv[:4] == ["/usr/bin/env", "python", "-m", "main"] and run.main_args[0] == "fit"
        for name, value in run.parameters.items():
            assert f"--{name}={value}" in run.argv  # one argv element per parameter, as the agent passes it


def test_guidance_gains_targets_the_c2f_list():
    sweep = load_sweep(REPO / "sweeps" / "guidance_gains.yaml")
    gains = sweep["parameters"]["model.init_args.guidance_gains"]["values"]
    argv = expand_command(sweep, {"model.init_args.guidance_gains": gains[0]})
    assert f"--model.init_args.guidance_gains={gains[0]}" in argv
    assert all(len(g) == 3 for g in gains)  # one gain per stage of configs/c2f/tiny.yaml
    config = yaml.safe_load((REPO / "configs" / "c2f" / "tiny.yaml").read_text())
    assert len(config["model"]["init_args"]["resolutions"]) == 3


def _write_sweep(tmp_path, parameters: dict, metric: str = "val/noise"):
    sweep = yaml.safe_load((REPO / "sweeps" / "loss_weights.yaml").read_text())
    sweep["parameters"] = parameters
    sweep["metric"]["name"] = metric
    sweep["command"] = [str(c).replace("configs/", f"{REPO}/configs/") for c in sweep["command"]]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_parameter_that_is_not_a_config_key_is_caught(tmp_path):
    path = _write_sweep(tmp_path, {"model.init_args.l1_wieght": {"values": [0.1]}})
    with pytest.raises(SweepError) as err:
        check_sweep(path)
    message = str(err.value)
    assert "sweep parameter(s) model.init_args.l1_wieght rejected" in message
    assert "l1_wieght" in message.split("\n", 2)[-1]  # the parser's own message names the key too


def test_parameter_of_the_wrong_type_is_caught(tmp_path):
    path = _write_sweep(tmp_path, {"model.init_args.l1_weight": {"values": [0.1, "strong"]}})
    with pytest.raises(SweepError, match="l1_weight"):
        check_sweep(path)


def test_metric_must_be_a_logged_name(tmp_path):
    path = _write_sweep(tmp_path, {"model.init_args.l1_weight": {"values": [0.1]}}, metric="noise")
    with pytest.raises(SweepError, match="metric.name"):
        check_sweep(path)


def test_command_line_reports_the_bad_parameter(tmp_path):
    path = _write_sweep(tmp_path, {"trainer.max_stepz": {"values": [5]}})
    proc = subprocess.run(
        [sys.executable, "-m", "sweeps.check", str(path)], cwd=REPO, env=main_env(),
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1 and "FAIL" in proc.stderr and "trainer.max_stepz" in proc.stderr, proc.stderr[-2000:]


def test_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("method: grid\nmetric: {name: val/loss\n  goal: minimize\nparameters: {}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sweeps.check", str(path)], cwd=REPO, env=main_env(),
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"error: {path}:3:7: invalid YAML: expected ',' or '}}', but got ':' (while parsing a flow mapping at line 2, column 9)"
    ), proc.stderr

"""Check a W&B sweep file offline: expand its ``command`` the way ``wandb agent`` does, for sample
parameter values, and parse every resulting ``python -m main`` command line with the project's CLI
parser (``main.parse_config``). No network, no W&B account, nothing is trained.

    python -m sweeps.check sweeps/guidance_gains.yaml [sweeps/loss_weights.yaml ...]

Catches: a parameter that is not a config key (a typo, a renamed argument), a value of the wrong
type, a missing ``--config`` file, a metric that is not a ``val/``/``train/``/``test/`` name, a
``command`` that does not run ``python -m main <subcommand>``.
"""
from __future__ import annotations

import argparse
import logging
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.config_files import ConfigFileError, read_yaml

# The agent's macro values for a command-line sweep (wandb/wandb_agent.py, Agent._command_run).
AGENT_MACROS = {"env": ["/usr/bin/env"], "interpreter": ["python"]}
METRIC_PREFIXES = ("val/", "train/", "test/")


class SweepError(ValueError):
    """A sweep file that cannot work; the message names the file and what to fix."""


class SweepFileError(SweepError):
    """A sweep file that cannot be read (missing, not YAML, not a mapping); the message is one line."""


@dataclass
class ExpandedRun:
    """One sample run of a sweep.

    Args:
        parameters: The sampled value of every sweep parameter.
        argv: The command the agent would start, macros expanded.
        main_args: The part after ``python -m main`` (subcommand first).
    """

    parameters: dict[str, Any]
    argv: list[str]
    main_args: list[str]


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read a sweep YAML and check its top-level structure.

    Args:
        path: The sweep file.

    Returns:
        The sweep configuration.

    Raises:
        SweepError: Missing ``command``/``parameters``/``metric`` or a metric name outside the
            project's ``val/...`` style.
    """
    path = Path(path)
    if not path.is_file():
        raise SweepFileError(f"{path}: no such sweep file")
    try:
        sweep = read_yaml(path) or {}
    except ConfigFileError as err:
        raise SweepFileError(str(err)) from None
    if not isinstance(sweep, dict):
        raise SweepFileError(f"{path}: a sweep file is a YAML mapping (method, metric, parameters, command), not a {type(sweep).__name__}")
    for key in ("method", "metric", "parameters", "command"):
        if key not in sweep:
            raise SweepError(f"{path}: the sweep has no {key!r} entry")
    metric = sweep["metric"]
    if not isinstance(metric, dict) or not str(metric.get("name", "")).startswith(METRIC_PREFIXES):
        raise SweepError(
            f"{path}: metric.name must be a logged metric such as 'val/loss' (docs/conventions.md), got {metric!r}"
        )
    if metric.get("goal") not in ("minimize", "maximize"):
        raise SweepError(f"{path}: metric.goal must be 'minimize' or 'maximize', got {metric.get('goal')!r}")
    if not isinstance(sweep["command"], list) or "${args}" not in sweep["command"] and not any(
        str(c).startswith("${args") for c in sweep["command"]
    ):
        raise SweepError(f"{path}: 'command' must be a list that contains ${{args}} (the sampled parameters)")
    return sweep


def _sample_values(name: str, spec: dict[str, Any]) -> list[Any]:
    """Representative values of one parameter: every listed value, or the ends of a range."""
    if not isinstance(spec, dict):
        raise SweepError(f"parameter {name!r}: expected a mapping with value/values/min+max, got {spec!r}")
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        if not spec["values"]:
            raise SweepError(f"parameter {name!r}: 'values' is empty")
        return list(spec["values"])
    if "parameters" in spec:  # nested parameters: the value is a dict
        nested = {k: _sample_values(f"{name}.{k}", v) for k, v in spec["parameters"].items()}
        return [dict(zip(nested, combo)) for combo in itertools.product(*(vals[:1] for vals in nested.values()))]
    if "min" in spec and "max" in spec:
        lo, hi = spec["min"], spec["max"]
        if lo > hi:
            raise SweepError(f"parameter {name!r}: min={lo} > max={hi}")
        return [lo, hi]
    raise SweepError(f"parameter {name!r}: give 'value', 'values', 'parameters' or 'min' and 'max' ({spec!r})")


def sample_parameters(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """Parameter sets covering every sample value at least once (others at their first value)."""
    values = {name: _sample_values(name, spec) for name, spec in sweep["parameters"].items()}
    base = {name: vals[0] for name, vals in values.items()}
    sets = [dict(base)]
    for name, vals in values.items():
        for v in vals[1:]:
            sets.append({**base, name: v})
    return sets


def expand_command(sweep: dict[str, Any], parameters: dict[str, Any]) -> list[str]:
    """The argv ``wandb agent`` would start for ``parameters``, built with wandb's own helpers.

    Args:
        sweep: The sweep configuration.
        parameters: One value per sweep parameter.

    Returns:
        The expanded command.
    """
    try:
        from wandb.sdk.launch.sweeps import utils as sweep_utils
    except ImportError:
        raise ImportError(
            "checking a W&B sweep needs wandb, an optional extra: pip install -e \".[wandb]\" (or pip install wandb)"
        ) from None

    command = sweep_utils.create_sweep_command(list(sweep["command"]))
    sweep_vars = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in parameters.items()}})
    sweep_vars.update(AGENT_MACROS)
    sweep_vars["program"] = [str(sweep.get("program", ""))]
    sweep_vars["args_json_file"] = ["wandb/sweep-check/config.json"]
    argv: list[str] = []
    for chunk in command:
        chunk = str(chunk)
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += sweep_vars.get(chunk[2:-1]) or []
        else:
            argv.append(chunk)
    return argv


def main_arguments(argv: list[str]) -> list[str]:
    """The arguments given to the project's entry point in ``argv`` (``-m main ...`` or ``main.py ...``).

    Raises:
        SweepError: ``argv`` does not run the entry point.
    """
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1] == "main":
            return argv[i + 2 :]
        if Path(arg).name == "main.py":
            return argv[i + 1 :]
    raise SweepError(f"the command {' '.join(argv)!r} does not run `python -m main <subcommand> ...`")


def check_sweep(path: str | Path) -> list[ExpandedRun]:
    """Expand and parse every sample run of a sweep file.

    Args:
        path: The sweep file.

    Returns:
        The expanded runs (all parsed successfully).

    Raises:
        SweepError: The first problem found, naming the parameter and the parser's message.
    """
    from main import ConfigError, parse_config

    sweep = load_sweep(path)
    runs = []
    for parameters in sample_parameters(sweep):
        argv = expand_command(sweep, parameters)
        args = main_arguments(argv)
        try:
            parse_config(args)
        except ConfigError as err:
            message = str(err)
            culprits = [name for name in parameters if name in message or name.split(".")[-1] in message]
            hint = (
                f"sweep parameter(s) {', '.join(culprits)} rejected"
                if culprits
                else "the command was rejected"
            )
            raise SweepError(
                f"{path}: {hint}; sweep parameters must be config keys of `python -m main` "
                f"(see `python -m main {args[0]} --config ... --print_config`).\n"
                f"command: {' '.join(argv)}\n{message}"
            ) from None
        runs.append(ExpandedRun(parameters, argv, args))
    return runs


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m sweeps.check``; returns the exit status.

    0: every sweep parses; 1: a sweep was checked and failed (``FAIL ...``); 2: a sweep file could not be
    read (``error: file:line:column: ...``: missing, invalid YAML, not a mapping).
    """
    parser = argparse.ArgumentParser(prog="python -m sweeps.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", help="sweep YAML files")
    options = parser.parse_args(argv)
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)  # "Seed set to 0" per run
    status = 0
    for path in options.sweeps:
        try:
            runs = check_sweep(path)
        except SweepFileError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 2
            continue
        except SweepError as err:
            print(f"FAIL {err}", file=sys.stderr)
            status = max(status, 1)
            continue
        print(f"ok   {path}: {len(runs)} sample run(s) parse, e.g.\n     {' '.join(runs[-1].argv)}")
    return status


if __name__ == "__main__":
    sys.exit(main())

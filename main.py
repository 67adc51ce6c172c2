"""restorelab entry point: ``python -m main {fit,validate,test,predict} --config configs/x.yaml``.

Every LightningModule and LightningDataModule of the project is chosen by
``class_path`` in the config (LightningCLI subclass mode). Several ``--config``
files compose left to right; ``--model.init_args.x=v`` overrides one value;
``--print_config`` prints the resolved config.

Runs: each run gets its own directory ``{save_dir}/{name}/{version}`` (see
``callbacks.run_directory``) holding ``config.yaml`` (the resolved config) and
``checkpoints/``. Under SLURM the version is the job id: on SIGUSR1 the
``SlurmRequeue`` callback saves ``hpc_ckpt_<n>.ckpt`` there and requeues the job,
which reopens the same directory and resumes from it; with W&B the run id is
derived from the job id too (same W&B run).
Without a W&B API key, W&B logs offline (``WANDB_MODE=offline``).
See docs/scaling.md.
"""
from __future__ import annotations

import contextlib
import datetime
import io
import netrc
import os
import sys
import warnings
from pathlib import Path
from importlib.metadata import version as _package_version
from typing import Any
from urllib.parse import urlparse

import torch
import yaml
from jsonargparse import Namespace
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from callbacks.run_directory import run_directory
from callbacks.slurm_requeue import SlurmRequeue
from callbacks.wandb_checkpoint_record import WandbCheckpointRecord

# Keys that legitimately change between a run and its resumption (not reported as differences).
_RESUME_IGNORED_KEYS = ("config", "ckpt_path")
_jsonargparse_version = tuple(int(p) for p in _package_version("jsonargparse").split(".")[:2])
# Keep None values in dumps (jsonargparse renamed skip_none to skip_unset in 4.49).
_KEEP_NONE = {"skip_unset": False} if _jsonargparse_version >= (4, 49) else {"skip_none": False}


class SlurmTaskMismatchError(ValueError):
    """The SLURM allocation and ``--trainer.devices`` / ``--trainer.num_nodes`` disagree."""


def configure_wandb_mode(environ: dict[str, str] | None = None) -> str | None:
    """Default W&B to offline when no API key is configured.

    Sets ``WANDB_MODE=offline`` when ``WANDB_MODE`` is unset, ``WANDB_API_KEY`` is unset and the
    netrc file has no entry for the W&B host (``WANDB_BASE_URL``, default ``api.wandb.ai``).
    Offline runs are uploaded later with ``wandb sync <save_dir>/wandb/offline-run-*``.

    Args:
        environ: The environment to read and update (default ``os.environ``).

    Returns:
        The mode that was set, or ``None`` when the environment was left as it was.
    """
    env = os.environ if environ is None else environ
    if env.get("WANDB_MODE") or env.get("WANDB_API_KEY"):
        return None
    host = urlparse(env.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        netrc_path = env.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
        if os.path.isfile(netrc_path) and netrc.netrc(netrc_path).authenticators(host):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    env["WANDB_MODE"] = "offline"
    return "offline"


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


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    if isinstance(tree, list) and any(isinstance(v, (dict, list)) for v in tree):
        out = {}
        for i, value in enumerate(tree):
            out.update(_flatten(value, f"{prefix}{i}."))
        return out or {prefix[:-1]: []}
    return {prefix[:-1]: tree}


def config_differences(old: dict, new: dict, ignore: tuple[str, ...] = _RESUME_IGNORED_KEYS) -> list[str]:
    """Human-readable differences between two resolved configs, one ``key: old -> new`` per line.

    Args:
        old: The saved snapshot (parsed YAML).
        new: The config of the current run (parsed YAML).
        ignore: Top-level keys not compared (config file list, ``ckpt_path``).

    Returns:
        The differences, sorted by key; empty when the configs agree.
    """
    flat_old = {k: v for k, v in _flatten(old).items() if k.split(".")[0] not in ignore}
    flat_new = {k: v for k, v in _flatten(new).items() if k.split(".")[0] not in ignore}
    missing = object()
    lines = []
    for key in sorted(set(flat_old) | set(flat_new)):
        a, b = flat_old.get(key, missing), flat_new.get(key, missing)
        if a != b:
            a_txt = "(absent)" if a is missing else repr(a)
            b_txt = "(absent)" if b is missing else repr(b)
            lines.append(f"{key}: {a_txt} -> {b_txt}")
    return lines


class RunConfigSnapshot(SaveConfigCallback):
    """Save the resolved config as ``config.yaml`` in the run directory and record it on W&B.

    Never fails because a snapshot exists: when the run directory already has one (a requeued
    SLURM job, a rerun with a fixed ``version``) or the checkpoint being resumed from sits next to
    one, the new config is compared with it and a warning names every differing key; the old
    snapshot is kept as ``config.superseded-<UTC time>.yaml`` when they differ. On W&B runs the
    resolved config goes to ``run.config["cli"]`` and its path to ``run.summary["config_path"]``.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        run_dir = run_directory(trainer)
        if trainer.is_global_zero:
            run_dir.mkdir(parents=True, exist_ok=True)
            path = run_dir / self.config_filename
            new = yaml.safe_load(self.parser.dump(self.config, **_KEEP_NONE))
            self._compare_with_snapshots(path, new)
            if path.is_file() and config_differences(yaml.safe_load(path.read_text()) or {}, new, ignore=()):
                stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
                path.rename(path.with_name(f"config.superseded-{stamp}.yaml"))
            self.parser.save(self.config, str(path), overwrite=True, multifile=self.multifile, **_KEEP_NONE)
            self._record_on_loggers(trainer, path, new)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def _compare_with_snapshots(self, path: Path, new: dict) -> None:
        candidates = [path]
        ckpt_path = self.config.get("ckpt_path")
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry") and os.path.isfile(ckpt_path):
            ckpt_dir = Path(ckpt_path).resolve().parent
            candidates += [ckpt_dir / self.config_filename, ckpt_dir.parent / self.config_filename]
        seen: set[Path] = set()
        for snapshot in candidates:
            if not snapshot.is_file() or snapshot.resolve() in seen:
                continue
            seen.add(snapshot.resolve())
            old = yaml.safe_load(snapshot.read_text()) or {}
            diffs = config_differences(old, new)
            if diffs:
                warnings.warn(
                    f"Resuming/rerunning with a config that differs from the snapshot {snapshot}:\n  "
                    + "\n  ".join(diffs)
                    + "\nIf this is not intended, rerun with the saved config: --config "
                    f"{snapshot}.",
                    UserWarning,
                    stacklevel=2,
                )
            return

    def _record_on_loggers(self, trainer: Trainer, path: Path, resolved: dict) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                run = logger.experiment
                run.config.update({"cli": resolved}, allow_val_change=True)
                run.summary.update({"config_path": str(path.resolve())})


class RestoreLabCLI(LightningCLI):
    """LightningCLI with the project's defaults.

    Checkpoints (last + best on ``val/loss``), LR monitor, a run directory per run with the config
    snapshot, SLURM-stable run identity (requeue resumes), W&B offline without an API key.
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.filename": "best-{epoch:03d}-{step:07d}",
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})

    def before_instantiate_classes(self) -> None:
        if torch.cuda.is_available():
            torch.set_float32_matmul_precision("high")
        configure_wandb_mode()
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        job_tag = slurm_job_tag()
        if job_tag is not None and SLURMEnvironment.detect():
            self._check_slurm_tasks(cfg)
            run_dir = pin_slurm_run(cfg, job_tag, os.environ.get("SLURM_CLUSTER_NAME"))
            self._resume_after_node_failure(cfg, run_dir)
            if run_dir is not None and os.environ.get("SLURM_PROCID", "0") == "0":
                keep_previous_metrics(run_dir)

    def _resume_after_node_failure(self, cfg: Namespace, run_dir: Path | None) -> None:
        """A job requeued without SIGUSR1 (node failure, preemption) has no hpc checkpoint: resume
        from the run's ``last.ckpt`` instead of starting over."""
        if self.subcommand != "fit" or run_dir is None or cfg.get("ckpt_path") is not None:
            return
        if any(run_dir.glob("hpc_ckpt_*.ckpt")):
            return  # Lightning resumes from it by itself
        last = run_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            cfg.ckpt_path = str(last)

    @staticmethod
    def _slurm_mismatch(lightning_message: str) -> SlurmTaskMismatchError:
        ntasks = os.environ.get("SLURM_NTASKS_PER_NODE", "?")
        nnodes = os.environ.get("SLURM_NNODES", "?")
        return SlurmTaskMismatchError(
            f"{lightning_message}\nThe SLURM job runs {ntasks} task(s) per node on {nnodes} node(s), and "
            "Lightning needs exactly one task per device. Either pass --trainer.devices=$SLURM_NTASKS_PER_NODE "
            "--trainer.num_nodes=$SLURM_NNODES (slurm/fit.sbatch does), or submit with --ntasks-per-node equal "
            "to --trainer.devices (and --gpus-per-node the same on GPUs), e.g. "
            "python -m slurm.submit fit --config ... --gpus-per-node N."
        )

    def _check_slurm_tasks(self, cfg: Namespace) -> None:
        """Fail before building anything when the SLURM tasks cannot match the devices.

        Lightning checks this only when DDP launches (and not at all with ``devices=1``, where every
        task would silently train its own copy of the model).
        """
        ntasks, nnodes = os.environ.get("SLURM_NTASKS_PER_NODE"), os.environ.get("SLURM_NNODES")
        devices, num_nodes = cfg.trainer.get("devices"), cfg.trainer.get("num_nodes") or 1
        if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
            devices = int(devices)
        count = len(devices) if isinstance(devices, (list, tuple)) else devices
        if ntasks is not None and ntasks.isdigit() and isinstance(count, int) and count > 0 and count != int(ntasks):
            raise self._slurm_mismatch(
                f"You set `devices={count}` in Lightning, but the number of tasks per node configured in SLURM "
                f"`--ntasks-per-node={ntasks}` does not match. HINT: Set `devices={ntasks}`."
            )
        if nnodes is not None and nnodes.isdigit() and int(nnodes) != int(num_nodes):
            raise self._slurm_mismatch(
                f"You set `num_nodes={num_nodes}` in Lightning, but the number of nodes configured in SLURM "
                f"`--nodes={nnodes}` does not match. HINT: Set `num_nodes={nnodes}`."
            )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        if SlurmRequeue.job_id() is not None:
            # SIGUSR1 is handled by the SlurmRequeue callback at a step boundary all ranks agree on,
            # not by Lightning inside the signal handler (which can deadlock DDP ranks).
            plugins = self._get(self.config_init, "trainer", default={}).get("plugins") or []
            plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
            if not any(isinstance(p, ClusterEnvironment) for p in plugins):
                kwargs["plugins"] = [*plugins, SLURMEnvironment(auto_requeue=False)]
        return super().instantiate_trainer(**kwargs)

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except ValueError as err:  # Lightning's own check when DDP launches (e.g. devices="auto")
            if "configured in SLURM" in str(err):
                raise self._slurm_mismatch(str(err)) from err
            raise


def _cli_kwargs(args: list[str] | None, run: bool) -> dict[str, Any]:
    return dict(
        model_class=LightningModule,
        datamodule_class=LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults={
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": "runs", "name": "default"},
            },
            "log_every_n_steps": 10,
            "callbacks": [WandbCheckpointRecord(), SlurmRequeue()],
        },
        save_config_callback=RunConfigSnapshot,
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


def cli_main(args: list[str] | None = None, run: bool = True) -> RestoreLabCLI:
    """Build (and by default run) the CLI.

    Args:
        args: Replaces ``sys.argv[1:]`` (tests pass a list).
        run: Run the subcommand; ``False`` only parses and instantiates (then ``args`` has no
            subcommand).

    Returns:
        The CLI object (``.config``, ``.model``, ``.datamodule``, ``.trainer``).
    """
    return RestoreLabCLI(**_cli_kwargs(args, run))


class ConfigError(ValueError):
    """A command line / config that the CLI parser rejects; the message is jsonargparse's."""


class _Parsed(Exception):
    def __init__(self, config: Namespace) -> None:
        super().__init__("parsed")
        self.config = config


class _ParseOnlyCLI(RestoreLabCLI):
    def before_instantiate_classes(self) -> None:
        raise _Parsed(self.config)


def parse_config(args: list[str]) -> Namespace:
    """Parse and type-check a command line exactly as ``python -m main`` would, building nothing.

    No model, data or trainer is instantiated, no file written, nothing downloaded: used by
    ``sweeps.check`` and the tests to validate argument lists cheaply.

    Args:
        args: The arguments after ``python -m main``, starting with the subcommand
            (e.g. ``["fit", "--config", "configs/x.yaml", "--model.init_args.lr=1e-4"]``).

    Returns:
        The parsed config (``Namespace``) of the whole command, subcommand included.

    Raises:
        ConfigError: The parser rejected the arguments (unknown key, wrong type, missing file);
            the message is the parser's, which names the key at fault.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python")
            _ParseOnlyCLI(**_cli_kwargs(list(args), run=True))
    except _Parsed as done:
        return done.config
    except SystemExit as exit_:
        message = captured.getvalue().strip() or f"the parser exited with status {exit_.code}"
        message = message[message.find("error:") :] if "error:" in message else message  # drop the usage
        raise ConfigError(message) from None
    raise ConfigError(f"{' '.join(args)}: no subcommand was run (pass fit, validate, test or predict first)")


if __name__ == "__main__":
    try:
        cli_main()
    except SlurmTaskMismatchError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

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
Without a W&B API key, W&B logs offline (``WANDB_MODE=offline``); W&B is an optional extra
(``pip install -e ".[wandb]"``). See docs/scaling.md.

Short class names work wherever a class is chosen (``--model C2FDiffusionModule``,
``--data.help ShardDataModule``, ``class_path: ImageLogger``): the project's packages are imported
before the parser is built, so jsonargparse knows their subclasses.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import netrc
import os
import pkgutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from jsonargparse import DefaultHelpFormatter, Namespace
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.exceptions import SIGTERMException

from callbacks.checkpoint_io import SafeCheckpointIO
from callbacks.data_health import SkippedSampleMonitor
from callbacks.finite_loss_guard import FiniteLossGuard, NonFiniteLossError
from callbacks.prediction_writer import OutputDirError
from callbacks.last_checkpoint import LastCheckpoint
from callbacks.loss_curves import LossCurves
from callbacks.run_config_snapshot import RunConfigSnapshot, config_differences
from callbacks.run_announcement import RunAnnouncement
from callbacks.slurm_requeue import SlurmRequeue
from callbacks.stop_on_signal import StopOnSignal, signal_exit_code
from callbacks.step_metrics import StepOnlyMetrics
from callbacks.wandb_checkpoint_record import WandbCheckpointRecord
from cli.checkpoint_args import (
    apply_checkpoint_hparams, explicit_model_keys, newest_training_state, resolve_ckpt_path, run_dir_from_config,
)
from cli.config_files import ConfigFileError, check_config_files
from cli.run_lock import RunLockedError, acquire_run_lock, held_run_locks, release_run_locks
from datamodules.class_list import ClassListError
from safe_io.image_decoding import ImageDecodeError
from datamodules.image_files import PredictInputError
from datamodules.shard_files import ShardError
from evaluation.weights import MissingWeightsError
from networks.checkpoints import CheckpointError, trust_checkpoint
from slurm.run_identity import SlurmTaskMismatchError, keep_previous_metrics, pin_slurm_run, slurm_job_tag

__all__ = [
    "ConfigError", "MissingExtraError", "RestoreLabCLI", "RunConfigSnapshot", "SlurmTaskMismatchError", "cli_main",
    "config_differences", "configure_wandb_mode", "keep_previous_metrics", "parse_config", "pin_slurm_run",
    "slurm_job_tag",
]

#: Packages whose modules are imported before the parser is built, so that jsonargparse resolves the
#: short names of their classes (``--model C2FDiffusionModule``) and lists them as known subclasses.
PROJECT_PACKAGES = ("lightning_modules", "datamodules", "callbacks", "inpainters", "ripple", "evaluation")

DESCRIPTION = """\
restorelab: train and evaluate image-restoration models with PyTorch Lightning:
C2F diffusion inpainting with latent category guidance (LCG), and HFGI GAN-inversion
editing with ripple removal. Every job is a subcommand plus --config files (composed
left to right); --model.init_args.x=v overrides one value, --print_config shows the result.

jobs (main configs):
  fit       train: configs/quickstart.yaml (1-minute CPU demo), configs/lcg/tiny.yaml and
            configs/lcg/places2_256.yaml (LCG pretraining), configs/c2f/tiny.yaml and
            configs/c2f/{places2,ffhq,celebahq}.yaml (C2F diffusion), configs/hfgi/tiny.yaml
            and configs/hfgi/ffhq_1024.yaml (HFGI)
  validate  the validation losses of a checkpoint: a fit config + --ckpt_path runs/.../last.ckpt
  test      evaluations: configs/eval/places2_mat_large.yaml (FID/LPIPS on MAT masks),
            configs/eval/tiny_synthetic.yaml, configs/ripple/tiny.yaml and
            configs/ripple/ffhq_full.yaml (ripple removal after pose edits),
            configs/ripple/pairs.yaml (ripple removal on your own original/edit pairs)
  predict   inpaint a folder: configs/c2f/demo.yaml (the bundled demo model, no other
            argument needed) or configs/c2f/tiny.yaml --config configs/c2f/predict.yaml
            --ckpt_path ...; HFGI edits: configs/hfgi/ffhq_1024.yaml --ckpt_path ...;
            cleaned edits: configs/ripple/pairs.yaml

Add --config configs/logger/{csv,tensorboard,wandb}.yaml to choose the logger. Each run
prints its directory (runs/<name>/<version>: config.yaml, metrics.csv, checkpoints/).
Options of a job: python -m main fit --help; of a class: python -m main fit
--model.help C2FDiffusionModule (also --data.help ShardDataModule). See README.md."""


class _HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's help formatter that keeps the line breaks of the descriptions."""


class RestoreLabArgumentParser(LightningArgumentParser):
    """The CLI's parser: usage lines say ``python -m main`` (also in ``--model.help CLASS``), descriptions keep their layout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prog", "python -m main")
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


class MissingExtraError(RuntimeError):
    """The config uses a component of an optional extra that is not installed (names the pip command)."""


def import_project_classes(packages: tuple[str, ...] = PROJECT_PACKAGES) -> None:
    """Import every module of ``packages`` (so their classes are known by their short names).

    A module that needs a third-party package which is not installed (an optional extra) is
    skipped: its classes then need their full class path, whose import names the missing package.

    Args:
        packages: Top-level package names of the project.
    """
    for name in packages:
        package = importlib.import_module(name)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue
            try:
                importlib.import_module(f"{name}.{info.name}")
            except ModuleNotFoundError as err:
                if err.name is None or err.name.split(".")[0] in packages:
                    raise


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


_LITLOGGER_TIP = "💡 Tip: For seamless cloud logging"


def silence_third_party_notices(environ: dict[str, str] | None = None) -> None:
    """Hide four notices that say nothing about the run; every other warning stays.

    Lightning's litlogger advertisement, torch's ``LeafSpec`` deprecation (raised inside
    Lightning), Lightning's "`srun` is available but not used" hint when no Slurm job is
    running (``SLURM_JOB_ID`` unset), and the CSV logger's "logs directory exists and is not empty;
    previous log files will be deleted" (the run directory holds ``run.lock``, and an earlier
    ``metrics.csv`` is moved aside before the logger starts: nothing is deleted).
    """
    env = os.environ if environ is None else environ
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.prefix == _LITLOGGER_TIP for f in log.filters):
            log.addFilter(_DropMessage(_LITLOGGER_TIP))
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    if not env.get("SLURM_JOB_ID"):
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")


def _logger_class_paths(cfg: Namespace) -> list[str]:
    loggers = cfg.get("trainer", Namespace()).get("logger")
    entries = loggers if isinstance(loggers, (list, tuple)) else [loggers]
    return [str(e.get("class_path")) for e in entries if isinstance(e, (Namespace, dict)) and e.get("class_path")]


def check_wandb_installed(cfg: Namespace) -> None:
    """Fail with the install command when a W&B logger is configured but ``wandb`` is not importable.

    Raises:
        MissingExtraError: names the logger class and ``pip install -e ".[wandb]"``.
    """
    wandb_loggers = [p for p in _logger_class_paths(cfg) if p.rsplit(".", 1)[-1] == "WandbLogger"]
    if not wandb_loggers:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            f"trainer.logger is {wandb_loggers[0]} (e.g. from configs/logger/wandb.yaml), but the wandb package is not "
            'installed. Install the W&B extra: pip install -e ".[wandb]" (or pip install wandb), or log to CSV / '
            "TensorBoard instead: --config configs/logger/csv.yaml or --config configs/logger/tensorboard.yaml."
        ) from None


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


class RestoreLabCLI(LightningCLI):
    """LightningCLI with the project's defaults.

    Checkpoints: ``checkpoints/last.ckpt`` always holds the newest state (``last_checkpoint``:
    after every validation, at the end, every ``every_n_minutes`` / ``every_n_train_steps``) and
    ``checkpoints/best-*.ckpt`` the best on ``val/loss`` (``checkpoint``); every save is atomic and
    every load weights-only (``SafeCheckpointIO``); a non-finite loss stops the run before it reaches
    the weights. ``--ckpt_path`` is resolved and checked before anything is built
    (:mod:`cli.checkpoint_args`). Also: LR monitor, a run directory per run with the config
    snapshot (earlier ``metrics.csv`` kept), SLURM-stable run identity, W&B offline without an API key.
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_last": False,  # last.ckpt is written by last_checkpoint, whatever val/loss does
                "checkpoint.save_top_k": 1,
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.filename": "best-{epoch:03d}-{step:07d}",
            }
        )
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.set_defaults({"last_checkpoint.every_n_minutes": 30.0})
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_argument(
            "--trust_checkpoint", type=str, nargs="+", default=None, metavar="FILE",
            help="Checkpoint files that may be fully unpickled (legacy files that pickle objects; runs any code in them)",
        )

    def parse_arguments(self, parser, args) -> None:
        self._command_line = list(args) if isinstance(args, (list, tuple)) else (sys.argv[1:] if args is None else [])
        check_config_files(self._command_line)  # a YAML error names its file, line and column
        super().parse_arguments(parser, args)

    def instantiate_classes(self) -> None:
        """Build the classes; a constructor's refusal of a value becomes a :class:`ConfigError` with its message."""
        try:
            super().instantiate_classes()
        except (ValueError, MisconfigurationException, FileNotFoundError) as err:
            if user_error(err) is not None and not isinstance(err, TOP_USER_ERRORS):
                raise
            raise ConfigError(f"invalid configuration: {_innermost_message(err)}") from err

    def _parse_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path`` (``last`` / ``best`` / a file), refuse another module's checkpoint, and build
        the model from its hyper-parameters with the command line's explicit options on top."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        cfg = self.config[subcommand]
        for path in cfg.get("trust_checkpoint") or []:
            trust_checkpoint(path)
        resolved = resolve_ckpt_path(cfg.get("ckpt_path"), cfg)
        cfg.ckpt_path = resolved
        if resolved is not None and Path(resolved).is_file():
            self.config = apply_checkpoint_hparams(
                self.parser, self.config, subcommand, resolved, explicit_model_keys(getattr(self, "_command_line", []))
            )

    def before_instantiate_classes(self) -> None:
        if torch.cuda.is_available():
            torch.set_float32_matmul_precision("high")
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        check_wandb_installed(cfg)
        configure_wandb_mode()
        job_tag = slurm_job_tag()
        first_process = all(os.environ.get(k, "0") == "0" for k in ("SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))
        if job_tag is not None and SLURMEnvironment.detect():
            self._check_slurm_tasks(cfg)
            run_dir = pin_slurm_run(cfg, job_tag, os.environ.get("SLURM_CLUSTER_NAME"))
            self._resume_after_node_failure(cfg, run_dir)
        else:
            run_dir = run_dir_from_config(cfg)[0]
        if run_dir is not None and first_process and self.subcommand:
            run_dir = self._lock_run_directory(cfg, run_dir, job_tag)
        if run_dir is not None and first_process and self.subcommand:
            keep_previous_metrics(run_dir)  # a rerun into the same directory never deletes earlier metrics

    def _lock_run_directory(self, cfg: Namespace, run_dir: Path, job_tag: str | None) -> Path:
        """Take the run directory's lock (``cli.run_lock``) before anything is written there.

        A CSV / TensorBoard logger without a version writes to the ``version_<n>`` that was locked
        (:meth:`instantiate_trainer` sets it on the logger; Lightning would pick the next free number,
        i.e. another folder, and the config snapshot keeps ``version: null`` so that a rerun from it
        starts a new run); a new run that meets a live lock there takes the next number instead of failing.
        """
        logger = cfg.trainer.get("logger") if cfg.get("trainer") else None
        entry = (logger[0] if logger else None) if isinstance(logger, list) else logger
        args = entry.get("init_args") if isinstance(entry, Namespace) else None
        numbered = (isinstance(args, Namespace) and args.get("version") is None
                    and str(entry.get("class_path", "")).endswith(("CSVLogger", "TensorBoardLogger")))
        while True:
            try:
                acquire_run_lock(run_dir, self.subcommand, job_tag)
            except RunLockedError:
                if not numbered or not run_dir.name.startswith("version_"):
                    raise
                run_dir = run_dir.with_name(f"version_{int(run_dir.name.split('_', 1)[1]) + 1}")
                continue
            if numbered:
                self._locked_version = int(run_dir.name.split("_", 1)[1])
            return run_dir

    def _resume_after_node_failure(self, cfg: Namespace, run_dir: Path | None) -> None:
        """A requeued job resumes from the newer of the run's ``last.ckpt`` (SIGTERM stop, node failure)
        and its ``hpc_ckpt_*.ckpt`` (SIGUSR1 stop) instead of starting over."""
        if self.subcommand != "fit" or run_dir is None or cfg.get("ckpt_path") is not None:
            return
        last = newest_training_state(run_dir)  # None: Lightning resumes from the newest hpc_ckpt_* by itself
        if last is not None:
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
        plugins = self._get(self.config_init, "trainer", default={}).get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(SafeCheckpointIO())  # atomic saves, weights-only loads
        if SlurmRequeue.job_id() is not None and not any(isinstance(p, ClusterEnvironment) for p in plugins):
            # SIGUSR1 is handled by the SlurmRequeue callback at a step boundary all ranks agree on,
            # not by Lightning inside the signal handler (which can deadlock DDP ranks).
            plugins.append(SLURMEnvironment(auto_requeue=False))
        kwargs["plugins"] = plugins
        trainer = super().instantiate_trainer(**kwargs)
        version = getattr(self, "_locked_version", None)
        if version is not None and trainer.loggers and getattr(trainer.loggers[0], "_version", 0) is None:
            trainer.loggers[0]._version = version  # the locked version_<n> folder (see _lock_run_directory)
        return trainer

    def _signal_exit_code(self) -> int | None:
        stops = [c for c in getattr(getattr(self, "trainer", None), "callbacks", []) if isinstance(c, StopOnSignal)]
        return stops[0].exit_code if stops else None

    def _run_subcommand(self, subcommand: str) -> None:
        """Run the subcommand; a SIGTERM / SIGINT stop exits 143 / 130 (``StopOnSignal``), never 0."""
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:  # a SystemExit with status 0: the signal's status instead
            raise SystemExit(self._signal_exit_code() or signal_exit_code(signal.SIGTERM)) from None
        except SystemExit as exit_:
            if isinstance(exit_.__context__, KeyboardInterrupt):  # Lightning's Ctrl+C path exits 1
                raise SystemExit(signal_exit_code(signal.SIGINT)) from None
            raise
        except ValueError as err:  # Lightning's own check when DDP launches (e.g. devices="auto")
            if "configured in SLURM" in str(err):
                raise self._slurm_mismatch(str(err)) from err
            raise
        code = self._signal_exit_code()
        if code is not None:  # the signal came during the last validation: training ended and was saved
            raise SystemExit(code)


def _cli_kwargs(args: list[str] | None, run: bool) -> dict[str, Any]:
    import_project_classes()
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
            "callbacks": [
                WandbCheckpointRecord(), StopOnSignal(), SlurmRequeue(), RunAnnouncement(), StepOnlyMetrics(), LossCurves(),
                FiniteLossGuard(), SkippedSampleMonitor(),
            ],
        },
        save_config_callback=RunConfigSnapshot,
        parser_class=RestoreLabArgumentParser,
        parser_kwargs={"description": DESCRIPTION},
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


class ConfigError(ValueError):
    """A command line / config that the CLI parser or a constructor rejects; the message says which value and why."""


#: errors whose message already names the file / key at fault and the fix: printed without a traceback
USER_ERRORS: tuple[type[BaseException], ...] = (
    CheckpointError, NonFiniteLossError, SlurmTaskMismatchError, MissingExtraError, MissingWeightsError,
    ShardError, ClassListError, ImageDecodeError, PredictInputError, OutputDirError, RunLockedError, ConfigError,
    ConfigFileError,
)
#: user errors only when they are what the command raised (not somewhere in the chain of another error)
TOP_USER_ERRORS: tuple[type[BaseException], ...] = (MisconfigurationException, FileNotFoundError)


def _innermost_message(err: BaseException) -> str:
    """The message of the error a constructor raised, under jsonargparse's "Does not validate" wrappers."""
    message, seen = str(err), 0
    while err is not None and seen < 16:
        if isinstance(err, (ValueError, MisconfigurationException, FileNotFoundError)) and not str(err).startswith("Does not validate"):
            message = str(err)
        err, seen = err.__cause__ or err.__context__, seen + 1
    return message


def user_error(exc: BaseException) -> BaseException | None:
    """The project's own clear error inside ``exc``: jsonargparse wraps errors raised while it builds a class."""
    if isinstance(exc, TOP_USER_ERRORS):
        return exc
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, USER_ERRORS):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def cli_main(args: list[str] | None = None, run: bool = True) -> RestoreLabCLI:
    """Build (and by default run) the CLI.

    Args:
        args: Replaces ``sys.argv[1:]`` (tests pass a list).
        run: Run the subcommand; ``False`` only parses and instantiates (then ``args`` has no
            subcommand).

    Returns:
        The CLI object (``.config``, ``.model``, ``.datamodule``, ``.trainer``).

    Raises:
        One of :data:`USER_ERRORS` (unwrapped from jsonargparse's "does not validate" wrapper) for bad
        input that the message explains.
    """
    silence_third_party_notices()
    held_before = held_run_locks()
    try:
        return RestoreLabCLI(**_cli_kwargs(args, run))
    except ValueError as err:
        inner = user_error(err)
        if inner is None or inner is err:
            raise
        raise inner from None
    finally:
        release_run_locks(keep=held_before)  # the run directory is free again, also after an error or a signal


class _Parsed(Exception):
    def __init__(self, config: Namespace) -> None:
        super().__init__("parsed")
        self.config = config


class _ParseOnlyCLI(RestoreLabCLI):
    def _parse_ckpt_path(self) -> None:
        """Parsing only: ``--ckpt_path`` is neither read nor required to exist."""

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
    except ConfigFileError as err:
        raise ConfigError(str(err)) from None
    except SystemExit as exit_:
        message = captured.getvalue().strip() or f"the parser exited with status {exit_.code}"
        message = message[message.find("error:") :] if "error:" in message else message  # drop the usage
        raise ConfigError(message) from None
    raise ConfigError(f"{' '.join(args)}: no subcommand was run (pass fit, validate, test or predict first)")


if __name__ == "__main__":
    try:
        cli_main()
    except Exception as error:  # noqa: BLE001 - only the project's explained errors are printed bare
        inner = user_error(error)
        if inner is None:
            raise
        print(f"error: {inner}", file=sys.stderr)
        sys.exit(1 if isinstance(inner, NonFiniteLossError) else 2)
    except KeyboardInterrupt:  # Ctrl+C outside training (StopOnSignal handles it during training)
        sys.exit(signal_exit_code(signal.SIGINT))

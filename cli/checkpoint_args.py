"""What ``--ckpt_path`` means, decided before anything is built.

``python -m main {fit,validate,test,predict} --config X --ckpt_path P``:

* ``P = last`` / ``best``: the run directory of this command (``save_dir/name/version`` of its
  logger) is searched for ``checkpoints/last.ckpt`` / ``checkpoints/best-*.ckpt``; of several best
  files, the one with the best score that ``ModelCheckpoint`` stored in it (lowest for
  ``checkpoint.mode: min``), never the newest by file time (:func:`best_checkpoint`). Nothing there is
  an error that names the directory searched and lists the earlier runs that have one (Lightning
  itself starts from scratch with a misleading hint).
* The file is read safely (:func:`networks.checkpoints.read_checkpoint`); a damaged one is an
  error naming it.
* A checkpoint written by another LightningModule class than the one the config builds is refused
  (Lightning would silently swap the model class), unless the module declares that its
  ``--ckpt_path`` holds another model's weights (``ckpt_path_holds_other_models = True``, e.g. the
  inpainting evaluator, which evaluates the inpainter stored in a training checkpoint).
* The model is built from the checkpoint's hyper-parameters (its architecture), except for the
  options given explicitly on the command line (``--model.init_args.x=v``), which win; every
  difference is reported. Options that only initialise weights from other files
  (``weight_init_args`` of the module class, e.g. ``init_checkpoint``) are not re-read: the
  checkpoint holds all the weights.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from jsonargparse import Namespace

from callbacks.checkpoint_io import LIGHTNING_FORMAT
from networks.checkpoints import CheckpointError, read_checkpoint

__all__ = [
    "CkptPathError", "apply_checkpoint_hparams", "best_checkpoint", "checkpoint_score", "explicit_model_keys",
    "newest_training_state", "peek_checkpoint", "resolve_ckpt_path", "run_dir_from_config",
]


class CkptPathError(CheckpointError):
    """``--ckpt_path`` names no usable checkpoint, or one of another module."""


def explicit_model_keys(args: Sequence[str]) -> set[str]:
    """Model options given on the command line (``--model.init_args.x=v`` / ``--model.x v``), as ``x``."""
    keys = set()
    for token in args:
        match = re.match(r"--model\.(?:init_args\.)?([A-Za-z_][\w.]*)", token)
        if match and match.group(1) not in ("help", "class_path"):
            keys.add(match.group(1).split(".")[0])
    return keys


def _plain(value: Any) -> Any:
    if isinstance(value, Namespace):
        return {k: _plain(v) for k, v in value.as_dict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def run_dir_from_config(cfg: Namespace) -> tuple[Path | None, list[Path]]:
    """The run directory a command will use, and the sibling run directories of its logger.

    For CSV / TensorBoard loggers: ``save_dir/name/version`` (``version_<next>`` when no version is
    set, as Lightning picks it); without a logger: ``trainer.default_root_dir``. ``None`` when it
    cannot be known before the logger exists (e.g. W&B without a run id).
    """
    trainer_cfg = cfg.get("trainer") or Namespace()
    logger = trainer_cfg.get("logger")
    entry = (logger[0] if logger else None) if isinstance(logger, list) else logger
    if entry in (None, False) or not isinstance(entry, Namespace):
        root = trainer_cfg.get("default_root_dir")
        return (Path(root) if root else None), []
    class_path = str(entry.get("class_path", ""))
    args = entry.get("init_args") or Namespace()
    if not class_path.endswith(("CSVLogger", "TensorBoardLogger")):
        return None, []
    parent = Path(args.get("save_dir") or trainer_cfg.get("default_root_dir") or ".", str(args.get("name") or ""))
    siblings = sorted(p for p in parent.glob("*") if p.is_dir()) if parent.is_dir() else []
    version = args.get("version")
    if version is None:
        numbers = [int(m.group(1)) for p in siblings if (m := re.fullmatch(r"version_(\d+)", p.name))]
        version = max(numbers, default=-1) + 1
    name = version if isinstance(version, str) else f"version_{version}"
    return parent / name, siblings


def peek_checkpoint(path: str | Path) -> dict | None:
    """The entries of a Lightning checkpoint, memory-mapped (weights are not read) and weights-only.

    Returns:
        The checkpoint dict, or ``None`` when the file is not a readable torch checkpoint.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file just has no step or score to offer
        return None
    return ckpt if isinstance(ckpt, dict) else None


def checkpoint_score(path: str | Path) -> float | None:
    """The monitored score of a ``ModelCheckpoint`` file, as stored in the file by the callback that wrote it.

    ``ModelCheckpoint`` records every file it keeps, with its score, in ``best_k_models`` before it
    saves; that state travels inside the file (``callbacks``). ``None`` when the file has none.
    """
    ckpt = peek_checkpoint(path)
    for state in ((ckpt or {}).get("callbacks") or {}).values():
        kept = state.get("best_k_models") if isinstance(state, dict) else None
        for kept_path, score in (kept or {}).items():
            if Path(kept_path).name == Path(path).name and score is not None:
                return float(score)
    return None


def best_checkpoint(files: Iterable[Path], mode: str = "min") -> Path | None:
    """The file with the best stored score (lowest for ``mode="min"``, highest for ``"max"``).

    Files without a stored score (not written by ``ModelCheckpoint``) are not candidates; ``None``
    when no file has a score.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"checkpoint.mode must be 'min' or 'max', got {mode!r}")
    scored = [(score, p) for p in files if (score := checkpoint_score(p)) is not None]
    if not scored:
        return None
    pick = min if mode == "min" else max
    return pick(scored, key=lambda item: item[0])[1]


def newest_training_state(run_dir: Path) -> Path | None:
    """``checkpoints/last.ckpt`` of ``run_dir`` when it holds a later step than every ``hpc_ckpt_*.ckpt``.

    A SIGTERM stop writes ``last.ckpt`` (``callbacks.stop_on_signal``), a SIGUSR1 stop an
    ``hpc_ckpt_<n>.ckpt``; a requeued job resumes from the newer. ``None`` when there is no
    ``last.ckpt`` or an hpc checkpoint is as new (Lightning resumes from the newest hpc checkpoint
    by itself).
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    last_step = (peek_checkpoint(last) or {}).get("global_step", -1)
    hpc_steps = [(peek_checkpoint(p) or {}).get("global_step", -1) for p in run_dir.glob("hpc_ckpt_*.ckpt")]
    return last if all(last_step > step for step in hpc_steps) else None


def resolve_ckpt_path(ckpt_path: str | None, cfg: Namespace) -> str | None:
    """A concrete checkpoint file for ``ckpt_path`` (``last``, ``best`` or a path), or an error saying why not."""
    if ckpt_path is None or ckpt_path in ("hpc", "registry") or str(ckpt_path).startswith("registry:"):
        return ckpt_path
    if ckpt_path not in ("last", "best"):
        path = Path(ckpt_path)
        if not path.exists():
            raise CkptPathError(f"--ckpt_path {ckpt_path}: no such file. Give the path of a checkpoint (runs/<name>/<version>/checkpoints/*.ckpt) or 'last'")
        return ckpt_path
    run_dir, siblings = run_dir_from_config(cfg)
    if run_dir is None:
        raise CkptPathError(
            f"--ckpt_path {ckpt_path}: the run directory of this logger is not known before it starts; give the checkpoint's path"
        )
    folder = run_dir / "checkpoints"
    if ckpt_path == "last":
        if (folder / "last.ckpt").is_file():
            return str(folder / "last.ckpt")
    else:
        candidates = sorted(p for p in folder.glob("best-*.ckpt") if p.is_file())
        mode = str((cfg.get("checkpoint") or Namespace()).get("mode") or "min")
        best = best_checkpoint(candidates, mode)
        if best is not None:
            return str(best)
        if candidates:
            raise CkptPathError(
                f"--ckpt_path best: no file in {folder} records its {mode} score ({', '.join(p.name for p in candidates)}: "
                "not written by ModelCheckpoint, or unreadable); give the path of the checkpoint to use."
            )
    earlier = [str(p) for p in siblings if (p / "checkpoints" / ("last.ckpt" if ckpt_path == "last" else "")).exists()
               and p != run_dir and any((p / "checkpoints").glob("last.ckpt" if ckpt_path == "last" else "best-*.ckpt"))]
    hint = (f" Earlier runs with one: {', '.join(earlier[-5:])}; resume one with --trainer.logger.init_args.version=<its version> "
            f"or --ckpt_path <its folder>/checkpoints/{'last.ckpt' if ckpt_path == 'last' else 'best-*.ckpt'}.") if earlier else \
        " Give the path of a checkpoint, or the version of the run to resume (--trainer.logger.init_args.version=...)."
    raise CkptPathError(
        f"--ckpt_path {ckpt_path}: searched {folder} (the run directory of this command"
        f"{', a new run' if not run_dir.exists() else ''}) and found no {'last.ckpt' if ckpt_path == 'last' else 'best-*.ckpt'}; "
        f"nothing was started.{hint}"
    )


def _class_of(path: str) -> type | None:
    from jsonargparse._typehints import resolve_class_path_by_name  # noqa: PLC2701 - jsonargparse's own short-name lookup
    from lightning.pytorch import LightningModule

    try:
        resolved = resolve_class_path_by_name(LightningModule, path)
        module, _, name = resolved.rpartition(".")
        return getattr(__import__(module, fromlist=[name]), name)
    except Exception:  # noqa: BLE001 - an unknown class is reported by the caller with both names
        return None


def apply_checkpoint_hparams(
    parser: Any, config: Namespace, subcommand: str, ckpt_path: str, explicit: Iterable[str]
) -> Namespace:
    """Rebuild the model section of ``config`` from the checkpoint's hyper-parameters (see the module docstring).

    Raises:
        CkptPathError: the checkpoint was written by another LightningModule class.
        networks.checkpoints.CheckpointError: the file cannot be read safely.
    """
    ckpt = read_checkpoint(ckpt_path, LIGHTNING_FORMAT)
    hparams = dict(ckpt.get("hyper_parameters") or {}) if isinstance(ckpt, dict) else {}
    hparams.pop("_instantiator", None)
    written_by = hparams.pop("_class_path", None)
    model_cfg = config[subcommand].get("model")
    if not isinstance(model_cfg, Namespace) or not model_cfg.get("class_path"):
        return config
    builds = model_cfg.class_path
    if getattr(_class_of(builds), "ckpt_path_holds_other_models", False):
        return config  # the module reads the file itself (on_load_checkpoint); its own options come from the config
    if written_by and _class_of(written_by) is not _class_of(builds):
        raise CkptPathError(
            f"--ckpt_path {ckpt_path} was written by {written_by}, but this command builds {builds} (model.class_path); "
            "Lightning would load it into the wrong model. Use the config of the run that wrote it (its config.yaml is "
            "next to checkpoints/), or a checkpoint of this module. (An LCG checkpoint initialises a C2F run through "
            "model.init_args.lcg_checkpoint.)"
        )
    init_args = model_cfg.get("init_args") or Namespace()
    current = {k: _plain(v) for k, v in init_args.as_dict().items()}
    weight_init = set(getattr(_class_of(builds), "weight_init_args", ()))
    explicit = set(explicit)
    updates: dict[str, Any] = {}
    taken, kept = [], []
    for key, value in hparams.items():
        if key not in current or key in weight_init or _plain(value) == current[key]:
            continue
        if key in explicit:
            kept.append(f"{key}: checkpoint {_plain(value)!r}, yours {current[key]!r}")
        else:
            taken.append(f"{key}: config {current[key]!r} -> checkpoint {_plain(value)!r}")
            updates[key] = _plain(value)
    for key in weight_init & set(current):
        if current[key] not in (None, False) and key not in explicit:
            # the checkpoint holds every weight: do not read (or require) the files that initialise them
            updates[key] = False if isinstance(current[key], bool) else None
    if taken or kept:
        lines = ([f"  from the checkpoint (its architecture and training options): {t}" for t in taken]
                 + [f"  kept from your command line: {k}" for k in kept])
        warnings.warn(f"--ckpt_path {ckpt_path}: model options differ from the config:\n" + "\n".join(lines), UserWarning, stacklevel=2)
    if not updates:
        return config
    return parser.parse_object({subcommand: {"model": {"class_path": builds, "init_args": updates}}}, config)

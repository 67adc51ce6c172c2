"""The resolved config saved in the run directory, compared with earlier snapshots on resume."""
from __future__ import annotations

import datetime
import os
import warnings
from importlib.metadata import version as _package_version
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from callbacks.run_directory import run_directory

# Keys that legitimately change between a run and its resumption (not reported as differences).
_RESUME_IGNORED_KEYS = ("config", "ckpt_path")
_jsonargparse_version = tuple(int(p) for p in _package_version("jsonargparse").split(".")[:2])
# Keep None values in dumps (jsonargparse renamed skip_none to skip_unset in 4.49).
_KEEP_NONE = {"skip_unset": False} if _jsonargparse_version >= (4, 49) else {"skip_none": False}
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

"""The one way the project reads checkpoint files and loads weights into modules.

Every loader (official StyleGAN2 / e4e / HFGI / ArcFace / InterfaceGAN / big-lama / Graphonomy /
FID Inception files, and the project's own LCG, C2F and Lightning checkpoints) goes through
:func:`read_checkpoint` and :func:`load_state`:

* **No code from files.** Files are read with ``torch.load(weights_only=True)``: tensors,
  containers and plain Python values only. Some official formats also pickle configuration
  objects (big-lama's omegaconf training config, rosinality's / pSp's ``argparse.Namespace``);
  their :class:`CheckpointFormat` names those globals (exact names or ``module.`` prefixes) and
  they are read as inert :class:`StandIn` objects that only hold their pickled arguments and
  state: the real class is never imported or called. Any other global is refused with
  :class:`UnsafeCheckpointError`. There is no automatic fallback to full unpickling; a file can
  be trusted explicitly (:func:`trust_checkpoint`, ``--trust_checkpoint FILE`` on the CLI, or the
  ``RESTORELAB_TRUSTED_CHECKPOINTS`` environment variable), which warns with the file name.
* **Strict weights.** :func:`load_state` compares keys and shapes, refuses integer tensors where
  the module holds floating-point ones and NaN / Inf values, and names every offending key.
* **One error family.** Everything raises a :class:`CheckpointError` subclass whose message names
  the file and says how to fix it.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "UnsafeCheckpointError",
    "CheckpointMismatchError",
    "CheckpointFormat",
    "StandIn",
    "TRUSTED_CHECKPOINTS_ENV",
    "trust_checkpoint",
    "read_checkpoint",
    "extract_state",
    "check_state",
    "load_state",
    "load_weights",
    "atomic_save",
]

PathLike = str | os.PathLike

#: environment variable listing files (``os.pathsep``-separated) that may be fully unpickled
TRUSTED_CHECKPOINTS_ENV = "RESTORELAB_TRUSTED_CHECKPOINTS"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe, or does not fit the module it is loaded into."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the checkpoint path."""


class UnsafeCheckpointError(CheckpointError):
    """The file asks the unpickler for a Python object that a weights file does not need."""


class CheckpointMismatchError(CheckpointError):
    """The file's weights do not fit the module: missing / unexpected keys, shapes, dtypes, NaN or Inf."""


@dataclass(frozen=True)
class CheckpointFormat:
    """What a file is expected to be, for messages and for the objects it may pickle.

    Args:
        name: what the file is, as said in messages (e.g. ``"big-lama checkpoint"``).
        origin: where the file comes from / where it goes (appended to the not-found message).
        stand_ins: pickled globals read as inert :class:`StandIn` objects: exact names
            (``"argparse.Namespace"``) or module prefixes ending in a dot (``"omegaconf."``).
    """

    name: str = "checkpoint"
    origin: str = ""
    stand_ins: tuple[str, ...] = ()

    def allows(self, global_name: str) -> bool:
        """Whether ``global_name`` (``module.qualname``) may be read as a stand-in."""
        return any(global_name == s or (s.endswith(".") and global_name.startswith(s)) for s in self.stand_ins)


class StandIn:
    """Inert replacement for a pickled configuration object (never the real class).

    Holds what the pickle gave it: ``args`` (constructor arguments) and ``state`` (the object's
    ``__dict__`` or ``__setstate__`` argument). :meth:`as_dict` returns the state when it is a dict.
    """

    global_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __new__(cls, *args: Any, **kwargs: Any) -> "StandIn":
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def as_dict(self) -> dict:
        """The pickled state as a dict ({} when it is not one)."""
        return dict(self.state) if isinstance(self.state, Mapping) else {}

    def __repr__(self) -> str:
        return f"StandIn({self.global_name})"


def _stand_in(global_name: str) -> type[StandIn]:
    return type(global_name.rsplit(".", 1)[-1], (StandIn,), {"global_name": global_name, "__module__": __name__})


def _trusted() -> set[Path]:
    return {Path(p).resolve() for p in os.environ.get(TRUSTED_CHECKPOINTS_ENV, "").split(os.pathsep) if p}


def trust_checkpoint(path: PathLike) -> None:
    """Allow full unpickling of one file (legacy checkpoints that pickle other objects).

    Full unpickling runs any code the file contains: only for files from a source you trust.
    Recorded in :data:`TRUSTED_CHECKPOINTS_ENV`, so DDP / SLURM child processes inherit it.
    """
    current = [p for p in os.environ.get(TRUSTED_CHECKPOINTS_ENV, "").split(os.pathsep) if p]
    resolved = str(Path(path).resolve())
    if resolved not in current:
        os.environ[TRUSTED_CHECKPOINTS_ENV] = os.pathsep.join([*current, resolved])


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _unsafe_globals(path: Path) -> list[str] | None:
    """Globals the file references beyond torch's weights-only allowlist (None: not a zip checkpoint)."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - a damaged archive is reported by the load below
        return None


def _refuse(path: Path, fmt: CheckpointFormat, names: Iterable[str]) -> UnsafeCheckpointError:
    names = sorted(set(names))
    return UnsafeCheckpointError(
        f"{path}: refused to load this {fmt.name}: it asks the unpickler for the Python object(s) "
        f"{', '.join(names)}, which a weights file does not need, and loading them could run code hidden in the "
        f"file. Use the official file, or re-save the weights as plain tensors. Only if you trust where the file "
        f"comes from: pass --trust_checkpoint {path} (or set {TRUSTED_CHECKPOINTS_ENV}={path})."
    )


def _corrupt(path: Path, fmt: CheckpointFormat, err: BaseException) -> CheckpointError:
    with open(path, "rb") as f:
        head = f.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":
        reason = "it is neither a zip archive nor a pickle"
    else:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        reason = reason.split(". ")[0][:200]
    return CheckpointError(
        f"{path}: cannot read this {fmt.name} ({path.stat().st_size} bytes): {reason}. The file is truncated, "
        "corrupt or not a PyTorch checkpoint; copy or download it again, or use another checkpoint of the run "
        "(e.g. an earlier best-*.ckpt)."
    )


def read_checkpoint(path: PathLike, fmt: CheckpointFormat | None = None) -> Any:
    """Load a torch file onto the CPU without running code from it.

    Args:
        path: the file.
        fmt: what the file should be (name for messages, origin, allowed stand-in globals).

    Raises:
        CheckpointNotFoundError: no file (the message says where the file comes from).
        UnsafeCheckpointError: the file references globals that ``fmt`` does not allow.
        CheckpointError: a directory, an empty (0-byte) file, or a truncated / corrupt one.
    """
    fmt = fmt or CheckpointFormat()
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"{fmt.name} not found: {str(path)!r}. {fmt.origin}".strip())
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a {fmt.name} file; give the path of the file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"{path} is empty (0 bytes): the write or copy that made it was interrupted. Use another checkpoint "
            "of the run (an earlier best-*.ckpt or hpc_ckpt_*.ckpt), or copy the file again."
        )
    with open(path, "rb") as f:
        if not zipfile.is_zipfile(path) and f.read(1) != b"\x80":
            raise _corrupt(path, fmt, ValueError("not a torch file"))
    if path.resolve() in _trusted():
        warnings.warn(
            f"{path}: fully unpickling a trusted checkpoint ({TRUSTED_CHECKPOINTS_ENV} / --trust_checkpoint); "
            "any code in this file runs now",
            UserWarning,
            stacklevel=2,
        )
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
            raise _corrupt(path, fmt, err) from None
    stand_ins: dict[str, type[StandIn]] = {}
    names = _unsafe_globals(path) if fmt.stand_ins else []
    if names:
        refused = [n for n in names if not fmt.allows(n)]
        if refused:
            raise _refuse(path, fmt, refused)
        stand_ins = {n: _stand_in(n) for n in names}
    for _ in range(256):  # legacy (non-zip) files: find stand-ins one by one
        try:
            with torch.serialization.safe_globals([(cls, name) for name, cls in stand_ins.items()]):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            match = _GLOBAL_RE.search(str(err))
            if match is None:
                if "Weights only load failed" in str(err):
                    raise _refuse(path, fmt, ["(content outside torch's weights-only allowlist)"]) from None
                raise _corrupt(path, fmt, err) from None
            name = match.group(1)
            if not fmt.allows(name) or name in stand_ins:
                raise _refuse(path, fmt, [name]) from None
            stand_ins[name] = _stand_in(name)
        except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, IndexError) as err:
            raise _corrupt(path, fmt, err) from None
    raise _refuse(path, fmt, stand_ins)


def extract_state(
    obj: Any,
    source: str,
    *,
    key: str | None = "state_dict",
    prefix: str = "",
    rename: Callable[[str], str] | None = None,
) -> dict[str, torch.Tensor]:
    """The tensors of a loaded file under ``obj[key]`` (or ``obj`` itself), with ``prefix`` removed.

    Args:
        obj: what :func:`read_checkpoint` returned.
        source: the file, for messages.
        key: entry holding the state dict; None when ``obj`` is the state dict.
        prefix: keep only keys starting with it, and strip it (``"generator."``).
        rename: applied to every key after stripping (official renamings).

    Raises:
        CheckpointMismatchError: no such entry, not a mapping, or no key under ``prefix``.
    """
    state = obj
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(map(str, obj))[:10] if isinstance(obj, Mapping) else type(obj).__name__
            what = "; not a Lightning checkpoint" if key == "state_dict" else ""
            raise CheckpointMismatchError(f"{source}: no {key!r} entry (found {found}){what}")
        state = obj[key]
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(f"{source}: expected a state dict of tensors, got {type(state).__name__}")
    out = {}
    for k, v in state.items():
        if not k.startswith(prefix):
            continue
        k = k[len(prefix):]
        out[rename(k) if rename else k] = v
    if prefix and not out:
        raise CheckpointMismatchError(f"{source}: no key starts with {prefix!r}; keys look like {list(state)[:5]}")
    return out


def _fmt(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def check_state(
    module: nn.Module,
    state: Mapping[str, Any],
    source: str,
    *,
    optional: Callable[[str], bool] | None = None,
    hint: str = "",
) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state`` fits ``module`` exactly.

    Checks: the same keys (``optional(key)`` may be absent), the same shapes, tensors only,
    floating-point values where the module holds floating-point ones, and no NaN / Inf.

    Args:
        module: the module the weights are for.
        state: its state dict from the file.
        source: the file (and part), for messages.
        optional: keys that may be missing from the file (e.g. ``num_batches_tracked``).
        hint: appended to the message (which configuration the file needs).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not (optional and optional(k))]
    unexpected = [k for k in state if k not in expected]
    shapes, dtypes, nonfinite = [], [], []
    for k, v in expected.items():
        if k not in state:
            continue
        got = state[k]
        if not isinstance(got, torch.Tensor):
            dtypes.append(f"{k}: {type(got).__name__}, not a tensor")
            continue
        if tuple(got.shape) != tuple(v.shape):
            shapes.append(f"{k}: file {tuple(got.shape)} vs model {tuple(v.shape)}")
        elif v.is_floating_point() and not (got.is_floating_point() or got.is_complex()):
            dtypes.append(f"{k}: {str(got.dtype).removeprefix('torch.')} where the model holds {str(v.dtype).removeprefix('torch.')}")
        elif got.is_floating_point() and got.numel() and not bool(torch.isfinite(got).all()):
            nonfinite.append(k)
    if missing or unexpected or shapes or dtypes or nonfinite:
        parts = [f"{source} does not fit {type(module).__name__}:"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_fmt(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {_fmt(shapes, 6)}")
        if dtypes:
            parts.append(f"wrong dtypes ({len(dtypes)}): {_fmt(dtypes, 6)}")
        if nonfinite:
            parts.append(f"NaN or Inf values ({len(nonfinite)}): {_fmt(nonfinite)} (the run that wrote it diverged)")
        if hint:
            parts.append(hint)
        raise CheckpointMismatchError("\n  ".join(parts))


def load_state(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    *,
    optional: Callable[[str], bool] | None = None,
    hint: str = "",
) -> nn.Module:
    """:func:`check_state`, then copy the weights into ``module``; returns ``module``."""
    check_state(module, state, source, optional=optional, hint=hint)
    module.load_state_dict(dict(state), strict=optional is None)
    return module


def load_weights(
    module: nn.Module,
    path: PathLike,
    fmt: CheckpointFormat | None = None,
    *,
    key: str | None = "state_dict",
    prefix: str = "",
    rename: Callable[[str], str] | None = None,
    optional: Callable[[str], bool] | None = None,
    hint: str = "",
) -> Any:
    """Read ``path`` safely, take its state dict (``key``, ``prefix``) and load it strictly into ``module``.

    Returns the whole loaded file (for entries beside the weights, e.g. ``latent_avg``).
    """
    obj = read_checkpoint(path, fmt)
    where = f"{path}" + (f" [{key}]" if key else "") + (f" [{prefix}*]" if prefix else "")
    load_state(module, extract_state(obj, where, key=key, prefix=prefix, rename=rename), where, optional=optional, hint=hint)
    return obj


def atomic_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` that never leaves a partial file at ``path``.

    Writes a temporary file in the destination directory (same filesystem, whatever ``TMPDIR`` is),
    flushes and fsyncs it, then ``os.replace``-s it over ``path`` and fsyncs the directory. A crash
    or ``kill -9`` at any moment leaves either the old file or the new one, never a truncated one.

    Raises:
        CheckpointError: the directory is not writable or is a file (the message says which).
    """
    path = Path(path)
    directory = path.parent
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"cannot write {path}: {directory} is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"cannot create the checkpoint directory {directory}: {err.strerror}") from None
    if path.is_dir():
        raise CheckpointError(f"cannot write {path}: a directory of that name exists")
    _remove_stale_temporaries(directory, path.name)
    tmp = directory / f".{path.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"cannot write {path}: {err.strerror or err} (check that {directory} is writable and has free space)"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename itself is atomic
        pass
    return path


def _remove_stale_temporaries(directory: Path, name: str) -> None:
    """Delete ``.<name>.tmp-<pid>`` files left by writer processes that died mid-save (``kill -9``)."""
    for tmp in directory.glob(f".{name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
            if pid == os.getpid():
                continue
            os.kill(pid, 0)  # still running: its save is in progress
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, PermissionError, OSError):
            continue

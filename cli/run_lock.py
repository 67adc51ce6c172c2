"""One live run per run directory: ``<run dir>/run.lock`` names the process writing there.

``main.py`` takes the lock before a ``fit`` / ``validate`` / ``test`` / ``predict`` touches the run
directory (before ``metrics.csv`` is moved aside or ``config.yaml`` written) and releases it when the
command ends, also on an error or a signal. A second run into the same directory is refused with a
message that names the holder. A lock left by a process that is gone (same host, PID not running or
reused; or an earlier attempt of the same SLURM job, which SLURM never runs twice) is taken over with a
warning. A lock from a process on another host cannot be checked: the message says how to remove it.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError", "acquire_run_lock", "held_run_locks", "release_run_locks"]

LOCK_NAME = "run.lock"
#: an unreadable lock younger than this is being written by a process starting right now
_FRESH_S = 30.0


class RunLockedError(ValueError):
    """Another live run writes into this run directory; the message names it and what to do."""


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``), to tell a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of proc(5); fields 1-2 end at the last ")"


def _running(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    now = _process_start(pid)
    return start is None or now is None or now == start


@dataclass(eq=False)  # a lock equals only itself
class RunLock:
    """A held lock (see the module docstring).

    Args:
        path: the lock file.
        record: what it holds: ``pid``, ``host``, ``started`` (UTC), ``command``, ``slurm_job``, ``pid_start``.
        created_dir: the run directory was created for this lock (removed again on release if left empty).
    """

    path: Path
    record: dict = field(default_factory=dict)
    created_dir: bool = False

    def release(self) -> None:
        """Remove the lock file if it is still this process's (never one another run took over)."""
        if self in _HELD:
            _HELD.remove(self)
        held = _read(self.path)
        if held is not None and held.get("pid") == self.record["pid"] and held.get("host") == self.record["host"]:
            self.path.unlink(missing_ok=True)
        if self.created_dir:
            try:
                self.path.parent.rmdir()  # only when nothing else was written there
            except OSError:
                pass


_HELD: list[RunLock] = []


def _read(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(record: dict) -> str:
    job = f", SLURM job {record['slurm_job']}" if record.get("slurm_job") else ""
    return f"PID {record.get('pid')} on {record.get('host')} ({record.get('command')}, started {record.get('started')}{job})"


def _stale_reason(record: dict | None, path: Path, slurm_job: str | None) -> str | None:
    """Why the holder of ``path`` is gone, or ``None`` when it may still run."""
    if record is None:
        age = time.time() - path.stat().st_mtime if path.exists() else _FRESH_S
        return f"it is unreadable and {age:.0f} s old" if age >= _FRESH_S else None
    if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
        if not _running(record["pid"], record.get("pid_start")):
            return f"its process {record['pid']} is no longer running on this host"
        return None
    if slurm_job is not None and record.get("slurm_job") == slurm_job:
        return f"it is from an earlier attempt of this SLURM job {slurm_job}"
    return None


def acquire_run_lock(run_dir: Path, command: str, slurm_job: str | None = None) -> RunLock:
    """Take ``<run_dir>/run.lock`` for this process (creating ``run_dir``); released by :func:`release_run_locks`.

    Args:
        run_dir: the run directory.
        command: what runs (``fit``, ``test``, ...), recorded for the message a second run gets.
        slurm_job: this process's SLURM job tag (``slurm.run_identity.slurm_job_tag``), if any.

    Raises:
        RunLockedError: a live run holds the lock (the message names it and what to do).
    """
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    record = {
        "pid": os.getpid(), "host": socket.gethostname(), "command": command, "slurm_job": slurm_job,
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), "pid_start": _process_start(os.getpid()),
    }
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            reason = _stale_reason(holder, path, slurm_job)
            if reason is None:
                who = _describe(holder) if holder else "a run that is starting now"
                raise RunLockedError(
                    f"{run_dir} is in use by another run: {who}. Two runs writing one run directory mix up its "
                    "metrics.csv, config.yaml and checkpoints, so this one was not started. Wait for that run to end or "
                    f"stop it (kill {holder.get('pid') if holder else '<pid>'} saves its last.ckpt), or give this run its own "
                    "directory (--trainer.logger.init_args.version=<new name>). If that process is no longer running "
                    f"(e.g. its machine crashed), delete {path}."
                ) from None
            warnings.warn(f"{path}: taking over the lock of {_describe(holder) if holder else 'an unknown run'}: {reason}",
                          UserWarning, stacklevel=2)
            aside = path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
            try:  # one taker wins the rename; the others retry and meet its new lock
                os.replace(path, aside)
            except FileNotFoundError:
                continue
            if _read(aside) != holder:  # another taker's fresh lock came in between: put it back
                try:
                    os.link(aside, path)
                except FileExistsError:
                    pass
            aside.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
        lock = RunLock(path, record, created)
        _HELD.append(lock)
        return lock
    raise RunLockedError(f"{path}: could not take the run lock (other runs keep taking it); start this run again")


def held_run_locks() -> list[RunLock]:
    """The run locks this process holds now."""
    return list(_HELD)


def release_run_locks(keep: list[RunLock] | tuple[RunLock, ...] = ()) -> None:
    """Release the run locks this process holds, except those in ``keep`` (``main.cli_main`` keeps the
    ones held before its command started)."""
    for lock in list(_HELD):
        if lock not in keep:
            lock.release()


atexit.register(release_run_locks)

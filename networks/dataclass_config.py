"""Typed construction from config: a dict from YAML (or an instance) as a dataclass, with a clear error."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["as_dataclass"]

T = TypeVar("T")


def as_dataclass(cls: type[T], value: T | dict[str, Any] | None, where: str, reserved: dict[str, str] | None = None) -> T:
    """``value`` as an instance of the dataclass ``cls`` (None: its defaults).

    Args:
        cls: the dataclass.
        value: an instance, a dict of its fields, or None.
        where: what is being configured, for the message (e.g. ``"unets[1]"``).
        reserved: field-like names that are set elsewhere, with the reason (named in the message).

    Raises:
        TypeError: ``value`` is neither an instance nor a dict.
        ValueError: the dict has keys that are not fields (the message lists the allowed ones).
    """
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"{where}: expected {cls.__name__} options (a dict), got {type(value).__name__}")
    allowed = sorted(f.name for f in fields(cls))
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        why = "; ".join(f"{k}: {reserved[k]}" for k in unknown if reserved and k in reserved)
        raise ValueError(f"{where}: unknown {cls.__name__} options {unknown}{f' ({why})' if why else ''}; allowed: {allowed}")
    return cls(**value)

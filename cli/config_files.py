"""Reading YAML files that users write (``--config`` files, sweep files), with one-line errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml

__all__ = ["ConfigFileError", "check_config_files", "read_yaml", "yaml_error_line"]


class ConfigFileError(ValueError):
    """A YAML file that cannot be read; the message is one line: ``file:line:column: problem``."""


def yaml_error_line(path: str | Path, err: yaml.YAMLError) -> str:
    """``file:line:column: invalid YAML: problem (context)`` for a PyYAML error (lines and columns from 1)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        problem += f" ({context})"
    return f"{where}: invalid YAML: {problem}"


def read_yaml(path: str | Path) -> Any:
    """The content of a YAML file.

    Raises:
        ConfigFileError: no such file, not readable, or invalid YAML (one line naming file, line, column).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigFileError(f"{path}: cannot read it ({err})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigFileError(yaml_error_line(path, err)) from None


def check_config_files(args: Sequence[str]) -> None:
    """Read every ``--config`` / ``-c`` file of a command line, so a YAML error names its file, line and column.

    (jsonargparse reports it as several lines about ``"<unicode string>"``.) Values that are not files
    (inline YAML, missing files) are left to the parser.

    Raises:
        ConfigFileError: a config file is not valid YAML.
    """
    args = list(args)
    for i, token in enumerate(args):
        value = None
        if token in ("--config", "-c") and i + 1 < len(args):
            value = args[i + 1]
        elif token.startswith("--config="):
            value = token.split("=", 1)[1]
        if value and Path(value).is_file():
            read_yaml(value)

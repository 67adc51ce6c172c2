"""The version floors in pyproject.toml admit no release the code cannot run on.

Each entry is a feature the code uses and the first release that has it (checked against the
packages' release history): an install that pip accepts must have all of them.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

#: package -> (first release with every feature we use, what needs it)
NEEDED = {
    "torch": ("2.6", "torch.serialization.safe_globals with (stand-in, 'module.name') pairs; weights_only=True default"),
    "lightning": ("2.6", "lightning.pytorch.callbacks.WeightAveraging (callbacks/ema.py)"),
    "webdataset": ("0.2.109", "tarfile_to_samples(handler=...), TarWriter and ShardWriter(maxcount, maxsize) (datamodules/eval_dataset.py, datamodules/shards.py)"),
    "jsonargparse": ("4.27.7", "Lightning's LightningCLI refuses older jsonargparse[signatures]"),
}


def _floors() -> dict[str, Version]:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    floors = {}
    for line in re.findall(r'"([^"]+)"', block):
        req = Requirement(line)
        lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
        floors[req.name] = max(lows) if lows else Version("0")
    return floors


@pytest.mark.parametrize("package", sorted(NEEDED))
def test_floor_is_at_least_the_first_release_with_the_features_we_use(package):
    need, why = NEEDED[package]
    floors = _floors()
    assert package in floors, f"{package} is used but not a dependency"
    assert floors[package] >= Version(need), f"{package}>={floors[package]} admits releases without {why} (needs >= {need})"


def test_the_installed_versions_satisfy_the_floors():
    from importlib.metadata import version

    for package, floor in _floors().items():
        if package in NEEDED:
            assert Version(version(package)) >= floor, package

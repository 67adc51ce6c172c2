"""No key or name from data becomes a path outside the output folder (safe_io.output_path, used by every writer)."""
from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from PIL import Image

from callbacks.prediction_writer import InpaintingPredictionWriter
from datamodules.shard_datamodule import ShardDataModule
from datamodules.shard_files import ShardError
from safe_io import MAX_COMPONENT_BYTES, UnsafeNameError, check_name, output_path

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["a", "city/0001", "ünïcode-名前", "x" * MAX_COMPONENT_BYTES, "a.b_c-d"])
def test_ordinary_keys_pass(name, tmp_path):
    assert check_name(name) == name
    assert output_path(tmp_path, name, ".png") == tmp_path / f"{name}.png"


@pytest.mark.parametrize("name, why", [
    ("/tmp/x", "absolute"), ("../../../../tmp/x", "'..'"), ("a/../../b", "'..'"), ("..", "'..'"),
    ("a\x00b", "NUL"), ("a\\..\\b", "backslash"), ("x" * (MAX_COMPONENT_BYTES + 1), "bytes long"),
    ("ü" * (MAX_COMPONENT_BYTES // 2 + 1), "bytes long"), ("", "empty"), ("a//b", "empty or '.'"), ("./a", "empty or '.'"),
    ("C:x", "drive"), ("a\nb", "control"),
])
def test_escaping_or_odd_keys_are_refused_naming_key_source_and_reason(name, why):
    with pytest.raises(UnsafeNameError, match=why) as info:
        check_name(name, "shard data/x-000000.tar")
    assert repr(name) in str(info.value) and "shard data/x-000000.tar" in str(info.value)


def test_a_symlink_inside_the_output_folder_cannot_lead_out(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeNameError, match="outside the output folder"):
        output_path(out, "link/x", ".png")


# ------------------------------------------------------------------------------------- a real hostile tar
def _png(seed: int, size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _hostile_shard(path: Path, names: list[str]) -> None:
    """A tar whose members are named exactly ``names`` (Python's tarfile writes them as given)."""
    with tarfile.open(path, "w") as tar:
        for i, name in enumerate(names):
            data = _png(i)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


class _Copy(LightningModule):
    """Returns its input as the 'inpainting': the writer is what is under test."""

    def predict_step(self, batch, batch_idx):
        return {"inpainted": batch["image"], "mask": batch["mask"], "key": batch["key"]}


@pytest.fixture
def hostile(tmp_path):
    tag = uuid.uuid4().hex[:10]
    climbing = f"../../../../tmp/restorelab-escape-{tag}.png"
    absolute = f"/tmp/restorelab-absolute-{tag}.png"
    shard = tmp_path / "shards" / "test-000000.tar"
    shard.parent.mkdir()
    _hostile_shard(shard, ["good.png", climbing, absolute])
    yield shard, [Path("/tmp") / f"restorelab-escape-{tag}.png", Path(absolute)]
    for target in (Path("/tmp") / f"restorelab-escape-{tag}.png", Path(absolute)):
        target.unlink(missing_ok=True)


def test_predict_refuses_a_shard_with_climbing_and_absolute_members_and_writes_nothing(hostile, tmp_path):
    shard, targets = hostile
    out = tmp_path / "deep" / "er" / "out"
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, callbacks=[InpaintingPredictionWriter(str(out), overwrite=True)])
    dm = ShardDataModule(test_shards=str(shard), resolution=32, batch_size=3, num_workers=0, allow_missing_class_list=True)
    with pytest.raises(ShardError, match=r"unsafe name '\.\./\.\./\.\./\.\./tmp/restorelab-escape-.*in shard .*test-000000\.tar.*'\.\.'"):
        trainer.predict(_Copy(), datamodule=dm, return_predictions=False)
    assert not any(t.exists() for t in targets)
    assert not out.exists()  # refused in setup: nothing predicted, no folder created


def test_the_prediction_writer_itself_refuses_keys_that_leave_the_output_folder(tmp_path):
    """Defence in depth, for datamodules that do not check their keys: the whole batch is checked before writing."""
    out = tmp_path / "out"
    writer = InpaintingPredictionWriter(str(out), overwrite=True)
    writer.check_output_dir()
    image = torch.zeros(2, 3, 8, 8)
    prediction = {"inpainted": image, "mask": torch.ones(2, 1, 8, 8), "key": ["fine", "../escaped"]}
    with pytest.raises(UnsafeNameError, match="'../escaped'"):
        writer.write_on_batch_end(None, None, prediction, None, None, 0, 0)
    assert list(out.iterdir()) == [] and not (tmp_path / "escaped.png").exists()


def test_inspect_check_fails_naming_the_unsafe_keys(hostile):
    shard, _ = hostile
    run = subprocess.run([sys.executable, "-m", "datamodules.shards", "inspect", str(shard), "--check"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "unsafe key" in run.stdout and "restorelab-escape" in run.stdout and "restorelab-absolute" in run.stdout
    assert "test-000000.tar" in run.stdout


def test_ripple_mask_parser_reads_only_inside_its_folder(tmp_path):
    from ripple.parsers import MaskFolderParser

    parser = MaskFolderParser(str(tmp_path), kind="mask", suffix=".png")
    assert parser.path_for("a/b") == tmp_path / "a" / "b.png"
    with pytest.raises(UnsafeNameError):
        parser.path_for("../../etc/passwd")

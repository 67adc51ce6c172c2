"""Loading a checkpoint never runs code from it: a pickle payload given to every loader is refused.

The payload is a real ``__reduce__`` that would call ``os.system("touch <marker>")`` when unpickled.
Each loader must raise a :class:`networks.checkpoints.UnsafeCheckpointError` naming the file, and the
marker file must never appear. Damaged files (empty, truncated, not a torch file, NaN or integer
weights) give clear errors too, and an explicitly trusted file still loads, with a warning.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from networks.checkpoints import (
    TRUSTED_CHECKPOINTS_ENV,
    CheckpointError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    atomic_save,
    read_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
UNET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "heads": 2, "norm_groups": 4}
EMB = {"tokens_per_category": 2, "dim": 16}


class _Payload:
    """Unpickling this object runs a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def payload(tmp_path):
    """``payload(name, legacy=False)`` writes a checkpoint-looking dict with the payload inside."""
    marker = tmp_path / "PAYLOAD_RAN"

    def write(name: str, legacy: bool = False, **entries) -> Path:
        path = tmp_path / name
        obj = {"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"x": _Payload(marker)}, **entries}
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        return path

    write.marker = marker
    yield write
    assert not marker.exists(), "the checkpoint's payload ran"


def _refused(path: Path):
    return pytest.raises(UnsafeCheckpointError, match=f"{path.name}.*refused to load.*posix.system")


@pytest.mark.parametrize("legacy", [False, True])
def test_official_loaders_refuse_payloads(payload, legacy):
    from networks.hfgi.arcface import ArcFaceBackbone
    from networks.hfgi.editing import load_direction
    from networks.hfgi.official_checkpoints import load_arcface, load_e4e, load_hfgi, load_stylegan2
    from networks.hfgi.pipeline import HFGIPipeline

    pipe = HFGIPipeline.build(size=32, fusion_layer=5, resolution=32, style_dim=32, n_mlp=2, max_channels=16)
    cases = {
        "stylegan2.pt": lambda p: load_stylegan2(p, pipe.generator),
        "e4e.pt": lambda p: load_e4e(p, pipe.encoder, pipe.generator),
        "hfgi.pt": lambda p: load_hfgi(p, pipe.encoder, pipe.generator, pipe.consultation, pipe.aligner),
        "arcface.pth": lambda p: load_arcface(p, ArcFaceBackbone(num_layers=50)),
        "pose.pt": lambda p: load_direction(p, 8, 32),
    }
    for name, load in cases.items():
        path = payload(name, legacy=legacy)
        with _refused(path):
            load(path)


def test_lama_graphonomy_lcg_c2f_and_metric_weights_refuse_payloads(payload, tmp_path):
    from diffusion.c2f import C2FModel
    from evaluation.weights import INCEPTION_FID, LPIPS_BACKBONES, build_lpips, inception_feature_extractor
    from inpainters.c2f import C2FInpainter
    from inpainters.lama import LamaInpainter
    from lightning_modules.c2f_diffusion import C2FDiffusionModule
    from ripple.parsers import GraphonomyParser

    lama = payload("best.ckpt")
    with _refused(lama):
        LamaInpainter(checkpoint=str(lama), generator=dict(input_nc=4, output_nc=3, ngf=8, n_downsampling=2, n_blocks=1))
    graph = payload("inference.pth", legacy=True)
    with _refused(graph):
        GraphonomyParser(checkpoint=str(graph), config=dict(hidden=8, entry=[8, 8, 16, 16, 24], middle_blocks=1, exit=[24, 32, 32, 32], aspp=16, low_level=8))
    c2f = payload("c2f.ckpt")
    with _refused(c2f):
        C2FModel.from_checkpoint(c2f)
    with _refused(c2f):
        C2FInpainter(checkpoint=str(c2f))
    for arg in ("lcg_checkpoint", "init_checkpoint"):
        with _refused(c2f):
            C2FDiffusionModule(unets=[UNET], embedding=EMB, resolutions=[16], sampling_steps=[2], guidance_gains=[1.0],
                               **{arg: str(c2f)})
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in (INCEPTION_FID.filename, LPIPS_BACKBONES["alex"].filename):
        os.replace(payload(name), weights / name)
    with pytest.raises(UnsafeCheckpointError, match=INCEPTION_FID.filename):
        inception_feature_extractor(2048, weights_dir=str(weights))
    with pytest.raises(UnsafeCheckpointError, match=LPIPS_BACKBONES["alex"].filename):
        build_lpips("alex", True, weights_dir=str(weights))


def test_payload_through_the_cli_is_refused_and_never_runs(payload, tmp_path):
    """The reported reproduction: ``--model.init_args.init_checkpoint=<payload>`` ran the command and exited 0."""
    path = payload("evil.ckpt")
    proc = subprocess.run(
        [sys.executable, "-m", "main", "fit", "--config", "configs/c2f/tiny.yaml", f"--model.init_args.init_checkpoint={path}",
         "--trainer.max_steps=1", f"--trainer.logger.init_args.save_dir={tmp_path}", "--data.init_args.synthetic_dir=" + str(tmp_path / "data")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert proc.returncode != 0
    assert "evil.ckpt" in proc.stderr and "refused to load" in proc.stderr
    assert "weights_only=False" not in proc.stderr


def test_trusted_file_loads_with_a_warning(payload, tmp_path, monkeypatch):
    benign = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "opts": _Benign(3)}, benign)
    with pytest.raises(UnsafeCheckpointError, match="--trust_checkpoint"):
        read_checkpoint(benign)
    monkeypatch.setenv(TRUSTED_CHECKPOINTS_ENV, str(benign))
    with pytest.warns(UserWarning, match="legacy.ckpt.*trusted"):
        obj = read_checkpoint(benign)
    assert obj["opts"].value == 3


class _Benign:
    def __init__(self, value: int) -> None:
        self.value = value


def test_damaged_files_get_clear_errors(tmp_path):
    from networks.hfgi.official_checkpoints import load_stylegan2
    from networks.hfgi.stylegan2 import StyleGAN2Generator

    gen = StyleGAN2Generator(32, 32, 2, max_channels=16, fusion_layer=5)
    good = tmp_path / "sg2.pt"
    torch.save({"g_ema": gen.state_dict(), "latent_avg": torch.zeros(32)}, good)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pt is empty \(0 bytes\)"):
        load_stylegan2(empty, gen)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pt: cannot read .*truncated, corrupt"):
        load_stylegan2(truncated, gen)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="neither a zip archive nor a pickle"):
        load_stylegan2(text, gen)
    state = {k: v.clone() for k, v in gen.state_dict().items()}
    first_float = next(k for k, v in state.items() if v.is_floating_point())
    state[first_float][...] = float("nan")
    torch.save({"g_ema": state}, tmp_path / "nan.pt")
    with pytest.raises(CheckpointMismatchError, match=f"NaN or Inf values \\(1\\): {first_float}"):
        load_stylegan2(tmp_path / "nan.pt", gen)
    state = {k: (v.long() if k == first_float else v) for k, v in gen.state_dict().items()}
    torch.save({"g_ema": state}, tmp_path / "int.pt")
    with pytest.raises(CheckpointMismatchError, match=f"wrong dtypes \\(1\\): {first_float}: int64"):
        load_stylegan2(tmp_path / "int.pt", gen)


def test_atomic_save_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "ckpts" / "last.ckpt"
    atomic_save({"a": torch.ones(3)}, target)
    assert torch.equal(read_checkpoint(target)["a"], torch.ones(3))
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temporary file left
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file, not a directory"):
        atomic_save({"a": 1}, tmp_path / "file" / "last.ckpt")


def test_trust_checkpoint_on_the_command_line(tmp_path, synthetic_shards, monkeypatch):
    """A legacy file that pickles an object is refused until named with --trust_checkpoint FILE (then it warns)."""
    import argparse

    from main import cli_main

    monkeypatch.setenv(TRUSTED_CHECKPOINTS_ENV, "")  # restored after the test: trust never leaks into other tests
    data = [f"--data.init_args.train_shards={synthetic_shards.train}", f"--data.init_args.val_shards={synthetic_shards.val}",
            "--data.init_args.synthetic_dir=null", "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
            "--model.init_args.val_sampling_steps=[1,1,1]", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    cli_main(["fit", "--config", str(ROOT / "configs/c2f/tiny.yaml"), *data])
    (last,) = tmp_path.rglob("last.ckpt")
    legacy = tmp_path / "legacy.ckpt"
    torch.save({**torch.load(last, weights_only=True), "opts": argparse.Namespace(lr=0.1)}, legacy)
    init = f"--model.init_args.init_checkpoint={legacy}"
    with pytest.raises(UnsafeCheckpointError, match="legacy.ckpt.*argparse.Namespace.*--trust_checkpoint"):
        cli_main(["fit", "--config", str(ROOT / "configs/c2f/tiny.yaml"), *data, init])
    with pytest.warns(UserWarning, match="legacy.ckpt: fully unpickling a trusted checkpoint"):
        cli = cli_main(["fit", "--config", str(ROOT / "configs/c2f/tiny.yaml"), *data, init, "--trust_checkpoint", str(legacy)])
    assert cli.trainer.global_step == 1

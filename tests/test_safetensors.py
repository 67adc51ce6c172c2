"""C2F models as .safetensors: export, round trip, the bundled demo file, clear errors for bad files."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from diffusion.c2f import C2FModel
from diffusion.c2f_sampling import sample_c2f
from inpainters.c2f import C2FInpainter
from inpainters.export import main as export_main
from networks.checkpoints import CheckpointError, CheckpointMismatchError, CheckpointNotFoundError

ROOT = Path(__file__).resolve().parents[1]
UNET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "heads": 2, "norm_groups": 4}


def _header(path: Path) -> dict:
    """The safetensors header by the format's definition: u64 little-endian length, then that many bytes of JSON."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def test_round_trip_through_the_export_command(tmp_path):
    torch.manual_seed(0)
    model = C2FModel([UNET, UNET], {"tokens_per_category": 2, "dim": 16}, resolutions=[16, 32], combiner_width=8,
                     combiner_depth=1, sampling={"steps": [2, 2], "gains": [2.0, 1.0]}, min_snr_gamma=None)
    ckpt = model.save(tmp_path / "m.ckpt")
    out = tmp_path / "m.safetensors"
    assert export_main([str(ckpt), str(out)]) == 0
    meta = _header(out)["__metadata__"]
    entry = json.loads(meta["c2f_model"])
    assert entry["format"] == "restorelab.c2f/1" and entry["config"] == json.loads(json.dumps(model.config()))
    loaded = C2FModel.from_checkpoint(out)
    assert loaded.config() == model.config() and not loaded.training
    ref = model.state_dict()
    assert set(loaded.state_dict()) == set(ref)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, ref[k]), k
    image, mask = torch.rand(1, 3, 32, 32) * 2 - 1, torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 4:24] = 1
    with torch.inference_mode():
        a, _ = sample_c2f(model.eval(), image, mask, generator=torch.Generator().manual_seed(0))
        b = C2FInpainter(str(out), strategy="full")(image, mask)
        c = C2FInpainter(str(ckpt), strategy="full")(image, mask)
    torch.testing.assert_close(b, c, atol=0, rtol=0)
    assert torch.equal(a, C2FInpainter(str(ckpt), strategy="full").predict(image, mask).where(mask > 0.5, image))


def test_bundled_demo_safetensors_matches_the_torch_file():
    st, ckpt = ROOT / "assets" / "c2f_synthetic_demo.safetensors", ROOT / "assets" / "c2f_synthetic_demo.ckpt"
    assert st.stat().st_size < 20 * 2**20
    a, b = C2FModel.from_checkpoint(st), C2FModel.from_checkpoint(ckpt)
    assert a.config() == b.config()
    sb = b.state_dict()
    assert all(torch.equal(v, sb[k]) for k, v in a.state_dict().items()), (
        "assets/c2f_synthetic_demo.safetensors is stale: python -m inpainters.export assets/c2f_synthetic_demo.ckpt "
        "assets/c2f_synthetic_demo.safetensors")


def test_bad_files_give_errors_naming_them(tmp_path):
    missing = tmp_path / "none.safetensors"
    with pytest.raises(CheckpointNotFoundError, match="none.safetensors"):
        C2FModel.from_checkpoint(missing)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="junk.safetensors.*cannot read"):
        C2FModel.from_checkpoint(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatchError, match="foreign.safetensors.*without a C2F model"):
        C2FInpainter(str(foreign))
    assert export_main([str(junk), str(tmp_path / "o.safetensors")]) == 2
    assert export_main([str(ROOT / "assets" / "c2f_synthetic_demo.ckpt"), str(tmp_path / "o.bin")]) == 2

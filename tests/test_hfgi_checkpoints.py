"""Official-format StyleGAN2 / e4e / HFGI / direction files: written by the tests, loaded strictly."""
from __future__ import annotations

import pytest
import torch

from networks.hfgi.consultation_encoder import ConsultationEncoder
from networks.hfgi.distortion_aligner import DistortionAligner
from networks.hfgi.e4e import Encoder4Editing
from networks.hfgi.editing import load_direction, load_directions
from networks.hfgi.pipeline import HFGIPipeline
from networks.checkpoints import CheckpointError
from networks.hfgi.official_checkpoints import (
    checkpoint_kind,
    load_e4e,
    load_hfgi,
    load_stylegan2,
    save_e4e,
    save_hfgi,
    save_stylegan2,
)
from networks.hfgi.stylegan2 import StyleGAN2Generator

ARCH = dict(style_dim=32, n_mlp=2, max_channels=16)


def _generator(size: int = 32, seed: int = 0) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    return StyleGAN2Generator(size, 32, 2, max_channels=16, fusion_layer=5).eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random-init tiny pipeline written as official StyleGAN2, e4e and HFGI files."""
    root = tmp_path_factory.mktemp("hfgi_ckpts")
    torch.manual_seed(1)
    pipe = HFGIPipeline.build(size=32, fusion_layer=5, resolution=32, **ARCH).eval()
    latent_avg = torch.randn(32)
    pipe.latent_avg.copy_(latent_avg.expand(pipe.n_styles, -1))
    files = {
        "stylegan2": root / "stylegan2.pt",
        "e4e": root / "e4e.pt",
        "hfgi": root / "hfgi.pt",
    }
    save_stylegan2(files["stylegan2"], pipe.generator, latent_avg)
    save_e4e(files["e4e"], pipe.encoder, pipe.generator, pipe.latent_avg)
    save_hfgi(files["hfgi"], pipe.encoder, pipe.generator, pipe.consultation, pipe.aligner, pipe.latent_avg)
    return pipe, files


def test_written_files_have_the_official_layout(tiny):
    _, files = tiny
    sg = torch.load(files["stylegan2"], map_location="cpu")
    assert set(sg) == {"g_ema", "latent_avg"} and sg["latent_avg"].shape == (32,)
    e4e = torch.load(files["e4e"], map_location="cpu")
    assert set(e4e) == {"state_dict", "opts", "latent_avg"}
    assert {k.split(".")[0] for k in e4e["state_dict"]} == {"encoder", "decoder"}
    assert e4e["opts"]["stylegan_size"] == 32
    hfgi = torch.load(files["hfgi"], map_location="cpu")
    assert {k.split(".")[0] for k in hfgi["state_dict"]} == {"encoder", "decoder", "residue", "grid_align"}
    assert [checkpoint_kind(x) for x in (sg, e4e, hfgi)] == ["stylegan2", "e4e", "hfgi"]


def test_stylegan2_roundtrip_is_exact(tiny):
    pipe, files = tiny
    g = _generator(seed=5)
    latent_avg = load_stylegan2(files["stylegan2"], g)
    assert latent_avg.shape == (g.n_latent, 32)
    w = torch.randn(2, g.n_latent, 32)
    with torch.no_grad():
        torch.testing.assert_close(g(w), pipe.generator(w), rtol=0, atol=0)


def test_hfgi_checkpoint_restores_the_whole_pipeline(tiny):
    pipe, files = tiny
    restored = HFGIPipeline.from_hfgi_checkpoint(files["hfgi"], resolution=32, fusion_layer=5, **ARCH).eval()
    torch.testing.assert_close(restored.latent_avg, pipe.latent_avg)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    direction = torch.randn(1, 32)
    with torch.no_grad():
        torch.testing.assert_close(restored.edit(x, direction, 2.0), pipe.edit(x, direction, 2.0), rtol=0, atol=0)


def test_from_checkpoints_e4e_plus_stylegan2_leaves_ec_and_ada_random(tiny):
    pipe, files = tiny
    torch.manual_seed(9)
    loaded = HFGIPipeline.from_checkpoints(
        e4e=files["e4e"], stylegan2=files["stylegan2"], size=32, fusion_layer=5, resolution=32, **ARCH
    )
    for name, t in pipe.encoder.state_dict().items():
        torch.testing.assert_close(loaded.encoder.state_dict()[name], t)
    torch.testing.assert_close(loaded.latent_avg, pipe.latent_avg)
    assert not torch.equal(loaded.aligner.conv_layer1[0].weight, pipe.aligner.conv_layer1[0].weight)


def test_missing_file_names_the_file_and_where_it_goes(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_stylegan2(tmp_path / "stylegan2-ffhq-config-f.pt", _generator())
    msg = str(err.value)
    assert "stylegan2-ffhq-config-f.pt" in msg and "pretrained/" in msg and "rosinality" in msg
    with pytest.raises(FileNotFoundError, match="e4e_ffhq_encode.pt"):
        load_e4e(tmp_path / "nope.pt", Encoder4Editing.__new__(Encoder4Editing))
    with pytest.raises(FileNotFoundError, match="interfacegan_directions"):
        load_direction(tmp_path / "age.pt", 8, 32)


def test_wrong_kind_is_named(tiny):
    pipe, files = tiny
    with pytest.raises(CheckpointError, match="looks like a e4e file"):
        load_stylegan2(files["e4e"], _generator())
    with pytest.raises(CheckpointError, match="looks like a hfgi file.*load_hfgi"):
        load_e4e(files["hfgi"], pipe.encoder, pipe.generator)
    with pytest.raises(CheckpointError, match="looks like a stylegan2 file"):
        load_hfgi(files["stylegan2"], None, pipe.generator, None, None)


def test_wrong_resolution_is_detected(tiny, tmp_path):
    _, files = tiny
    with pytest.raises(CheckpointError, match=r"32x32 StyleGAN2 generator.*size=64"):
        load_stylegan2(files["stylegan2"], StyleGAN2Generator(64, 32, 2, max_channels=16, fusion_layer=5))
    big = tmp_path / "g64.pt"
    save_stylegan2(big, StyleGAN2Generator(64, 32, 2, max_channels=16, fusion_layer=5))
    with pytest.raises(CheckpointError, match=r"64x64 StyleGAN2 generator.*size=32"):
        load_stylegan2(big, _generator())


def test_missing_and_unexpected_keys_are_listed(tiny, tmp_path):
    _, files = tiny
    ckpt = torch.load(files["hfgi"], map_location="cpu")
    del ckpt["state_dict"]["residue.condition_scale3.0.weight"]
    ckpt["state_dict"]["grid_align.extra_layer.weight"] = torch.zeros(1)
    ckpt["state_dict"]["grid_align.conv_layer1.0.weight"] = torch.zeros(16, 3, 3, 3)
    bad = tmp_path / "bad_hfgi.pt"
    torch.save(ckpt, bad)
    consultation = ConsultationEncoder(16, 32)
    with pytest.raises(CheckpointError, match=r"(?s)bad_hfgi.pt \[residue\.\*\].*missing keys \(1\): condition_scale3.0.weight"):
        load_hfgi(bad, None, None, consultation, None)
    with pytest.raises(CheckpointError) as err:
        load_hfgi(bad, None, None, None, DistortionAligner())
    assert "unexpected keys (1): extra_layer.weight" in str(err.value)
    assert "conv_layer1.0.weight: file (16, 3, 3, 3) vs model (16, 6, 3, 3)" in str(err.value)


def test_stray_prefix_in_e4e_file_is_rejected(tiny, tmp_path):
    pipe, files = tiny
    ckpt = torch.load(files["e4e"], map_location="cpu")
    ckpt["state_dict"]["discriminator.weight"] = torch.zeros(1)
    bad = tmp_path / "e4e_extra.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="unexpected keys outside.*discriminator.weight"):
        load_e4e(bad, pipe.encoder, pipe.generator)


def test_direction_files_official_shapes_and_bad_shape(tmp_path):
    n_styles, dim = 8, 32
    torch.save(torch.randn(1, dim), tmp_path / "age.pt")
    torch.save(torch.randn(1, n_styles, dim), tmp_path / "pose.pt")
    torch.save(torch.randn(1, 14, dim), tmp_path / "bad.pt")
    loaded = load_directions({"age": tmp_path / "age.pt", "pose": tmp_path / "pose.pt"}, n_styles, dim)
    assert loaded["age"].shape == (1, dim) and loaded["pose"].shape == (1, n_styles, dim)
    assert all(d.device.type == "cpu" for d in loaded.values())
    with pytest.raises(ValueError, match=r"bad.pt: direction has shape \(1, 14, 32\)"):
        load_direction(tmp_path / "bad.pt", n_styles, dim)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to write a cuda:0 tensor")
def test_cuda_saved_pose_direction_loads_on_cpu(tmp_path):
    torch.save(torch.randn(1, 8, 32, device="cuda:0"), tmp_path / "pose.pt")
    assert load_direction(tmp_path / "pose.pt", 8, 32).device.type == "cpu"


def test_arcface_ir_se50_layout_roundtrip_and_identity_loss(tmp_path):
    from networks.hfgi.arcface import ArcFaceBackbone, IdentityLoss

    torch.manual_seed(0)
    net = ArcFaceBackbone().eval()
    sd = net.state_dict()
    # model_ir_se50.pth layout (TreB1eN Backbone(112, 50, 'ir_se')): same stem/body as e4e + output_layer
    assert tuple(sd["output_layer.0.running_var"].shape) == (512,)
    assert tuple(sd["output_layer.3.weight"].shape) == (512, 512 * 7 * 7)
    assert tuple(sd["output_layer.4.running_mean"].shape) == (512,)
    assert len([k for k in sd if k.startswith("body.") and k.endswith("res_layer.5.fc1.weight")]) == 24
    torch.save(sd, tmp_path / "model_ir_se50.pth")
    loss = IdentityLoss(tmp_path / "model_ir_se50.pth")
    loss.train()
    assert not loss.backbone.training and not any(p.requires_grad for p in loss.parameters())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    same = loss(x, x)
    assert same.shape == (2,) and float(same.abs().max()) < 1e-5
    assert float(loss(x, x.flip(-1).roll(7, -2)).min()) > 1e-4
    with pytest.raises(FileNotFoundError, match="model_ir_se50.pth"):
        IdentityLoss(tmp_path / "missing" / "model_ir_se50.pth")
    sd.pop("output_layer.3.weight")
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="missing keys \\(1\\): output_layer.3.weight"):
        IdentityLoss(tmp_path / "broken.pth")

"""HFGI networks: official key/shape formats, pure-PyTorch upfirdn2d, generator fusion, editing."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from networks.hfgi.e4e import Encoder4Editing
from networks.hfgi.editing import edit_latents, normalize_direction
from networks.hfgi.consultation_encoder import ConsultationEncoder
from networks.hfgi.distortion_aligner import DistortionAligner
from networks.hfgi.pipeline import HFGIPipeline
from networks.hfgi.stylegan2 import StyleGAN2Generator
from networks.hfgi.upfirdn2d import fused_leaky_relu, make_kernel, upfirdn2d

FIXTURES = Path(__file__).parent / "fixtures"


def _keys(module: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in module.state_dict().items()]


def _fixture(name: str) -> list[list]:
    return json.loads((FIXTURES / name).read_text())["keys"]


# ---------------------------------------------------------------- official key formats
def expected_generator_keys(size: int, style_dim: int = 512, n_mlp: int = 8, cm: int = 2) -> list[list]:
    """rosinality ``Generator`` g_ema keys written out from the module layout of its model.py."""
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
    f = "float32"
    keys = []
    for i in range(1, n_mlp + 1):
        keys += [[f"style.{i}.weight", [style_dim, style_dim], f], [f"style.{i}.bias", [style_dim], f]]
    keys.append(["input.input", [1, 512, 4, 4], f])

    def styled(p, cin, cout, up):
        out = [[f"{p}.conv.weight", [1, cout, cin, 3, 3], f]]
        if up:
            out.append([f"{p}.conv.blur.kernel", [4, 4], f])
        return out + [
            [f"{p}.conv.modulation.weight", [cin, style_dim], f],
            [f"{p}.conv.modulation.bias", [cin], f],
            [f"{p}.noise.weight", [1], f],
            [f"{p}.activate.bias", [cout], f],
        ]

    def to_rgb(p, cin, up):
        out = [[f"{p}.bias", [1, 3, 1, 1], f]]
        if up:
            out.append([f"{p}.upsample.kernel", [4, 4], f])
        return out + [
            [f"{p}.conv.weight", [1, 3, cin, 1, 1], f],
            [f"{p}.conv.modulation.weight", [cin, style_dim], f],
            [f"{p}.conv.modulation.bias", [cin], f],
        ]

    keys += styled("conv1", 512, 512, False) + to_rgb("to_rgb1", 512, False)
    log_size = int(math.log2(size))
    cin = 512
    for j, r in enumerate(range(3, log_size + 1)):
        cout = ch[2**r]
        keys += styled(f"convs.{2 * j}", cin, cout, True) + styled(f"convs.{2 * j + 1}", cout, cout, False)
        cin = cout
    for j, r in enumerate(range(3, log_size + 1)):
        keys += to_rgb(f"to_rgbs.{j}", ch[2**r], True)
    for i in range((log_size - 2) * 2 + 1):
        res = 2 ** ((i + 5) // 2)
        keys.append([f"noises.noise_{i}", [1, 1, res, res], f])
    return keys


def test_expected_generator_pattern_matches_official_size32_reference():
    assert expected_generator_keys(32) == _fixture("stylegan2_generator_size32.keys.json")


def test_generator_size32_keys_equal_official_reference():
    g = StyleGAN2Generator(32, 512, 8, channel_multiplier=2, fusion_layer=5)
    assert _keys(g) == _fixture("stylegan2_generator_size32.keys.json")


def test_generator_1024_config_f_keys_follow_the_official_pattern_on_meta_device():
    with torch.device("meta"):
        g = StyleGAN2Generator(1024, 512, 8, channel_multiplier=2)
    assert all(t.device.type == "meta" for t in g.state_dict().values())  # nothing allocated
    assert _keys(g) == expected_generator_keys(1024)
    assert g.n_latent == 18 and g.fusion_resolution == 64 and g.fusion_channels == 512


def test_e4e_keys_equal_the_documented_official_encoder():
    with torch.device("meta"):
        e = Encoder4Editing(1024, 50, "ir_se")
    assert e.style_count == 18
    assert _keys(e) == _fixture("e4e_encoder_size1024.keys.json")


@pytest.mark.parametrize(
    "cls, fixture",
    [(ConsultationEncoder, "hfgi_consultation_encoder.keys.json"), (DistortionAligner, "hfgi_ada_aligner.keys.json")],
)
def test_consultation_encoder_and_ada_keys_equal_official(cls, fixture):
    assert _keys(cls()) == _fixture(fixture)


def test_ada_has_about_0_6m_parameters_and_keeps_resolution():
    ada = DistortionAligner()
    assert 0.55e6 < sum(p.numel() for p in ada.parameters()) < 0.65e6
    assert ada(torch.randn(1, 6, 32, 32)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="6 channels"):
        ada(torch.randn(1, 3, 32, 32))


# ---------------------------------------------------------------- upfirdn2d
def _reference_upfirdn(x: np.ndarray, k: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """Explicit zero insertion, padding/cropping, true 2-D convolution (scipy), subsampling."""
    h, w = x.shape
    z = np.zeros((h * up, w * up), dtype=np.float64)
    z[::up, ::up] = x
    p0, p1 = pad
    z = np.pad(z, ((max(p0, 0), max(p1, 0)), (max(p0, 0), max(p1, 0))))
    z = z[max(-p0, 0) : z.shape[0] - max(-p1, 0), max(-p0, 0) : z.shape[1] - max(-p1, 0)]
    y = convolve2d(z, k, mode="valid")
    return y[::down, ::down]


@pytest.mark.parametrize("up, down, pad", [(1, 1, (1, 2)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (0, -1)), (1, 1, (-1, 0))])
def test_upfirdn2d_equals_direct_reference(up, down, pad):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    k = torch.rand(4, 4, dtype=torch.float64)  # asymmetric: checks the kernel is flipped (true convolution)
    out = upfirdn2d(x, k, up=up, down=down, pad=pad)
    for b in range(2):
        for c in range(3):
            ref = _reference_upfirdn(x[b, c].numpy(), k.numpy(), up, down, pad)
            np.testing.assert_allclose(out[b, c].numpy(), ref, rtol=1e-10, atol=1e-10)


def test_fused_leaky_relu_matches_definition():
    x = torch.randn(2, 4, 3, 3)
    b = torch.randn(4)
    expected = torch.where(x + b.view(1, 4, 1, 1) >= 0, x + b.view(1, 4, 1, 1), 0.2 * (x + b.view(1, 4, 1, 1))) * math.sqrt(2)
    torch.testing.assert_close(fused_leaky_relu(x, b), expected)


def test_stylegan_upsample_of_a_constant_is_constant_inside():
    k = make_kernel([1, 3, 3, 1]) * 4
    out = upfirdn2d(torch.ones(1, 1, 8, 8), k, up=2, pad=(2, 1))
    assert out.shape == (1, 1, 16, 16)
    torch.testing.assert_close(out[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))


# ---------------------------------------------------------------- generator behaviour
def test_generator_fusion_changes_only_with_conditions_and_checks_shapes():
    torch.manual_seed(0)
    g = StyleGAN2Generator(32, 32, 2, channel_multiplier=1, max_channels=16, fusion_layer=5).eval()
    w = torch.randn(2, g.n_latent, 32)
    base = g(w)
    assert base.shape == (2, 3, 32, 32)
    zeros = torch.zeros(2, 16, 32, 32)
    torch.testing.assert_close(g(w, (zeros, zeros)), base)  # scale 0, shift 0 is the identity
    assert not torch.allclose(g(w, (zeros, torch.ones_like(zeros))), base)
    with pytest.raises(ValueError, match="condition scale"):
        g(w, (torch.zeros(2, 16, 16, 16), zeros))
    with pytest.raises(ValueError, match="fusion_layer=9"):
        StyleGAN2Generator(32, 32, 2, fusion_layer=9)
    with pytest.raises(ValueError, match="W\\+"):
        g(torch.randn(2, 3, 32))


def test_generator_truncation_and_mapping():
    torch.manual_seed(0)
    g = StyleGAN2Generator(16, 16, 2, max_channels=8, fusion_layer=None).eval()
    z = torch.randn(3, 16)
    mean = g.mean_latent(64)
    torch.testing.assert_close(g(z, input_is_latent=False, truncation=0.0, truncation_latent=mean), g(mean.expand(3, -1)))
    with pytest.raises(ValueError, match="truncation_latent"):
        g(z, truncation=0.5)


# ---------------------------------------------------------------- editing
def test_edit_latents_broadcast_and_degree_zero():
    w = torch.randn(2, 10, 8)
    shared = torch.randn(1, 8)
    per_layer = torch.randn(1, 10, 8)
    torch.testing.assert_close(edit_latents(w, shared, 0.0), w)
    torch.testing.assert_close(edit_latents(w, shared, 2.0), w + 2.0 * shared.view(1, 1, 8))
    torch.testing.assert_close(edit_latents(w, per_layer, -1.5), w - 1.5 * per_layer)
    deg = torch.tensor([0.0, 1.0])
    out = edit_latents(w, shared, deg)
    torch.testing.assert_close(out[0], w[0])
    torch.testing.assert_close(out[1], w[1] + shared)
    with pytest.raises(ValueError, match="does not fit"):
        edit_latents(w, torch.randn(1, 7, 8), 1.0)


def test_normalize_direction_shapes():
    assert normalize_direction(torch.randn(512), 18, 512).shape == (1, 512)
    assert normalize_direction(torch.randn(18, 512), 18, 512).shape == (1, 18, 512)
    with pytest.raises(ValueError, match=r"expected \(1, 512\).*\(1, 18, 512\)"):
        normalize_direction(torch.randn(1, 14, 512), 18, 512)


@pytest.fixture(scope="module")
def tiny_pipeline() -> HFGIPipeline:
    torch.manual_seed(0)
    return HFGIPipeline.build(size=32, style_dim=32, n_mlp=2, max_channels=16, fusion_layer=5, resolution=32).eval()


def test_pipeline_edit_with_degree_zero_returns_the_inversion(tiny_pipeline):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        rec = tiny_pipeline.reconstruct(x)
        for direction in (torch.randn(1, 32), torch.randn(1, tiny_pipeline.n_styles, 32)):
            torch.testing.assert_close(tiny_pipeline.edit(x, direction, 0.0), rec, rtol=0, atol=0)
            assert not torch.allclose(tiny_pipeline.edit(x, direction, 3.0), rec)
        grid = tiny_pipeline.edit_grid(x, {"age": torch.randn(1, 32)}, [0.0, 2.0])
    torch.testing.assert_close(grid["age"][0.0], rec)
    assert rec.shape == (2, 3, 32, 32)


def test_pipeline_resizes_wrong_size_images_with_one_warning(tiny_pipeline):
    tiny_pipeline._warned_resize = False
    with pytest.warns(UserWarning, match="resizing them"):
        with torch.no_grad():
            w = tiny_pipeline.invert(torch.rand(1, 3, 48, 48))
    assert w.shape == (1, tiny_pipeline.n_styles, 32)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            tiny_pipeline.invert(torch.rand(1, 3, 48, 48))  # second time: silent
    with pytest.raises(ValueError, match="B, 3, H, W"):
        tiny_pipeline.invert(torch.rand(1, 1, 32, 32))

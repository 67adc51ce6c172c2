"""LaMa-compatible generator: official key layout, checkpoint loading, exact known pixels."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inpainters.lama import LamaInpainter, pad_symmetric_to_modulo
from networks.checkpoints import CheckpointError
from networks.lama.ffc import BIG_LAMA_CONFIG, FFCResNetGenerator, load_big_lama_generator

FIXTURES = Path(__file__).parent / "fixtures"
TINY = dict(input_nc=4, output_nc=3, ngf=8, n_downsampling=2, n_blocks=2,
            resnet_conv_kwargs=dict(ratio_gin=0.75, ratio_gout=0.75, enable_lfu=False))


def test_big_lama_keys_and_shapes_equal_official_reference():
    ref = json.loads((FIXTURES / "lama_ffc_resnet_generator_big.keys.json").read_text())
    note_cfg = json.loads(ref["note"].split("Constructor: ", 1)[1])
    assert note_cfg == BIG_LAMA_CONFIG
    with torch.device("meta"):
        gen = FFCResNetGenerator(**BIG_LAMA_CONFIG)
    mine = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in gen.state_dict().items()]
    assert mine == ref["keys"]


def test_tiny_generator_forward_shapes_and_range():
    gen = FFCResNetGenerator(**TINY).eval()
    with torch.no_grad():
        out = gen(torch.rand(2, 4, 32, 24))
    assert out.shape == (2, 3, 32, 24)
    lfu = FFCResNetGenerator(**dict(TINY, resnet_conv_kwargs=dict(ratio_gin=0.5, ratio_gout=0.5, enable_lfu=True)))
    with torch.no_grad():
        assert lfu.eval()(torch.rand(1, 4, 32, 32)).shape == (1, 3, 32, 32)
        with pytest.raises(ValueError, match="square"):
            lfu(torch.rand(1, 4, 32, 24))
    with pytest.raises(ValueError, match="multiples of 4"):
        gen(torch.rand(1, 4, 30, 32))


def test_generator_keeps_float64_and_upcasts_only_half_precision():
    torch.manual_seed(0)
    gen = FFCResNetGenerator(**TINY).eval()
    x = torch.rand(2, 4, 32, 32)
    with torch.no_grad():
        out32 = gen(x)
        out64 = gen.double()(x.double())  # crashed with "expected scalar type Float but found Double"
        assert out64.dtype == torch.float64
        assert (out64 - out32.double()).abs().max() < 1e-6
        # under bf16 autocast the FFT runs in fp32 and the result stays close to fp32
        gen.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = gen(x)
        assert torch.isfinite(out_bf16).all() and (out_bf16.float() - out32).abs().max() < 0.05


def test_symmetric_padding_matches_numpy():
    x = torch.arange(2 * 5 * 7.0).view(1, 2, 5, 7)
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 3), (0, 1)), mode="symmetric")
    assert np.array_equal(pad_symmetric_to_modulo(x, 8).numpy(), ref)


def _write_lightning_ckpt(path, gen, extra=True):
    state = {f"generator.{k}": v for k, v in gen.state_dict().items()}
    if extra:  # big-lama's best.ckpt also carries the discriminator and loss networks
        state["discriminator.model0.0.weight"] = torch.zeros(4, 3, 4, 4)
        state["loss_resnetpl.impl.conv1.weight"] = torch.zeros(2)
    torch.save({"state_dict": state, "epoch": 3, "global_step": 100, "pytorch-lightning_version": "1.2.9"}, path)


def test_loads_lightning_checkpoint_generator_keys(tmp_path):
    torch.manual_seed(0)
    src = FFCResNetGenerator(**TINY)
    for m in src.modules():  # make running stats non-default so loading is visible
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    ckpt = tmp_path / "best.ckpt"
    _write_lightning_ckpt(ckpt, src)
    inp = LamaInpainter(checkpoint=str(ckpt), generator=TINY)
    for k, v in src.state_dict().items():
        assert torch.equal(inp.generator.state_dict()[k], v), k


def test_checkpoint_with_config_objects_of_uninstalled_packages_loads(tmp_path):
    """big-lama's best.ckpt pickles omegaconf configs; loading must not need those packages."""
    import sys
    import types

    # pickled as the real omegaconf classes (module names as in big-lama's file); omegaconf is not installed
    fake = types.ModuleType("omegaconf.dictconfig")

    class DictConfig:
        def __init__(self, content):
            self.content = content

    DictConfig.__module__ = fake.__name__
    DictConfig.__qualname__ = "DictConfig"
    fake.DictConfig = DictConfig
    sys.modules["omegaconf"], sys.modules[fake.__name__] = types.ModuleType("omegaconf"), fake
    src = FFCResNetGenerator(**TINY)
    state = {f"generator.{k}": v for k, v in src.state_dict().items()}
    try:
        torch.save({"state_dict": state, "hyper_parameters": {"config": DictConfig({"generator": {"kind": "ffc_resnet"}})}},
                   tmp_path / "best.ckpt")
    finally:
        del sys.modules[fake.__name__], sys.modules["omegaconf"]
    gen = load_big_lama_generator(FFCResNetGenerator(**TINY), tmp_path / "best.ckpt")
    assert all(torch.equal(gen.state_dict()[k], v) for k, v in src.state_dict().items())


def test_checkpoint_errors_name_the_problem(tmp_path):
    missing = tmp_path / "nope" / "best.ckpt"
    with pytest.raises(FileNotFoundError, match="best.ckpt"):
        LamaInpainter(checkpoint=str(missing), generator=TINY)
    other = dict(TINY, n_blocks=1)
    ckpt = tmp_path / "best.ckpt"
    _write_lightning_ckpt(ckpt, FFCResNetGenerator(**other))
    with pytest.raises(CheckpointError, match=r"(?s)missing keys \(\d+\): model\.5\..*shape mismatches"):
        load_big_lama_generator(FFCResNetGenerator(**TINY), ckpt)
    torch.save({"g_ema": {}}, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="no 'state_dict'"):
        load_big_lama_generator(FFCResNetGenerator(**TINY), tmp_path / "bad.ckpt")


def test_generator_sees_lamas_input_and_its_output_is_mapped_back():
    """LaMa's convention (predict.py / the training module): input cat(img01 * (1 - mask), mask) with img01 in [0, 1],
    symmetric padding to pad_to_modulo, output in [0, 1] cropped and mapped to [-1, 1] in the hole."""
    torch.manual_seed(2)
    inp = LamaInpainter(generator=TINY, pad_to_modulo=8)
    img = torch.rand(1, 3, 30, 21) * 2 - 1
    mask = torch.zeros(1, 1, 30, 21)
    mask[:, :, 4:12, 2:10] = 1
    seen = {}
    inp.generator.register_forward_hook(lambda module, args, output: seen.update(x=args[0], y=output))
    with torch.no_grad():
        out = inp(img, mask)
    img01 = (img + 1) / 2
    expected_in = pad_symmetric_to_modulo(torch.cat([img01 * (1 - mask), mask], dim=1), 8)
    assert torch.equal(seen["x"], expected_in) and seen["x"].shape[-2:] == (32, 24)
    hole = (mask > 0).expand_as(img)
    torch.testing.assert_close(out[hole], (seen["y"][..., :30, :21] * 2 - 1)[hole])


def test_known_pixels_bit_exact_and_hole_filled():
    torch.manual_seed(1)
    inp = LamaInpainter(generator=TINY)
    img = torch.rand(2, 3, 30, 21) * 2 - 1
    mask = torch.zeros(2, 1, 30, 21)
    mask[:, :, 5:15, 3:9] = 1
    with torch.no_grad():
        out = inp(img, mask)
    known = (mask == 0).expand_as(img)
    assert out.shape == img.shape
    assert torch.equal(out[known], img[known])
    assert not torch.equal(out[~known], img[~known])
    with pytest.raises(ValueError, match="does not match image"):
        inp(img, mask[:, :, :20])

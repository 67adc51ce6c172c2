"""LaMa-compatible Fast-Fourier-Convolution ResNet generator (``FFCResNetGenerator``).

Written from the published architecture of LaMa (Suvorov et al., "Resolution-robust Large
Mask Inpainting with Fourier Convolutions", WACV 2022). Module names and the order of the
``model`` ``nn.Sequential`` follow the official ``saicinpainting.training.modules.ffc`` so the
big-lama ``best.ckpt`` loads with strict key matching (:func:`load_big_lama_generator`).

Layout of ``model`` (``n_downsampling = d``, ``n_blocks = n``)::

    0                    ReflectionPad2d(3)
    1                    FFC_BN_ACT 7x7, input_nc -> ngf              (init_conv_kwargs)
    2 .. d+1             FFC_BN_ACT 3x3 stride 2, channels x2 each     (downsample_conv_kwargs;
                         the last one outputs ratio_gout = resnet ratio_gin)
    d+2 .. d+n+1         FFCResnetBlock x n                            (resnet_conv_kwargs)
    d+n+2                ConcatTupleLayer
    then per up level    ConvTranspose2d, BatchNorm2d, ReLU
    then                 ReflectionPad2d(3), Conv2d 7x7 ngf -> output_nc, output activation

The generator works in LaMa's ranges: input ``cat(image * (1 - mask), mask)`` with the image
in [0, 1], output in [0, 1] with the sigmoid head (big-lama). See
:class:`inpainters.lama.LamaInpainter` for the project-facing wrapper.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from networks.checkpoints import CheckpointFormat, load_weights

BIG_LAMA_CONFIG: dict[str, Any] = {
    "input_nc": 4,
    "output_nc": 3,
    "ngf": 64,
    "n_downsampling": 3,
    "n_blocks": 18,
    "add_out_act": "sigmoid",
    "init_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "downsample_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False},
}
"""Constructor arguments of big-lama's generator (``configs/training/big-lama.yaml`` upstream)."""

BIG_LAMA_URL = "https://huggingface.co/smartywu/big-lama (big-lama.zip -> big-lama/models/best.ckpt)"


class FourierUnit(nn.Module):
    """Pointwise convolution in the 2-D real-FFT domain (real and imaginary parts as channels).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        groups: groups of the spectral 1x1 convolution.
        fft_norm: normalisation of ``torch.fft.rfftn`` / ``irfftn`` (LaMa uses ``"ortho"``).
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1, fft_norm: str = "ortho") -> None:
        super().__init__()
        self.conv_layer = nn.Conv2d(in_channels * 2, out_channels * 2, kernel_size=1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels * 2)
        self.relu = nn.ReLU(inplace=True)
        self.fft_norm = fft_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        # Half-precision inputs (autocast) go through the FFT in fp32: half FFTs need power-of-two
        # sizes. float32 and float64 keep their precision.
        fft_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        spec = torch.fft.rfftn(x.to(fft_dtype), dim=(-2, -1), norm=self.fft_norm)  # (B, C, H, W//2+1) complex
        # channel layout (c0.re, c0.im, c1.re, c1.im, ...) as in the official code
        spec = torch.stack((spec.real, spec.imag), dim=2).flatten(1, 2)
        spec = self.relu(self.bn(self.conv_layer(spec)))
        spec = spec.to(fft_dtype).unflatten(1, (-1, 2))
        spec = torch.complex(spec[:, :, 0], spec[:, :, 1])
        out = torch.fft.irfftn(spec, s=(h, w), dim=(-2, -1), norm=self.fft_norm)
        return out.to(x.dtype)


class SpectralTransform(nn.Module):
    """Global branch of an FFC: 1x1 reduce -> Fourier unit (+ optional local Fourier unit) -> 1x1 expand.

    Args:
        in_channels: input (global) channels.
        out_channels: output (global) channels; the Fourier unit works on half of them.
        stride: 1, or 2 for a 2x2 average-pool before the transform.
        groups: groups of the 1x1 convolutions.
        enable_lfu: add the local Fourier unit (FFT of 2x2 spatial tiles of a quarter of the channels).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 1, enable_lfu: bool = True) -> None:
        super().__init__()
        self.enable_lfu = enable_lfu
        self.downsample = nn.AvgPool2d(kernel_size=2, stride=2) if stride == 2 else nn.Identity()
        half = out_channels // 2
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, half, kernel_size=1, groups=groups, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )
        self.fu = FourierUnit(half, half, groups)
        if enable_lfu:
            self.lfu = FourierUnit(half, half, groups)
        self.conv2 = nn.Conv2d(half, out_channels, kernel_size=1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.downsample(x))
        out = x + self.fu(x)
        if self.enable_lfu:
            c, h, w = x.shape[1:]
            if h != w or h % 2:
                raise ValueError(f"SpectralTransform: the local Fourier unit (enable_lfu) needs square feature maps "
                                 f"of even size, got {h}x{w}; use square inputs or enable_lfu=False")
            s = h // 2
            tiles = torch.cat(torch.split(x[:, : c // 4], s, dim=-2), dim=1)
            tiles = torch.cat(torch.split(tiles, s, dim=-1), dim=1)
            out = out + self.lfu(tiles).repeat(1, 1, 2, 2)
        return self.conv2(out)


def _conv_or_none(cin: int, cout: int, **kw: Any) -> nn.Module:
    return nn.Identity() if cin == 0 or cout == 0 else nn.Conv2d(cin, cout, **kw)


class FFC(nn.Module):
    """Fast Fourier convolution on a (local, global) pair of feature maps.

    ``out_l = convl2l(x_l) + convg2l(x_g)``, ``out_g = convl2g(x_l) + convg2g(x_g)``;
    paths whose input or output has zero channels are ``nn.Identity`` (no weights), and an
    absent branch is carried as the integer 0, as in the official code.

    Args:
        in_channels: total input channels (local + global).
        out_channels: total output channels.
        kernel_size: kernel of the spatial (local) convolutions.
        ratio_gin: fraction of the input channels that are global.
        ratio_gout: fraction of the output channels that are global.
        stride: 1 or 2.
        padding: spatial padding of the local convolutions.
        dilation: dilation of the local convolutions.
        groups: convolution groups.
        bias: bias in the local convolutions.
        enable_lfu: local Fourier unit in the spectral transform.
        padding_type: ``padding_mode`` of the local convolutions (LaMa: ``"reflect"``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        ratio_gin: float,
        ratio_gout: float,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        enable_lfu: bool = True,
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"FFC: stride must be 1 or 2, got {stride}")
        in_cg = int(in_channels * ratio_gin)
        in_cl = in_channels - in_cg
        out_cg = int(out_channels * ratio_gout)
        out_cl = out_channels - out_cg
        self.ratio_gin = ratio_gin
        self.ratio_gout = ratio_gout
        self.global_in_num = in_cg
        kw = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups,
                  bias=bias, padding_mode=padding_type)
        self.convl2l = _conv_or_none(in_cl, out_cl, **kw)
        self.convl2g = _conv_or_none(in_cl, out_cg, **kw)
        self.convg2l = _conv_or_none(in_cg, out_cl, **kw)
        self.convg2g = (
            nn.Identity() if in_cg == 0 or out_cg == 0
            else SpectralTransform(in_cg, out_cg, stride, 1 if groups == 1 else groups // 2, enable_lfu)
        )

    def forward(self, x):  # x: Tensor or (Tensor, Tensor | 0)
        x_l, x_g = x if isinstance(x, tuple) else (x, 0)
        out_l, out_g = 0, 0
        if self.ratio_gout != 1:
            out_l = self.convl2l(x_l) + self.convg2l(x_g)
        if self.ratio_gout != 0:
            out_g = self.convl2g(x_l) + self.convg2g(x_g)
        return out_l, out_g


class FFC_BN_ACT(nn.Module):  # noqa: N801 (official name, part of the checkpoint key layout)
    """FFC followed by BatchNorm and an activation on each branch (``bn_l``/``bn_g``, ``act_l``/``act_g``).

    Args:
        in_channels: total input channels.
        out_channels: total output channels.
        kernel_size: kernel of the local convolutions.
        ratio_gin: global fraction of the input.
        ratio_gout: global fraction of the output.
        stride: 1 or 2.
        padding: spatial padding.
        dilation: dilation.
        groups: groups.
        bias: bias in the local convolutions.
        activation: ``"relu"`` or ``"identity"`` after each norm.
        padding_type: padding mode of the local convolutions.
        enable_lfu: local Fourier unit in the spectral transform.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        ratio_gin: float,
        ratio_gout: float,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        activation: str = "relu",
        padding_type: str = "reflect",
        enable_lfu: bool = True,
    ) -> None:
        super().__init__()
        self.ffc = FFC(in_channels, out_channels, kernel_size, ratio_gin, ratio_gout, stride, padding, dilation,
                       groups, bias, enable_lfu, padding_type=padding_type)
        global_ch = int(out_channels * ratio_gout)
        self.bn_l = nn.Identity() if ratio_gout == 1 else nn.BatchNorm2d(out_channels - global_ch)
        self.bn_g = nn.Identity() if ratio_gout == 0 else nn.BatchNorm2d(global_ch)
        act = {"relu": lambda: nn.ReLU(inplace=True), "identity": nn.Identity}
        if activation not in act:
            raise ValueError(f"FFC_BN_ACT: activation must be one of {sorted(act)}, got {activation!r}")
        self.act_l = nn.Identity() if ratio_gout == 1 else act[activation]()
        self.act_g = nn.Identity() if ratio_gout == 0 else act[activation]()

    def forward(self, x):
        x_l, x_g = self.ffc(x)
        return self.act_l(self.bn_l(x_l)), self.act_g(self.bn_g(x_g))


class FFCResnetBlock(nn.Module):
    """Residual block of two 3x3 ``FFC_BN_ACT`` on the (local, global) pair.

    Args:
        dim: total channels.
        ratio_gin: global fraction of the input.
        ratio_gout: global fraction of the output (equal to ``ratio_gin`` for a residual block).
        dilation: dilation (and padding) of the local convolutions.
        padding_type: padding mode.
        enable_lfu: local Fourier unit.
    """

    def __init__(self, dim: int, ratio_gin: float, ratio_gout: float, dilation: int = 1,
                 padding_type: str = "reflect", enable_lfu: bool = True) -> None:
        super().__init__()
        kw = dict(kernel_size=3, ratio_gin=ratio_gin, ratio_gout=ratio_gout, padding=dilation, dilation=dilation,
                  padding_type=padding_type, enable_lfu=enable_lfu)
        self.conv1 = FFC_BN_ACT(dim, dim, **kw)
        self.conv2 = FFC_BN_ACT(dim, dim, **kw)

    def forward(self, x):
        x_l, x_g = x if isinstance(x, tuple) else (x, 0)
        y_l, y_g = self.conv2(self.conv1((x_l, x_g)))
        return x_l + y_l, x_g + y_g


class ConcatTupleLayer(nn.Module):
    """Joins the (local, global) pair into one tensor along channels (local first)."""

    def forward(self, x):
        if not isinstance(x, tuple):
            raise TypeError(f"ConcatTupleLayer expects a (local, global) tuple, got {type(x).__name__}")
        x_l, x_g = x
        if not torch.is_tensor(x_g):
            return x_l
        if not torch.is_tensor(x_l):
            return x_g
        return torch.cat((x_l, x_g), dim=1)


class FFCResNetGenerator(nn.Module):
    """LaMa's FFC-ResNet inpainting generator (``model`` is one ``nn.Sequential``, keys as upstream).

    Args:
        input_nc: input channels (RGB masked image + mask = 4).
        output_nc: output channels.
        ngf: channels after the first convolution.
        n_downsampling: number of stride-2 FFC stages (and of transposed-conv up stages).
        n_blocks: FFC residual blocks at the bottleneck (big-lama: 18).
        max_features: cap on the channels of any stage.
        add_out_act: output activation: ``"sigmoid"`` (big-lama), ``"tanh"``, or ``"none"``.
        init_conv_kwargs: ``ratio_gin``/``ratio_gout``/``enable_lfu`` of the first FFC.
        downsample_conv_kwargs: same for the downsampling FFCs (the last one's ``ratio_gout`` is
            replaced by ``resnet_conv_kwargs["ratio_gin"]``, as upstream).
        resnet_conv_kwargs: same for the residual blocks.
        padding_type: padding mode of the FFC convolutions.
    """

    def __init__(
        self,
        input_nc: int = 4,
        output_nc: int = 3,
        ngf: int = 64,
        n_downsampling: int = 3,
        n_blocks: int = 18,
        max_features: int = 1024,
        add_out_act: str = "sigmoid",
        init_conv_kwargs: dict[str, Any] | None = None,
        downsample_conv_kwargs: dict[str, Any] | None = None,
        resnet_conv_kwargs: dict[str, Any] | None = None,
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        init_kw = _ffc_kwargs(init_conv_kwargs, "init_conv_kwargs")
        down_kw = _ffc_kwargs(downsample_conv_kwargs, "downsample_conv_kwargs")
        res_kw = _ffc_kwargs(resnet_conv_kwargs, "resnet_conv_kwargs")
        if res_kw["ratio_gin"] != res_kw["ratio_gout"]:
            raise ValueError(f"resnet_conv_kwargs: ratio_gin ({res_kw['ratio_gin']}) must equal ratio_gout "
                             f"({res_kw['ratio_gout']}) for residual blocks")
        ch = lambda c: min(max_features, c)  # noqa: E731
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            FFC_BN_ACT(input_nc, ngf, kernel_size=7, padding=0, padding_type=padding_type, **init_kw),
        ]
        for i in range(n_downsampling):
            kw = dict(down_kw)
            if i == n_downsampling - 1:
                kw["ratio_gout"] = res_kw["ratio_gin"]
            layers.append(FFC_BN_ACT(ch(ngf * 2**i), ch(ngf * 2 ** (i + 1)), kernel_size=3, stride=2, padding=1,
                                     padding_type=padding_type, **kw))
        bottleneck = ch(ngf * 2**n_downsampling)
        for _ in range(n_blocks):
            layers.append(FFCResnetBlock(bottleneck, padding_type=padding_type, **res_kw))
        layers.append(ConcatTupleLayer())
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            cout = ch(int(ngf * mult / 2))
            layers += [
                nn.ConvTranspose2d(ch(ngf * mult), cout, kernel_size=3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0)]
        acts = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
        if add_out_act in acts:
            layers.append(acts[add_out_act]())
        elif add_out_act != "none":
            raise ValueError(f"add_out_act must be 'sigmoid', 'tanh' or 'none', got {add_out_act!r}")
        self.model = nn.Sequential(*layers)
        self.downscale = 2**n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, input_nc, H, W)`` with H, W multiples of ``2 ** n_downsampling``."""
        if x.shape[-2] % self.downscale or x.shape[-1] % self.downscale:
            raise ValueError(f"FFCResNetGenerator: height and width must be multiples of {self.downscale}, got "
                             f"{tuple(x.shape[-2:])}; pad the input (LamaInpainter does this)")
        return self.model(x)


def _ffc_kwargs(kw: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    kw = dict(kw or {})
    unknown = set(kw) - {"ratio_gin", "ratio_gout", "enable_lfu"}
    if unknown:
        raise ValueError(f"{name}: unsupported keys {sorted(unknown)}; allowed: ratio_gin, ratio_gout, enable_lfu")
    return {"ratio_gin": kw.get("ratio_gin", 0), "ratio_gout": kw.get("ratio_gout", 0),
            "enable_lfu": kw.get("enable_lfu", False)}


#: big-lama's ``best.ckpt`` is a PyTorch-Lightning 1.x checkpoint whose ``hyper_parameters`` pickle the
#: training config (omegaconf objects, typing / builtin types they reference, LaMa's own classes):
#: read as inert stand-ins (:mod:`networks.checkpoints`), never imported or called.
BIG_LAMA_FORMAT = CheckpointFormat(
    name="LaMa checkpoint",
    origin=f"Download big-lama from {BIG_LAMA_URL} and place best.ckpt there (or set the inpainter's checkpoint path "
    "in the config). No weights are downloaded automatically.",
    stand_ins=(
        "omegaconf.", "saicinpainting.", "pytorch_lightning.utilities.parsing.", "typing.", "argparse.Namespace",
        "builtins.dict", "builtins.list", "builtins.tuple", "builtins.object", "builtins.str", "builtins.int",
        "builtins.float", "builtins.bool", "builtins.type", "collections.defaultdict", "pathlib.",
    ),
)


def load_big_lama_generator(generator: FFCResNetGenerator, path: str | Path, prefix: str = "generator.") -> FFCResNetGenerator:
    """Load the ``generator.*`` weights of a LaMa Lightning checkpoint (e.g. big-lama ``best.ckpt``).

    The checkpoint's ``state_dict`` also holds discriminator / loss-network weights; only the keys
    under ``prefix`` are used, and they must match ``generator`` exactly (strict: keys, shapes,
    floating-point dtypes, finite values). The pickled training config is read as inert stand-ins
    (:data:`BIG_LAMA_FORMAT`), so omegaconf need not be installed and no code from the file runs.

    Args:
        generator: the module to fill (built with :data:`BIG_LAMA_CONFIG` for big-lama).
        path: checkpoint file.
        prefix: key prefix of the generator inside ``state_dict``.

    Raises:
        networks.checkpoints.CheckpointNotFoundError: the file is missing (says where it comes from).
        networks.checkpoints.CheckpointError: unsafe, unreadable, no ``state_dict`` / no ``prefix``
            keys, or keys / shapes / dtypes / values that do not fit.
    """
    load_weights(
        generator, path, BIG_LAMA_FORMAT, prefix=prefix,
        hint="Check the generator config (big-lama: networks.lama.ffc.BIG_LAMA_CONFIG).",
    )
    return generator

"""IR / IR-SE residual units (ArcFace ResNet family) shared by e4e, ArcFace and HFGI.

Sub-module names (``shortcut_layer``, ``res_layer``, ``fc1``/``fc2``) follow the public
TreB1eN InsightFace / pSp / e4e / HFGI code so their checkpoints load strictly.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["UnitSpec", "ir_se_stages", "SEModule", "BottleneckIR", "BottleneckIRSE", "make_ir_body", "ir_stem", "ir_stage"]


class UnitSpec(NamedTuple):
    """One residual unit of an IR backbone."""

    in_channel: int
    depth: int
    stride: int


def _stage(in_channel: int, depth: int, num_units: int, stride: int = 2) -> list[UnitSpec]:
    return [UnitSpec(in_channel, depth, stride)] + [UnitSpec(depth, depth, 1) for _ in range(num_units - 1)]


#: units per stage (64, 128, 256, 512 channels) of the official IR-50/100/152 backbones
_STAGE_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}


def ir_se_stages(num_layers: int = 50) -> list[list[UnitSpec]]:
    """The four stages of an IR-``num_layers`` backbone (50, 100 or 152), as unit specs."""
    if num_layers not in _STAGE_UNITS:
        raise ValueError(f"num_layers must be one of {sorted(_STAGE_UNITS)}, got {num_layers}")
    u = _STAGE_UNITS[num_layers]
    return [_stage(64, 64, u[0]), _stage(64, 128, u[1]), _stage(128, 256, u[2]), _stage(256, 512, u[3])]


class SEModule(nn.Module):
    """Squeeze-and-excitation gate (``fc1``, ``fc2`` are bias-free 1x1 convs).

    Args:
        channels: feature channels.
        reduction: bottleneck reduction factor.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIR(nn.Module):
    """Pre-activation IR unit: ``BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN`` plus shortcut.

    The shortcut is a strided identity (``MaxPool2d(1, stride)``) when channels match, else a
    1x1 conv + BN. Official name: ``bottleneck_IR``.

    Args:
        in_channel: input channels.
        depth: output channels.
        stride: spatial stride (1 or 2).
        se: append a squeeze-and-excitation gate (``bottleneck_IR_SE``).
    """

    def __init__(self, in_channel: int, depth: int, stride: int, se: bool = False) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth)
            )
        layers = [
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class BottleneckIRSE(BottleneckIR):
    """IR unit with a squeeze-and-excitation gate (official ``bottleneck_IR_SE``).

    Args:
        in_channel: input channels.
        depth: output channels.
        stride: spatial stride (1 or 2).
    """

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__(in_channel, depth, stride, se=True)


def make_ir_body(num_layers: int = 50, mode: str = "ir_se") -> nn.Sequential:
    """The flat ``body`` Sequential of an IR/IR-SE backbone (24 units for IR-50)."""
    if mode not in ("ir", "ir_se"):
        raise ValueError(f"mode must be 'ir' or 'ir_se', got {mode!r}")
    unit = BottleneckIRSE if mode == "ir_se" else BottleneckIR
    return nn.Sequential(*[unit(*spec) for stage in ir_se_stages(num_layers) for spec in stage])


def ir_stem(in_ch: int, out_ch: int) -> nn.Sequential:
    """Conv3x3 -> BatchNorm -> PReLU stem (HFGI's ``conv_layer1``)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(out_ch), nn.PReLU(out_ch))


def ir_stage(in_ch: int, out_ch: int, stride: int, mid_ch: int | None = None) -> nn.Sequential:
    """Three IR units: in -> mid (strided) -> out -> out (mid defaults to out)."""
    mid = out_ch if mid_ch is None else mid_ch
    return nn.Sequential(BottleneckIR(in_ch, mid, stride), BottleneckIR(mid, out_ch, 1), BottleneckIR(out_ch, out_ch, 1))

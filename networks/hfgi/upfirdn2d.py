"""Pure-PyTorch StyleGAN2 resampling and activation ops (no compiled extensions).

The official StyleGAN2 code (and rosinality's port used by e4e/HFGI) ships CUDA kernels for
``upfirdn2d`` (upsample -> FIR filter -> downsample) and ``fused_leaky_relu`` (bias + leaky ReLU
+ gain). These functions compute the same thing with standard PyTorch ops so every network runs
on CPU and GPU alike.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["upfirdn2d", "fused_leaky_relu", "FusedLeakyReLU", "make_kernel"]


def make_kernel(taps: list[float] | torch.Tensor) -> torch.Tensor:
    """A normalised 2-D FIR kernel from 1-D taps (outer product) or a 2-D kernel (sum = 1)."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int | tuple[int, int] = 1,
    down: int | tuple[int, int] = 1,
    pad: tuple[int, int] | tuple[int, int, int, int] = (0, 0),
):
    """Upsample by zero insertion, pad, convolve with a FIR kernel, then downsample.

    Same semantics as the official op: the kernel is applied as a true convolution (flipped),
    padding may be negative (crops), and the output size along each axis is
    ``(in * up + pad0 + pad1 - k) // down + 1``.

    Args:
        x: input ``(B, C, H, W)``.
        kernel: 2-D FIR kernel ``(kh, kw)`` (not normalised here; callers scale it).
        up: integer upsampling factor (one value or ``(up_x, up_y)``).
        down: integer downsampling factor (one value or ``(down_x, down_y)``).
        pad: ``(pad0, pad1)`` for both axes or ``(pad_x0, pad_x1, pad_y0, pad_y1)``.

    Returns:
        ``(B, C, H', W')`` tensor of the same dtype and device.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if kernel.ndim != 2:
        raise ValueError(f"upfirdn2d expects a 2-D kernel, got shape {tuple(kernel.shape)}")
    up_x, up_y = _pair(up)
    down_x, down_y = _pair(down)
    if len(pad) == 2:
        pad_x0, pad_x1, pad_y0, pad_y1 = pad[0], pad[1], pad[0], pad[1]
    elif len(pad) == 4:
        pad_x0, pad_x1, pad_y0, pad_y1 = pad
    else:
        raise ValueError(f"upfirdn2d pad must have 2 or 4 entries, got {pad!r}")
    b, c, h, w = x.shape
    out = x.reshape(b * c, 1, h, w)
    if up_x > 1 or up_y > 1:
        # zero insertion: every input sample is followed by (up - 1) zeros along each axis
        out = out.reshape(b * c, h, 1, w, 1)
        out = F.pad(out, [0, up_x - 1, 0, 0, 0, up_y - 1])
        out = out.reshape(b * c, 1, h * up_y, w * up_x)
    # F.pad accepts negative amounts, which crop
    out = F.pad(out, [pad_x0, pad_x1, pad_y0, pad_y1])
    weight = torch.flip(kernel, [0, 1]).to(dtype=out.dtype, device=out.device)[None, None]
    out = F.conv2d(out, weight, stride=(down_y, down_x))
    return out.reshape(b, c, out.shape[-2], out.shape[-1])


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2, scale: float = math.sqrt(2)
) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale`` with ``bias`` broadcast over dim 1."""
    if bias is not None:
        shape = [1, bias.shape[0]] + [1] * (x.ndim - 2)
        x = x + bias.view(shape).to(x.dtype)
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Learned per-channel bias followed by a gain-corrected leaky ReLU (state-dict key ``bias``).

    Args:
        channel: number of channels (length of the bias).
        bias: whether to learn a bias.
        negative_slope: leaky ReLU slope.
        scale: output gain (``sqrt(2)`` keeps the activation variance).
    """

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2, scale: float = math.sqrt(2)) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)

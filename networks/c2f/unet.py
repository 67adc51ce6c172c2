"""Pixel-space inpainting U-Net with gated linear self-attention and category cross-attention.

``InpaintingUNet.forward(x_t, t, masked_image, mask, context, cond=None) -> eps``:

- ``x_t`` ``(B, 3, H, W)``: the noisy image at timestep ``t``;
- ``t`` ``(B,)`` (or a scalar): integer or float timesteps in ``[0, num_train_timesteps)``;
- ``masked_image`` ``(B, 3, H, W)``: ``image * (1 - mask)`` in [-1, 1];
- ``mask`` ``(B, 1, H, W)``: 1 = hole;
- ``context`` ``(B, n_tokens, context_dim)``: the LCG category tokens
  (:meth:`networks.c2f.category_embedding.LatentCategoryEmbedding.tokens`), read by a
  cross-attention block after every ResBlock of every resolution level, the middle included;
- ``cond`` ``(B, cond_channels, H, W)`` or None: optional extra input channels (e.g. the
  upsampled output of a coarser C2F stage); required iff ``cond_channels > 0``.

Returns the network output ``(B, 3, H, W)``: the noise, the velocity or the clean image, whichever
prediction target the owning :class:`diffusion.denoiser.InpaintingDenoiser` trains. ``H`` and ``W`` must be divisible by
:attr:`InpaintingUNet.downsample_factor` ``= 2 ** (len(channel_mults) - 1)``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from networks.c2f.linear_attention import GatedLinearAttention

__all__ = [
    "UNetConfig",
    "timestep_embedding",
    "ResBlock",
    "SelfAttentionBlock",
    "CrossAttentionBlock",
    "Downsample",
    "Upsample",
    "InpaintingUNet",
]


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm whose group count divides ``channels`` (tiny test widths stay valid)."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of timesteps ``t`` ``(B,)`` (cos half first, then sin)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv x2 residual block with an additive timestep embedding.

    Args:
        in_channels: input channels.
        out_channels: output channels (a 1x1 conv matches the skip when they differ).
        time_dim: width of the timestep embedding.
        dropout: dropout before the second convolution.
        norm_groups: GroupNorm groups (reduced to a divisor of the width).
    """

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, dropout: float = 0.0, norm_groups: int = 32):
        super().__init__()
        self.norm1 = _group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_dim, out_channels)
        self.norm2 = _group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttentionBlock(nn.Module):
    """Pre-norm residual :class:`networks.c2f.linear_attention.GatedLinearAttention` block.

    Args:
        channels: feature channels.
        heads: attention heads.
        head_dim: channels per head (None: ``channels // heads``).
        attention: ``"linear"`` or ``"softmax"``.
        norm_groups: GroupNorm groups of the pre-norm.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int | None,
        attention: Literal["linear", "softmax"] = "linear",
        norm_groups: int = 32,
    ):
        super().__init__()
        self.norm = _group_norm(channels, norm_groups)
        self.attn = GatedLinearAttention(channels, heads=heads, head_dim=head_dim, attention=attention)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x))


class CrossAttentionBlock(nn.Module):
    """Pre-norm residual cross-attention from pixels (queries) to context tokens (keys/values).

    The context holds a handful of category tokens, so the cost is O(N * n_tokens): linear in
    the number of pixels. Softmax over the tokens.

    Args:
        channels: feature channels.
        context_dim: width of the context tokens.
        heads: attention heads.
        head_dim: channels per head (None: ``channels // heads``).
        norm_groups: GroupNorm groups of the pre-norm.
    """

    def __init__(self, channels: int, context_dim: int, heads: int, head_dim: int | None, norm_groups: int = 32):
        super().__init__()
        if head_dim is None:
            if channels % heads:
                raise ValueError(f"CrossAttentionBlock: channels={channels} not divisible by heads={heads}")
            head_dim = channels // heads
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.norm = _group_norm(channels, norm_groups)
        self.to_q = nn.Conv2d(channels, inner, 1, bias=False)
        self.context_norm = nn.LayerNorm(context_dim)
        self.to_kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.to_out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.to_q(self.norm(x)).reshape(b, self.heads, self.head_dim, h * w).transpose(-1, -2)
        k, v = self.to_kv(self.context_norm(context)).chunk(2, dim=-1)
        k = k.reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v)
        a = a.transpose(-1, -2).reshape(b, self.heads * self.head_dim, h, w)
        return x + self.to_out(a)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution. Args: channels: feature channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest x2 upsampling followed by a 3x3 convolution. Args: channels: feature channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Stage(nn.ModuleList):
    """Blocks that all take ``(x, emb, context)``; run in order (optionally checkpointed)."""

    def forward(self, x, emb, context, use_checkpoint: bool = False):
        for block in self:
            if use_checkpoint:
                x = checkpoint(block, x, emb, context, use_reentrant=False)
            else:
                x = block(x, emb, context)
        return x


class InpaintingUNet(nn.Module):
    """Inpainting U-Net in pixel space (input: noisy image 3 + masked image 3 + mask 1 [+ cond]).

    Level ``i`` works at ``H / 2**i`` with ``channels * channel_mults[i]`` channels. Every
    ResBlock is followed by a gated linear self-attention block when ``i`` is in
    ``attention_levels`` and always by a cross-attention block that reads the LCG category
    tokens; the middle is ResBlock, self-attention, cross-attention, ResBlock.

    Args:
        channels: base width (level 0).
        channel_mults: width multiplier per resolution level; its length sets the depth.
        num_res_blocks: ResBlocks per level on the way down (one more on the way up).
        attention_levels: level indices (0 = full resolution) with self-attention.
        heads: heads of the self- and cross-attention blocks.
        head_dim: channels per head; None uses ``width // heads`` at each level.
        attention: self-attention kind, ``"linear"`` (O(N), the default) or ``"softmax"``.
        context_dim: width of the category tokens (= the embedding's ``dim``).
        cond_channels: extra input channels passed as ``cond`` (0 = none).
        dropout: dropout inside the ResBlocks.
        norm_groups: GroupNorm groups (reduced to a divisor of narrow widths).
        gradient_checkpointing: recompute block activations in the backward pass (saves memory
            at 512/1024 during training).
    """

    image_channels = 3

    def __init__(
        self,
        channels: int = 128,
        channel_mults: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] = (2, 3, 4),
        heads: int = 4,
        head_dim: int | None = None,
        attention: Literal["linear", "softmax"] = "linear",
        context_dim: int = 256,
        cond_channels: int = 0,
        dropout: float = 0.0,
        norm_groups: int = 32,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        #: the constructor arguments as plain data (hyper-parameters of the modules that own this network)
        self.init_args = dict(
            channels=channels, channel_mults=list(channel_mults), num_res_blocks=num_res_blocks,
            attention_levels=list(attention_levels), heads=heads, head_dim=head_dim, attention=attention,
            context_dim=context_dim, cond_channels=cond_channels, dropout=dropout, norm_groups=norm_groups,
            gradient_checkpointing=gradient_checkpointing,
        )
        channel_mults = tuple(int(m) for m in channel_mults)
        attention_levels = tuple(int(a) for a in attention_levels)
        if not channel_mults:
            raise ValueError("InpaintingUNet: channel_mults must list at least one level")
        bad = [a for a in attention_levels if not 0 <= a < len(channel_mults)]
        if bad:
            raise ValueError(
                f"InpaintingUNet: attention_levels {bad} out of range for {len(channel_mults)} levels "
                f"(channel_mults={list(channel_mults)}); valid levels are 0..{len(channel_mults) - 1}"
            )
        if cond_channels < 0:
            raise ValueError(f"InpaintingUNet: cond_channels must be >= 0, got {cond_channels}")
        self.channels, self.channel_mults = channels, channel_mults
        self.attention_levels, self.context_dim = attention_levels, context_dim
        self.cond_channels = cond_channels
        self.gradient_checkpointing = gradient_checkpointing
        time_dim = 4 * channels

        def attn_blocks(width: int, level: int) -> list[nn.Module]:
            blocks: list[nn.Module] = []
            if level in attention_levels:
                blocks.append(SelfAttentionBlock(width, heads, head_dim, attention, norm_groups))
            blocks.append(CrossAttentionBlock(width, context_dim, heads, head_dim, norm_groups))
            return blocks

        self.time_mlp = nn.Sequential(nn.Linear(channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        in_ch = 2 * self.image_channels + 1 + cond_channels
        self.input_conv = nn.Conv2d(in_ch, channels, 3, padding=1)

        self.down = nn.ModuleList()
        skip_widths = [channels]
        width = channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                out = channels * mult
                self.down.append(_Stage([ResBlock(width, out, time_dim, dropout, norm_groups), *attn_blocks(out, level)]))
                width = out
                skip_widths.append(width)
            if level != len(channel_mults) - 1:
                self.down.append(_Stage([Downsample(width)]))
                skip_widths.append(width)

        self.middle = _Stage(
            [
                ResBlock(width, width, time_dim, dropout, norm_groups),
                SelfAttentionBlock(width, heads, head_dim, attention, norm_groups),
                CrossAttentionBlock(width, context_dim, heads, head_dim, norm_groups),
                ResBlock(width, width, time_dim, dropout, norm_groups),
            ]
        )

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for i in range(num_res_blocks + 1):
                out = channels * mult
                blocks: list[nn.Module] = [
                    ResBlock(width + skip_widths.pop(), out, time_dim, dropout, norm_groups),
                    *attn_blocks(out, level),
                ]
                width = out
                if level != 0 and i == num_res_blocks:
                    blocks.append(Upsample(width))
                self.up.append(_Stage(blocks))

        self.out = nn.Sequential(_group_norm(width, norm_groups), nn.SiLU(), nn.Conv2d(width, self.image_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @property
    def downsample_factor(self) -> int:
        """``H`` and ``W`` must be multiples of this (``2 ** (levels - 1)``)."""
        return 2 ** (len(self.channel_mults) - 1)

    def check_inputs(
        self,
        x_t: torch.Tensor,
        masked_image: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor,
        cond: torch.Tensor | None = None,
    ) -> None:
        """Raise ``ValueError`` naming the offending shape when the inputs do not fit the U-Net."""
        if x_t.ndim != 4 or x_t.shape[1] != 3:
            raise ValueError(f"InpaintingUNet: x_t must be (B, 3, H, W), got {tuple(x_t.shape)}")
        b, _, h, w = x_t.shape
        f = self.downsample_factor
        if h % f or w % f:
            raise ValueError(
                f"InpaintingUNet: image size {h}x{w} is not divisible by the downsampling factor {f} "
                f"({len(self.channel_mults)} levels, channel_mults={list(self.channel_mults)}); "
                f"resize/crop to e.g. {max(f, h // f * f)}x{max(f, w // f * f)} or use fewer levels"
            )
        if tuple(masked_image.shape) != (b, 3, h, w):
            raise ValueError(f"InpaintingUNet: masked_image must be {(b, 3, h, w)} like x_t, got {tuple(masked_image.shape)}")
        if tuple(mask.shape) != (b, 1, h, w):
            raise ValueError(f"InpaintingUNet: mask must be {(b, 1, h, w)}, got {tuple(mask.shape)}")
        if context.ndim != 3 or context.shape[0] != b or context.shape[2] != self.context_dim:
            raise ValueError(
                f"InpaintingUNet: context must be (B={b}, n_tokens, context_dim={self.context_dim}), "
                f"got {tuple(context.shape)}"
            )
        if self.cond_channels:
            if cond is None or tuple(cond.shape) != (b, self.cond_channels, h, w):
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"InpaintingUNet: cond must be {(b, self.cond_channels, h, w)} (cond_channels), got {got}")
        elif cond is not None:
            raise ValueError("InpaintingUNet: cond given but the U-Net was built with cond_channels=0")

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        masked_image: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The prediction for ``x_t``: noise, v or x0, whichever target the denoiser trains (module docstring: shapes)."""
        self.check_inputs(x_t, masked_image, mask, context, cond)
        b = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(b)
        emb = self.time_mlp(timestep_embedding(t, self.channels).to(x_t.dtype))
        parts = [x_t, masked_image, mask.to(x_t.dtype)] + ([cond] if cond is not None else [])
        h = self.input_conv(torch.cat(parts, dim=1))
        ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        skips = [h]
        for stage in self.down:
            h = stage(h, emb, context, ckpt)
            skips.append(h)
        h = self.middle(h, emb, context, ckpt)
        for stage in self.up:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, context, ckpt)
        return self.out(h)


@dataclass
class UNetConfig:
    """Architecture of one :class:`InpaintingUNet` (a C2F stage); token width and extra input
    channels are set by the model that owns it.

    Args:
        channels: base width (level 0).
        channel_mults: width multiplier per resolution level; its length sets the depth.
        num_res_blocks: ResBlocks per level on the way down (one more on the way up).
        attention_levels: level indices (0 = full resolution) with self-attention.
        heads: heads of the self- and cross-attention blocks.
        head_dim: channels per head; None uses ``width // heads`` at each level.
        attention: self-attention kind, ``"linear"`` (O(N)) or ``"softmax"``.
        dropout: dropout inside the ResBlocks.
        norm_groups: GroupNorm groups (reduced to a divisor of narrow widths).
        gradient_checkpointing: recompute block activations in the backward pass.
    """

    channels: int = 128
    channel_mults: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    attention_levels: list[int] = field(default_factory=lambda: [2, 3, 4])
    heads: int = 4
    head_dim: int | None = None
    attention: Literal["linear", "softmax"] = "linear"
    dropout: float = 0.0
    norm_groups: int = 32
    gradient_checkpointing: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (checkpoints, hyper-parameters)."""
        return asdict(self)

    def build(self, context_dim: int, cond_channels: int = 0) -> InpaintingUNet:
        """The U-Net with this architecture reading ``context_dim``-wide tokens and ``cond_channels`` extra inputs."""
        return InpaintingUNet(**self.to_dict(), context_dim=context_dim, cond_channels=cond_channels)

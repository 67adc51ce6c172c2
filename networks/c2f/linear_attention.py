"""Non-causal linear attention for images (O(N) in tokens) and its quadratic references.

Math (ReLU kernel ``phi``, per head, tokens ``n``)::

    O = phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1 + eps)

Computing ``phi(K)^T V`` first (a ``d x d`` matrix per head) makes the cost linear in the
number of tokens. The softmax scale ``1/sqrt(d)`` would cancel between numerator and
denominator, so none is applied. Accumulation always runs in (at least) float32 with autocast
disabled, so the layer is safe inside ``torch.autocast`` (bf16/fp16 numerators of thousands of
tokens would overflow / lose precision).

:class:`GatedLinearAttention` is the U-Net's self-attention layer (PixelHacker's gated form)::

    y = W_o( Norm( LA(q, k, v) + DWConv(v) ) * swish(W_g x) )

where the depthwise convolution on ``v`` adds the locality that a kernelised attention lacks
(Sana / EfficientViT style).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "linear_attention",
    "linear_attention_quadratic",
    "softmax_attention",
    "GatedLinearAttention",
]


def _accum_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (fp16, bf16, fp32) accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Non-causal ReLU linear attention, O(N) in the number of tokens.

    Args:
        q: queries ``(B, heads, N, d)``.
        k: keys ``(B, heads, M, d)``.
        v: values ``(B, heads, M, e)``.
        eps: added to the normaliser ``phi(Q) phi(K)^T 1`` (rows whose kernel products are all
            zero give zero output instead of NaN).

    Returns:
        ``(B, heads, N, e)`` in the dtype of ``q``; computed in float32 (float64 for float64
        inputs) with autocast disabled.
    """
    out_dtype = q.dtype
    acc = _accum_dtype(q.dtype)
    with torch.autocast(device_type=q.device.type, enabled=False):
        q = F.relu(q.to(acc))
        k = F.relu(k.to(acc))
        v = v.to(acc)
        kv = torch.einsum("bhmd,bhme->bhde", k, v)  # (B, h, d, e)
        k_sum = k.sum(dim=2)  # (B, h, d)
        num = torch.einsum("bhnd,bhde->bhne", q, kv)
        den = torch.einsum("bhnd,bhd->bhn", q, k_sum).unsqueeze(-1)
        out = num / (den + eps)
    return out.to(out_dtype)


def linear_attention_quadratic(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Reference of :func:`linear_attention` that materialises the ``N x M`` kernel matrix.

    ``A = phi(Q) phi(K)^T``; ``O = A V / (A 1 + eps)``. Same shapes as :func:`linear_attention`.
    Used by the tests (equality in float64) and as an O(N^2) baseline in the benchmark.
    """
    a = F.relu(q) @ F.relu(k).transpose(-1, -2)  # (B, h, N, M)
    return (a @ v) / (a.sum(dim=-1, keepdim=True) + eps)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Plain softmax attention ``softmax(Q K^T / sqrt(d)) V``, materialising the ``N x M`` matrix.

    The explicit formula (not ``scaled_dot_product_attention``) so its memory is the textbook
    O(N^2) one; shapes as in :func:`linear_attention`.
    """
    scale = q.shape[-1] ** -0.5
    attn = torch.softmax((q @ k.transpose(-1, -2)) * scale, dim=-1)
    return attn @ v


class GatedLinearAttention(nn.Module):
    """Gated multi-head self-attention over the pixels of a feature map.

    ``y = W_o(LayerNorm(A(q, k, v) + DWConv(v)) * swish(W_g x))`` with ``A`` the ReLU linear
    attention (default) or softmax attention. Input and output are ``(B, C, H, W)``; the block
    adds no residual (the U-Net's :class:`networks.c2f.unet.SelfAttentionBlock` does). ``W_o`` is
    zero-initialised so a fresh block is the identity inside its residual branch.

    Args:
        channels: input/output channels ``C``.
        heads: number of attention heads.
        head_dim: channels per head; ``None`` uses ``channels // heads`` (must divide).
        conv_kernel_size: kernel of the depthwise convolution on ``v`` that adds locality (odd).
        attention: ``"linear"`` (O(N), ReLU kernel, fp32 accumulation) or ``"softmax"``
            (``scaled_dot_product_attention``; O(N^2) compute, for ablations at low resolution).
        eps: normaliser epsilon of the linear attention.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 4,
        head_dim: int | None = None,
        conv_kernel_size: int = 3,
        attention: Literal["linear", "softmax"] = "linear",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if head_dim is None:
            if channels % heads:
                raise ValueError(
                    f"GatedLinearAttention: channels={channels} is not divisible by heads={heads}; "
                    "set head_dim explicitly or pick heads dividing the channel count"
                )
            head_dim = channels // heads
        if conv_kernel_size % 2 != 1:
            raise ValueError(f"GatedLinearAttention: conv_kernel_size must be odd, got {conv_kernel_size}")
        if attention not in ("linear", "softmax"):
            raise ValueError(f"GatedLinearAttention: attention must be 'linear' or 'softmax', got {attention!r}")
        inner = heads * head_dim
        self.heads, self.head_dim, self.attention, self.eps = heads, head_dim, attention, eps
        self.to_qkv = nn.Conv2d(channels, 3 * inner, 1, bias=False)
        self.local = nn.Conv2d(inner, inner, conv_kernel_size, padding=conv_kernel_size // 2, groups=inner)
        self.norm = nn.LayerNorm(inner)
        self.to_gate = nn.Conv2d(channels, inner, 1)
        self.to_out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, _, h, w = t.shape
        return t.reshape(b, self.heads, self.head_dim, h * w).transpose(-1, -2)  # (B, heads, N, d)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The attention kernel on ``(B, heads, N, head_dim)`` tensors (linear or SDPA softmax)."""
        if self.attention == "linear":
            return linear_attention(q, k, v, self.eps)
        return F.scaled_dot_product_attention(q, k, v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, H, W)`` -> ``(B, C, H, W)`` (the residual branch, not ``x + ...``)."""
        b, _, h, w = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=1)
        local = self.local(v)
        q, k, v = (self._split_heads(t) for t in (q, k, v))
        a = self.attend(q, k, v)
        a = a.transpose(-1, -2).reshape(b, self.heads * self.head_dim, h, w) + local
        a = self.norm(a.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.to_out(a * F.silu(self.to_gate(x)))

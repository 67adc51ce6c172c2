"""Latent categories guidance (LCG): learned foreground / background token sets.

Layout (as in PixelHacker's ``nn.Embedding(20, 3072)``): one table of ``2 * n`` rows, rows
``[0, n)`` are the foreground tokens and rows ``[n, 2n)`` the background tokens. An optional
learned null token set (``n`` rows) serves classifier-free guidance with condition dropout.

:func:`load_lcg_embedding` reads the embedding (and optionally the U-Net) out of an
``LCGPretrainModule`` Lightning checkpoint; the C2F stages start from it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from networks.checkpoints import CheckpointFormat, extract_state, load_state, read_checkpoint
from masks.types import Category, MaskType, category_of

__all__ = ["EmbeddingConfig", "LatentCategoryEmbedding", "categories_from_mask_types", "load_lcg_embedding", "LCG_FORMAT"]

#: state-dict prefixes of the LCG Lightning module (``lightning_modules.lcg_pretrain``)
EMBEDDING_PREFIX = "embedding."
UNET_PREFIX = "denoiser.unet."


def categories_from_mask_types(mask_type: torch.Tensor) -> torch.Tensor:
    """Map ``(B,)`` mask-type ids (``masks.MaskType``) to category ids via ``masks.types.category_of``."""
    lookup = torch.tensor([int(category_of(m)) for m in MaskType], device=mask_type.device, dtype=torch.long)
    if mask_type.numel() and (int(mask_type.min()) < 0 or int(mask_type.max()) >= len(MaskType)):
        raise ValueError(
            f"mask_type ids must be in 0..{len(MaskType) - 1} ({', '.join(m.name for m in MaskType)}), "
            f"got values in [{int(mask_type.min())}, {int(mask_type.max())}]"
        )
    return lookup[mask_type.long()]


class LatentCategoryEmbedding(nn.Module):
    """Foreground and background category token sets (+ optional learned null set).

    Args:
        tokens_per_category: tokens per category ``n`` (PixelHacker: 10).
        dim: token width; must equal the U-Net's ``context_dim``.
        null_embedding: also learn a null token set for CFG with condition dropout
            (``guidance="null"`` in the LCG module); not needed for the fg/bg guidance form.
        init_std: standard deviation of the normal initialisation.
    """

    def __init__(self, tokens_per_category: int = 10, dim: int = 256, null_embedding: bool = False, init_std: float = 0.02):
        super().__init__()
        #: the constructor arguments as plain data (hyper-parameters of the modules that own this embedding)
        self.init_args = dict(tokens_per_category=tokens_per_category, dim=dim, null_embedding=null_embedding, init_std=init_std)
        if tokens_per_category < 1 or dim < 1:
            raise ValueError(
                f"LatentCategoryEmbedding: tokens_per_category and dim must be >= 1, got {tokens_per_category}, {dim}"
            )
        self.tokens_per_category, self.dim = tokens_per_category, dim
        self.table = nn.Embedding(len(Category) * tokens_per_category, dim)
        nn.init.normal_(self.table.weight, std=init_std)
        self.null_tokens = nn.Parameter(torch.randn(tokens_per_category, dim) * init_std) if null_embedding else None

    @property
    def has_null(self) -> bool:
        """Whether a learned null token set exists."""
        return self.null_tokens is not None

    def tokens(self, category: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, n, dim)`` of ``category`` ``(B,)`` (0 foreground, 1 background)."""
        category = torch.as_tensor(category, device=self.table.weight.device).long().reshape(-1)
        if category.numel() and (int(category.min()) < 0 or int(category.max()) >= len(Category)):
            raise ValueError(
                f"category ids must be 0 (foreground) or 1 (background), got values in "
                f"[{int(category.min())}, {int(category.max())}]"
            )
        n = self.tokens_per_category
        ids = category[:, None] * n + torch.arange(n, device=category.device)[None]
        return self.table(ids)

    def foreground(self, batch_size: int) -> torch.Tensor:
        """Foreground tokens repeated to ``(batch_size, n, dim)``."""
        return self.tokens(torch.full((batch_size,), int(Category.FOREGROUND), dtype=torch.long))

    def background(self, batch_size: int) -> torch.Tensor:
        """Background tokens repeated to ``(batch_size, n, dim)``."""
        return self.tokens(torch.full((batch_size,), int(Category.BACKGROUND), dtype=torch.long))

    def null(self, batch_size: int) -> torch.Tensor:
        """Learned null tokens ``(batch_size, n, dim)``; error when built without ``null_embedding``."""
        if self.null_tokens is None:
            raise ValueError(
                "LatentCategoryEmbedding has no null tokens; build it with null_embedding=true to use "
                "guidance='null' / condition dropout"
            )
        return self.null_tokens[None].expand(batch_size, -1, -1)

    def tokens_for_mask_type(self, mask_type: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, n, dim)`` for mask-type ids via :func:`categories_from_mask_types`."""
        return self.tokens(categories_from_mask_types(mask_type.to(self.table.weight.device)))


#: an LCGPretrainModule Lightning checkpoint (plain tensors and config values only)
LCG_FORMAT = CheckpointFormat(
    name="LCG checkpoint",
    origin="Train one with `python -m main fit --config configs/lcg/<cfg>.yaml` (it is written under the run's "
    "checkpoints/ folder) and point the C2F config's lcg_checkpoint at it.",
)


@dataclass
class EmbeddingConfig:
    """Size of a :class:`LatentCategoryEmbedding` (must match the LCG checkpoint it is loaded from).

    Args:
        tokens_per_category: tokens per category (PixelHacker: 10).
        dim: token width (= the U-Nets' ``context_dim``).
        null_embedding: also learn a null token set (``guidance="learned_null"``).
        init_std: standard deviation of the normal initialisation.
    """

    tokens_per_category: int = 10
    dim: int = 256
    null_embedding: bool = False
    init_std: float = 0.02

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (checkpoints, hyper-parameters)."""
        return asdict(self)

    def build(self) -> "LatentCategoryEmbedding":
        """The embedding of this size."""
        return LatentCategoryEmbedding(**self.to_dict())


def load_lcg_embedding(
    path: str | Path,
    embedding: LatentCategoryEmbedding,
    unet: nn.Module | None = None,
    use_ema: bool = True,
) -> None:
    """Load the LCG embedding (and optionally the U-Net) weights from an LCG Lightning checkpoint.

    Args:
        path: ``.ckpt`` written by ``LCGPretrainModule`` (keys ``embedding.*``, ``denoiser.unet.*``).
        embedding: module to fill; its ``tokens_per_category``/``dim``/null option must match.
        unet: an :class:`networks.c2f.unet.InpaintingUNet` with the LCG run's architecture, or None
            to load only the embedding.
        use_ema: take the EMA weights (the checkpoint's ``state_dict`` when the EMA callback was
            used); False takes the raw weights (``current_model_state``) when present.

    Raises:
        networks.checkpoints.CheckpointNotFoundError: no file at ``path``.
        networks.checkpoints.CheckpointError: unsafe or unreadable file, not a Lightning checkpoint, no
            ``embedding.*`` keys (another module's checkpoint), or keys / shapes / values that do not fit
            (the message names every mismatched key with both shapes).
    """
    ckpt = read_checkpoint(path, LCG_FORMAT)
    # With the EMA callback (callbacks.ema), "state_dict" holds the averaged weights and
    # "current_model_state" the raw ones.
    key = "current_model_state" if not use_ema and isinstance(ckpt, Mapping) and "current_model_state" in ckpt else "state_dict"
    state = extract_state(ckpt, f"{path}", key=key)
    parts = [(EMBEDDING_PREFIX, embedding, "tokens_per_category / dim / null_embedding")]
    if unet is not None:
        parts.append((UNET_PREFIX, unet, "U-Net widths (the LCG run's model.init_args.unet)"))
    for prefix, module, what in parts:
        where = f"{path} [{prefix}*]"
        load_state(module, extract_state(state, where, key=None, prefix=prefix), where,
                   hint=f"The LCG run used other {what}; build the module with the values in the run's config.yaml.")

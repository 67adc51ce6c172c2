"""What a held-out inpainting case should be scored against: the original, or the clean plate for object removal.

One rule, used by the evaluator and the studies (:func:`evaluation_targets`):

- a foreground-object hole (``MaskType.FG_OBJECT``) filled with the ``background`` category is an object
  removal: it is scored against the clean plate (the background without the objects, ``datamodules.synthetic``),
  composited with the original outside the hole;
- a foreground-object hole filled with the ``foreground`` category -> the original (draw an object there);
- every background mask type (1, 2, 3) -> the original.

Object holes are dilated by ``object_dilation * min(H, W)`` px (at least 1; 2 % gives 3 px at 128 px) as real
removal masks are: a mask traced on the object's outline leaves its anti-aliased border and shadow behind.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from masks.morphology import dilate_hole
from masks.types import Category, MaskType

__all__ = ["OBJECT_DILATION", "EvalTargets", "evaluation_targets", "case_label"]

OBJECT_DILATION = 0.02


@dataclass
class EvalTargets:
    """Masks, targets and the removal flag of a batch of held-out cases."""

    mask: torch.Tensor  #: ``(B, 1, H, W)`` holes (object holes dilated)
    target: torch.Tensor  #: ``(B, 3, H, W)`` what the filled image should be
    removal: torch.Tensor  #: ``(B,)`` bool: scored against the clean plate


def evaluation_targets(image: torch.Tensor, mask: torch.Tensor, mask_type: torch.Tensor, category: torch.Tensor,
                       clean_plate: torch.Tensor | None = None, has_clean_plate: torch.Tensor | None = None,
                       object_dilation: float = OBJECT_DILATION) -> EvalTargets:
    """Targets of a batch by the rule of the module docstring.

    Args:
        image: originals ``(B, 3, H, W)`` in [-1, 1].
        mask: ``(B, 1, H, W)``, 1 = hole.
        mask_type: ``(B,)`` ``masks.types.MaskType`` ids.
        category: ``(B,)`` requested LCG category (``Category.BACKGROUND`` on an object hole = removal).
        clean_plate: ``(B, 3, H, W)`` clean plates in [-1, 1] (needed for removal cases).
        has_clean_plate: ``(B,)`` bool, which samples have one (default: all when ``clean_plate`` is given).
        object_dilation: object holes grow by this fraction of ``min(H, W)`` pixels (>= 1 px); 0 = none.

    Raises:
        ValueError: a removal case without a clean plate (its target is unknown).
    """
    b, _, h, w = image.shape
    mask_type, category = mask_type.to(image.device).long(), category.to(image.device).long()
    is_object = mask_type == int(MaskType.FG_OBJECT)
    removal = is_object & (category == int(Category.BACKGROUND))
    px = max(1, round(object_dilation * min(h, w))) if object_dilation > 0 else 0
    hole = (mask > 0.5).to(image.dtype)
    hole = torch.where(is_object[:, None, None, None], dilate_hole(hole, px), hole)
    target = image
    if bool(removal.any()):
        available = torch.zeros(b, dtype=torch.bool, device=image.device) if clean_plate is None else (
            torch.ones(b, dtype=torch.bool, device=image.device) if has_clean_plate is None
            else has_clean_plate.to(image.device).bool())
        lacking = removal & ~available
        if bool(lacking.any()):
            raise ValueError(
                f"evaluation_targets: {int(lacking.sum())} object-removal case(s) (foreground-object hole, background "
                "category) have no clean plate, so their target is unknown; evaluate removal on data with clean plates "
                "(synthetic shards carry <key>.bg.png) or request the foreground category for object holes"
            )
        use = (removal[:, None, None, None] & (hole > 0.5))
        target = torch.where(use, clean_plate.to(image), image)
    return EvalTargets(hole, target, removal)


def case_label(mask_type: int, removal: bool) -> str:
    """Row label of a case: the mask type name, ``fg object (removal)`` for an object removal."""
    from evaluation.area_bins import mask_type_label

    name = mask_type_label(mask_type)
    return f"{name} (removal)" if removal else str(name)

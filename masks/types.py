"""The four LCG mask types and the category (foreground / background) each one trains."""
from enum import IntEnum


class MaskType(IntEnum):
    """Mask type id carried in every batch as ``mask_type``."""

    FG_OBJECT = 0  # segmentation of a foreground object -> foreground embedding
    BG_OBJECT = 1  # a background "stuff" region (sky, wall, road) -> background embedding
    BG_RANDOM = 2  # random brush strokes / boxes -> background embedding
    BG_REPLACEMENT = 3  # an object shape from another sample placed over background -> background


class Category(IntEnum):
    """LCG category id carried in every batch as ``category``."""

    FOREGROUND = 0
    BACKGROUND = 1


def category_of(mask_type: int) -> Category:
    """Category a mask type trains: only foreground-object masks are foreground."""
    return Category.FOREGROUND if MaskType(mask_type) == MaskType.FG_OBJECT else Category.BACKGROUND

"""Mask generators: the four LCG training mask types and the evaluation protocols (hole = 1)."""
from masks.types import Category, MaskType, category_of

__all__ = ["Category", "MaskType", "category_of"]

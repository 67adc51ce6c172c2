"""Mask generators: the four LCG training mask types and the evaluation protocols (hole = 1)."""
from masks.objects import background_object_mask, foreground_object_mask
from masks.protocols import PROTOCOLS, from_mat_mask, lama_mask, mat_mask, protocol_mask, protocol_masks, to_mat_mask
from masks.random import as_generator, key_seed
from masks.random_mask import background_random_mask
from masks.sampler import MaskSampler
from masks.shape_bank import ShapeBank, place_shape, random_blob
from masks.types import Category, MaskType, category_of

__all__ = [
    "Category",
    "MaskType",
    "category_of",
    "MaskSampler",
    "ShapeBank",
    "place_shape",
    "random_blob",
    "foreground_object_mask",
    "background_object_mask",
    "background_random_mask",
    "PROTOCOLS",
    "mat_mask",
    "lama_mask",
    "protocol_mask",
    "protocol_masks",
    "from_mat_mask",
    "to_mat_mask",
    "as_generator",
    "key_seed",
]

"""Hole-area bins (LaMa's ten), grouped table rows and the held-out targets (evaluation/area_bins.py, targets.py)."""
import math

import pytest
import torch

from evaluation.area_bins import BIN_LABELS, area_bin, bin_label, grouped_rows
from evaluation.targets import evaluation_targets
from masks.morphology import dilate_hole


def test_bins_are_tenths_with_one_in_the_last_and_no_hole_in_none():
    assert BIN_LABELS[0] == "0-10%" and BIN_LABELS[9] == "90-100%"
    assert area_bin(0.0) is None and area_bin(float("nan")) is None
    assert area_bin(0.001) == 0 and area_bin(0.0999) == 0 and area_bin(0.1) == 1
    assert area_bin(0.55) == 5 and area_bin(1.0) == 9
    assert bin_label(0.35) == "30-40%"
    with pytest.raises(ValueError):
        area_bin(1.5)


def test_grouped_rows_average_per_bin_and_case_and_leave_empty_bins_out():
    rows = [
        {"key": "a", "hole_ratio": 0.05, "mask_type": 2, "mae": 1.0},
        {"key": "b", "hole_ratio": 0.08, "mask_type": 0, "case": "fg object (removal)", "mae": 3.0},
        {"key": "c", "hole_ratio": 0.45, "mask_type": 2, "mae": float("nan")},
        {"key": "d", "hole_ratio": 0.41, "mask_type": 1, "mae": 5.0},
    ]
    table = grouped_rows(rows, ["mae"], set_metrics=lambda g, v, members: {"keys": "".join(r["key"] for r in members)})
    by = {(r["group"], r["value"]): r for r in table}
    assert list(by) == [("all", "all"), ("hole area", "0-10%"), ("hole area", "40-50%"),
                        ("mask type", "fg object (removal)"), ("mask type", "bg object"), ("mask type", "bg random")]
    assert by["all", "all"]["count"] == 4 and by["all", "all"]["mae"] == pytest.approx(3.0)  # NaN left out
    assert by["hole area", "0-10%"]["mae"] == pytest.approx(2.0) and by["hole area", "0-10%"]["keys"] == "ab"
    assert by["hole area", "40-50%"]["mae"] == pytest.approx(5.0) and by["hole area", "40-50%"]["count"] == 2
    assert by["mask type", "bg random"]["mae"] == pytest.approx(1.0)
    assert math.isnan(grouped_rows([{"hole_ratio": 0.5, "mae": float("nan")}], ["mae"])[0]["mae"])


def test_targets_follow_mask_type_and_category():
    image = torch.zeros(4, 3, 16, 16)
    clean = torch.full((4, 3, 16, 16), 0.5)
    mask = torch.zeros(4, 1, 16, 16)
    mask[..., 6:9, 6:9] = 1
    mask_type = torch.tensor([0, 0, 1, 2])  # object, object, bg object, bg random
    category = torch.tensor([1, 0, 1, 1])  # background, foreground, background, background
    out = evaluation_targets(image, mask, mask_type, category, clean, object_dilation=1 / 16)  # 1 px
    assert out.removal.tolist() == [True, False, False, False]
    # object holes grow by 1 px (3x3 -> 5x5), background holes stay
    assert out.mask[0].sum() == 25 and out.mask[1].sum() == 25 and out.mask[2].sum() == 9
    assert (out.target[0][:, out.mask[0, 0] > 0] == 0.5).all()  # removal: clean plate in the hole
    assert (out.target[0][:, out.mask[0, 0] == 0] == 0).all()  # original outside
    assert (out.target[1:] == 0).all()  # everything else: the original
    with pytest.raises(ValueError, match="no clean plate"):
        evaluation_targets(image, mask, mask_type, category)
    with pytest.raises(ValueError, match="no clean plate"):
        evaluation_targets(image, mask, mask_type, category, clean, has_clean_plate=torch.tensor([False, True, True, True]))


def test_dilate_holes_is_a_square_dilation():
    mask = torch.zeros(1, 1, 7, 7)
    mask[..., 3, 3] = 1
    assert dilate_hole(mask, 2)[0, 0].sum() == 25 and dilate_hole(mask, 0) is mask

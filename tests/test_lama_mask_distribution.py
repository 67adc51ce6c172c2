"""LaMa thin/medium/thick masks against an independent re-statement of LaMa's official procedure.

The reference below is written from LaMa's ``bin/gen_mask_dataset.py`` and
``saicinpainting/training/data/masks.py`` (``MixedMaskGenerator``, ``RandomIrregularMaskGenerator`` /
``make_random_irregular_mask``, ``RandomRectangleMaskGenerator`` / ``make_random_rectangle_mask``) with
the values of ``configs/data_gen/random_{thin,medium,thick}_{256,512}.yaml``. It uses OpenCV and the
legacy ``np.random.RandomState`` like LaMa, and does not import the project's mask code except for
the function under test, so a shared mistake cannot hide. Hole-ratio distributions are compared
with a two-sample KS test and with the 10/50/90 % quantiles.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.stats import ks_2samp

from masks import lama_mask

# configs/data_gen/random_<preset>_<size>.yaml: irregular_kwargs, box_proba, box_kwargs.
# Every config also has irregular_proba 1, segm/squares 0, variants_n 5, max_masks_per_image 1,
# max_tamper_area 0.5, no invert_proba (0) and no ramp_kwargs.
OFFICIAL_CONFIGS = {
    ("thin", 256): ({"min_times": 4, "max_times": 50, "max_width": 10, "max_angle": 4, "max_len": 40}, 0.0, None),
    ("thin", 512): ({"min_times": 4, "max_times": 70, "max_width": 20, "max_angle": 4, "max_len": 100}, 0.0, None),
    ("medium", 256): (
        {"min_times": 4, "max_times": 5, "max_width": 50, "max_angle": 4, "max_len": 100},
        0.3,
        {"margin": 0, "bbox_min_size": 10, "bbox_max_size": 50, "min_times": 1, "max_times": 5},
    ),
    ("medium", 512): (
        {"min_times": 4, "max_times": 10, "max_width": 100, "max_angle": 4, "max_len": 200},
        0.3,
        {"margin": 0, "bbox_min_size": 30, "bbox_max_size": 150, "min_times": 1, "max_times": 5},
    ),
    ("thick", 256): (
        {"min_times": 1, "max_times": 5, "max_width": 100, "max_angle": 4, "max_len": 200},
        0.3,
        {"margin": 10, "bbox_min_size": 30, "bbox_max_size": 150, "min_times": 1, "max_times": 3},
    ),
    ("thick", 512): (
        {"min_times": 1, "max_times": 5, "max_width": 250, "max_angle": 4, "max_len": 450},
        0.3,
        {"margin": 10, "bbox_min_size": 30, "bbox_max_size": 300, "min_times": 1, "max_times": 4},
    ),
}
VARIANTS_N = 5
MAX_TAMPER_AREA = 0.5

# Samples per side: 512 px masks cost about four times as much as 256 px ones.
N_SAMPLES = {256: 400, 512: 300}
KS_MIN_P = 1e-3
QUANTILES = (0.1, 0.5, 0.9)
QUANTILE_TOL = 0.035


def _reference_strokes(rs: np.random.RandomState, side: int, kw: dict) -> np.ndarray:
    """Irregular generator with coef 1: the stroke count's upper bound grows by one before drawing."""
    canvas = np.zeros((side, side), np.float32)
    top = kw["min_times"] + 1 + (kw["max_times"] - kw["min_times"])
    n_strokes = rs.randint(kw["min_times"], top + 1)
    for stroke in range(n_strokes):
        px = rs.randint(side)
        py = rs.randint(side)
        n_segments = 1 + rs.randint(5)
        for _ in range(n_segments):
            theta = 0.01 + rs.randint(kw["max_angle"])
            if stroke % 2 == 0:
                theta = 2 * 3.1415926 - theta
            seg_len = 10 + rs.randint(kw["max_len"])
            thickness = 5 + rs.randint(kw["max_width"])
            qx = int(np.clip(np.int32(px + seg_len * math.sin(theta)), 0, side))
            qy = int(np.clip(np.int32(py + seg_len * math.cos(theta)), 0, side))
            cv2.line(canvas, (int(px), int(py)), (qx, qy), 1.0, int(thickness))
            px, py = qx, qy
    return canvas


def _reference_boxes(rs: np.random.RandomState, side: int, kw: dict) -> np.ndarray:
    """Rectangle generator with coef 1: the exclusive side bound is bbox_max_size + 1, then clipped to the margin."""
    canvas = np.zeros((side, side), np.float32)
    hi = min(kw["bbox_min_size"] + 1 + (kw["bbox_max_size"] - kw["bbox_min_size"]), side - 2 * kw["margin"])
    for _ in range(rs.randint(kw["min_times"], kw["max_times"] + 1)):
        bw = rs.randint(kw["bbox_min_size"], hi)
        bh = rs.randint(kw["bbox_min_size"], hi)
        left = rs.randint(kw["margin"], side - kw["margin"] - bw + 1)
        top = rs.randint(kw["margin"], side - kw["margin"] - bh + 1)
        canvas[top : top + bh, left : left + bw] = 1.0
    return canvas


def _reference_ratios(preset: str, side: int, n: int, seed: int) -> np.ndarray:
    """Hole ratios of the masks gen_mask_dataset.py would write for ``n`` square images of ``side`` px."""
    irregular, box_proba, box_kwargs = OFFICIAL_CONFIGS[(preset, side)]
    weights = np.array([1.0] + ([box_proba] if box_proba > 0 else []), dtype=np.float32)
    weights /= weights.sum()
    rs = np.random.RandomState(seed)
    ratios = []
    while len(ratios) < n:
        kept = []
        for _ in range(VARIANTS_N):
            kind = rs.choice(len(weights), p=weights)
            cand = _reference_strokes(rs, side, irregular) if kind == 0 else _reference_boxes(rs, side, box_kwargs)
            # A square image needs no crop. The script's emptiness check never rejects anything.
            if cand.mean() > MAX_TAMPER_AREA:
                continue
            kept.append(cand)
        if not kept:
            continue  # the script writes no mask for this image
        ratios.append(float(kept[rs.choice(len(kept))].mean()))
    return np.array(ratios)


@pytest.mark.parametrize("side", [256, 512])
@pytest.mark.parametrize("preset", ["thin", "medium", "thick"])
def test_hole_ratio_distribution_matches_official_procedure(preset, side):
    n = N_SAMPLES[side]
    reference = _reference_ratios(preset, side, n, seed=1234)
    ours = np.array([float(lama_mask(side, preset, np.random.default_rng([77, i])).mean()) for i in range(n)])

    assert (ours > 0).all() and (ours <= MAX_TAMPER_AREA).all()
    p_value = ks_2samp(ours, reference).pvalue
    summary = f"{preset} {side}: mean ours {ours.mean():.3f} vs official {reference.mean():.3f}, KS p = {p_value:.2e}"
    assert p_value > KS_MIN_P, summary
    for q in QUANTILES:
        q_ours, q_ref = np.quantile(ours, q), np.quantile(reference, q)
        assert abs(q_ours - q_ref) < QUANTILE_TOL, f"{summary}; {q:.0%} quantile {q_ours:.3f} vs {q_ref:.3f}"

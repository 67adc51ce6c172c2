"""Mask generators: hole-ratio statistics, reproducibility by seed, type fallbacks, MAT conversion."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from scipy import ndimage

from datamodules.synthetic import SYNTHETIC_CLASSES, synthetic_scene
from masks import (
    PROTOCOLS,
    MaskSampler,
    MaskType,
    ShapeBank,
    background_object_mask,
    background_random_mask,
    foreground_object_mask,
    from_mat_mask,
    lama_mask,
    mat_mask,
    place_shape,
    protocol_mask,
    protocol_masks,
    to_mat_mask,
)
from masks.objects import class_region_mask

THINGS = [c["id"] for c in SYNTHETIC_CLASSES if c["kind"] == "thing"]
STUFF = [c["id"] for c in SYNTHETIC_CLASSES if c["kind"] == "stuff"]


def _ratios(fn, n=40):
    return np.array([fn(i).mean() for i in range(n)])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocol_masks_are_binary_float_hole_one_and_reproducible(protocol):
    a = protocol_mask(protocol, 256, 123)
    b = protocol_mask(protocol, 256, np.random.default_rng(123))
    c = protocol_mask(protocol, 256, 124)
    assert a.shape == (256, 256) and a.dtype == np.float32
    assert set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# Hole-ratio means measured over 2000 masks per protocol with this implementation (256 px):
# MAT large ~0.43, MAT small ~0.19, LaMa thin ~0.29, medium ~0.24, thick ~0.27 (LaMa's official
# procedure gives the same; see test_lama_mask_distribution.py).
@pytest.mark.parametrize(
    "protocol, lo, hi",
    [("mat_large", 0.33, 0.53), ("mat_small", 0.12, 0.28), ("lama_thin", 0.23, 0.35), ("lama_medium", 0.18, 0.31), ("lama_thick", 0.17, 0.35)],
)
def test_protocol_hole_ratio_statistics(protocol, lo, hi):
    ratios = _ratios(lambda i: protocol_mask(protocol, 256, i), n=60)
    assert lo < ratios.mean() < hi, ratios.mean()
    assert (ratios > 0).all()
    if protocol.startswith("lama"):
        assert (ratios <= 0.5).all()  # LaMa rejects masks covering more than half the image


def test_mat_large_holes_exceed_small_and_512_table_is_used():
    large = _ratios(lambda i: mat_mask(512, "large", i), n=30)
    small = _ratios(lambda i: mat_mask(512, "small", i), n=30)
    assert large.mean() > small.mean() + 0.1


def test_mat_hole_range_is_respected():
    ratios = _ratios(lambda i: mat_mask(256, "large", i, hole_range=(0.2, 0.4)), n=30)
    assert ((ratios > 0.2) & (ratios < 0.4)).all()
    with pytest.raises(ValueError, match="hole_range"):
        mat_mask(256, "large", 0, hole_range=(0.5, 0.2))


def test_lama_thin_is_thinner_than_thick():
    """Thin masks are many narrow strokes: far more boundary per hole pixel than thick ones."""

    def boundary_per_hole(m):
        hole = m > 0.5
        return (hole & ~ndimage.binary_erosion(hole)).sum() / hole.sum()

    thin = np.mean([boundary_per_hole(lama_mask(256, "thin", i)) for i in range(20)])
    thick = np.mean([boundary_per_hole(lama_mask(256, "thick", i)) for i in range(20)])
    assert thin > 2 * thick


def test_unknown_protocol_names_the_choices():
    with pytest.raises(ValueError, match="mat_large"):
        protocol_mask("mat_huge", 256, 0)
    with pytest.raises(ValueError, match="thin"):
        lama_mask(256, "fat", 0)


def test_protocol_masks_fixed_set_prefix_is_stable():
    a = protocol_masks("mat_small", 64, 4, seed=3)
    b = protocol_masks("mat_small", 64, 2, seed=3)
    assert a.shape == (4, 1, 64, 64)
    np.testing.assert_array_equal(a[:2], b)


def test_mat_conversion_is_explicit_and_inverse():
    known = np.ones((8, 8), np.float32)
    known[2:5, 3:6] = 0  # MAT: 0 = hole
    ours = from_mat_mask(known)
    assert ours.sum() == 9 and ours[3, 4] == 1 and ours[0, 0] == 0
    np.testing.assert_array_equal(from_mat_mask((known * 255).astype(np.uint8)), ours)
    np.testing.assert_array_equal(to_mat_mask(ours), known)
    t = from_mat_mask(torch.from_numpy(known)[None, None])
    assert t.shape == (1, 1, 8, 8) and t.dtype == torch.float32 and t.sum() == 9
    assert torch.equal(to_mat_mask(t), torch.from_numpy(known)[None, None])


@pytest.fixture(scope="module")
def scenes():
    return [synthetic_scene(i, 64)[1].astype(np.int64) for i in range(12)]


def test_foreground_object_mask_is_one_thing_component(scenes):
    rng = np.random.default_rng(0)
    found = 0
    for seg in scenes:
        hole = foreground_object_mask(seg, THINGS, rng, min_area=0.005, max_dilation=0.0)
        if hole is None:
            continue
        found += 1
        classes = np.unique(seg[hole])
        assert len(classes) == 1 and classes[0] in THINGS
        labels, count = ndimage.label(hole, structure=np.ones((3, 3)))
        assert count == 1
        # the component is complete: no pixel of the same class touches it from outside
        grown = ndimage.binary_dilation(hole, structure=np.ones((3, 3)))
        assert not ((grown & ~hole) & (seg == classes[0])).any()
    assert found >= 10


def test_foreground_object_mask_dilation_grows_the_hole(scenes):
    seg = scenes[1]
    plain = foreground_object_mask(seg, THINGS, np.random.default_rng(5), max_dilation=0.0)
    grown = foreground_object_mask(seg, THINGS, np.random.default_rng(5), max_dilation=0.2)
    assert plain is not None and grown is not None
    assert grown.sum() >= plain.sum()


def test_background_object_mask_stays_in_one_stuff_class_and_below_max_area(scenes):
    rng = np.random.default_rng(1)
    for seg in scenes:
        hole = background_object_mask(seg, STUFF, rng, min_area=0.01, max_area=0.3)
        assert hole is not None
        classes = np.unique(seg[hole])
        assert len(classes) == 1 and classes[0] in STUFF
        assert 0.01 <= hole.mean() <= 0.3


def test_object_masks_return_none_without_candidates():
    seg = np.zeros((32, 32), np.int64)
    assert foreground_object_mask(seg, THINGS, np.random.default_rng(0)) is None
    assert background_object_mask(seg, [], np.random.default_rng(0)) is None


def test_background_random_mask_ratio_range_and_resolution_independence():
    for size in (64, 256):
        ratios = _ratios(lambda i: background_random_mask(size, size, np.random.default_rng(i)), n=30)
        assert ((ratios > 0.05) & (ratios < 0.6)).all()
        assert 0.15 < ratios.mean() < 0.45, (size, ratios.mean())


def test_replacement_mask_avoids_foreground(scenes):
    bank = ShapeBank(seed=0)
    ok = 0
    for i, seg in enumerate(scenes):
        occupied = class_region_mask(seg, THINGS)
        hole = place_shape(bank.sample(np.random.default_rng(i)), 64, 64, np.random.default_rng(i), occupied)
        assert hole.any()
        ok += (hole & occupied).sum() / hole.sum() <= 0.02
    assert ok >= 10


def test_shape_bank_harvests_with_a_ring_buffer():
    bank = ShapeBank(capacity=2, procedural=1, seed=0)
    for side in (3, 4, 5):
        m = np.zeros((16, 16), bool)
        m[2 : 2 + side, 1 : 1 + side] = True
        bank.add(m)
    assert len(bank) == 3
    assert sorted(s.shape[0] for s in bank.harvested) == [4, 5]


def test_sampler_type_frequencies_follow_probabilities(scenes):
    sampler = MaskSampler((0.4, 0.3, 0.2, 0.1), THINGS, STUFF, min_object_area=0.005, harvest_shapes=False)
    counts = Counter()
    for i in range(200):
        mask, kind = sampler(64, 64, i, scenes[i % len(scenes)])
        assert mask.shape == (64, 64) and mask.dtype == np.float32 and mask.any()
        counts[int(kind)] += 1
    assert set(counts) == {0, 1, 2, 3}
    assert counts[0] > counts[2] > counts[3] and counts[1] > counts[3]


def test_sampler_without_segmentation_gives_only_random_and_replacement():
    sampler = MaskSampler((0.25, 0.25, 0.25, 0.25), THINGS, STUFF)
    kinds = {int(sampler(32, 32, i, None)[1]) for i in range(60)}
    assert kinds == {MaskType.BG_RANDOM, MaskType.BG_REPLACEMENT}
    only_objects = MaskSampler((1, 1, 0, 0), THINGS, STUFF)
    assert {int(only_objects(32, 32, i, None)[1]) for i in range(10)} == {MaskType.BG_RANDOM}


def test_sampler_is_reproducible_by_seed(scenes):
    a = MaskSampler(thing_ids=THINGS, stuff_ids=STUFF, harvest_shapes=False)
    b = MaskSampler(thing_ids=THINGS, stuff_ids=STUFF, harvest_shapes=False)
    for i in range(20):
        ma, ka = a(64, 64, i, scenes[i % 12])
        mb, kb = b(64, 64, i, scenes[i % 12])
        assert ka == kb
        np.testing.assert_array_equal(ma, mb)


def test_sampler_rejects_bad_probabilities_and_mismatched_segmentation():
    with pytest.raises(ValueError, match="4 non-negative"):
        MaskSampler((0.5, 0.5))
    with pytest.raises(ValueError, match="4 non-negative"):
        MaskSampler((0, 0, -1, 2))
    with pytest.raises(ValueError, match="does not match"):
        MaskSampler()(32, 32, 0, np.zeros((16, 16), np.int64))


def test_replacement_dilation_grows_each_type3_hole_by_the_chebyshev_ring(scenes):
    """replacement_dilation d: the hole equals the undilated hole grown by round(d * side) px (square element),
    drawn from the same random numbers (independent formula: scipy's binary dilation)."""
    plain = MaskSampler((0, 0, 0, 1), THINGS, STUFF, harvest_shapes=False)
    grown = MaskSampler((0, 0, 0, 1), THINGS, STUFF, harvest_shapes=False, replacement_dilation=0.05)
    for i, seg in enumerate(scenes[:6]):
        a, kind_a = plain(64, 64, i, seg)
        b, kind_b = grown(64, 64, i, seg)
        assert kind_a == kind_b == MaskType.BG_REPLACEMENT
        expected = ndimage.binary_dilation(a > 0, structure=np.ones((3, 3), bool), iterations=3)  # round(0.05 * 64) = 3
        np.testing.assert_array_equal(b > 0, expected)


def test_replacement_scale_sets_the_longer_side_and_bad_options_are_refused(scenes):
    sampler = MaskSampler((0, 0, 0, 1), THINGS, STUFF, harvest_shapes=False, replacement_scale=(0.5, 0.5))
    for i, seg in enumerate(scenes[:6]):
        hole = sampler(64, 64, i, seg)[0] > 0
        ys, xs = np.nonzero(hole)
        assert max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) in (31, 32, 33)
    with pytest.raises(ValueError, match="replacement_scale"):
        MaskSampler(replacement_scale=(0.6, 0.2))
    with pytest.raises(ValueError, match="replacement_dilation"):
        MaskSampler(replacement_dilation=-0.1)

"""Ripple mask algebra, composite, ghost metrics on constructed scenes, parsers (Graphonomy keys, TTA, files)."""
import json
from pathlib import Path

import pytest
import torch

from evaluation.weights import build_lpips
from inpainters.base import Inpainter
from networks.checkpoints import CheckpointError
from networks.parsing.graphonomy import CIHP_FLIP_PERMUTATION, GraphonomyConfig, GraphonomyNet, load_graphonomy_checkpoint, parse_logits
from ripple.composite import composite_person, person_alpha
from ripple.ghost_metrics import edge_correlation, masked_perceptual_distance, masked_psnr
from ripple.parsers import GraphonomyParser, MaskFolderParser, save_person_mask
from ripple.ripple_mask import ripple_mask

FIXTURES = Path(__file__).parent / "fixtures"
TINY_PARSER = dict(hidden=8, entry=[8, 8, 16, 16, 24], middle_blocks=1, exit=[24, 32, 32, 32], aspp=16, low_level=8)


def _ellipse(h, w, cy, cx, ry, rx):
    y, x = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return ((((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2) <= 1).float()[None, None]


class PerfectInpainter(Inpainter):
    """Known answer: fills the hole with the true background of the scene."""

    def __init__(self, background):
        super().__init__()
        self.background = background

    def predict(self, image, mask):
        return self.background


def _scene(h=64, w=64, ghost=0.35, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(-1, 1, h)[:, None].expand(h, w)
    background = torch.stack([0.3 * yy, -0.2 * yy, 0.1 * torch.ones(h, w)])[None]
    stripes = (torch.sin(torch.arange(w).float() * 1.3)[None].expand(h, w) > 0).float()
    texture = 0.8 * stripes[None, None] - 0.4 + 0.2 * torch.rand(1, 3, h, w, generator=g)
    person_o = _ellipse(h, w, 32, 18, 20, 9)
    person_e = _ellipse(h, w, 32, 46, 20, 9)
    person_pixels_o = texture  # striped, high-contrast "clothes"
    person_pixels_e = texture.roll(28, dims=-1)
    original = person_o * person_pixels_o + (1 - person_o) * background
    clean_edit = person_e * person_pixels_e + (1 - person_e) * background
    ghosted = clean_edit + ghost * person_o * (1 - person_e) * (original - clean_edit)
    return background, original, ghosted, person_o, person_e


def test_mask_algebra_on_hand_made_masks():
    orig = torch.zeros(1, 1, 12, 12)
    edit = torch.zeros(1, 1, 12, 12)
    orig[..., 2:9, 2:9] = 1  # 7x7 person
    edit[..., 5:11, 5:11] = 1  # moved person overlapping its lower-right corner
    orig[..., 11, 0] = 1  # a one-pixel speck of parser noise
    m = ripple_mask(orig, edit, open_kernel=0, dilate_kernel=0)
    expected = orig.clone()
    expected[..., 5:9, 5:9] = 0  # original AND NOT edit
    assert torch.equal(m.raw, expected) and torch.equal(m.region, expected)
    m = ripple_mask(orig, edit, open_kernel=3, dilate_kernel=0)
    assert m.opened[..., 11, 0].item() == 0  # speck dropped by the opening
    assert m.opened.sum().item() == 49 - 16  # the 3-px-wide L survives a 3x3 opening intact
    dot = torch.zeros(1, 1, 9, 9)
    dot[..., 4, 4] = 1
    m = ripple_mask(dot, torch.zeros_like(dot), open_kernel=0, dilate_kernel=5)
    expected = torch.zeros_like(dot)
    expected[..., 2:7, 2:7] = 1  # dilation by a 5x5 square
    assert torch.equal(m.region, expected) and torch.equal(m.raw, dot)
    edge = torch.zeros(1, 1, 9, 9)
    edge[..., 0:3, 0:3] = 1  # touching the frame: the opening must keep it
    assert torch.equal(ripple_mask(edge, torch.zeros_like(edge), 3, 0).opened, edge)
    with pytest.raises(ValueError, match="odd"):
        ripple_mask(orig, edit, dilate_kernel=4)
    with pytest.raises(ValueError, match="one size"):
        ripple_mask(orig, edit[..., :10])


def test_identical_persons_give_empty_region_and_exact_passthrough():
    _, _, edit, _, person_e = _scene()
    m = ripple_mask(person_e, person_e)
    assert m.region.sum() == 0
    out = PerfectInpainter(torch.zeros_like(edit))(edit, m.region)
    assert torch.equal(out, edit)


def test_synthetic_ghost_scores_high_and_perfect_cleaning_lowers_it():
    background, original, ghosted, person_o, person_e = _scene()
    m = ripple_mask(person_o, person_e, open_kernel=3, dilate_kernel=5)
    cleaned_bg = PerfectInpainter(background)(ghosted, m.region)
    known = (m.region == 0).expand_as(ghosted)
    assert torch.equal(cleaned_bg[known], ghosted[known])  # inpainting keeps known pixels bit-exactly
    cleaned = composite_person(ghosted, cleaned_bg, person_alpha(person_e, grow=1, feather_sigma=1.0))
    ghost_plain = edge_correlation(ghosted, original, m.raw)
    ghost_clean = edge_correlation(cleaned, original, m.raw)
    assert ghost_plain.item() > 0.8
    assert ghost_clean.item() < 0.3
    torch.manual_seed(0)
    lp = build_lpips("alex", pretrained_backbone=False)
    d_plain = masked_perceptual_distance(lp, ghosted, original, m.raw)
    d_clean = masked_perceptual_distance(lp, cleaned, original, m.raw)
    assert d_clean.item() > d_plain.item()  # lower distance = more ghosting
    outside = 1 - m.region
    assert masked_psnr(cleaned, ghosted, outside).item() == 100.0  # untouched outside, bit for bit
    assert torch.isnan(edge_correlation(ghosted, original, torch.zeros_like(m.raw))).all()


def test_composite_is_exact_where_background_equals_edit():
    edit = torch.rand(2, 3, 16, 16) * 2 - 1
    bg = edit.clone()
    bg[..., 4:8, 4:8] = 0.5
    person = torch.zeros(2, 1, 16, 16)
    person[..., 6:12, 6:12] = 1
    out = composite_person(edit, bg, person_alpha(person, grow=1, feather_sigma=1.5))
    same = (bg == edit).all(1, keepdim=True).expand_as(edit)
    assert torch.equal(out[same], edit[same])
    hard = composite_person(edit, bg, person_alpha(person, feather_sigma=0))
    assert torch.equal(hard[..., 6:8, 6:8], edit[..., 6:8, 6:8]) and torch.equal(hard[..., 4:6, 4:6], bg[..., 4:6, 4:6])


def test_graphonomy_keys_equal_documented_fixture():
    ref = json.loads((FIXTURES / "graphonomy_cihp_transfer_savemem.keys.json").read_text())
    with torch.device("meta"):
        net = GraphonomyNet()
    mine = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in net.state_dict().items()]
    assert mine == ref["keys"]
    names = {k for k, _, _ in ref["keys"]}
    for official in ("xception_features.block2.block2_lastconv.1.pointwise_bn.running_var",
                     "xception_features.block20.rep.5.depthwise.weight", "xception_features.block19.rep.5.pointwise.weight",
                     "aspp1.bn.weight", "aspp4.atrous_convolution.depthwise_bn.bias", "global_avg_pool.1.weight",
                     "decoder.1.atrous_convolution.pointwise_bn.weight", "semantic.bias", "transpose_graph.adj",
                     "target_graph_2_fea.node_fea_for_hidden", "fc_graph.weight", "source_graph_conv3.weight"):
        assert official in names, official


def test_graphonomy_checkpoint_roundtrip_and_flip_tta_symmetry(tmp_path):
    torch.manual_seed(0)
    cfg = GraphonomyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_PARSER.items()})
    src = GraphonomyNet(cfg).eval()
    # released files come from DataParallel (module.) and may predate num_batches_tracked
    state = {f"module.{k}": v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "inference.pth")
    parser = GraphonomyParser(checkpoint=str(tmp_path / "inference.pth"), config=TINY_PARSER, scales=[1.0, 0.75], flip=True)
    x = torch.rand(2, 3, 48, 40) * 2 - 1
    with torch.no_grad():
        assert torch.equal(parser.net(x), src(x))
        logits = parse_logits(parser.net, x, [1.0, 0.75], flip=True)
        logits_m = parse_logits(parser.net, x.flip(-1), [1.0, 0.75], flip=True)
    assert logits.shape == (2, 20, 48, 40)
    # parsing a mirrored image = mirrored parse with left/right classes swapped
    torch.testing.assert_close(logits_m, logits[:, list(CIHP_FLIP_PERMUTATION)].flip(-1), atol=1e-4, rtol=1e-4)
    res = parser.parse(x)
    assert res.labels.shape == (2, 48, 40) and torch.equal(res.person[:, 0] > 0, res.labels != 0)
    with pytest.raises(FileNotFoundError, match="inference.pth"):
        GraphonomyParser(checkpoint=str(tmp_path / "missing" / "inference.pth"), config=TINY_PARSER)
    del state["module.semantic.weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="semantic.weight"):
        GraphonomyParser(checkpoint=str(tmp_path / "bad.pth"), config=TINY_PARSER)


def test_mask_folder_parser_reads_masks_and_label_maps(tmp_path):
    m = torch.zeros(1, 32, 32)
    m[:, 8:20, 4:12] = 1
    save_person_mask(m, tmp_path / "masks" / "a.png")
    save_person_mask(torch.zeros(1, 16, 16), tmp_path / "masks" / "b.pose3.png")  # other size: resized
    p = MaskFolderParser(str(tmp_path / "masks"))
    res = p.parse(torch.zeros(2, 3, 32, 32), ["a", "b.pose3"])
    assert torch.equal(res.person[0, 0], m[0]) and res.person[1].sum() == 0
    from PIL import Image
    import numpy as np
    labels = np.zeros((32, 32), np.uint8)
    labels[4:8, 4:8] = 14
    labels[10:12, 10:12] = 2
    Image.fromarray(labels).save(tmp_path / "masks" / "c_labels.png")
    pl = MaskFolderParser(str(tmp_path / "masks"), kind="labels", suffix="_labels.png", person_classes=[14])
    r = pl.parse(torch.zeros(1, 3, 32, 32), ["c"])
    assert r.labels[0, 5, 5] == 14 and r.person.sum() == 16
    pal = Image.frombytes("P", (32, 32), labels.tobytes())  # palette PNG: indices are the class ids
    pal.putpalette([v for i in range(256) for v in (i * 7 % 256, i * 3 % 256, 255 - i)])
    pal.save(tmp_path / "masks" / "d_labels.png")
    r = pl.parse(torch.zeros(1, 3, 32, 32), ["d"])
    assert r.labels[0, 5, 5] == 14 and r.labels[0, 10, 10] == 2
    Image.fromarray(np.stack([labels] * 3, -1)).save(tmp_path / "masks" / "e_labels.png")
    with pytest.raises(ValueError, match="class ids"):
        pl.parse(torch.zeros(1, 3, 32, 32), ["e"])
    with pytest.raises(FileNotFoundError, match="zzz.png"):
        p.parse(torch.zeros(1, 3, 32, 32), ["zzz"])
    with pytest.raises(ValueError, match="one key per image"):
        p.parse(torch.zeros(2, 3, 32, 32), ["a"])


def test_graph_to_featuremaps_equals_the_expanded_official_formulation():
    from networks.parsing.graphonomy import GraphToFeaturemaps
    torch.manual_seed(0)
    g2f = GraphToFeaturemaps(channels=6, hidden=4)
    nodes = torch.randn(2, 5, 4)
    x = torch.randn(2, 6, 3, 7)
    # the memory-hungry form: concat pixel features and node features for every (pixel, node) pair
    pix = x.flatten(2).transpose(1, 2)  # (B, HW, C)
    pairs = torch.cat([pix[:, :, None].expand(-1, -1, 5, -1), nodes[:, None].expand(-1, 21, -1, -1)], dim=-1)
    node_fea = torch.cat([g2f.node_fea_for_res, g2f.node_fea_for_hidden], dim=0)  # (C + hidden, 1)
    affinity = (pairs @ node_fea)[..., 0]  # (B, HW, K)
    weights = torch.softmax(affinity, dim=-1)  # official: normalised over the nodes
    expected = torch.relu((weights @ (nodes @ g2f.weight)).transpose(1, 2).reshape(2, 6, 3, 7))
    torch.testing.assert_close(g2f(nodes, x), expected)


def test_normalized_adjacency_and_block_skip_semantics():
    from networks.parsing.graphonomy import XceptionBlock, normalized_adjacency
    a = normalized_adjacency({0: [0], 1: [2], 2: [1]})  # self-loop on 0 counts once, then + I
    expected = torch.tensor([[1.0, 0, 0], [0, 0.5, 0.5], [0, 0.5, 0.5]])
    torch.testing.assert_close(a, expected)
    assert normalized_adjacency({0: [], 1: []}).equal(torch.eye(2))
    # middle-flow block: the official in-place ReLU also rectifies the identity skip
    block = XceptionBlock(4, 4, reps=3).eval()
    last_bn = block.rep[-1].pointwise_bn
    torch.nn.init.zeros_(last_bn.weight)
    torch.nn.init.zeros_(last_bn.bias)
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(x))

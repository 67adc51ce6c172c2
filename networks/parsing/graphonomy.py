"""Graphonomy-compatible human parser: DeepLabv3+ (modified aligned Xception) with graph reasoning.

Written from the published Graphonomy architecture (Gong et al., "Graphonomy: Universal Human
Parsing via Graph Transfer Learning", CVPR 2019). Module names follow the official
``networks/deeplab_xception_transfer.py`` class ``deeplab_xception_transfer_projection_savemem``
(the model of the released CIHP ``inference.pth``: 20 target classes, 7 source (PASCAL-Person-Part)
classes, 128 hidden graph features), so the released weights load with strict key matching
(:func:`load_graphonomy_checkpoint`). ``tests/fixtures/graphonomy_cihp_transfer_savemem.keys.json``
lists the expected keys and shapes.

Behaviour kept from the official code because the released weights were trained with it:

- every Xception block whose first op is a ReLU applies it in place upstream, so the residual
  (skip) path also sees the rectified input;
- the third source graph convolution re-uses ``source_graph_conv2`` (``source_graph_conv3`` has
  weights but is unused);
- input: BGR, ``img_255 * 2 / 255 - 1`` (for the project's RGB [-1, 1] images this is only the
  channel flip); CIHP label 0 is background.

Widths and depth are configurable (:class:`GraphonomyConfig`) so tests can build a small model;
the defaults are the official ones.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.checkpoints import CheckpointFormat, extract_state, load_state, read_checkpoint

CIHP_CLASSES: tuple[str, ...] = (
    "background", "hat", "hair", "glove", "sunglasses", "upper_clothes", "dress", "coat", "socks", "pants",
    "torso_skin", "scarf", "skirt", "face", "left_arm", "right_arm", "left_leg", "right_leg", "left_shoe",
    "right_shoe",
)
"""The 20 CIHP labels (index = class id)."""

CIHP_FLIP_PERMUTATION: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 14, 17, 16, 19, 18)
"""Channel order of a mirrored image's logits: left/right arm, leg and shoe swap (official ``flip_cihp``)."""

# Part graphs of the official ``networks/graph.py`` (node -> neighbours; undirected).
PASCAL_GRAPH: dict[int, list[int]] = {0: [0], 1: [1, 2], 2: [1, 2, 3, 5], 3: [2, 3, 4], 4: [3, 4], 5: [2, 5, 6], 6: [5, 6]}
CIHP_GRAPH: dict[int, list[int]] = {
    0: [], 1: [2, 13], 2: [1, 13], 3: [14, 15], 4: [13], 5: [6, 7, 9, 10, 11, 12, 14, 15],
    6: [5, 7, 10, 11, 14, 15, 16, 17], 7: [5, 6, 9, 10, 11, 12, 14, 15], 8: [16, 17, 18, 19],
    9: [5, 7, 10, 16, 17, 18, 19], 10: [5, 6, 7, 9, 11, 12, 13, 14, 15, 16, 17], 11: [5, 6, 7, 10, 13],
    12: [5, 7, 10, 16, 17], 13: [1, 2, 4, 10, 11], 14: [3, 5, 6, 7, 10], 15: [3, 5, 6, 7, 10],
    16: [6, 8, 9, 10, 12, 18], 17: [6, 8, 9, 10, 12, 19], 18: [8, 9, 16], 19: [8, 9, 17],
}
# Word-embedding similarity between the 7 PASCAL parts (rows) and the 20 CIHP labels (columns),
# the official ``cihp2pascal_nlp_adj`` table (fed, transposed, to the graph-transfer layer).
CIHP2PASCAL_NLP_ADJ: tuple[tuple[float, ...], ...] = (
    (1.0, 0.35333052, 0.32727194, 0.17418084, 0.18757584, 0.40608522, 0.37503981, 0.35448462, 0.22598555,
     0.23893579, 0.33064262, 0.28923404, 0.27986573, 0.4211553, 0.36915778, 0.41377746, 0.32485771, 0.37248222,
     0.36865639, 0.41500332),
    (0.39615879, 0.46201529, 0.52321467, 0.30826114, 0.25669527, 0.54747773, 0.3670523, 0.3901983, 0.27519473,
     0.3433325, 0.52728509, 0.32771333, 0.34819325, 0.63882953, 0.68042925, 0.69368576, 0.63395791, 0.65344337,
     0.59538781, 0.6071375),
    (0.16373166, 0.21663339, 0.3053872, 0.28377612, 0.1372435, 0.4448808, 0.29479995, 0.31092595, 0.22703953,
     0.33983576, 0.75778818, 0.2619818, 0.37069392, 0.35184867, 0.49877512, 0.49979437, 0.51853277, 0.52517541,
     0.32517741, 0.32377309),
    (0.32687232, 0.38482461, 0.37693463, 0.41610834, 0.20415749, 0.76749079, 0.35139853, 0.3787411, 0.28411737,
     0.35155421, 0.58792618, 0.31141718, 0.40585111, 0.51189218, 0.82042737, 0.8342413, 0.70732188, 0.72752501,
     0.60327325, 0.61431337),
    (0.34069369, 0.34817292, 0.37525998, 0.36497069, 0.17841617, 0.69746208, 0.31731463, 0.34628951, 0.25167277,
     0.32072379, 0.56711286, 0.24894776, 0.37000453, 0.52600859, 0.82483993, 0.84966274, 0.7033991, 0.73449378,
     0.56649608, 0.58888791),
    (0.28477487, 0.35139564, 0.42742352, 0.41664321, 0.20004676, 0.78566833, 0.42237487, 0.41048549, 0.37933812,
     0.46542516, 0.62444759, 0.3274493, 0.49466009, 0.49314658, 0.71244233, 0.71497003, 0.8234787, 0.83566589,
     0.62597135, 0.62626812),
    (0.3011378, 0.31775977, 0.42922647, 0.36896257, 0.17597556, 0.72214655, 0.39162804, 0.38137872, 0.34980296,
     0.43818419, 0.60879174, 0.26762545, 0.46271161, 0.51150476, 0.72318109, 0.73678399, 0.82620388, 0.84942166,
     0.5943811, 0.60607602),
)

GRAPHONOMY_URL = "https://github.com/Gaoyiminggithub/Graphonomy (README: 'inference.pth', CIHP trained model)"


def normalized_adjacency(graph: dict[int, list[int]]) -> torch.Tensor:
    """``D^-1/2 (A + I) D^-1/2`` of an undirected graph given as node -> neighbours (self-loops count 1)."""
    n = len(graph)
    a = torch.zeros(n, n, dtype=torch.float64)
    for i, nbrs in graph.items():
        for j in nbrs:
            a[i, j] = a[j, i] = 1.0
    a = a + torch.eye(n, dtype=torch.float64)
    d = a.sum(1).pow(-0.5)
    d[torch.isinf(d)] = 0
    return (d[:, None] * a * d[None, :]).float()


@dataclass
class GraphonomyConfig:
    """Widths and depth of the parser; the defaults are the released CIHP model's.

    Args:
        n_classes: target (CIHP) classes.
        source_classes: source-graph (PASCAL) nodes.
        hidden: graph node features.
        entry: channels of conv1, conv2, block1, block2, block3 of the Xception entry flow.
        middle_blocks: residual blocks of the middle flow (official 16).
        exit: channels of block20 and of the three exit separable convolutions.
        aspp: channels of each ASPP branch and of the decoder.
        low_level: channels of the low-level feature projection.
        aspp_rates: dilations of the three atrous ASPP branches (output stride 16).
    """

    n_classes: int = 20
    source_classes: int = 7
    hidden: int = 128
    entry: tuple[int, int, int, int, int] = (32, 64, 128, 256, 728)
    middle_blocks: int = 16
    exit: tuple[int, int, int, int] = (1024, 1536, 1536, 2048)
    aspp: int = 256
    low_level: int = 48
    aspp_rates: tuple[int, int, int] = (6, 12, 18)


class SeparableConvBN(nn.Module):
    """Depthwise conv + BN + pointwise conv + BN (official ``SeparableConv2d_same``; "same" zero padding).

    Args:
        cin: input channels.
        cout: output channels.
        stride: stride of the depthwise conv.
        dilation: dilation of the depthwise conv.
        relu: apply ReLU after each BN (official ``SeparableConv2d_aspp``).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1, relu: bool = False) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, dilation, dilation, groups=cin, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(cin)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.pointwise_bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise_bn(self.depthwise(x))
        if self.relu:
            x = F.relu(x)
        x = self.pointwise_bn(self.pointwise(x))
        return F.relu(x) if self.relu else x


class XceptionBlock(nn.Module):
    """Residual Xception block (official ``Block``); ``rep`` interleaves ReLUs and separable convs.

    Args:
        cin: input channels.
        cout: output channels.
        reps: separable convolutions before the optional strided/last one.
        stride: 2 appends a stride-2 separable conv (and makes the skip strided).
        dilation: dilation of the separable convs.
        start_with_relu: the block begins with a ReLU (which also rectifies the skip input).
        grow_first: widen in the first conv (else in the last of ``reps``).
        is_last: append one more separable conv; the skip is then unstrided.
        split_last: keep the final strided conv apart as ``block2_lastconv`` and also return the
            features before it (official ``Block2``, the low-level feature source).
    """

    def __init__(self, cin: int, cout: int, reps: int, stride: int = 1, dilation: int = 1,
                 start_with_relu: bool = True, grow_first: bool = True, is_last: bool = False,
                 split_last: bool = False) -> None:
        super().__init__()
        if cout != cin or stride != 1:
            self.skip = nn.Conv2d(cin, cout, 1, stride=1 if is_last else stride, bias=False)
            self.skipbn = nn.BatchNorm2d(cout)
        else:
            self.skip = None
        rep: list[nn.Module] = []
        ch = cin
        if grow_first:
            rep += [nn.ReLU(), SeparableConvBN(cin, cout, dilation=dilation)]
            ch = cout
        for _ in range(reps - 1):
            rep += [nn.ReLU(), SeparableConvBN(ch, ch, dilation=dilation)]
        if not grow_first:
            rep += [nn.ReLU(), SeparableConvBN(cin, cout, dilation=dilation)]
        if not start_with_relu:
            rep = rep[1:]
        self.start_with_relu = start_with_relu
        self.split_last = split_last
        if stride != 1:
            last = [nn.ReLU(), SeparableConvBN(cout, cout, stride=2, dilation=dilation)]
            if split_last:
                self.block2_lastconv = nn.Sequential(*last)
            else:
                rep += last
        if is_last:
            rep += [nn.ReLU(), SeparableConvBN(cout, cout, dilation=dilation)]
        self.rep = nn.Sequential(*rep)

    def forward(self, x: torch.Tensor):
        if self.start_with_relu:
            x = F.relu(x)  # the official in-place ReLU also rectifies the skip input
            y = self.rep[1:](x)
        else:
            y = self.rep(x)
        skip = x if self.skip is None else self.skipbn(self.skip(x))
        if self.split_last:
            low = y
            return self.block2_lastconv(y) + skip, low
        return y + skip


class Xception(nn.Module):
    """Modified aligned Xception backbone, output stride 16; returns (features, low-level features).

    Args:
        cfg: widths and depth.
        in_channels: image channels.
    """

    def __init__(self, cfg: GraphonomyConfig, in_channels: int = 3) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = cfg.entry
        e1, e2, e3, e4 = cfg.exit
        self.conv1 = nn.Conv2d(in_channels, c1, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.block1 = XceptionBlock(c2, c3, reps=2, stride=2, start_with_relu=False)
        self.block2 = XceptionBlock(c3, c4, reps=2, stride=2, split_last=True)
        self.block3 = XceptionBlock(c4, c5, reps=2, stride=2)
        self.n_middle = cfg.middle_blocks
        for i in range(cfg.middle_blocks):
            setattr(self, f"block{4 + i}", XceptionBlock(c5, c5, reps=3))
        setattr(self, f"block{4 + cfg.middle_blocks}",
                XceptionBlock(c5, e1, reps=2, dilation=1, grow_first=False, is_last=True))
        self.conv3 = SeparableConvBN(e1, e2, dilation=2, relu=True)
        self.conv4 = SeparableConvBN(e2, e3, dilation=2, relu=True)
        self.conv5 = SeparableConvBN(e3, e4, dilation=2, relu=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.block1(x)
        x, low = self.block2(x)
        x = self.block3(x)
        for i in range(self.n_middle + 1):
            x = getattr(self, f"block{4 + i}")(x)
        # conv3..5 end with ReLU (SeparableConv2d_aspp); the extra official ReLU is a no-op
        return self.conv5(self.conv4(self.conv3(x))), low


class ASPPBranch(nn.Module):
    """One ASPP branch: 1x1 conv + BN + ReLU (rate 1) or an atrous separable conv (official names).

    Args:
        cin: input channels.
        cout: output channels.
        rate: dilation; 1 means the 1x1 branch.
    """

    def __init__(self, cin: int, cout: int, rate: int) -> None:
        super().__init__()
        self.rate = rate
        if rate == 1:
            self.atrous_convolution = nn.Conv2d(cin, cout, 1, bias=False)
            self.bn = nn.BatchNorm2d(cout)
        else:
            self.atrous_convolution = SeparableConvBN(cin, cout, dilation=rate, relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 1:
            return F.relu(self.bn(self.atrous_convolution(x)))
        return self.atrous_convolution(x)


class DecoderModule(nn.Module):
    """Decoder stage: a 3x3 separable conv with BN and ReLU (official ``Decoder_module``).

    Args:
        cin: input channels.
        cout: output channels.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.atrous_convolution = SeparableConvBN(cin, cout, relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.atrous_convolution(x)


class GraphConvolution(nn.Module):
    """``relu(adj @ (x @ W))`` (no bias), or without ``adj`` a node-wise linear map.

    Args:
        cin: input node features.
        cout: output node features.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cin, cout))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, adj: torch.Tensor | None = None) -> torch.Tensor:
        y = x @ self.weight
        return F.relu(y if adj is None else adj @ y)


class FeaturemapsToGraph(nn.Module):
    """Soft-assign pixels to ``nodes`` graph nodes and pool projected features into them.

    Args:
        channels: feature-map channels.
        hidden: node features.
        nodes: number of nodes.
    """

    def __init__(self, channels: int, hidden: int, nodes: int) -> None:
        super().__init__()
        self.pre_fea = nn.Parameter(torch.empty(channels, nodes))
        self.weight = nn.Parameter(torch.empty(channels, hidden))
        nn.init.xavier_uniform_(self.pre_fea)
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pix = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        assign = torch.softmax(pix @ self.pre_fea, dim=-1)  # (B, HW, nodes)
        return F.relu(assign.transpose(1, 2) @ (pix @ self.weight))  # (B, nodes, hidden)


class GraphToFeaturemaps(nn.Module):
    """Project node features back onto the pixels (official ``Graph_to_Featuremaps_savemem``, ``networks/gcn.py``).

    With pixel features ``pix[b, p]`` (``C``), node features ``node[b, k]`` (``hidden``) and ``K`` nodes:

    - affinity ``a[b, p, k] = pix[b, p] . node_fea_for_res + node[b, k] . node_fea_for_hidden``;
    - ``s[b, p, :] = softmax_k(a[b, p, :])`` (normalised over the nodes, as the official code does);
    - ``out[b, c, p] = relu(sum_k s[b, p, k] * (node[b, k] @ weight)[c])``, laid back out as ``(B, C, H, W)``.

    The pixel term is constant over ``k``, so the softmax makes it cancel (the projection is the same at
    every pixel of an image); it is still computed, exactly as the official code does.

    Args:
        channels: feature-map channels (also the output channels).
        hidden: node features.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.node_fea_for_res = nn.Parameter(torch.empty(channels, 1))
        self.node_fea_for_hidden = nn.Parameter(torch.empty(hidden, 1))
        self.weight = nn.Parameter(torch.empty(hidden, channels))
        for p in self.parameters():
            nn.init.xavier_uniform_(p)

    def forward(self, nodes: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pix = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        affinity = pix @ self.node_fea_for_res + (nodes @ self.node_fea_for_hidden).transpose(1, 2)  # (B, HW, K)
        out = torch.softmax(affinity, dim=-1) @ (nodes @ self.weight)  # (B, HW, C)
        return F.relu(out.transpose(1, 2).reshape(b, c, h, w))


class GraphTransfer(nn.Module):
    """Map source-graph nodes to target nodes: ``relu(softmax(relu(adj)) @ (x @ W))`` (``Graph_trans``).

    ``adj`` (target x source) is a parameter in the checkpoint; the official inference passes the
    word-embedding table instead, which :class:`GraphonomyParser` does too.

    Args:
        hidden: node features.
        source_nodes: source nodes.
        target_nodes: target nodes.
    """

    def __init__(self, hidden: int, source_nodes: int, target_nodes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(hidden, hidden))
        self.adj = nn.Parameter(torch.empty(target_nodes, source_nodes))
        nn.init.xavier_uniform_(self.weight)
        nn.init.xavier_uniform_(self.adj)

    def forward(self, x: torch.Tensor, adj: torch.Tensor | None = None) -> torch.Tensor:
        a = torch.softmax(F.relu(self.adj if adj is None else adj), dim=-1)
        return F.relu(a @ (x @ self.weight))


class GraphonomyNet(nn.Module):
    """DeepLabv3+ Xception with PASCAL->CIHP graph transfer; ``forward(x) -> logits (B, n_classes, H, W)``.

    ``x`` is the official input: BGR, ``img * 2 / 255 - 1``. The adjacency matrices of the
    official inference are non-persistent buffers (not in the checkpoint).

    Args:
        config: widths and depth (defaults: the released CIHP model).
    """

    def __init__(self, config: GraphonomyConfig | None = None) -> None:
        super().__init__()
        cfg = config or GraphonomyConfig()
        self.config = cfg
        if cfg.n_classes != 20 or cfg.source_classes != 7:
            raise ValueError("GraphonomyNet: the official graphs are CIHP (20 classes) <- PASCAL parts (7); "
                             f"got n_classes={cfg.n_classes}, source_classes={cfg.source_classes}")
        a, e4 = cfg.aspp, cfg.exit[3]
        self.xception_features = Xception(cfg)
        self.aspp1 = ASPPBranch(e4, a, 1)
        self.aspp2 = ASPPBranch(e4, a, cfg.aspp_rates[0])
        self.aspp3 = ASPPBranch(e4, a, cfg.aspp_rates[1])
        self.aspp4 = ASPPBranch(e4, a, cfg.aspp_rates[2])
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(e4, a, 1, bias=False),
                                             nn.BatchNorm2d(a), nn.ReLU())
        self.concat_projection_conv1 = nn.Conv2d(5 * a, a, 1, bias=False)
        self.concat_projection_bn1 = nn.BatchNorm2d(a)
        self.feature_projection_conv1 = nn.Conv2d(cfg.entry[3], cfg.low_level, 1, bias=False)
        self.feature_projection_bn1 = nn.BatchNorm2d(cfg.low_level)
        self.decoder = nn.Sequential(DecoderModule(a + cfg.low_level, a), DecoderModule(a, a))
        self.semantic = nn.Conv2d(a, cfg.n_classes, 1)
        hid = cfg.hidden
        self.target_featuremap_2_graph = FeaturemapsToGraph(a, hid, cfg.n_classes)
        self.target_graph_conv1 = GraphConvolution(hid, hid)
        self.target_graph_conv2 = GraphConvolution(hid, hid)
        self.target_graph_conv3 = GraphConvolution(hid, hid)
        self.target_graph_2_fea = GraphToFeaturemaps(a, hid)
        self.target_skip_conv = nn.Sequential(nn.Conv2d(a, a, 1), nn.ReLU())
        self.source_featuremap_2_graph = FeaturemapsToGraph(a, hid, cfg.source_classes)
        self.source_graph_conv1 = GraphConvolution(hid, hid)
        self.source_graph_conv2 = GraphConvolution(hid, hid)
        self.source_graph_conv3 = GraphConvolution(hid, hid)  # unused by the official forward (kept for keys)
        self.transpose_graph = GraphTransfer(hid, cfg.source_classes, cfg.n_classes)
        self.fc_graph = GraphConvolution(3 * hid, hid)
        self.register_buffer("adj_target", normalized_adjacency(CIHP_GRAPH), persistent=False)
        self.register_buffer("adj_source", normalized_adjacency(PASCAL_GRAPH), persistent=False)
        self.register_buffer("adj_transfer", torch.tensor(CIHP2PASCAL_NLP_ADJ).t().contiguous(), persistent=False)

    @staticmethod
    def _similarity_transfer(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sim = F.normalize(target, dim=-1) @ F.normalize(source, dim=-1).transpose(-1, -2)
        return torch.softmax(sim, dim=-1) @ source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats, low = self.xception_features(x)
        pooled = F.interpolate(self.global_avg_pool(feats), size=feats.shape[-2:], mode="bilinear", align_corners=True)
        y = torch.cat([self.aspp1(feats), self.aspp2(feats), self.aspp3(feats), self.aspp4(feats), pooled], dim=1)
        y = F.relu(self.concat_projection_bn1(self.concat_projection_conv1(y)))
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=True)
        low = F.relu(self.feature_projection_bn1(self.feature_projection_conv1(low)))
        y = self.decoder(torch.cat([y, low], dim=1))

        src = self.source_featuremap_2_graph(y)
        src1 = self.source_graph_conv1(src, self.adj_source)
        src2 = self.source_graph_conv2(src1, self.adj_source)
        src3 = self.source_graph_conv2(src2, self.adj_source)  # official: conv2 twice
        tgt = self.target_featuremap_2_graph(y)
        for src_k, conv in ((src1, self.target_graph_conv1), (src2, self.target_graph_conv2),
                            (src3, self.target_graph_conv3)):
            fused = torch.cat([tgt, self._similarity_transfer(src_k, tgt),
                               self.transpose_graph(src_k, self.adj_transfer)], dim=-1)
            tgt = conv(self.fc_graph(fused), self.adj_target)
        y = self.target_skip_conv(y) + self.target_graph_2_fea(tgt, y)
        return F.interpolate(self.semantic(y), size=size, mode="bilinear", align_corners=True)


def parse_logits(net: GraphonomyNet, image: torch.Tensor, scales: Sequence[float] = (1.0,),
                 flip: bool = False) -> torch.Tensor:
    """Test-time-augmented CIHP logits of project images, summed over scales as the official inference.

    Args:
        net: the parser network (eval mode).
        image: ``(B,3,H,W)`` RGB in [-1, 1] (= official ``img*2/255-1`` after the BGR flip done here).
        scales: input scales (official multi-scale test: 1, 0.5, 0.75, 1.25, 1.5, 1.75).
        flip: also parse the mirrored image; its logits are mirrored back with left/right classes
            swapped and averaged with the plain ones (official ``flip_cihp``).

    Returns:
        ``(B, 20, H, W)`` logits (argmax = label map).
    """
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"parse_logits: image must be (B,3,H,W) RGB in [-1,1], got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    bgr = image.flip(1)
    total = None
    perm = list(CIHP_FLIP_PERMUTATION)
    for s in scales:
        x = bgr if s == 1 else F.interpolate(bgr, size=(max(1, int(h * s)), max(1, int(w * s))),
                                             mode="bilinear", align_corners=False)
        if flip:
            out = net(torch.cat([x, x.flip(-1)], dim=0))
            plain, mirrored = out.chunk(2, dim=0)
            out = (plain + mirrored[:, perm].flip(-1)) / 2
        else:
            out = net(x)
        if out.shape[-2:] != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=True)
        total = out if total is None else total + out
    return total


#: the released CIHP ``inference.pth``: a plain (possibly ``module.``-prefixed) state dict
GRAPHONOMY_FORMAT = CheckpointFormat(
    name="Graphonomy checkpoint",
    origin=f"Download the CIHP 'inference.pth' from {GRAPHONOMY_URL} and place it there (or set the parser's "
    "checkpoint path). No weights are downloaded automatically.",
)


def _official_key(key: str) -> str:
    """The official renaming: ``module.`` dropped; un-prefixed PASCAL ``graph*`` keys become ``source_graph*``."""
    key = key.replace("module.", "")
    if "graph" in key and not any(s in key for s in ("source", "target", "fc_", "transpose_graph")):
        key = key.replace("featuremap_2_graph", "source_featuremap_2_graph") if "featuremap_2_graph" in key \
            else key.replace("graph", "source_graph")
    return key


def load_graphonomy_checkpoint(net: GraphonomyNet, path: str | Path) -> GraphonomyNet:
    """Load the released Graphonomy ``inference.pth`` (a plain state dict, possibly ``module.``-prefixed).

    Keys are matched strictly after the official renaming (:func:`_official_key`); ``num_batches_tracked``
    may be absent (checkpoints from PyTorch < 0.4.1). Read with ``weights_only=True``.

    Raises:
        networks.checkpoints.CheckpointNotFoundError: the file is missing (says where it comes from).
        networks.checkpoints.CheckpointError: unsafe or unreadable file, or missing / unexpected keys,
            shape, dtype or NaN/Inf mismatches (listed).
    """
    obj = read_checkpoint(path, GRAPHONOMY_FORMAT)
    key = "state_dict" if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) else None
    state = extract_state(obj, str(path), key=key, rename=_official_key)
    return load_state(
        net, state, str(path), optional=lambda k: k.endswith("num_batches_tracked"),
        hint="The parser expects the CIHP transfer model (deeplab_xception_transfer_projection_savemem, "
        f"config {asdict(net.config)}).",
    )

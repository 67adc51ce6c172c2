"""Graphonomy port vs the official CIHP transfer model, in float64.

Two checks, both independent of our network classes' forward code:

- the graph-to-pixels projection (official ``Graph_to_Featuremaps_savemem`` in ``networks/gcn.py``)
  against its formula evaluated pixel by pixel with plain Python arithmetic;
- the whole ``GraphonomyNet`` (small widths) against a functional re-statement of the official
  ``deeplab_xception_transfer_projection_savemem.forward`` (``networks/deeplab_xception_transfer.py``,
  backbone from ``networks/deeplab_xception.py``) that only reads the state dict by the official key
  names and applies ``torch.nn.functional`` ops.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from networks.parsing.graphonomy import CIHP2PASCAL_NLP_ADJ, GraphonomyConfig, GraphonomyNet, GraphToFeaturemaps

SMALL = GraphonomyConfig(hidden=6, entry=(4, 6, 8, 10, 12), middle_blocks=2, exit=(14, 16, 16, 18), aspp=10,
                         low_level=4)


# ----------------------------------------------------------------------------------------------
# a. the projection layer against its formula, pixel by pixel
# ----------------------------------------------------------------------------------------------

def _projection_by_hand(nodes, x, w_res, w_hidden, weight):
    """out[b,c,p] = relu(sum_k softmax_k(pix[b,p].w_res + node[b,k].w_hidden) * (node[b,k] @ weight)[c])."""
    b_n, c_n, h, w = x.shape
    k_n, hid = nodes.shape[1], nodes.shape[2]
    out = torch.zeros(b_n, c_n, h, w, dtype=torch.float64)
    for b in range(b_n):
        node_out = [[sum(nodes[b, k, j].item() * weight[j, c].item() for j in range(hid)) for c in range(c_n)]
                    for k in range(k_n)]
        node_score = [sum(nodes[b, k, j].item() * w_hidden[j, 0].item() for j in range(hid)) for k in range(k_n)]
        for i in range(h):
            for jj in range(w):
                pix_score = sum(x[b, c, i, jj].item() * w_res[c, 0].item() for c in range(c_n))
                logits = [pix_score + node_score[k] for k in range(k_n)]
                top = max(logits)
                e = [math.exp(v - top) for v in logits]
                z = sum(e)
                for c in range(c_n):
                    v = sum(e[k] / z * node_out[k][c] for k in range(k_n))
                    out[b, c, i, jj] = max(v, 0.0)
    return out


def test_graph_to_featuremaps_matches_the_official_formula():
    b, k, c, hid, h, w = 2, 4, 3, 2, 2, 3
    layer = GraphToFeaturemaps(channels=c, hidden=hid).double()
    w_res = torch.tensor([[0.5], [-1.0], [0.25]], dtype=torch.float64)
    w_hidden = torch.tensor([[1.5], [-0.75]], dtype=torch.float64)
    weight = torch.tensor([[0.3, -0.6, 1.1], [-0.9, 0.4, 0.7]], dtype=torch.float64)
    with torch.no_grad():
        layer.node_fea_for_res.copy_(w_res)
        layer.node_fea_for_hidden.copy_(w_hidden)
        layer.weight.copy_(weight)
    nodes = (torch.arange(b * k * hid, dtype=torch.float64).reshape(b, k, hid) % 5 - 2) * 0.7
    x = torch.linspace(-2.0, 2.5, b * c * h * w, dtype=torch.float64).reshape(b, c, h, w).flip(-1)
    expected = _projection_by_hand(nodes, x, w_res, w_hidden, weight)
    got = layer(nodes, x)
    assert got.shape == (b, c, h, w)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# b. the whole network against a functional re-statement of the official forward pass
# ----------------------------------------------------------------------------------------------

def _official_forward(sd: dict, image: torch.Tensor, adj_target: torch.Tensor, adj_source: torch.Tensor,
                      adj_transfer: torch.Tensor) -> torch.Tensor:
    """Official ``deeplab_xception_transfer_projection_savemem.forward`` (os 16, eval BN) from the state dict.

    Adjacencies are passed as the official inference passes them: ``(1, 1, n, m)`` tensors.
    """
    X = "xception_features."

    def bn(t, name):
        return F.batch_norm(t, sd[name + ".running_mean"], sd[name + ".running_var"], sd[name + ".weight"],
                            sd[name + ".bias"], training=False, momentum=0.0, eps=1e-5)

    def sep_same(t, name, stride, rate):
        # SeparableConv2d_same: explicit "fixed" zero padding for the effective kernel, unpadded depthwise conv
        span = 3 + 2 * (rate - 1) - 1
        t = F.pad(t, (span // 2, span - span // 2, span // 2, span - span // 2))
        t = F.conv2d(t, sd[name + ".depthwise.weight"], stride=stride, dilation=rate, groups=t.shape[1])
        t = bn(t, name + ".depthwise_bn")
        return bn(F.conv2d(t, sd[name + ".pointwise.weight"]), name + ".pointwise_bn")

    def sep_aspp(t, name, rate):
        # SeparableConv2d_aspp: depthwise (padding = dilation) + BN + ReLU, pointwise + BN + ReLU
        t = F.conv2d(t, sd[name + ".depthwise.weight"], padding=rate, dilation=rate, groups=t.shape[1])
        t = F.relu(bn(t, name + ".depthwise_bn"))
        return F.relu(bn(F.conv2d(t, sd[name + ".pointwise.weight"]), name + ".pointwise_bn"))

    def layout(reps, stride, start_with_relu, grow_first, is_last):
        # the entries of the official Block's `rep` Sequential: "relu" or the stride of a separable conv
        # (grow_first only moves the widening conv; either way there are `reps` ReLU + conv pairs)
        seq = ["relu", 1] * reps
        if not start_with_relu:
            seq = seq[1:]
        if stride != 1:
            seq += ["relu", 2]
        if is_last:
            seq += ["relu", 1]
        return seq

    def block(t, name, reps, stride=1, rate=1, start_with_relu=True, grow_first=True, is_last=False):
        seq = layout(reps, stride, start_with_relu, grow_first, is_last)
        if seq[0] == "relu":
            t = F.relu(t)  # nn.ReLU(inplace=True) on the block input: the skip path sees it rectified
        y = t
        for i, op in enumerate(seq):
            if i == 0 and op == "relu":
                continue
            y = F.relu(y) if op == "relu" else sep_same(y, f"{name}.rep.{i}", op, rate)
        if name + ".skip.weight" in sd:  # official: 1x1 skip of stride 2 unless is_last
            skip = bn(F.conv2d(t, sd[name + ".skip.weight"], stride=1 if is_last else 2), name + ".skipbn")
        else:
            skip = t
        return y + skip

    def block2(t, name):
        # official Block2 (reps 2, stride 2): low-level features are the rep output before the strided conv
        t = F.relu(t)
        low = sep_same(F.relu(sep_same(t, name + ".rep.1", 1, 1)), name + ".rep.3", 1, 1)
        out = sep_same(F.relu(low), name + ".block2_lastconv.1", 2, 1)
        return out + bn(F.conv2d(t, sd[name + ".skip.weight"], stride=2), name + ".skipbn"), low

    # --- Xception, output stride 16: middle rate 1, exit rates (1, 2)
    x = F.relu(bn(F.conv2d(image, sd[X + "conv1.weight"], stride=2, padding=1), X + "bn1"))
    x = F.relu(bn(F.conv2d(x, sd[X + "conv2.weight"], padding=1), X + "bn2"))
    x = block(x, X + "block1", reps=2, stride=2, start_with_relu=False)
    x, low = block2(x, X + "block2")
    x = block(x, X + "block3", reps=2, stride=2)
    exit_index = max(int(k[len(X) + 5:].split(".")[0]) for k in sd if k.startswith(X + "block"))
    for i in range(4, exit_index):
        x = block(x, f"{X}block{i}", reps=3)
    x = block(x, f"{X}block{exit_index}", reps=2, grow_first=False, is_last=True)
    for name in ("conv3", "conv4", "conv5"):
        x = F.relu(sep_aspp(x, X + name, rate=2))

    # --- ASPP (rates 1, 6, 12, 18) + image pooling
    branches = [F.relu(bn(F.conv2d(x, sd["aspp1.atrous_convolution.weight"]), "aspp1.bn"))]
    branches += [sep_aspp(x, f"aspp{i}.atrous_convolution", rate) for i, rate in ((2, 6), (3, 12), (4, 18))]
    pooled = F.relu(bn(F.conv2d(x.mean(dim=(2, 3), keepdim=True), sd["global_avg_pool.1.weight"]),
                       "global_avg_pool.2"))
    branches.append(F.interpolate(pooled, size=branches[-1].shape[2:], mode="bilinear", align_corners=True))
    x = F.relu(bn(F.conv2d(torch.cat(branches, 1), sd["concat_projection_conv1.weight"]), "concat_projection_bn1"))
    x = F.interpolate(x, size=low.shape[2:], mode="bilinear", align_corners=True)
    low = F.relu(bn(F.conv2d(low, sd["feature_projection_conv1.weight"]), "feature_projection_bn1"))
    x = torch.cat((x, low), 1)
    for i in range(2):
        x = sep_aspp(x, f"decoder.{i}.atrous_convolution", rate=1)

    # --- graphs (gcn.py)
    def to_graph(t, name):  # Featuremaps_to_Graph
        pix = t.flatten(2).transpose(1, 2)
        assign = F.softmax(pix @ sd[name + ".pre_fea"], dim=-1)
        return F.relu(assign.transpose(1, 2) @ (pix @ sd[name + ".weight"]))

    def gconv(g, name, adj=None):  # GraphConvolution(bias=False), relu=True
        support = g @ sd[name + ".weight"]
        return F.relu(support if adj is None else adj @ support)

    def transfer(g):  # Graph_trans with the adjacency passed in: softmax over relu(adj) rows
        return F.relu(F.softmax(F.relu(adj_transfer), dim=-1) @ (g @ sd["transpose_graph.weight"]))

    def similarity(source, target):
        score = F.normalize(target, p=2, dim=-1) @ F.normalize(source, p=2, dim=-1).transpose(-1, -2)
        return F.softmax(score, dim=-1) @ source

    def to_pixels(node, t):  # Graph_to_Featuremaps_savemem
        b, c, h, w = t.shape
        node = node.reshape(b, node.shape[-2], node.shape[-1])  # drop the leading broadcast dim
        pix = t.reshape(b, c, h * w)
        score = (torch.einsum("bcp,c->bp", pix, sd["target_graph_2_fea.node_fea_for_res"][:, 0])[:, :, None]
                 + torch.einsum("bkh,h->bk", node, sd["target_graph_2_fea.node_fea_for_hidden"][:, 0])[:, None, :])
        mixed = torch.einsum("bpk,bkc->bcp", F.softmax(score, dim=-1), node @ sd["target_graph_2_fea.weight"])
        return F.relu(mixed.reshape(b, c, h, w))

    s1 = gconv(to_graph(x, "source_featuremap_2_graph"), "source_graph_conv1", adj_source)
    s2 = gconv(s1, "source_graph_conv2", adj_source)
    s3 = gconv(s2, "source_graph_conv2", adj_source)  # the official forward re-uses conv2
    g = to_graph(x, "target_featuremap_2_graph")
    g = torch.cat((g, similarity(s1, g).squeeze(0), transfer(s1).squeeze(0)), dim=-1)
    g = gconv(gconv(g, "fc_graph"), "target_graph_conv1", adj_target)
    g = torch.cat((g, similarity(s2, g), transfer(s2)), dim=-1)
    g = gconv(gconv(g, "fc_graph"), "target_graph_conv2", adj_target)
    g = torch.cat((g, similarity(s3, g), transfer(s3)), dim=-1)
    g = gconv(gconv(g, "fc_graph"), "target_graph_conv3", adj_target)

    x = F.relu(F.conv2d(x, sd["target_skip_conv.0.weight"], sd["target_skip_conv.0.bias"])) + to_pixels(g, x)
    x = F.conv2d(x, sd["semantic.weight"], sd["semantic.bias"])
    return F.interpolate(x, size=image.shape[2:], mode="bilinear", align_corners=True)


def _deterministic_state(net: GraphonomyNet, seed: int = 0) -> dict:
    """Seeded float64 values for every tensor; scaled so activations stay O(1); BN stats non-trivial."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, ref in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = ref
            continue
        shape = ref.shape
        n = torch.randn(shape, generator=g, dtype=torch.float64)
        if key.endswith("running_var"):
            v = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
        elif key.endswith("running_mean") or (key.endswith(".bias") and ref.ndim == 1):
            v = 0.1 * n
        elif ref.ndim == 1:  # BN weight
            v = 1.0 + 0.1 * n
        elif ref.ndim == 4:  # conv: fan_in = in/groups * kh * kw
            v = n / math.sqrt(shape[1] * shape[2] * shape[3])
        elif key.endswith("featuremap_2_graph.weight"):
            v = n / (100.0 * math.sqrt(shape[0]))  # the official pooling sums over all pixels
        elif key.endswith("node_fea_for_hidden"):
            v = 150.0 * n / math.sqrt(shape[0])  # node affinities far from uniform
        else:  # graph matrices used as x @ W: fan_in = rows
            v = n / math.sqrt(shape[0])
        state[key] = v
    return state


def test_whole_network_matches_functional_official_forward():
    torch.manual_seed(0)
    net = GraphonomyNet(SMALL).double().eval()
    state = _deterministic_state(net)
    net.load_state_dict(state)
    g = torch.Generator().manual_seed(1)
    # two different 8-bit BGR images: smooth blobs plus per-pixel noise; large enough (features 19 x 20)
    # for every ASPP dilation (6, 12, 18) to reach real pixels
    blobs = F.interpolate(torch.randint(0, 256, (2, 3, 5, 6), generator=g).double(), size=(300, 316),
                          mode="bilinear", align_corners=False)
    noise = torch.randint(-40, 41, (2, 3, 300, 316), generator=g).double()
    noise = noise * torch.tensor([0.2, 1.0], dtype=torch.float64)[:, None, None, None]
    bgr_255 = (blobs + noise).round().clamp(0, 255)
    image = bgr_255 * 2.0 / 255.0 - 1.0  # official Normalize_xception_tf_only_img on a BGR image
    # adjacencies as the official inference passes them, (1, 1, n, m): the two part-graph matrices from our
    # buffers (verified equal to graph.preprocess_adj of the official graphs), the transfer one rebuilt here
    # from the word-embedding table (7 x 20, float32) transposed as the official inference does
    adj_target = net.adj_target[None, None]
    adj_source = net.adj_source[None, None]
    adj_transfer = torch.tensor(CIHP2PASCAL_NLP_ADJ, dtype=torch.float32).double()[None, None].transpose(2, 3)
    with torch.no_grad():
        expected = _official_forward(state, image, adj_target, adj_source, adj_transfer)
        got = net(image)
    assert got.shape == expected.shape == (2, 20, 300, 316)
    scale = expected.abs().max().item()
    assert 0.1 < scale < 1e3 and expected.std().item() > 1e-3  # a meaningful, non-degenerate comparison
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9 * scale)

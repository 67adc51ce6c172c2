"""Sliced Wasserstein distance (SWD) of 7x7 patches over a Laplacian pyramid (Karras et al. 2018, Progressive GAN).

Realism of a set of fills measured as a distance between patch distributions, with no network weights.
For two image sets ``A`` (fills) and ``B`` (targets), ``(N, 3, H, W)`` in [-1, 1]:

1. Laplacian pyramid of each image (:func:`laplacian_pyramid`): ``G_0 = x``, ``G_{l+1} = pyr_down(G_l)`` with the
   5x5 binomial kernel ``[1 4 6 4 1]^T [1 4 6 4 1] / 256`` and mirror borders (OpenCV ``pyrDown``);
   ``L_l = G_l - pyr_up(G_{l+1})`` (zero insertion, the same kernel times 4), the last level is ``G_last``.
   Levels down to 16 px: for 128 px, levels at 128, 64, 32 and 16 px.
2. At each level, ``patches`` 7x7 neighbourhoods per image (:func:`patch_centres`): centres drawn uniformly
   among the hole pixels of the level (the mask average-pooled to the level, > 0) that lie at least 3 px inside
   the image (``region="hole"``), or among all such pixels (``region="image"``, Karras' choice). The same
   centres are used for both sets (the fills and their targets). Images without a hole give no patch.
3. Each descriptor (3 x 7 x 7 = 147 values) is normalised per channel (:func:`normalise`):
   ``d_c <- (d_c - mean_c) / std_c`` over all patches and positions. ``normalisation="target"`` (default) uses
   the target set's mean / std for both sets, so a global colour cast of the fills counts;
   ``normalisation="each"`` normalises each set by its own statistics, as Karras' code does (which makes the
   distance blind to a per-channel affine colour change).
4. :func:`sliced_wasserstein`: for ``repeats`` x ``directions`` random unit vectors ``u`` (4 x 128, Gaussian,
   normalised), project both descriptor sets, sort each projection, and average ``|sort(A u) - sort(B u)|`` over
   patches, directions and repeats: the 1-D Wasserstein-1 distance averaged over directions.
5. Each level's distance x 1e3 (Karras' scale); the reported ``swd`` is the mean over levels.

Identical sets give exactly 0. Randomness (centres, directions) comes from ``seed``, so a figure is reproducible.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["BINOMIAL_5", "pyr_down", "pyr_up", "laplacian_pyramid", "pyramid_levels", "patch_centres",
           "extract_patches", "normalise", "sliced_wasserstein", "swd_descriptors", "swd_from_descriptors", "swd"]

#: the 5x5 binomial kernel of Karras' (and OpenCV's) pyrDown / pyrUp
BINOMIAL_5 = torch.outer(torch.tensor([1.0, 4, 6, 4, 1]), torch.tensor([1.0, 4, 6, 4, 1])) / 256.0
PATCH = 7
MIN_LEVEL_SIZE = 16


def _blur(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    c = x.shape[1]
    kernel = (BINOMIAL_5 * scale).to(x)[None, None].expand(c, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=c)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """Binomial blur (mirror borders) then every second pixel: OpenCV's ``pyrDown`` for even sizes."""
    return _blur(x)[:, :, ::2, ::2]


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    """Zero insertion to twice the size, then the binomial kernel x 4 (mirror borders): OpenCV's ``pyrUp``."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, 4.0)


def pyramid_levels(height: int, width: int) -> int:
    """Number of levels so the smallest is >= 16 px: 128 px -> 4 (128, 64, 32, 16)."""
    side, levels = min(height, width), 0
    while side >= MIN_LEVEL_SIZE:
        levels, side = levels + 1, side // 2
    if levels == 0:
        raise ValueError(f"SWD needs images of at least {MIN_LEVEL_SIZE} px, got {height}x{width}")
    return levels


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``[L_0, ..., L_{levels-2}, G_{levels-1}]``: band-pass levels, finest first, then the low-pass residual."""
    pyramid = [x]
    for _ in range(1, levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1])[..., : pyramid[-2].shape[-2], : pyramid[-2].shape[-1]]
    return pyramid


def patch_centres(mask: torch.Tensor, height: int, width: int, patches: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, patches)`` flat indices ``y * width + x`` of centres at least 3 px inside an ``height x width`` level,
    and ``(N,)`` bool: which images have any.

    Centres are drawn uniformly among the hole pixels of the level (``mask`` ``(N, 1, H0, W0)``, 1 = hole,
    average-pooled to the level, > 0) that lie 3 px inside; where none does, among the hole pixels clamped
    inward; an image without a hole has none.
    """
    r = PATCH // 2
    if height < PATCH or width < PATCH:
        raise ValueError(f"SWD level {height}x{width} is smaller than a {PATCH}x{PATCH} patch")
    hole = (F.adaptive_avg_pool2d(mask.float(), (height, width))[:, 0] > 0)
    inner = torch.zeros_like(hole)
    inner[:, r:height - r, r:width - r] = True
    inside = hole & inner
    # images whose hole has no pixel 3 px inside: clamp the hole pixels inward (each keeps its own weight)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    clamped = (ys.clamp(r, height - r - 1) * width + xs.clamp(r, width - r - 1)).flatten()
    outside_weight = torch.zeros(hole.shape[0], height * width).index_add_(
        1, clamped, hole.flatten(1).float())
    weight = torch.where(inside.flatten(1).any(1, keepdim=True), inside.flatten(1).float(), outside_weight)
    present = weight.sum(1) > 0
    picks = torch.zeros(hole.shape[0], patches, dtype=torch.long)
    if bool(present.any()):
        picks[present] = torch.multinomial(weight[present], patches, replacement=True, generator=generator)
    return picks, present


def extract_patches(level: torch.Tensor, centres: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``(images with centres x patches, C, 7, 7)`` neighbourhoods of ``level`` ``(N, C, h, w)`` at flat ``centres``."""
    n, c, h, w = level.shape
    r = PATCH // 2
    offsets = torch.arange(-r, r + 1)
    ys, xs = centres // w, centres % w  # (N, P)
    idx = (ys[..., None, None] + offsets[:, None]) * w + (xs[..., None, None] + offsets[None, :])  # (N, P, 7, 7)
    idx = idx[present]  # (M, P, 7, 7)
    flat = level[present].flatten(2)  # (M, C, h*w)
    m, p = idx.shape[:2]
    out = torch.gather(flat, 2, idx.reshape(m, 1, -1).expand(m, c, -1)).reshape(m, c, p, PATCH, PATCH)
    return out.permute(0, 2, 1, 3, 4).reshape(m * p, c, PATCH, PATCH)


def normalise(desc: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """``(P, C, 7, 7)`` -> ``(P, C*49)``, each channel minus its mean, over its std (of ``reference`` when given)."""
    ref = desc if reference is None else reference
    mean = ref.mean(dim=(0, 2, 3), keepdim=True)
    std = ref.std(dim=(0, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-8)
    return ((desc - mean) / std).reshape(desc.shape[0], -1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Mean over directions and points of ``|sort(a @ u) - sort(b @ u)|``.

    Args:
        a: ``(P, D)`` descriptors.
        b: ``(P, D)`` descriptors (same count).
        directions: ``(R, D, K)`` unit directions (R repeats of K); the result averages all of them.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"sliced_wasserstein: descriptor sets must have the same (P, D) shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    def sorted_projections(x: torch.Tensor, d: torch.Tensor) -> np.ndarray:
        # (K, P), sorted along the contiguous axis with numpy (many times faster than torch.sort on CPU)
        return np.sort(np.ascontiguousarray((x @ d).T.detach().cpu().numpy()), axis=1)

    dists = [float(np.abs(sorted_projections(a, d) - sorted_projections(b, d)).mean()) for d in directions]
    return torch.tensor(sum(dists) / len(dists), dtype=torch.float64)


def random_directions(dim: int, repeats: int, per_repeat: int, generator: torch.Generator) -> torch.Tensor:
    """``(repeats, dim, per_repeat)`` Gaussian directions normalised to unit length."""
    d = torch.randn(repeats, dim, per_repeat, generator=generator, dtype=torch.float64)
    return d / d.norm(dim=1, keepdim=True)


def swd_descriptors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, patches: int = 128,
                    region: str = "hole", seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Unnormalised ``(fill, target)`` patch sets per pyramid level, same centres in both; ``(P, 3, 7, 7)`` each.

    A step of :func:`swd` that callers accumulating over batches (the evaluator) store per image.
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"SWD: pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (N,C,H,W)")
    if region not in ("hole", "image"):
        raise ValueError(f"SWD region must be 'hole' or 'image', got {region!r}")
    if region == "image" or mask is None:
        mask = torch.ones(pred.shape[0], 1, *pred.shape[-2:])
    gen = torch.Generator().manual_seed(seed)
    levels = pyramid_levels(*pred.shape[-2:])
    pyr_a = laplacian_pyramid(pred.detach().float().cpu(), levels)
    pyr_b = laplacian_pyramid(target.detach().float().cpu(), levels)
    out = []
    for la, lb in zip(pyr_a, pyr_b):
        centres, present = patch_centres(mask.cpu(), la.shape[-2], la.shape[-1], patches, gen)
        out.append((extract_patches(la, centres, present).float(), extract_patches(lb, centres, present).float()))
    return out


def swd_from_descriptors(levels: list[tuple[torch.Tensor, torch.Tensor]], normalisation: str = "target",
                         repeats: int = 4, directions: int = 128, seed: int = 0) -> dict[str, float]:
    """``{"swd_l0": ..., ..., "swd": mean}`` (each x 1e3) from per-level ``(fill, target)`` patch sets."""
    if normalisation not in ("target", "each"):
        raise ValueError(f"SWD normalisation must be 'target' or 'each', got {normalisation!r}")
    gen = torch.Generator().manual_seed(seed + 1)
    out: dict[str, float] = {}
    for i, (a, b) in enumerate(levels):
        if a.shape[0] == 0:
            out[f"swd_l{i}"] = float("nan")
            continue
        a, b = a.float(), b.float()
        na, nb = (normalise(a, b), normalise(b)) if normalisation == "target" else (normalise(a), normalise(b))
        dirs = random_directions(na.shape[1], repeats, directions, gen).to(na.dtype)
        out[f"swd_l{i}"] = 1e3 * float(sliced_wasserstein(na, nb, dirs))
    values = [v for v in out.values() if v == v]
    out["swd"] = sum(values) / len(values) if values else float("nan")
    return out


def swd(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, patches: int = 128,
        region: str = "hole", normalisation: str = "target", repeats: int = 4, directions: int = 128,
        seed: int = 0) -> dict[str, float]:
    """SWD between the fills ``pred`` and the ``target`` images (see the module docstring).

    Args:
        pred: fills ``(N, 3, H, W)`` in [-1, 1].
        target: targets (originals, or clean plates for object removal), same shape.
        mask: ``(N, 1, H, W)``, 1 = hole; patch centres lie inside the holes (``region="hole"``).
        patches: patches per image and level (Karras: 128).
        region: ``hole`` (centres inside the holes) or ``image`` (anywhere, the original metric).
        normalisation: ``target`` (both sets by the targets' channel statistics) or ``each`` (Karras).
        repeats: direction repeats (4); directions: directions per repeat (128).
        seed: seed of the patch centres and directions.

    Returns:
        ``{"swd_l0", ..., "swd_l{L-1}", "swd"}``: per level (finest first) x 1e3 and their mean.
    """
    return swd_from_descriptors(swd_descriptors(pred, target, mask, patches, region, seed), normalisation,
                                repeats, directions, seed)

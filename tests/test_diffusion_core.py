"""Diffusion core: linear attention, U-Net, category embedding, schedules, denoiser/CFG, DDIM sampler."""
from __future__ import annotations

import math

import pytest
import torch

from diffusion.denoiser import InpaintingDenoiser, min_snr_weight, predict_x0, q_sample
from diffusion.guidance import cfg_combine, guidance_contexts
from diffusion.sampling import ddim_timesteps, sample_ddim
from diffusion.schedules import alphas_cumprod, cosine_betas, linear_betas, make_alphas_cumprod, scaled_linear_betas
from masks.types import MaskType, category_of
from networks.c2f.category_embedding import LatentCategoryEmbedding, categories_from_mask_types
from networks.c2f.linear_attention import GatedLinearAttention, linear_attention, linear_attention_quadratic, softmax_attention
from networks.c2f.unet import InpaintingUNet


def tiny_unet(**kw) -> InpaintingUNet:
    args = dict(channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), heads=2, context_dim=16)
    args.update(kw)
    return InpaintingUNet(**args)


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give zero-initialised output layers random weights so outputs depend on every input."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module


def batch(b=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    mask = (torch.rand(b, 1, size, size, generator=g) > 0.5).float()
    return image, mask


# ----------------------------------------------------------------------------- linear attention
def test_linear_attention_equals_quadratic_formula_fp64():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 17, 5, generator=g, dtype=torch.float64), torch.randn(2, 3, 11, 5, generator=g, dtype=torch.float64)
    v = torch.randn(2, 3, 11, 4, generator=g, dtype=torch.float64)
    fast = linear_attention(q, k, v)
    ref = linear_attention_quadratic(q, k, v)
    assert fast.dtype == torch.float64 and fast.shape == (2, 3, 17, 4)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    # the formula itself, one output row written out with Python sums
    relu = lambda x: max(x, 0.0)  # noqa: E731
    b, h, n = 1, 2, 7
    w = [sum(relu(q[b, h, n, d].item()) * relu(k[b, h, m, d].item()) for d in range(5)) for m in range(11)]
    for e in range(4):
        expect = sum(w[m] * v[b, h, m, e].item() for m in range(11)) / (sum(w) + 1e-6)
        assert math.isclose(fast[b, h, n, e].item(), expect, rel_tol=1e-10, abs_tol=1e-12)


def test_linear_attention_accumulates_in_fp32_under_autocast():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 64, 8, generator=g) for _ in range(3))
    ref = linear_attention(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=3e-2, atol=3e-2)


def test_softmax_reference_matches_sdpa():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 10, 4, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(softmax_attention(q, k, v), torch.nn.functional.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("kind", ["linear", "softmax"])
def test_gated_attention_layer_shapes_and_gate(kind):
    layer = randomize(GatedLinearAttention(8, heads=2, attention=kind))
    x = torch.randn(2, 8, 6, 5)
    y = layer(x)
    assert y.shape == x.shape
    # a zero gate projection (weight and bias) closes the gate: swish(0) = 0
    with torch.no_grad():
        layer.to_gate.weight.zero_()
        layer.to_gate.bias.zero_()
    assert torch.count_nonzero(layer(x) - layer.to_out.bias[None, :, None, None]) == 0


def test_gated_attention_rejects_bad_heads():
    with pytest.raises(ValueError, match="channels=10 is not divisible by heads=4"):
        GatedLinearAttention(10, heads=4)


# ----------------------------------------------------------------------------- U-Net
def test_unet_shapes_checkpointing_and_cond():
    unet = randomize(tiny_unet(cond_channels=3))
    image, mask = batch()
    ctx = torch.randn(2, 4, 16)
    cond = torch.randn(2, 3, 16, 16)
    t = torch.tensor([3, 900])
    out = unet(image, t, image * (1 - mask), mask, ctx, cond)
    out.square().mean().backward()
    grads = [p.grad.clone() for p in unet.parameters()]
    unet.zero_grad()
    unet.gradient_checkpointing = True
    out2 = unet(image, t, image * (1 - mask), mask, ctx, cond)
    out2.square().mean().backward()
    torch.testing.assert_close(out, out2)
    for a, b in zip(grads, (p.grad for p in unet.parameters())):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="cond must be"):
        unet(image, t, image, mask, ctx)


def test_unet_reads_context_at_every_level():
    unet = tiny_unet(channel_mults=(1, 2, 2))
    n_cross = sum(type(m).__name__ == "CrossAttentionBlock" for m in unet.modules())
    # down: 1 per level (3), middle: 1, up: 2 per level (6)
    assert n_cross == 3 + 1 + 6
    randomize(unet)
    image, mask = batch()
    t = torch.tensor([10, 10])
    g = torch.Generator().manual_seed(9)
    a = unet(image, t, image, mask, torch.randn(2, 4, 16, generator=g))
    b = unet(image, t, image, mask, torch.randn(2, 4, 16, generator=g))
    assert not torch.allclose(a, b)


def test_unet_resolution_and_shape_errors():
    unet = tiny_unet(channel_mults=(1, 2, 2, 2))
    x = torch.zeros(1, 3, 36, 32)
    with pytest.raises(ValueError, match=r"36x32 is not divisible by the downsampling factor 8"):
        unet(x, torch.tensor([1]), x, torch.zeros(1, 1, 36, 32), torch.zeros(1, 4, 16))
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"mask must be \(1, 1, 32, 32\)"):
        unet(x, torch.tensor([1]), x, torch.zeros(1, 1, 16, 16), torch.zeros(1, 4, 16))
    with pytest.raises(ValueError, match="context_dim=16"):
        unet(x, torch.tensor([1]), x, torch.zeros(1, 1, 32, 32), torch.zeros(1, 4, 8))
    with pytest.raises(ValueError, match="attention_levels"):
        tiny_unet(attention_levels=(5,))


def test_unet_runs_at_256():
    unet = tiny_unet(channel_mults=(1, 1, 2, 2), attention_levels=(2, 3))
    x = torch.zeros(1, 3, 256, 256)
    with torch.no_grad():
        assert unet(x, torch.tensor([5]), x, torch.zeros(1, 1, 256, 256), torch.zeros(1, 4, 16)).shape == x.shape


# ----------------------------------------------------------------------------- category embedding
def test_category_embedding_layout_and_mask_type_mapping():
    emb = LatentCategoryEmbedding(tokens_per_category=3, dim=4, null_embedding=True)
    tok = emb.tokens(torch.tensor([1, 0]))
    assert tok.shape == (2, 3, 4)
    torch.testing.assert_close(tok[0], emb.table.weight[3:6])
    torch.testing.assert_close(tok[1], emb.table.weight[0:3])
    mt = torch.tensor([int(m) for m in MaskType])
    assert categories_from_mask_types(mt).tolist() == [int(category_of(m)) for m in MaskType] == [0, 1, 1, 1]
    assert emb.null(2).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="category ids must be 0"):
        emb.tokens(torch.tensor([2]))
    with pytest.raises(ValueError, match="mask_type ids must be in 0..3"):
        categories_from_mask_types(torch.tensor([7]))
    with pytest.raises(ValueError, match="null_embedding=true"):
        LatentCategoryEmbedding(2, 4).null(1)


# ----------------------------------------------------------------------------- schedules
def test_schedules_match_closed_forms():
    T = 50
    b = scaled_linear_betas(T, 0.00085, 0.012)
    for t in (0, 17, T - 1):
        s = math.sqrt(0.00085) + t / (T - 1) * (math.sqrt(0.012) - math.sqrt(0.00085))
        assert math.isclose(b[t].item(), s * s, rel_tol=1e-12)
    lb = linear_betas(T, 1e-4, 0.02)
    assert math.isclose(lb[10].item(), 1e-4 + 10 / (T - 1) * (0.02 - 1e-4), rel_tol=1e-12)
    ac = alphas_cumprod(lb)
    assert math.isclose(ac[20].item(), math.prod(1 - lb[i].item() for i in range(21)), rel_tol=1e-12)
    f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    cb = cosine_betas(T)
    cac = alphas_cumprod(cb)
    for t in (0, 10, 30):
        assert math.isclose(cac[t].item(), f(t + 1) / f(0), rel_tol=1e-10)
    assert cb.max().item() <= 0.999
    assert torch.all(make_alphas_cumprod("scaled_linear", T) == alphas_cumprod(b))
    with pytest.raises(ValueError, match="unknown noise schedule 'sqrt'"):
        make_alphas_cumprod("sqrt", T)


# ----------------------------------------------------------------------------- denoiser / CFG
def test_denoiser_loss_is_per_sample_and_mask_weighted():
    den = InpaintingDenoiser(randomize(tiny_unet()), hole_weight=1.0, known_weight=0.0)
    image, mask = batch(b=3)
    ctx = torch.randn(3, 4, 16)
    t, noise = torch.tensor([5, 500, 999]), torch.randn_like(image)
    out = den.loss(image, mask, ctx, t=t, noise=noise)
    assert out["noise"].shape == out["l1"].shape == (3,)
    err = (out["prediction"] - noise) ** 2 * mask
    torch.testing.assert_close(out["noise"], err.mean(dim=(1, 2, 3)))
    x_t = q_sample(image, t, noise, den.alphas_cumprod)
    torch.testing.assert_close(out["x0_pred"], predict_x0(x_t, t, out["prediction"], den.alphas_cumprod))
    torch.testing.assert_close(out["l1"], (out["x0_pred"] - image).abs().mean(dim=(1, 2, 3)))
    # a seeded generator draws the same t and noise every time
    a = den.loss(image, mask, ctx, generator=torch.Generator().manual_seed(3))
    b = den.loss(image, mask, ctx, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a["t"], b["t"]) and torch.equal(a["noise_target"], b["noise_target"])


@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0"])
def test_prediction_targets_follow_their_definitions(prediction):
    """Targets and the denoised image, written out from the definitions (v: Salimans & Ho 2022; docs/diffusion.md)."""
    den = InpaintingDenoiser(randomize(tiny_unet()), prediction=prediction, hole_weight=1.0, known_weight=0.0).double()
    image, mask = (x.double() for x in batch(b=3))
    t, noise = torch.tensor([0, 400, 999]), torch.randn_like(image)
    abar = den.alphas_cumprod[t].view(-1, 1, 1, 1)  # the schedule itself is tested above
    x_t = abar.sqrt() * image + (1 - abar).sqrt() * noise
    expected_target = {"epsilon": noise, "x0": image, "v": abar.sqrt() * noise - (1 - abar).sqrt() * image}[prediction]
    torch.testing.assert_close(den.target(image, noise, t), expected_target)
    # the network output equal to the target gives back the clean image exactly
    torch.testing.assert_close(den.denoised(x_t, t, expected_target), image)
    out = den.loss(image, mask, torch.randn(3, 4, 16, dtype=torch.float64), t=t, noise=noise)
    torch.testing.assert_close(out["noise"], (((out["prediction"] - expected_target) ** 2) * mask).mean(dim=(1, 2, 3)))


def test_min_snr_gamma_weights():
    """Hang et al. 2023: min(SNR, g)/SNR for epsilon, min(SNR, g)/(SNR + 1) for v, min(SNR, g) for x0."""
    snr = torch.tensor([0.01, 1.0, 5.0, 50.0], dtype=torch.float64)
    torch.testing.assert_close(min_snr_weight(snr, 5.0, "epsilon"), torch.tensor([1.0, 1.0, 1.0, 0.1], dtype=torch.float64))
    torch.testing.assert_close(min_snr_weight(snr, 5.0, "v"), torch.tensor([0.01 / 1.01, 0.5, 5 / 6, 5 / 51], dtype=torch.float64))
    torch.testing.assert_close(min_snr_weight(snr, 5.0, "x0"), torch.tensor([0.01, 1.0, 5.0, 5.0], dtype=torch.float64))
    den = InpaintingDenoiser(randomize(tiny_unet()), prediction="v", min_snr_gamma=5.0, known_weight=0.0)
    image, mask = batch(b=2)
    t, noise = torch.tensor([10, 900]), torch.randn_like(image)
    out = den.loss(image, mask, torch.randn(2, 4, 16), t=t, noise=noise)
    a = den.alphas_cumprod[t].double()
    w = (torch.minimum(a / (1 - a), torch.tensor(5.0, dtype=torch.float64)) / (a / (1 - a) + 1)).float()
    plain = (((out["prediction"] - out["target"]) ** 2) * mask).mean(dim=(1, 2, 3))
    torch.testing.assert_close(out["noise"], plain * w)
    with pytest.raises(ValueError, match="prediction must be one of"):
        InpaintingDenoiser(tiny_unet(), prediction="eps")


def test_cfg_batched_equals_two_passes_and_gain_one_is_conditional():
    den = InpaintingDenoiser(randomize(tiny_unet()))
    emb = randomize(LatentCategoryEmbedding(4, 16, null_embedding=True), seed=3)
    image, mask = batch()
    masked, t = image * (1 - mask), torch.tensor([100, 700])
    with torch.no_grad():
        for mode in ("fg_bg", "learned_null"):
            c, u = guidance_contexts(emb, torch.tensor([0, 1]), mode)
            eps_c = den(image, t, masked, mask, c)
            eps_u = den(image, t, masked, mask, u)
            one = den.forward_with_cond_scale(image, t, masked, mask, c, u, 1.0)
            torch.testing.assert_close(one, eps_c, rtol=1e-5, atol=1e-5)
            g_batched = den.forward_with_cond_scale(image, t, masked, mask, c, u, 4.5, batched=True)
            g_two = den.forward_with_cond_scale(image, t, masked, mask, c, u, 4.5, batched=False)
            torch.testing.assert_close(g_batched, g_two, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(g_two, cfg_combine(eps_c, eps_u, 4.5))
    # fg_bg contrasts the requested category with the other one: PixelHacker's form for a foreground fill
    c, u = guidance_contexts(emb, torch.tensor([0, 1]), "fg_bg")
    torch.testing.assert_close(c, torch.stack([emb.foreground(1)[0], emb.background(1)[0]]))
    torch.testing.assert_close(u, torch.stack([emb.background(1)[0], emb.foreground(1)[0]]))


# ----------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0"])
def test_sampler_keeps_known_pixels_bit_exact_and_calls_back(prediction):
    den = InpaintingDenoiser(randomize(tiny_unet()), prediction=prediction)
    image, mask = batch(b=2, seed=4)
    ctx = torch.randn(2, 4, 16)
    seen = []
    for eta in (0.0, 1.0):
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            out = sample_ddim(
                den, image, mask, den.alphas_cumprod, 6, dict(masked_image=image * (1 - mask), mask=mask, context=ctx),
                eta=eta, generator=g, callback=seen.append,
            )
        known = mask.expand_as(image) == 0
        assert torch.equal(out[known], image[known])
        assert torch.isfinite(out).all() and out.abs().max() <= 1
    assert [s["i"] for s in seen] == list(range(6)) * 2
    assert all(torch.equal(s["x0_pred"][known], image[known]) for s in seen)


def test_ddim_with_perfect_denoiser_stays_on_the_deterministic_trajectory():
    """With x0 known exactly, eta=0 DDIM keeps x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps_T at every step (Song et al.)."""
    target, mask = batch(b=2, size=16, seed=5)
    abar = make_alphas_cumprod("scaled_linear", 1000).float()
    image = torch.where(mask > 0.5, torch.zeros_like(target), target)  # hole content unknown to the sampler
    eps_T = torch.randn(target.shape, generator=torch.Generator().manual_seed(2))
    ts = ddim_timesteps(1000, 10)
    x_T = abar[ts[0]].sqrt() * target + (1 - abar[ts[0]]).sqrt() * eps_T
    seen = []
    out = sample_ddim(lambda x, t: target, image, mask, abar, 10, x_T=x_T, callback=seen.append,
                      generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, target, rtol=0, atol=1e-6)
    hole = mask.expand_as(target) > 0.5
    for info in seen[:-1]:
        a = abar[ts[info["i"] + 1]]
        torch.testing.assert_close(info["x"][hole], (a.sqrt() * target + (1 - a).sqrt() * eps_T)[hole], rtol=0, atol=1e-5)


def test_ddim_timesteps_and_bad_arguments():
    assert ddim_timesteps(1000, 4).tolist() == [999, 666, 333, 0]
    image, mask = batch()
    with pytest.raises(ValueError, match="DDIM steps must be in 1..1000"):
        sample_ddim(lambda x, t: x, image, mask, make_alphas_cumprod("linear", 1000), 0)
    with pytest.raises(ValueError, match="mask must be"):
        sample_ddim(lambda x, t: x, image, mask[..., :8], make_alphas_cumprod("linear", 1000), 2)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        sample_ddim(lambda x, t: x, image, mask, make_alphas_cumprod("linear", 1000), 2, eta=-1.0)


def test_condition_dropout_replaces_whole_token_sets_with_the_null_tokens_at_the_given_rate():
    from diffusion.guidance import drop_condition

    emb = randomize(LatentCategoryEmbedding(4, 16, null_embedding=True), seed=5)
    tokens = emb.tokens(torch.randint(0, 2, (4000,), generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    dropped = drop_condition(tokens, emb, 0.25)
    is_null = (dropped == emb.null(1)).flatten(1).all(dim=1)
    kept = (dropped == tokens).flatten(1).all(dim=1)
    assert bool((is_null | kept).all())  # a sample is either fully replaced or untouched
    assert abs(float(is_null.float().mean()) - 0.25) < 0.03  # binomial sd ~0.007
    assert torch.equal(drop_condition(tokens, emb, 0.0), tokens)

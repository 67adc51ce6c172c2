"""The gain-1 CFG fast path: one conditional forward instead of the doubled batch, same result.

The reference is classifier-free guidance written out here: one forward of the doubled batch
``[conditional; unconditional]`` and ``x0_u + s * (x0_c - x0_u)``, with the conditional half reading
the REQUESTED category's tokens (``fg_bg``: the other category is the unconditional half;
``learned_null``: the null tokens are).
"""
from __future__ import annotations

import pytest
import torch

from diffusion.c2f import C2FModel
from diffusion.c2f_sampling import sample_c2f
from diffusion.sampling import sample_ddim

UNET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "heads": 2, "norm_groups": 4}


def _model(guidance: str) -> C2FModel:
    torch.manual_seed(0)
    model = C2FModel([UNET, UNET], {"tokens_per_category": 2, "dim": 16, "null_embedding": guidance == "learned_null",
                                    "init_std": 1.0}, resolutions=[16, 32], guidance=guidance,
                     combiner_width=8, combiner_depth=1, sampling={"steps": [3, 2], "gains": [1.0, 1.0]})
    with torch.no_grad():  # zero-initialised output layers (e.g. cross-attention) would hide the tokens
        for p in model.parameters():
            if not p.abs().max() > 0:
                p.normal_(0.0, 0.2)
    return model.eval()


def _reference(denoiser, x, t, masked, mask, cond_tokens, uncond_tokens, scale):
    """CFG by its definition: one doubled-batch forward, ``x0_u + s (x0_c - x0_u)``."""
    b = x.shape[0]
    x0 = denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([masked, masked]), torch.cat([mask, mask]),
                  torch.cat([cond_tokens, uncond_tokens]), None)
    x0_c, x0_u = x0[:b], x0[b:]
    return x0_u + scale * (x0_c - x0_u), x0_c, x0_u


@pytest.mark.parametrize("guidance", ["fg_bg", "learned_null"])
@pytest.mark.parametrize("category", [0, 1])
def test_gain_one_runs_one_forward_and_equals_the_doubled_batch(guidance, category):
    model = _model(guidance)
    den = model.stages[0]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=g)
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 3:11] = 1
    masked = torch.rand(2, 3, 16, 16, generator=g) * (1 - mask)
    t = torch.tensor([700, 300])
    cats = torch.full((2,), category)
    context, uncond = model.guidance_tokens(cats)
    # which tokens are "conditional": the requested category's; the other set is the other category / null
    assert torch.equal(context, model.embedding.tokens(cats))
    expected_uncond = model.embedding.tokens(1 - cats) if guidance == "fg_bg" else model.embedding.null(2)
    assert torch.equal(uncond, expected_uncond)

    batches = []
    hook = den.unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    with torch.no_grad():
        fast = den.forward_with_cond_scale(x, t, masked, mask, context, uncond, 1.0)
        assert batches == [2]  # ONE forward of the plain batch, no doubled batch
        batches.clear()
        guided = den.forward_with_cond_scale(x, t, masked, mask, context, uncond, 2.5)
        assert batches == [4]  # gain != 1: the doubled batch as before
        hook.remove()
        ref1, x0_c, x0_u = _reference(den, x, t, masked, mask, context, uncond, 1.0)
        ref25, _, _ = _reference(den, x, t, masked, mask, context, uncond, 2.5)
    torch.testing.assert_close(fast, ref1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided, ref25, atol=1e-5, rtol=1e-5)
    # the branch matters: the unconditional prediction is far from the fast path's result
    assert (x0_c - x0_u).abs().max() > 1e-3
    assert (fast - x0_u).abs().max() > 1e-3


def test_identical_token_sets_skip_the_second_pass():
    """Without LCG both passes read the same tokens: any gain gives the conditional prediction from one forward."""
    model = _model("fg_bg")
    den = model.stages[0]
    x, mask = torch.randn(1, 3, 16, 16), torch.ones(1, 1, 16, 16)
    tokens = model.embedding.tokens(torch.tensor([1]))
    batches = []
    hook = den.unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    with torch.no_grad():
        out = den.forward_with_cond_scale(x, torch.tensor([500]), x * 0, mask, tokens, tokens.clone(), 4.0)
        hook.remove()
        ref, _, _ = _reference(den, x, torch.tensor([500]), x * 0, mask, tokens, tokens, 4.0)
    assert batches == [1]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_whole_sampler_at_gain_one_matches_the_doubled_batch_sampler():
    """sample_c2f at gains 1 (fast path) against DDIM driven by the doubled-batch CFG reference, stage 0."""
    model = _model("fg_bg")
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 2:10, 5:14] = 1
    cats = torch.tensor([1, 1])
    context, uncond = model.guidance_tokens(cats)
    den = model.stages[0]

    def doubled(x, t, masked_image, mask, **_):
        return _reference(den, x, t, masked_image, mask, context, uncond, 1.0)[0]

    with torch.no_grad():
        ref = sample_ddim(doubled, image, mask, den.alphas_cumprod, 4, dict(masked_image=image * (1 - mask), mask=mask),
                          generator=torch.Generator().manual_seed(3))
        one = C2FModel([UNET], {"tokens_per_category": 2, "dim": 16, "init_std": 1.0}, resolutions=[16],
                       sampling={"steps": [4], "gains": [1.0]}).eval()
        one.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(("stages.1", "combiners"))})
        fast, _ = sample_c2f(one, image, mask, "background", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)

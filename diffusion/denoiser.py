"""Denoiser wrapper (k-diffusion style) around the inpainting U-Net: parameterisation, loss, CFG.

The wrapper owns the discrete noise schedule (``alphas_cumprod`` buffer), the network's
prediction target and the training loss. Like k-diffusion's ``Denoiser``, calling it returns the
**denoised image** ``x0`` whatever the network predicts, so samplers never see the
parameterisation. With ``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` (``a = alpha_bar_t``):

=========== ===================================== =========================================
prediction  network target                        denoised image from the output ``o``
=========== ===================================== =========================================
epsilon     ``eps``                               ``(x_t - sqrt(1 - a) o) / sqrt(a)``
v           ``sqrt(a) eps - sqrt(1 - a) x0``      ``sqrt(a) x_t - sqrt(1 - a) o``
x0          ``x0``                                ``o``
=========== ===================================== =========================================

Epsilon prediction amplifies every error by ``1 / sqrt(a)`` (about 15 at the last of 1000
scaled-linear steps), so its samples stay noise long into training; v and x0 do not
(docs/results.md measures which converges first).

:meth:`InpaintingDenoiser.loss` returns PER-SAMPLE terms so modules can weight, log per mask
type and add callback terms on top::

    out = denoiser.loss(image, mask, context, generator=g)   # dict
    out["noise"], out["l1"]                                   # (B,) each
    out["x0_pred"], out["prediction"], out["target"], out["x_t"], out["t"], out["noise_target"]

``noise`` is the seed paper's mask-weighted diffusion loss (a):
``lambda(t) * mean_{c,h,w}(w * (o - target)^2)`` with ``w = hole_weight * mask + known_weight * (1 - mask)``
and ``lambda(t)`` the optional min-SNR-gamma weight (Hang et al. 2023; ``SNR = a / (1 - a)``):
``min(SNR, gamma) / SNR`` for epsilon, ``min(SNR, gamma) / (SNR + 1)`` for v, ``min(SNR, gamma)``
for x0 (1 without it). ``l1`` is ``mean |x0_pred - image|`` over all pixels (not clamped, not
pasted: loss-term callbacks decide what they use).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from diffusion.guidance import cfg_combine
from diffusion.sampling import SPACINGS, TimestepSpacing
from diffusion.schedules import ScheduleName, make_alphas_cumprod

__all__ = ["InpaintingDenoiser", "Prediction", "min_snr_weight", "predict_x0", "q_sample"]

Prediction = Literal["epsilon", "v", "x0"]
PREDICTIONS = ("epsilon", "v", "x0")


def _bcast(a: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return a.to(like.device)[t.long()].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward process ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (``t``: ``(B,)`` long)."""
    a = _bcast(alphas_cumprod, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def predict_x0(x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``."""
    a = _bcast(alphas_cumprod, t, x_t)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction: Prediction) -> torch.Tensor:
    """Min-SNR-gamma loss weight (Hang et al. 2023) of each sample's SNR for the given target."""
    clipped = snr.clamp(max=gamma)
    if prediction == "epsilon":
        return clipped / snr
    if prediction == "v":
        return clipped / (snr + 1)
    return clipped


class InpaintingDenoiser(nn.Module):
    """Denoiser around an :class:`networks.c2f.unet.InpaintingUNet`; ``forward`` returns the denoised image.

    Args:
        unet: the network ``unet(x_t, t, masked_image, mask, context, cond) -> output``.
        schedule: noise schedule name (``scaled_linear`` as SD/PixelHacker, ``linear``, ``cosine``).
        num_train_timesteps: discrete training timesteps ``T``.
        hole_weight: weight of hole pixels (mask = 1) in the diffusion loss.
        known_weight: weight of known pixels (mask = 0) in the diffusion loss.
        prediction: what the network predicts: ``"epsilon"`` (noise), ``"v"`` (velocity) or ``"x0"``.
        min_snr_gamma: min-SNR-gamma loss weighting with this gamma (5 in the paper); None = off.
        zero_terminal_snr: rescale the schedule to zero terminal SNR (Lin et al. 2024; needs ``v`` or ``x0``).
        shift_resolution: this stage's resolution in px for the simple-diffusion log-SNR shift
            ``2 log(shift_base / shift_resolution)``; None = no shift (docs/schedules.md).
        shift_base: base resolution of that shift (64 in Hoogeboom et al. 2023).
        timestep_spacing: DDIM timesteps of the samplers: ``linspace`` (T-1 .. 0) or ``trailing``
            (Lin et al. 2024; with zero terminal SNR).
    """

    def __init__(
        self,
        unet: nn.Module,
        schedule: ScheduleName = "scaled_linear",
        num_train_timesteps: int = 1000,
        hole_weight: float = 1.0,
        known_weight: float = 0.1,
        prediction: Prediction = "epsilon",
        min_snr_gamma: float | None = None,
        zero_terminal_snr: bool = False,
        shift_resolution: int | None = None,
        shift_base: int = 64,
        timestep_spacing: TimestepSpacing = "linspace",
    ) -> None:
        super().__init__()
        if hole_weight < 0 or known_weight < 0 or hole_weight + known_weight == 0:
            raise ValueError(
                f"InpaintingDenoiser: hole_weight and known_weight must be >= 0 and not both 0, got "
                f"{hole_weight}, {known_weight}"
            )
        if prediction not in PREDICTIONS:
            raise ValueError(f"InpaintingDenoiser: prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise ValueError(f"InpaintingDenoiser: min_snr_gamma must be > 0 (or null to disable), got {min_snr_gamma}")
        if zero_terminal_snr and prediction == "epsilon":
            raise ValueError(
                "InpaintingDenoiser: zero_terminal_snr=true with prediction='epsilon' is undefined: at the last step "
                "x_T is pure noise, so x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) divides by sqrt(a) = 0 (Lin et al. 2024); "
                "set prediction to 'v' or 'x0', or zero_terminal_snr to false"
            )
        if timestep_spacing not in SPACINGS:
            raise ValueError(f"InpaintingDenoiser: timestep_spacing must be one of {SPACINGS}, got {timestep_spacing!r}")
        self.unet = unet
        self.schedule, self.num_train_timesteps = schedule, num_train_timesteps
        self.hole_weight, self.known_weight = hole_weight, known_weight
        self.prediction, self.min_snr_gamma = prediction, min_snr_gamma
        self.zero_terminal_snr, self.timestep_spacing = bool(zero_terminal_snr), timestep_spacing
        self.shift_resolution, self.shift_base = shift_resolution, shift_base
        abar = make_alphas_cumprod(schedule, num_train_timesteps, zero_terminal_snr, shift_resolution, shift_base)
        self.register_buffer("alphas_cumprod", abar.float(), persistent=False)

    def denoised(self, x_t: torch.Tensor, t: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """The denoised image implied by the network ``output`` at ``(x_t, t)`` (see the module table)."""
        if self.prediction == "x0":
            return output
        a = _bcast(self.alphas_cumprod, torch.as_tensor(t, device=x_t.device).expand(x_t.shape[0]), x_t)
        if self.prediction == "v":
            return a.sqrt() * x_t - (1 - a).sqrt() * output
        return (x_t - (1 - a).sqrt() * output) / a.sqrt()

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        masked_image: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Denoised image ``(B, 3, H, W)``; arguments as :meth:`networks.c2f.unet.InpaintingUNet.forward`."""
        return self.denoised(x_t, t, self.unet(x_t, t, masked_image, mask, context, cond))

    def forward_with_cond_scale(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        masked_image: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor,
        uncond_context: torch.Tensor,
        cond_scale: float,
        cond: torch.Tensor | None = None,
        batched: bool = True,
    ) -> torch.Tensor:
        """Classifier-free guided denoised image ``x0_u + cond_scale * (x0_c - x0_u)``.

        The denoised image is affine in the network output for fixed ``(x_t, t)``, so this equals
        guiding the noise (``eps_u + s (eps_c - eps_u)``) or v and converting afterwards.

        Args:
            x_t, t, masked_image, mask, cond: as :meth:`forward`.
            context: conditional tokens: the requested category's (both modes); see
                :func:`diffusion.guidance.guidance_contexts`.
            uncond_context: unconditional tokens (the other category's in ``fg_bg`` mode, the null tokens in
                ``learned_null`` mode), same shape.
            cond_scale: guidance gain ``s``. At ``s = 1`` the result is the conditional prediction
                ``x0_c`` (the pass reading ``context``, the requested category's tokens, in both
                guidance modes), so only that forward runs (the gain-1 fast path: half the work).
                The same holds when ``context`` and ``uncond_context`` are the same tensor values
                (a model without LCG): both passes would give ``x0_c``.
            batched: run both passes as ONE forward on a doubled batch (default); False runs
                two forwards (less peak memory; used by the benchmark).
        """
        if context.shape != uncond_context.shape:
            raise ValueError(
                f"context {tuple(context.shape)} and uncond_context {tuple(uncond_context.shape)} must have the same shape"
            )
        if float(cond_scale) == 1.0 or context is uncond_context or torch.equal(context, uncond_context):
            return self(x_t, t, masked_image, mask, context, cond)
        if batched:
            two = lambda z: None if z is None else torch.cat([z, z], dim=0)  # noqa: E731
            t_b = torch.as_tensor(t, device=x_t.device)
            t_b = t_b.expand(x_t.shape[0]) if t_b.ndim == 0 else t_b
            x0 = self(two(x_t), two(t_b), two(masked_image), two(mask), torch.cat([context, uncond_context]), two(cond))
            x0_c, x0_u = x0.chunk(2, dim=0)
        else:
            x0_c = self(x_t, t, masked_image, mask, context, cond)
            x0_u = self(x_t, t, masked_image, mask, uncond_context, cond)
        return cfg_combine(x0_c, x0_u, cond_scale)

    def sample_timesteps(self, batch_size: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform training timesteps ``(B,)`` in ``[0, T)`` (``generator`` on the CPU)."""
        return torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator).to(device)

    def target(self, image: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target of the network for clean ``image``, ``noise`` and ``t``."""
        if self.prediction == "epsilon":
            return noise
        if self.prediction == "x0":
            return image
        a = _bcast(self.alphas_cumprod, t, image)
        return a.sqrt() * noise - (1 - a).sqrt() * image

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample weight ``(B,)`` of the diffusion loss: min-SNR-gamma, or ones."""
        if self.min_snr_gamma is None:
            return torch.ones(t.shape, device=t.device)
        a = self.alphas_cumprod.to(t.device)[t.long()].double()
        return min_snr_weight(a / (1 - a), self.min_snr_gamma, self.prediction).float()

    def loss(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample training losses of one noising of ``image``.

        Args:
            image: targets ``(B, 3, H, W)`` in [-1, 1].
            mask: ``(B, 1, H, W)``, 1 = hole; the network sees ``image * (1 - mask)`` and ``mask``.
            context: category tokens ``(B, n, dim)``.
            cond: optional extra U-Net input channels.
            t: timesteps ``(B,)``; None draws them uniformly (from ``generator`` when given).
            noise: Gaussian noise like ``image``; None draws it (from ``generator`` when given).
            generator: CPU RNG for ``t`` and ``noise`` (reproducible validation losses).

        Returns:
            dict with ``noise`` (the weighted diffusion loss) and ``l1`` ``(B,)``, and ``x0_pred``,
            ``prediction`` (raw network output), ``target``, ``x_t``, ``t``, ``noise_target``.
        """
        b = image.shape[0]
        t = self.sample_timesteps(b, image.device, generator) if t is None else t.to(image.device)
        if noise is None:
            noise = torch.randn(image.shape, generator=generator).to(image) if generator is not None else torch.randn_like(image)
        x_t = q_sample(image, t, noise, self.alphas_cumprod)
        masked_image = image * (1 - mask)
        output = self.unet(x_t, t, masked_image, mask, context, cond)
        target = self.target(image, noise, t)
        weight = self.hole_weight * mask + self.known_weight * (1 - mask)
        diffusion = (weight * (output.float() - target.float()) ** 2).mean(dim=(1, 2, 3)) * self.loss_weight(t)
        x0_pred = self.denoised(x_t, t, output)
        l1 = (x0_pred.float() - image.float()).abs().mean(dim=(1, 2, 3))
        return {
            "noise": diffusion, "l1": l1, "x0_pred": x0_pred, "prediction": output, "target": target,
            "x_t": x_t, "t": t, "noise_target": noise,
        }

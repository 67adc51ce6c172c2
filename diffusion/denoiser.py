"""Denoiser wrapper (k-diffusion style) around the inpainting U-Net: noising, loss, CFG.

The wrapper owns the discrete noise schedule (``alphas_cumprod`` buffer) and the training loss.
:meth:`InpaintingDenoiser.loss` returns PER-SAMPLE terms so modules can weight, log per mask
type and add callback terms on top::

    out = denoiser.loss(image, mask, context)            # dict
    out["noise"], out["l1"]                              # (B,) each
    out["x0_pred"], out["eps_pred"], out["x_t"], out["t"], out["noise_target"]

Mask-weighted noise loss: ``mean_{c,h,w}( w * (eps_pred - eps)^2 )`` with
``w = hole_weight * mask + known_weight * (1 - mask)``; image L1: ``mean |x0_pred - image|``
over all pixels, ``x0_pred = (x_t - sqrt(1 - abar_t) eps_pred) / sqrt(abar_t)`` (not clamped,
not pasted: loss-term callbacks decide what they use).
"""
from __future__ import annotations

import torch
from torch import nn

from diffusion.guidance import cfg_combine
from diffusion.schedules import ScheduleName, make_alphas_cumprod

__all__ = ["InpaintingDenoiser", "predict_x0", "q_sample"]


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


class InpaintingDenoiser(nn.Module):
    """Epsilon-prediction denoiser around an :class:`networks.c2f.unet.InpaintingUNet`.

    Args:
        unet: the noise-prediction network ``unet(x_t, t, masked_image, mask, context, cond)``.
        schedule: noise schedule name (``scaled_linear`` as SD/PixelHacker, ``linear``, ``cosine``).
        num_train_timesteps: discrete training timesteps ``T``.
        hole_weight: weight of hole pixels (mask = 1) in the noise loss.
        known_weight: weight of known pixels (mask = 0) in the noise loss.
    """

    def __init__(
        self,
        unet: nn.Module,
        schedule: ScheduleName = "scaled_linear",
        num_train_timesteps: int = 1000,
        hole_weight: float = 1.0,
        known_weight: float = 0.1,
    ) -> None:
        super().__init__()
        if hole_weight < 0 or known_weight < 0 or hole_weight + known_weight == 0:
            raise ValueError(
                f"InpaintingDenoiser: hole_weight and known_weight must be >= 0 and not both 0, got "
                f"{hole_weight}, {known_weight}"
            )
        self.unet = unet
        self.schedule, self.num_train_timesteps = schedule, num_train_timesteps
        self.hole_weight, self.known_weight = hole_weight, known_weight
        self.register_buffer("alphas_cumprod", make_alphas_cumprod(schedule, num_train_timesteps).float(), persistent=False)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        masked_image: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted noise ``(B, 3, H, W)``; arguments as :meth:`networks.c2f.unet.InpaintingUNet.forward`."""
        return self.unet(x_t, t, masked_image, mask, context, cond)

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
        """Classifier-free guided noise ``eps_u + cond_scale * (eps_c - eps_u)``.

        Args:
            x_t, t, masked_image, mask, cond: as :meth:`forward`.
            context: conditional tokens (fg tokens in ``fg_bg`` mode, the sample's category in
                ``null`` mode); see :func:`diffusion.guidance.guidance_contexts`.
            uncond_context: unconditional tokens (bg tokens / null tokens), same shape.
            cond_scale: guidance gain ``s`` (1 = the conditional prediction).
            batched: run both passes as ONE forward on a doubled batch (default); False runs
                two forwards (less peak memory; used by the benchmark).
        """
        if context.shape != uncond_context.shape:
            raise ValueError(
                f"context {tuple(context.shape)} and uncond_context {tuple(uncond_context.shape)} must have the same shape"
            )
        if batched:
            two = lambda z: None if z is None else torch.cat([z, z], dim=0)  # noqa: E731
            t_b = torch.as_tensor(t, device=x_t.device)
            t_b = t_b.expand(x_t.shape[0]) if t_b.ndim == 0 else t_b
            eps = self.unet(two(x_t), two(t_b), two(masked_image), two(mask), torch.cat([context, uncond_context]), two(cond))
            eps_c, eps_u = eps.chunk(2, dim=0)
        else:
            eps_c = self.unet(x_t, t, masked_image, mask, context, cond)
            eps_u = self.unet(x_t, t, masked_image, mask, uncond_context, cond)
        return cfg_combine(eps_c, eps_u, cond_scale)

    def sample_timesteps(self, batch_size: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform training timesteps ``(B,)`` in ``[0, T)``."""
        return torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator).to(device)

    def loss(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor,
        cond: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample training losses of one noising of ``image``.

        Args:
            image: targets ``(B, 3, H, W)`` in [-1, 1].
            mask: ``(B, 1, H, W)``, 1 = hole; the network sees ``image * (1 - mask)`` and ``mask``.
            context: category tokens ``(B, n, dim)``.
            cond: optional extra U-Net input channels.
            t: timesteps ``(B,)``; None draws them uniformly.
            noise: Gaussian noise like ``image``; None draws it.

        Returns:
            dict with ``noise`` and ``l1`` ``(B,)``, and ``x0_pred``, ``eps_pred``, ``x_t``,
            ``t``, ``noise_target`` (for loss-term callbacks and logging).
        """
        b = image.shape[0]
        t = self.sample_timesteps(b, image.device) if t is None else t.to(image.device)
        noise = torch.randn_like(image) if noise is None else noise
        x_t = q_sample(image, t, noise, self.alphas_cumprod)
        masked_image = image * (1 - mask)
        eps_pred = self.unet(x_t, t, masked_image, mask, context, cond)
        weight = self.hole_weight * mask + self.known_weight * (1 - mask)
        noise_loss = (weight * (eps_pred.float() - noise.float()) ** 2).mean(dim=(1, 2, 3))
        x0_pred = predict_x0(x_t, t, eps_pred, self.alphas_cumprod)
        l1 = (x0_pred.float() - image.float()).abs().mean(dim=(1, 2, 3))
        return {"noise": noise_loss, "l1": l1, "x0_pred": x0_pred, "eps_pred": eps_pred, "x_t": x_t, "t": t, "noise_target": noise}

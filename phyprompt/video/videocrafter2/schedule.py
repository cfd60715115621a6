"""The diffusion schedule VideoCrafter2 was trained with, as the 13 buffers its checkpoint carries.

lvdm's `LatentDiffusion` registers them (and the checkpoint stores them) under these names; they are built
here from the config exactly as the original builds them (float64, then float32) and then overwritten by
the checkpoint's own values, which the sampler reads: what the original samples with.

- betas: linear in sqrt from linear_start to linear_end (diffusers' "scaled_linear").
- scale_arr (use_scale): linspace(scale_a, scale_b, mid_step) then scale_b for `timesteps` more entries
  (the trained model's length; `fix_scale_bug` gives timesteps - mid_step), indexed by timestep.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import DiffusionConfig

BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
           "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
           "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")


class Schedule(nn.Module):
    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = config
        # on the CPU whatever device context the model is built under (the loader builds on "meta"): small
        # tensors that the checkpoint's values then replace
        f64 = dict(dtype=torch.float64, device="cpu")
        betas = torch.linspace(config.linear_start ** 0.5, config.linear_end ** 0.5, config.timesteps, **f64) ** 2
        alphas = 1.0 - betas
        cumprod = torch.cumprod(alphas, 0)
        prev = torch.cat([torch.ones(1, **f64), cumprod[:-1]])
        posterior = betas * (1.0 - prev) / (1.0 - cumprod)
        values = {
            "betas": betas, "alphas_cumprod": cumprod, "alphas_cumprod_prev": prev,
            "sqrt_alphas_cumprod": cumprod.sqrt(), "sqrt_one_minus_alphas_cumprod": (1.0 - cumprod).sqrt(),
            "log_one_minus_alphas_cumprod": (1.0 - cumprod).log(), "sqrt_recip_alphas_cumprod": (1.0 / cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / cumprod - 1).sqrt(), "posterior_variance": posterior,
            "posterior_log_variance_clipped": posterior.clamp(min=1e-20).log(),
            "posterior_mean_coef1": betas * prev.sqrt() / (1.0 - cumprod),
            "posterior_mean_coef2": (1.0 - prev) * alphas.sqrt() / (1.0 - cumprod),
        }
        for name in BUFFERS:
            self.register_buffer(name, values[name].float())
        if config.use_scale:
            tail = config.timesteps - config.mid_step if config.fix_scale_bug else config.timesteps
            scale = torch.cat([torch.linspace(config.scale_a, config.scale_b, config.mid_step, **f64),
                               torch.full((tail,), config.scale_b, **f64)])
            self.register_buffer("scale_arr", scale.float())

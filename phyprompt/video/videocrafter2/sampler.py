"""VideoCrafter2's DDIM sampler (lvdm `DDIMSampler` with `use_scale`), with classifier-free guidance.

Timesteps: `steps` evenly spaced, 1 + k·(T // steps) ("uniform" discretisation; 50 steps visit 981, 961, …, 1).
When `steps` does not divide T the original takes extra steps (or indexes past the schedule and fails); this
takes exactly `steps` of them, the first ones the original would take.

One step at timestep t, previous timestep t' (for the last step: index 0 of the schedule):

    eps     = eps_uncond + guidance · (eps_cond - eps_uncond)
    pred_x0 = (x - sqrt(1 - a_t) · eps) / sqrt(a_t) / scale_t
    x_prev  = sqrt(a_t') · scale_t' · pred_x0 + sqrt(1 - a_t' - sigma²) · eps + sigma · noise
    sigma   = eta · sqrt((1 - a_t') / (1 - a_t) · (1 - a_t / a_t'))

with a = alphas_cumprod and scale = scale_arr (1 everywhere without use_scale). The conditional and
unconditional passes run one after the other, as in the original: the peak memory of one pass, and the
same numbers as the original (a batch of two would give the same values up to float rounding).

Noise comes from `generator` in float32 on the CPU, then moves to the model's device: the initial latents
(unless given) first, then one draw per step, the original's order. Same generator seed, same video, on
any device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .schedule import Schedule


def ddim_timesteps(steps: int, timesteps: int) -> torch.Tensor:
    if not 1 <= steps <= timesteps:
        raise ValueError(f"DDIM steps must be between 1 and {timesteps}, not {steps}")
    return torch.arange(steps) * (timesteps // steps) + 1


def sample(unet, schedule: Schedule, context: torch.Tensor, uncond_context: torch.Tensor | None, *,
           shape: tuple[int, ...], steps: int = 50, guidance: float = 12.0, eta: float = 1.0, fps: int = 28,
           latents: torch.Tensor | None = None, generator: torch.Generator | None = None,
           progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Latents (b, c, t, h, w) from `context` (b, tokens, width); `uncond_context` is the empty prompt's
    (None, or guidance 1: no guidance pass). `progress(done, steps)` runs after every step and may raise."""
    param = next(unet.parameters())
    device, dtype = param.device, param.dtype

    def noise() -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float32).to(device)

    x = noise() if latents is None else latents.to(device=device, dtype=torch.float32)
    ts = ddim_timesteps(steps, schedule.config.timesteps)
    cumprod = schedule.alphas_cumprod.detach().double().cpu()
    alphas = cumprod[ts]
    alphas_prev = torch.cat([cumprod[:1], cumprod[ts[:-1]]])
    sigmas = eta * ((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev)).sqrt()
    if schedule.config.use_scale:
        scale_arr = schedule.scale_arr.detach().double().cpu()
        scales, scales_prev = scale_arr[ts], torch.cat([scale_arr[:1], scale_arr[ts[:-1]]])
    else:
        scales = scales_prev = torch.ones(steps, dtype=torch.float64)
    guided = uncond_context is not None and guidance != 1.0
    fps_tensor = torch.full((shape[0],), fps, device=device, dtype=torch.long)
    for done, index in enumerate(reversed(range(steps)), start=1):
        t = torch.full((shape[0],), int(ts[index]), device=device, dtype=torch.long)
        x_in = x.to(dtype)
        eps = unet(x_in, t, context, fps_tensor).float()
        if guided:
            eps_uncond = unet(x_in, t, uncond_context, fps_tensor).float()
            eps = eps_uncond + guidance * (eps - eps_uncond)
        a_t, a_prev, sigma = (float(v[index]) for v in (alphas, alphas_prev, sigmas))
        pred_x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5 / float(scales[index])
        direction = (1 - a_prev - sigma ** 2) ** 0.5 * eps
        x = a_prev ** 0.5 * float(scales_prev[index]) * pred_x0 + direction + sigma * noise()
        if progress is not None:
            progress(done, steps)
    return x

"""LaVie's sampling (`base/pipelines/pipeline_videogen.py` with `base/configs/sample.yaml`): DDPM over
a linear beta schedule 1e-4 → 0.02 (1000 training steps), classifier-free guidance with the empty prompt,
latents decoded by Stable Diffusion's VAE one frame at a time.

The original ran diffusers 0.16, whose DDPM scheduler ignored `steps_offset`: 50 steps visit t = 980, 960,
…, 0 ("leading" spacing, offset 0), and the pipeline forces `clip_sample` off. diffusers' own DDPMScheduler
with exactly those settings is the same sampler, noise draws included: the generator gives the initial
latents (unless they are passed in) and then, in step order, the noise of every step but the last.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TRAIN_STEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
LATENT_SCALE = 0.18215  # the original divides by this constant, whatever the VAE's config says
LATENT_CHANNELS = 4


def ddpm_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=TRAIN_STEPS, beta_start=BETA_START, beta_end=BETA_END,
                         beta_schedule="linear", variance_type="fixed_small", prediction_type="epsilon",
                         clip_sample=False, timestep_spacing="leading", steps_offset=0)


def timesteps(steps: int) -> list[int]:
    scheduler = ddpm_scheduler()
    scheduler.set_timesteps(steps)
    return scheduler.timesteps.tolist()


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """CLIP's last hidden state for each prompt, padded (with the end token) or cut to the tokenizer's 77."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


@torch.no_grad()
def denoise(unet, context: torch.Tensor, latents: torch.Tensor, *, steps: int, guidance: float,
            generator: torch.Generator | None = None,
            progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """DDPM from `latents` (b, 4, f, h, w) to clean latents. `context` is the text: (b, tokens, channels),
    or with guidance > 1 the unconditional rows first, then the conditional ones, as the original stacks
    them. `generator` draws each step's noise; `progress(step, steps)` after every step may raise to cancel."""
    scheduler = ddpm_scheduler()
    scheduler.set_timesteps(steps, device=latents.device)
    guided = guidance > 1.0  # the original's rule: guidance 1 or less runs the text alone
    context = context.to(unet.dtype)
    latents = latents.to(unet.dtype)
    for i, t in enumerate(scheduler.timesteps):
        noise = unet(torch.cat([latents] * 2) if guided else latents, t, context)
        if guided:
            unconditional, conditional = noise.chunk(2)
            noise = unconditional + guidance * (conditional - unconditional)
        latents = scheduler.step(noise, t, latents, generator=generator).prev_sample
        if progress is not None:
            progress(i + 1, steps)
    return latents


@torch.no_grad()
def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """(1, 4, f, h, w) latents -> frames [f, H, W, 3] in 0..1, one frame through the VAE at a time."""
    latents = latents * (1 / LATENT_SCALE)  # as the original scales (not a division: the last bit differs)
    frames = [vae.decode(frame[None].to(vae.dtype)).sample[0] for frame in latents[0].transpose(0, 1)]
    video = torch.stack(frames).float()
    return (video / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()

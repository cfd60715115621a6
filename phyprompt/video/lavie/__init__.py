"""LaVie (Vchitect/LaVie, the `base/` text-to-video stage), ported: `lavie_base.pt` on Stable Diffusion 1.4's
VAE, CLIP ViT-L/14 text encoder and tokenizer, sampled as the original samples.

Modules: `unet` (the 3-D UNet), `temporal` (its temporal attention), `config` (the UNet's architecture from
SD's unet/config.json), `sampling` (DDPM schedule, guidance, text encoding, frame-by-frame decoding),
`loading` (checkpoint, SD folder, the safetensors converter), `backend` (the VideoBackend glue, INFO).

Every part can be run alone, e.g. to compare it with the original code:

    from phyprompt.video.lavie.config import UNetConfig
    from phyprompt.video.lavie.unet import LaVieUNet
    from phyprompt.video.lavie.temporal import TemporalAttention
    from phyprompt.video.lavie import sampling

    unet = LaVieUNet(UNetConfig.read(sd_folder))              # or the loaded backend's `.unet`
    noise = unet(latents, timestep, context)                 # latents (b, 4, f, h, w), context (b, 77, 768)
    attention = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn_temp
    out = attention(x)                                       # x (sequences, frames, channels)
    sampling.timesteps(50)                                   # [980, 960, ..., 0]
    latents = sampling.denoise(unet, context, latents, steps=50, guidance=7.5, generator=generator)
    frames = sampling.decode(vae, latents)                   # [f, H, W, 3] in 0..1

With guidance above 1, `context` holds the unconditional (negative prompt) rows first, then the prompt's:
`sampling.encode_prompts(tokenizer, text_encoder, [negative, prompt])`. The backend draws the initial latents
from a CPU generator seeded with the request's seed and passes that generator on, so `denoise` with the same
latents and a generator in the same state replays a backend run exactly.
"""

"""A tiny, randomly initialised CogVideoX pipeline written as a normal diffusers folder (the
component configs diffusers' own CogVideoX tests use), loaded by exactly the code that loads
THUDM/CogVideoX-2b."""

from __future__ import annotations

import os


# diffusers' own test shapes by default; benchmarks pass larger ones
def build_pipeline(seed: int = 0, heads: int = 4, head_dim: int = 8, layers: int = 1, vae_channels: int = 8,
                   text_dim: int = 32):
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=heads, attention_head_dim=head_dim, in_channels=4, out_channels=4, time_embed_dim=2,
        text_embed_dim=text_dim, num_layers=layers, sample_width=2, sample_height=2, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=16,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4, block_out_channels=(vae_channels,) * 4,
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
    )
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=1000, d_model=text_dim, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
    ))
    tokenizer = T5Tokenizer()  # transformers builds a small in-memory vocabulary: no files needed
    text_encoder.resize_token_embeddings(len(tokenizer))
    return CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=CogVideoXDDIMScheduler())


def write_tiny_cogvideox(folder: str | os.PathLike, seed: int = 0, **shape) -> str:
    folder = os.fspath(folder)
    build_pipeline(seed, **shape).save_pretrained(folder, safe_serialization=True)
    return folder

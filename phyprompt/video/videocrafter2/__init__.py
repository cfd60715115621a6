"""VideoCrafter2 text-to-video: a port of AILab-CVC/VideoCrafter's `lvdm` model (configs/inference_t2v_512_v2.0.yaml)
that loads the original `model.ckpt`, numerically equal to the original code (the parity figures are in the
project's notes).

The parts, each usable alone from Python so it can be compared with the original:

    from phyprompt.video.videocrafter2.model import load_model
    model = load_model("model.ckpt", device="cuda", dtype=torch.float16)   # or a converted folder
    tokens = model.tokenize(["a cat jumps onto a table"])    # OpenCLIP ids (1, 77)        text.py
    context = model.encode(tokens)                           # (1, 77, 1024) penultimate + ln_final
    eps = model.unet(latents, timesteps, context, fps)       # latents (b, 4, t, h, w)    unet.py
    latents = model.sample(context, model.encode(model.tokenize([""])), shape=(1, 4, 16, 40, 64),
                           steps=50, guidance=12.0, eta=1.0, fps=28,
                           latents=None, generator=torch.Generator().manual_seed(0))      # sampler.py
    video = model.decode(latents)                            # (b, 3, t, 320, 512), ~-1..1  vae.py
    model.schedule.alphas_cumprod, model.schedule.scale_arr  # the checkpoint's schedule   schedule.py

Modules: config.py (architecture from the YAML or defaults), unet.py, text.py, vae.py, schedule.py, sampler.py
(the model); keys.py (original names -> these modules), model.py (loading), convert.py (the safetensors
conversion); backend.py is the glue to the project's video backend interface.
"""

"""VideoPhy-2's AutoEval (mPLUG-Owl-Video, `videophysics/videophy_2_auto`) ported to plain torch and
transformers' own LLaMA, loading the released folder as it is.

- `config`: the released config.json read into the few numbers the model needs.
- `layers`, `vision`, `abstractor`, `model`: the network (CLIP ViT-L/14 with temporal adapters, the visual
  abstractor, LLaMA), with the released checkpoint's parameter names.
- `tokenizer`: the sentencepiece LLaMA tokenizer as transformers 4.28 applied it.
- `decoding`: batched greedy decoding over prompt embeddings.
- `loading`: folder checks and strict weight loading; `judge`: the `Judge` the registry opens.
"""

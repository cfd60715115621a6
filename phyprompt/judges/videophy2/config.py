"""The released config.json (an mPLUG-Owl config: vision, abstractor and LLaMA text sub-configs), read into
the numbers the port uses. Keys a config leaves out take the reference's class defaults, which are the
released model's values."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ...infra.checkpoints import ModelFolderError

MODEL_TYPE = "mplug-owl"
#: the released config.json names its model (mPLUG-Owl, which transformers does not know) by model_type, and by
#: its class
ARCHITECTURE = "MplugOwlForConditionalGeneration"


def is_autoeval(config: dict) -> bool:
    """Whether a folder's config.json is the AutoEval's."""
    return config.get("model_type") == MODEL_TYPE or ARCHITECTURE in (config.get("architectures") or [])


class AutoEvalConfigError(ModelFolderError):
    """config.json is not a usable VideoPhy-2 AutoEval config; the message says why."""


@dataclass(frozen=True)
class VisionConfig:
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    image_size: int = 224
    patch_size: int = 14
    layer_norm_eps: float = 1e-6

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class AbstractorConfig:
    hidden_size: int = 1024
    num_hidden_layers: int = 6
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    layer_norm_eps: float = 1e-6
    encoder_hidden_size: int = 1024

    @property
    def mlp_size(self) -> int:
        """The SwiGLU width: the reference takes 2/3 of intermediate_size rounded up to a multiple of 256,
        except for 2816, which it keeps (the released model's value)."""
        if self.intermediate_size == 2816:
            return 2816
        return 256 * ((int(2 * self.intermediate_size / 3) + 255) // 256)


# LlamaConfig fields the text model needs, with transformers 4.28's LlamaConfig defaults.
TEXT_DEFAULTS = {
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
}


@dataclass(frozen=True)
class AutoEvalConfig:
    vision: VisionConfig
    abstractor: AbstractorConfig
    text: dict
    num_query_tokens: int = 64

    @property
    def video_tokens(self) -> int:
        """Tokens a video becomes in the prompt: the queries' outputs plus the learned end-of-video token."""
        return self.num_query_tokens + 1

    @classmethod
    def from_dict(cls, raw: dict, where: str = "config.json") -> AutoEvalConfig:
        if raw.get("model_type") != MODEL_TYPE:
            found = raw.get("model_type") or "no model_type"
            raise AutoEvalConfigError(
                f"{where} describes {found!r}, not VideoPhy-2's AutoEval ({MODEL_TYPE!r}); point the judge at "
                "the videophysics/videophy_2_auto folder")
        text = raw.get("text_config") or {}
        if text.get("model_type", "llama") != "llama":
            raise AutoEvalConfigError(f"{where}: the text model is {text.get('model_type')!r}; only LLaMA is supported")
        config = cls(
            vision=_sub_config(VisionConfig, raw.get("vision_config"), where),
            abstractor=_sub_config(AbstractorConfig, raw.get("visual_abstractor_config"), where),
            text={key: text.get(key, default) for key, default in TEXT_DEFAULTS.items()},
            num_query_tokens=int(raw.get("num_query_tokens", 64)),
        )
        config._check(where)
        return config

    def llama_config(self):
        from transformers import LlamaConfig

        return LlamaConfig(**self.text)

    def _check(self, where: str) -> None:
        vision, abstractor = self.vision, self.abstractor
        problems = [
            f"{name} hidden_size {size} is not divisible by its {heads} heads"
            for name, size, heads in (("vision", vision.hidden_size, vision.num_attention_heads),
                                      ("abstractor", abstractor.hidden_size, abstractor.num_attention_heads),
                                      ("text", self.text["hidden_size"], self.text["num_attention_heads"]))
            if size % heads]
        if vision.image_size % vision.patch_size:
            problems.append(f"image_size {vision.image_size} is not a multiple of patch_size {vision.patch_size}")
        # The abstractor normalises the vision features with a LayerNorm of its own width.
        if not vision.hidden_size == abstractor.encoder_hidden_size == abstractor.hidden_size:
            problems.append("the vision, abstractor and abstractor-encoder widths differ")
        if problems:
            raise AutoEvalConfigError(f"{where} is inconsistent: {'; '.join(problems)}")


def _sub_config(kind, raw: dict | None, where: str):
    if raw is not None and not isinstance(raw, dict):
        raise AutoEvalConfigError(f"{where}: {kind.__name__} must be a JSON object")
    names = {f.name for f in fields(kind)}
    return kind(**{key: value for key, value in (raw or {}).items() if key in names})

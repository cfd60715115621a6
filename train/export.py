"""Turn a training run into a refiner folder that "Load Physics Refiner" and `phyprompt refine` load as is.

    python -m train.export --adapter runs/sft-qwen2.5-1.5b --out models/LLM/PhyPrompt-1.5B-SFT
        [--base Qwen/Qwen2.5-1.5B-Instruct] [--keep-adapter] [--dtype bf16] [--overwrite]

`--adapter` is a `train.sft` output_dir: a LoRA adapter (merged into its base by default, or kept as an
adapter with `--keep-adapter`) or a fully fine-tuned model. The folder gets safetensors weights, the
tokenizer with its chat template, and a model card (README.md) naming the base, the data and the recipe.
The new folder appears complete or not at all, and an existing model is never replaced without
`--overwrite`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from phyprompt.infra.checkpoints import (
    ModelFolderError,
    check_safetensors,
    check_weights_folder,
    read_folder_json,
)
from phyprompt.infra.console import fail, silence_known_warnings
from phyprompt.infra.devices import PRECISIONS, torch_dtype
from phyprompt.infra.files import atomic_path

from .stages import MANIFEST, read_manifest


class ExportError(ModelFolderError):
    pass


def _is_adapter(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "adapter_config.json"))


def _check_destination(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} already holds files; choose another --out or pass --overwrite to replace it")


def _base_of(adapter: str, base: str | None) -> str:
    if base:
        return base
    config = read_folder_json(adapter, "adapter_config.json", "adapter", "a PEFT adapter", ExportError)
    recorded = config.get("base_model_name_or_path")
    if not recorded:
        raise ExportError(f"{adapter}/adapter_config.json names no base model; pass --base")
    return recorded


def _stage_lines(manifest: dict) -> list[str]:
    """The model card's lines on one training stage."""
    lora = manifest.get("lora") or {}
    method = manifest.get("method", "unknown") + (
        f" (r={lora.get('r')}, alpha={lora.get('alpha')}, modules {lora.get('target_modules')})" if lora else "")
    if manifest.get("stage") == "grpo":
        rewards = manifest.get("rewards") or {}
        curriculum = manifest.get("curriculum") or {}
        lines = [f"- Stage 2 (GRPO), method: {method}; starting from `{manifest.get('starts_from', 'unknown')}`",
                 "- Rewards: " + (", ".join(f"{name} (weight {weight})" for name, weight in rewards.items()) or "unknown")]
        if curriculum:
            lines.append(f"- Curriculum: {curriculum.get('schedule')} from {curriculum.get('sa')} to "
                         f"{curriculum.get('pc')}" + (f", alpha={curriculum['alpha']}" if "alpha" in curriculum else ""))
        return lines
    return [f"- Stage 1 (SFT), method: {method}"]


def model_card(name: str, base: str, merged: bool, manifest: dict) -> str:
    data = manifest.get("data") or []
    per_target = manifest.get("examples_per_target") or {}
    training = manifest.get("training") or {}
    metrics = manifest.get("metrics") or {}
    lines = [
        "---",
        f"base_model: {base}",
        f"library_name: {'transformers' if merged else 'peft'}",
        "pipeline_tag: text-generation",
        "tags: [phyprompt, physics, prompt-refinement, text-to-video]",
        "---",
        "",
        f"# {name}",
        "",
        "A PhyPrompt physics refiner: it rewrites a text-to-video prompt with explicit physical detail and "
        "answers `<think>reasoning</think><prompt>refined prompt</prompt>`. Load it with the "
        "\"Load Physics Refiner\" ComfyUI node or `python -m phyprompt refine --model <this folder>`.",
        "",
        "## Training",
        "",
        f"- Base model: `{base}`",
        *(_stage_lines(manifest["stage1"]) if manifest.get("stage1") else ()),
        *_stage_lines(manifest),
        f"- Delivered as: {'adapter merged into the base weights' if merged else 'a LoRA adapter on the base'}",
        f"- Recipe: `{manifest.get('recipe') or 'unknown'}`",
        f"- Examples: {manifest.get('examples', 'unknown')}"
        + (" (" + ", ".join(f"{n} {t}" for t, n in sorted(per_target.items())) + ")" if per_target else ""),
    ]
    lines += [f"- Data file: `{d['file']}` (sha256 {d['sha256']})" for d in data]
    if training:
        lines.append("- Settings: " + ", ".join(f"{k}={v}" for k, v in training.items()))
    if "train_loss" in metrics:
        lines.append(f"- Final mean training loss: {metrics['train_loss']:.4f}")
    if not manifest:
        lines.append(f"- No {MANIFEST} was found in the run folder, so data and recipe are not recorded.")
    made_with = "`train.sft`, `train.grpo`" if manifest.get("stage") == "grpo" else "`train.sft`"
    lines += ["", f"Made with PhyPrompt's {made_with} and `train.export`.", ""]
    return "\n".join(lines)


def export(run: str, out: str, base: str | None = None, keep_adapter: bool = False, dtype: str | None = None,
           overwrite: bool = False) -> Path:
    from transformers import AutoTokenizer

    from phyprompt.refiners.loading import LoadSpec, load_model_and_tokenizer

    out_path = Path(out)
    if not os.path.isdir(run):
        raise ExportError(f"training output not found: {run}")
    if out_path.resolve() == Path(run).resolve():
        raise ExportError("--out is the training output itself; export to another folder")
    _check_destination(out_path, overwrite)
    if dtype is not None and dtype not in PRECISIONS:
        raise ExportError(f"dtype {dtype!r} is not one of {', '.join(PRECISIONS)}")
    adapter = _is_adapter(run)
    if keep_adapter and not adapter:
        raise ExportError(f"{run} holds a fully fine-tuned model, not an adapter; drop --keep-adapter")
    manifest = read_manifest(run)
    stage1_adapter = manifest.get("sft_adapter") if adapter else None  # GRPO trained on base + SFT adapter
    if stage1_adapter and not _is_adapter(stage1_adapter):
        raise ExportError(f"the stage-1 adapter this run started from is gone: {stage1_adapter}")
    base_model = _base_of(run, base) if adapter else (base or run)
    card_base = base_model if adapter else manifest.get("base_model", base_model)
    with atomic_path(out_path) as partial:
        partial.mkdir()
        tokenizer = AutoTokenizer.from_pretrained(run, local_files_only=True, trust_remote_code=False)
        if not getattr(tokenizer, "chat_template", None):
            raise ExportError(f"the tokenizer in {run} has no chat template; the refiner needs one")
        if keep_adapter:
            _write_adapter(*(_stacked_adapter(stage1_adapter, run) if stage1_adapter else _read_adapter(run)),
                           partial, dtype)
        else:
            spec = LoadSpec(model=base_model, adapter=stage1_adapter or (run if adapter else None), merge_adapter=True,
                            device="cpu", dtype=dtype or "bf16", allow_download=True)
            model, _ = load_model_and_tokenizer(spec)
            if stage1_adapter:  # then this run's adapter, on the model it was trained on
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, run).merge_and_unload()
            model.save_pretrained(partial)  # safetensors
        tokenizer.save_pretrained(partial)
        (partial / "README.md").write_text(
            model_card(out_path.name, card_base, not keep_adapter, manifest), encoding="utf-8"
        )
        if not keep_adapter:
            check_weights_folder(str(partial), "exported refiner", ExportError)
    return out_path


def _read_adapter(folder: str) -> tuple[dict, dict]:
    """An adapter's (config, tensors), the weights checked before they are read."""
    from safetensors.torch import load_file

    weights = os.path.join(folder, "adapter_model.safetensors")
    check_safetensors(weights, ExportError)
    return read_folder_json(folder, "adapter_config.json", "adapter", "a PEFT adapter", ExportError), load_file(weights)


def _stacked_adapter(stage1: str, stage2: str) -> tuple[dict, dict]:
    """One LoRA adapter equal to the stage-1 adapter merged and then the stage-2 adapter trained on top.

    LoRA deltas add: s1·B1A1 + s2·B2A2 = [s1·B1, s2·B2] · [A1; A2], so the pair is one adapter of rank r1 + r2
    (A stacked, B side by side, each B scaled by its own alpha/r) with alpha = rank, which makes PEFT's scale 1.
    Exact up to the float rounding of the stored weights. A module only one of them adapts gets zeros for the
    other's part.
    """
    import torch

    (config1, tensors1), (config2, tensors2) = _read_adapter(stage1), _read_adapter(stage2)
    for name, config, tensors in ((stage1, config1, tensors1), (stage2, config2, tensors2)):
        unsupported = [key for key in ("use_rslora", "use_dora", "modules_to_save", "rank_pattern", "alpha_pattern")
                       if config.get(key)] + ([] if config.get("peft_type", "LORA") == "LORA" else ["peft_type"])
        unsupported += sorted({key.rsplit(".", 2)[-2] for key in tensors
                               if not key.endswith((".lora_A.weight", ".lora_B.weight"))})
        if unsupported or config.get("bias", "none") != "none":
            raise ExportError(f"{name} is not a plain LoRA adapter ({', '.join(unsupported) or 'bias'}): the two "
                              "adapters cannot be stacked into one; export the run merged (drop --keep-adapter)")
    ranks = config1["r"], config2["r"]
    scales = config1["lora_alpha"] / ranks[0], config2["lora_alpha"] / ranks[1]
    modules = sorted({key.rsplit(".lora_", 1)[0] for key in (*tensors1, *tensors2)})
    stacked = {}
    for module in modules:
        a_key, b_key = f"{module}.lora_A.weight", f"{module}.lora_B.weight"
        reference = tensors1.get(a_key, tensors2.get(a_key)), tensors1.get(b_key, tensors2.get(b_key))
        parts_a, parts_b = [], []
        for tensors, rank, scale in ((tensors1, ranks[0], scales[0]), (tensors2, ranks[1], scales[1])):
            a = tensors.get(a_key, torch.zeros(rank, reference[0].shape[1], dtype=torch.float32))
            b = tensors.get(b_key, torch.zeros(reference[1].shape[0], rank, dtype=torch.float32))
            parts_a.append(a.float())
            parts_b.append(b.float() * scale)
        stacked[a_key], stacked[b_key] = torch.cat(parts_a, 0), torch.cat(parts_b, 1)
    targets = config1["target_modules"], config2["target_modules"]
    if all(isinstance(t, list) for t in targets):
        targets = sorted(set(targets[0]) | set(targets[1])), None
    elif targets[0] != targets[1]:
        raise ExportError(f"{stage1} and {stage2} name their target modules differently ({targets[0]!r}, "
                          f"{targets[1]!r}): export the run merged (drop --keep-adapter)")
    return dict(config1, r=sum(ranks), lora_alpha=sum(ranks), target_modules=targets[0]), stacked


def _write_adapter(config: dict, tensors: dict, folder: Path, dtype: str | None) -> None:
    """The adapter's config and weights, the weights in `dtype` when one is given (trl saves them in float32:
    half the size in bf16/fp16, and PEFT casts them to the base model's dtype on load)."""
    import json

    import torch
    from safetensors.torch import save_file

    if dtype is not None:
        tensors = {k: t.to(torch_dtype(dtype)) if torch.is_floating_point(t) else t for k, t in tensors.items()}
    save_file({k: t.contiguous() for k, t in tensors.items()}, str(folder / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    silence_known_warnings()
    parser = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", required=True, help="train.sft output_dir (LoRA adapter or full model)")
    parser.add_argument("--out", required=True, help="refiner folder to write, e.g. models/LLM/PhyPrompt-1.5B-SFT")
    parser.add_argument("--base", help="base model (default: the one recorded in the adapter)")
    parser.add_argument("--keep-adapter", action="store_true", help="write the adapter instead of merging it")
    parser.add_argument("--dtype", choices=PRECISIONS,
                        help="weights dtype (default: bf16 for a merged model; a kept adapter as trained)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    args = parser.parse_args(argv)
    try:
        path = export(args.adapter, args.out, args.base, args.keep_adapter, args.dtype, args.overwrite)
    except (ModelFolderError, OSError) as error:  # RefinerLoadError and ExportError are ModelFolderErrors
        return fail(str(error), prog="train.export")
    how = "adapter" if args.keep_adapter else "merged model"
    print(f"train.export: wrote {path} ({how}); load it with: python -m phyprompt refine --model "
          + (f"<base> --adapter {path}" if args.keep_adapter else str(path)) + ' "a prompt"', file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

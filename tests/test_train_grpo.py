"""Stage 2 (train.grpo): the curriculum schedules, every reward on good and malformed rewrites, the
video-level reward on a tiny backend and judge (caching, failures, per-rank device), recipe checks, and tiny
GRPO runs that resume exactly where they stopped, in any epoch and on two processes."""

import json
import logging
import math
import os
from pathlib import Path

import pytest
import torch

from conftest import REPO
from phyprompt.judges import Answer
from phyprompt.language.contract import format_output
from phyprompt_toy_backend import write_toy_model
from phyprompt_toy_judge import write_toy_judge
from support.tiny_refiner import build_tokenizer
from train.curriculum import SCHEDULES, CurriculumCallback, sa_weight
from train.grpo import main as grpo_main
from train.grpo import parse, prompt_rows
from train.rewards import MINIMUM, REWARDS, RewardArguments, build_reward
from train.rewards import video as video_rewards
from train.rewards.options import rank_device, unit_score
from train.stages import TrainingSetupError

GOOD = format_output("Gravity pulls the ball down; friction and the floor's elasticity decide each bounce.",
                     "A red ball falls under gravity, bounces on the wooden floor with decreasing height as each "
                     "impact drains its energy, and rolls to a stop.")
MALFORMED = "Sure! Here is a nicer prompt: a red ball bounces."
ORIGINAL = "a red ball bounces on the floor"
GRPO_RECIPES = sorted((REPO / "train" / "recipes").glob("*-grpo*.yaml"))


# --- curriculum ---------------------------------------------------------------------------------

def test_the_paper_schedule_moves_from_semantics_to_physics():
    assert sa_weight("exp", 0, 30, alpha=3.0) == 1.0
    assert sa_weight("exp", 15, 30, alpha=3.0) == pytest.approx(math.exp(-1.5))
    assert sa_weight("exp", 30, 30, alpha=3.0) == pytest.approx(math.exp(-3.0))


@pytest.mark.parametrize("schedule, start, middle, end", [
    ("linear", 1.0, 0.5, 0.0), ("cosine", 1.0, 0.5, 0.0), ("step", 1.0, 0.0, 0.0),
    ("static", 0.5, 0.5, 0.5), ("sa_only", 1.0, 1.0, 1.0), ("pc_only", 0.0, 0.0, 0.0),
])
def test_every_schedule(schedule, start, middle, end):
    assert [sa_weight(schedule, t, 10) for t in (0, 5, 10)] == pytest.approx([start, middle, end])


def test_an_unknown_schedule_is_refused_before_training():
    assert set(SCHEDULES) == {"exp", "linear", "cosine", "step", "static", "sa_only", "pc_only"}
    with pytest.raises(ValueError, match="unknown curriculum 'warp'"):
        CurriculumCallback(0, 1, "warp")


# --- text-level rewards ---------------------------------------------------------------------------

def score(name, completions, options=None, **columns):
    reward = build_reward(name, options or RewardArguments())
    assert reward.__name__ == name
    return reward([ORIGINAL] * len(completions), completions, **columns)


def test_format_and_budget_rewards():
    assert score("format", [GOOD, MALFORMED]) == [1.0, MINIMUM]
    long = format_output("Gravity.", " ".join(["a red ball bounces on the wooden floor"] * 20))
    budget = score("budget", [GOOD, long, MALFORMED], target=["lavie"] * 3)
    assert budget[0] == 1.0 and 0 < budget[1] < 1 and budget[2] == MINIMUM
    # trl passes conversational completions as message lists
    assert score("format", [[{"role": "assistant", "content": GOOD}]]) == [1.0]


def test_the_physics_proxy_counts_distinct_terms():
    plain = format_output("It moves.", "A red ball on a floor.")
    assert score("physics", [GOOD, plain, MALFORMED]) == [1.0, 0.0, MINIMUM]
    half = format_output("x", "Gravity holds it; gravity again.")
    assert score("physics", [half], RewardArguments(physics_terms=2)) == [0.5]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A tiny random BERT sentence encoder, saved as a model folder."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("encoder")
    tokenizer = build_tokenizer(None)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return str(folder)


def test_the_semantic_reward_prefers_a_rewrite_that_keeps_the_prompt(encoder_dir):
    options = RewardArguments(semantic_encoder=encoder_dir)
    same = format_output("x", ORIGINAL)
    other = format_output("x", "snow falls slowly over a quiet mountain village at night")
    kept, changed, malformed = score("semantic", [same, other, MALFORMED], options, original_prompt=[ORIGINAL] * 3)
    assert kept == pytest.approx(1.0, abs=1e-5) and 0 <= changed < kept and malformed == MINIMUM


def test_format_eval_scores_answers_as_grpo_does(encoder_dir):
    from train.format_eval import text_scores

    kept = format_output("x", ORIGINAL + ", the ball bounces and rolls to rest")
    answers = [{"original": ORIGINAL, "raw": kept}, {"original": ORIGINAL, "raw": MALFORMED}]
    scores = text_scores(answers, RewardArguments(semantic_encoder=encoder_dir, physics_terms=3))
    semantic, = score("semantic", [kept], RewardArguments(semantic_encoder=encoder_dir), original_prompt=[ORIGINAL])
    assert scores["semantic"] == pytest.approx((semantic + MINIMUM) / 2)
    assert scores["physics"] == pytest.approx((1.0 + MINIMUM) / 2)  # bounce, roll, to rest: 3 of 3 terms


def test_a_missing_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a model folder"):
        build_reward("semantic", RewardArguments(semantic_encoder=str(tmp_path)))


# --- the video-level reward ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def video_options(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-reward")
    return dict(video_backend="toy", video_model=write_toy_model(root / "toy"), judge=write_toy_judge(root / "judge"),
                render_frames=4, render_width=16, render_height=16, reward_cache_dir=str(root / "cache"))


def test_the_video_reward_renders_judges_and_caches(video_options, tmp_path):
    options = RewardArguments(**video_options | {"reward_cache_dir": str(tmp_path / "cache")})
    sa, pc = build_reward("video_sa", options), build_reward("video_pc", options)
    completions = [GOOD, MALFORMED, format_output("x", "A blue cube slides across ice.")]
    columns = dict(original_prompt=[ORIGINAL] * 3)
    sa_scores, pc_scores = sa([""] * 3, completions, **columns), pc([""] * 3, completions, **columns)
    scorer = video_rewards.scorer(options)
    assert scorer.renders == 2  # the malformed rewrite is never rendered; the PC pass rendered nothing more
    assert sa_scores[1] == pc_scores[1] == MINIMUM
    assert all(0 <= s <= 1 for s in sa_scores + pc_scores)
    # another process (a new scorer) with the same settings: everything comes from the cache
    again = RewardArguments(**video_options | {"reward_cache_dir": str(tmp_path / "cache")})
    assert build_reward("video_sa", again)([""] * 3, completions, **columns) == sa_scores
    assert video_rewards.scorer(again).renders == 0
    # the SA question is asked about the user's original prompt: another caption, other scores
    other = build_reward("video_sa", again)([""] * 3, completions, original_prompt=["snow on a roof"] * 3)
    assert other[0] != sa_scores[0]


def test_a_step_renders_as_one_batch_and_judges_in_one_call(video_options, tmp_path, monkeypatch):
    from phyprompt_toy_backend import ToyBackend
    from phyprompt_toy_judge import ToyJudge

    options = RewardArguments(**video_options | {"reward_cache_dir": str(tmp_path / "cache")})
    reward = build_reward("video_sa", options)
    scorer = video_rewards.scorer(options)
    batches, judged = [], []
    real_batch, real_judge = ToyBackend.sample_batch, ToyJudge.judge
    monkeypatch.setattr(ToyBackend, "sample_batch", lambda self, requests: batches.append(len(requests)) or
                        real_batch(self, requests))
    monkeypatch.setattr(ToyJudge, "judge", lambda self, videos, captions, **kw: judged.append(len(videos)) or
                        real_judge(self, videos, captions, **kw))
    same = format_output("x", "A blue cube slides across ice.")
    completions = [GOOD, same, MALFORMED, same, format_output("x", "Snow slides off a warm roof.")]
    reward([""] * 5, completions, original_prompt=[ORIGINAL] * 5)
    assert batches == [3] and scorer.renders == 3  # the same rewrite twice is rendered once
    assert judged == [3]  # one (video, caption) per parsed rewrite, each judged once
    # the models stay loaded for the next step: nothing is loaded again
    loads = []
    monkeypatch.setattr(ToyBackend, "load", classmethod(lambda cls, *a, **k: loads.append(a)))
    reward([""] * 2, [format_output("x", "A red ball rolls downhill."), GOOD], original_prompt=["a ball"] * 2)
    assert batches == [3, 1] and loads == []


def test_a_failing_render_or_judgement_gets_the_minimum_and_training_goes_on(video_options, tmp_path, caplog,
                                                                             monkeypatch):
    from phyprompt_toy_backend import ToyBackend
    from phyprompt_toy_judge import ToyJudge

    options = RewardArguments(**video_options | {"reward_cache_dir": str(tmp_path / "cache")})
    reward = build_reward("video_pc", options)
    scorer = video_rewards.scorer(options)
    real_sample, real_judge = ToyBackend.sample, ToyJudge.judge

    def flaky_render(self, request, progress=None):
        if "cube" in request.prompt:
            raise TimeoutError("the render took too long")
        return real_sample(self, request, progress)

    def flaky_judge(self, videos, captions, **options):
        if "snow" in captions:
            raise RuntimeError("the judge ran out of memory")
        return real_judge(self, videos, captions, **options)

    monkeypatch.setattr(ToyBackend, "sample", flaky_render)
    monkeypatch.setattr(ToyJudge, "judge", flaky_judge)
    completions = [format_output("x", "A blue cube slides."), GOOD, format_output("x", "Snow falls on a roof.")]
    with caplog.at_level(logging.WARNING):
        scores = reward([""] * 3, completions, original_prompt=[ORIGINAL, ORIGINAL, "snow"])
    assert scores[0] == MINIMUM and scores[1] > MINIMUM and scores[2] == MINIMUM
    assert "the render took too long" in caplog.text and "the judge ran out of memory" in caplog.text
    assert scorer.renders == 2


def test_cogvideox_renders_a_batch_as_it_renders_each_alone(tmp_path):
    from phyprompt.video import SampleRequest, load_backend
    from support.tiny_cogvideox import write_tiny_cogvideox

    backend = load_backend("cogvideox", write_tiny_cogvideox(tmp_path / "cogvideox"), device="cpu")
    settings = dict(steps=2, frames=9, width=32, height=32)
    requests = [SampleRequest(prompt="a ball falls", seed=1, **settings),
                SampleRequest(prompt="ice melts on a stove", seed=2, **settings)]
    together = backend.sample_batch(requests)
    alone = [backend.sample(request) for request in requests]
    for a, b in zip(together, alone):
        assert a.frames.shape == b.frames.shape
        torch.testing.assert_close(a.frames, b.frames, atol=1e-4, rtol=0)
    assert not torch.equal(together[0].frames, together[1].frames)


def test_an_unreadable_judge_answer_is_the_lowest_score():
    from dataclasses import asdict

    assert video_rewards._unit(asdict(Answer(score=0, expected=None, text="I cannot tell"))) == 0.0
    assert video_rewards._unit(asdict(Answer(score=5, expected=None, text="5"))) == 1.0
    assert video_rewards._unit(asdict(Answer(score=3, expected=3.5, text="3"))) == pytest.approx(0.625)


def test_the_video_reward_caches_videos_with_the_8bit_levels_the_backend_describes(video_options, tmp_path,
                                                                                    monkeypatch):
    from phyprompt.video import backend_info, writer

    conversions, write_video = [], writer.write_video

    def recorded(frames, fps, path, **options):
        conversions.append(options.get("eight_bit"))
        return write_video(frames, fps, path, **options)

    monkeypatch.setattr(writer, "write_video", recorded)
    options = RewardArguments(**video_options | {"reward_cache_dir": str(tmp_path)})
    build_reward("video_sa", options)([""], [GOOD], original_prompt=[ORIGINAL])
    assert conversions == [backend_info("toy").eight_bit]  # the toy's "original" truncates


def test_each_rank_renders_on_its_own_gpu(video_options, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert rank_device() == "cuda:3"
    scorer = video_rewards.VideoScorer(RewardArguments(**video_options))
    assert scorer.backend_spec.device == "cuda:3"


def test_a_video_model_that_does_not_load_stops_training(video_options, tmp_path):
    from phyprompt.video.backend import VideoModelError

    options = RewardArguments(**video_options | {"video_model": str(tmp_path / "missing.safetensors"),
                                                 "reward_cache_dir": str(tmp_path / "cache")})
    with pytest.raises(VideoModelError, match="not found"):
        build_reward("video_sa", options)([""], [GOOD], original_prompt=[ORIGINAL])


def test_the_video_reward_needs_its_models():
    with pytest.raises(ValueError, match="needs video_model"):
        build_reward("video_sa", RewardArguments(judge="x"))


# --- the LLM-judged physics reward ------------------------------------------------------------------

@pytest.fixture(scope="module")
def scripted_judge_dir(tmp_path_factory):
    """A tiny chat LM that rates everything "4", with ANSWER_LOGITS over "1".."5"."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from support.tiny_refiner import write_tiny_refiner
    from support.tiny_vlm import script_answer

    folder = write_tiny_refiner(tmp_path_factory.mktemp("models") / "judge", hidden_size=64,
                                tie_word_embeddings=False)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    script_answer(model, tokenizer)
    model.save_pretrained(folder)
    return folder


def test_a_local_llm_judges_the_physics_of_each_parsed_rewrite(scripted_judge_dir):
    from support.tiny_vlm import expected_answer

    scores = score("physics_judge", [GOOD, MALFORMED, GOOD], RewardArguments(physics_judge=scripted_judge_dir))
    assert scores[1] == MINIMUM
    assert scores[0] == scores[2] == pytest.approx(unit_score(expected_answer()), abs=1e-4)
    assert scores[0] != unit_score(4)  # the continuous score, not the integer


def judge_on(server, **options):
    return RewardArguments(physics_judge=server.url, physics_judge_model="judge", **options)


def test_a_judge_on_a_server_is_asked_once_per_rewrite_with_the_prompt():
    from support.chat_server import ChatServer, answer

    tops = [{"4": math.log(0.6), "3": math.log(0.3), "5": math.log(0.1)}]
    server = ChatServer(answer("4", top_logprobs=tops), answer("Rating: 4"))
    try:
        scores = score("physics_judge", [GOOD, MALFORMED], judge_on(server))
        plain = score("physics_judge", [GOOD], judge_on(server, physics_judge_logprobs=False))
    finally:
        server.close()
    assert scores == [pytest.approx(unit_score(0.6 * 4 + 0.3 * 3 + 0.1 * 5)), MINIMUM]
    assert plain == [pytest.approx(unit_score(4))]
    bodies = server.bodies()
    assert len(bodies) == 2 and "bounces on the wooden floor" in bodies[0]["messages"][-1]["content"]
    assert bodies[0]["temperature"] == 0.0 and bodies[0]["top_logprobs"] and "logprobs" not in bodies[1]


def test_a_judge_without_a_score_or_a_failing_server_gives_the_minimum(caplog):
    from support.chat_server import ChatServer, answer, status

    server = ChatServer(answer("I would not like to say."), status(401, {"error": {"message": "bad key"}}))
    try:
        with caplog.at_level(logging.WARNING):
            reward = build_reward("physics_judge", judge_on(server))
            unreadable = reward([ORIGINAL], [GOOD], original_prompt=[ORIGINAL])
            failed = reward([ORIGINAL] * 2, [GOOD, GOOD], original_prompt=[ORIGINAL] * 2)
    finally:
        server.close()
    assert unreadable == [MINIMUM] and failed == [MINIMUM, MINIMUM]
    assert "gave no score" in caplog.text and "the 2 rewrites of this batch get the minimum" in caplog.text


def test_the_physics_judge_needs_a_model(tmp_path):
    with pytest.raises(ValueError, match="needs physics_judge"):
        build_reward("physics_judge", RewardArguments())
    with pytest.raises(ValueError, match="physics_judge_model"):
        build_reward("physics_judge", RewardArguments(physics_judge="http://127.0.0.1:9/v1"))
    with pytest.raises(ValueError, match="missing"):
        build_reward("physics_judge", RewardArguments(physics_judge=str(tmp_path / "missing")))


# --- recipes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("recipe", GRPO_RECIPES, ids=lambda p: p.name)
def test_shipped_grpo_recipes_parse_with_the_paper_settings(recipe):
    data_args, rewards, curriculum, training_args, model_args, _ = parse(
        ["--config", str(recipe), "--bf16", "false", "--use_cpu", "true"])
    assert training_args.num_generations == 4 and training_args.epsilon == 0.2 and training_args.beta > 0
    assert training_args.scale_rewards == "none" and curriculum.curriculum == "exp"
    assert set(rewards.rewards) <= set(REWARDS.names()) and model_args.use_peft
    assert {curriculum.curriculum_sa, curriculum.curriculum_pc} <= set(rewards.rewards)


@pytest.mark.parametrize("options, message", [
    (["--per_device_train_batch_size", "3"], "must be divisible by num_generations"),
    (["--rewards", "format", "sparkle"], "unknown reward 'sparkle'"),
    (["--curriculum_pc", "video_pc"], "curriculum_pc is 'video_pc', which is not among"),
    (["--reward_weights", "1", "1"], "reward_weights has 2 values for 4 rewards"),
])
def test_bad_recipes_fail_before_any_model_loads(options, message):
    with pytest.raises(TrainingSetupError, match=message):
        parse(["--config", str(REPO / "train/recipes/smollm2-135m-grpo-cpu.yaml"), *options])


def test_a_missing_sft_checkpoint_is_one_clear_error(tiny_refiner_dir, tmp_path, capsys):
    status = grpo_main(["--config", str(REPO / "train/recipes/smollm2-135m-grpo-cpu.yaml"),
                        "--model_name_or_path", tiny_refiner_dir, "--sft_adapter", str(tmp_path / "nothing"),
                        "--output_dir", str(tmp_path / "out"), "--rewards", "format", "budget", "physics", "semantic",
                        "--semantic_encoder", str(tmp_path)])
    error = capsys.readouterr().err
    assert status == 1 and "train.grpo: error:" in error and "nothing" in error


# --- a tiny run, stopped and resumed --------------------------------------------------------------

def run_grpo(output_dir, model, encoder, adapter=None, steps_before_stop=None):
    from transformers import TrainerCallback

    from train.grpo import run

    class StopAt(TrainerCallback):  # a run killed right after a checkpoint
        def on_save(self, args, state, control, **kwargs):
            if steps_before_stop is not None and state.global_step >= steps_before_stop:
                control.should_training_stop = True

    configs = parse([
        "--config", str(REPO / "train/recipes/smollm2-135m-grpo-cpu.yaml"), "--model_name_or_path", model,
        "--sft_adapter", adapter or "", "--semantic_encoder", encoder, "--output_dir", str(output_dir),
        "--max_steps", "4", "--per_device_train_batch_size", "4", "--max_completion_length", "48",
        "--save_steps", "2", "--learning_rate", "1e-3", "--train_files", str(REPO / "train/data/seed_mechanics.jsonl"),
    ])
    run(*configs, callbacks=[StopAt()])
    state = output_dir / "checkpoint-4" / "trainer_state.json"
    return json.loads(state.read_text()) if state.is_file() else None


def adapter_weights(folder):
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "adapter_model.safetensors"))


def test_the_policy_can_start_from_a_base_and_its_sft_adapter(tiny_refiner_dir, tiny_adapter_dir, encoder_dir,
                                                                tmp_path):
    state = run_grpo(tmp_path / "run", tiny_refiner_dir, encoder_dir, adapter=tiny_adapter_dir)
    assert state["global_step"] == 4
    manifest = json.loads((tmp_path / "run" / "phyprompt_training.json").read_text())
    assert manifest["starts_from"] == tiny_adapter_dir

    # exported, it is base + the SFT adapter + this run's adapter, merged, and the refiner loads it as is
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from phyprompt.refiners.local import LocalRefiner
    from train.export import export

    out = export(str(tmp_path / "run"), str(tmp_path / "exported"), dtype="fp32")
    expected = AutoModelForCausalLM.from_pretrained(tiny_refiner_dir, dtype=torch.float32)
    expected = PeftModel.from_pretrained(expected, tiny_adapter_dir).merge_and_unload()
    expected = PeftModel.from_pretrained(expected, str(tmp_path / "run")).merge_and_unload().state_dict()
    exported = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).state_dict()
    assert all(torch.allclose(exported[k], expected[k], atol=1e-6) for k in expected)
    card = (out / "README.md").read_text()
    assert "Stage 2 (GRPO)" in card and "Curriculum: exp from semantic to physics" in card
    assert LocalRefiner.load(str(out), device="cpu").refine("a ball rolls", max_new_tokens=4)[0].prompt

    # kept as an adapter, the two adapters become one (ranks stacked) that merges into the same weights
    kept = export(str(tmp_path / "run"), str(tmp_path / "kept"), keep_adapter=True)
    config = json.loads((kept / "adapter_config.json").read_text())
    ranks = [json.loads((Path(folder) / "adapter_config.json").read_text())["r"]
             for folder in (tmp_path / "run", tiny_adapter_dir)]
    assert config["r"] == config["lora_alpha"] == sum(ranks)
    one = AutoModelForCausalLM.from_pretrained(tiny_refiner_dir, dtype=torch.float32)
    one = PeftModel.from_pretrained(one, str(kept)).merge_and_unload().state_dict()
    assert all(torch.allclose(one[k], expected[k], atol=1e-6) for k in expected)


def test_two_adapters_stack_into_one_that_merges_to_the_same_weights(tiny_refiner_dir, tiny_adapter_dir, tmp_path):
    """Other ranks, alphas and modules on each side: the stacked adapter is the two merged one after the other."""
    from peft import PeftModel
    from support.tiny_refiner import write_tiny_adapter
    from transformers import AutoModelForCausalLM

    from train.export import ExportError, _stacked_adapter, _write_adapter

    second = write_tiny_adapter(tiny_refiner_dir, tmp_path / "second", seed=2, r=2, lora_alpha=3,
                                target_modules=["q_proj", "o_proj"])
    config, tensors = _stacked_adapter(tiny_adapter_dir, second)
    (tmp_path / "stacked").mkdir()
    _write_adapter(config, tensors, tmp_path / "stacked", None)
    assert config["r"] == config["lora_alpha"] == 6 and set(config["target_modules"]) == {"q_proj", "v_proj", "o_proj"}

    def merged(*adapters):
        model = AutoModelForCausalLM.from_pretrained(tiny_refiner_dir, dtype=torch.float32)
        for adapter in adapters:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        return model.state_dict()

    expected, stacked = merged(tiny_adapter_dir, second), merged(str(tmp_path / "stacked"))
    first_only = merged(tiny_adapter_dir)
    assert all(torch.allclose(stacked[k], expected[k], atol=1e-5) for k in expected)
    assert not all(torch.allclose(expected[k], first_only[k], atol=1e-3) for k in expected)  # the second one counts

    dora = json.loads((Path(second) / "adapter_config.json").read_text()) | {"use_dora": True}
    (Path(second) / "adapter_config.json").write_text(json.dumps(dora))
    with pytest.raises(ExportError, match=r"not a plain LoRA adapter \(use_dora\)"):
        _stacked_adapter(tiny_adapter_dir, second)


def test_a_stopped_run_resumes_exactly_like_an_uninterrupted_one(trained_refiner_dir, encoder_dir, tmp_path):
    whole = run_grpo(tmp_path / "whole", trained_refiner_dir, encoder_dir)
    run_grpo(tmp_path / "parts", trained_refiner_dir, encoder_dir, steps_before_stop=2)
    assert not os.path.isdir(tmp_path / "parts" / "checkpoint-4")
    parts = run_grpo(tmp_path / "parts", trained_refiner_dir, encoder_dir)  # resumes at step 2
    assert parts["global_step"] == whole["global_step"] == 4
    a, b = adapter_weights(tmp_path / "whole"), adapter_weights(tmp_path / "parts")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logged = [(e["step"], e["curriculum/w_sa"], e["reward"]) for e in whole["log_history"] if "curriculum/w_sa" in e]
    assert [step for step, _, _ in logged] == [1, 2, 3, 4]
    assert all(w == pytest.approx(math.exp(-3.0 * step / 4)) for step, w, _ in logged)
    resumed = [(e["step"], e["curriculum/w_sa"], e["reward"]) for e in parts["log_history"] if "curriculum/w_sa" in e]
    # same completions, rewards and weights, step by step
    assert [step for step, _, _ in resumed] == [1, 2, 3, 4]
    assert [w for _, w, _ in resumed] == pytest.approx([w for _, w, _ in logged])
    assert [r for _, _, r in resumed] == pytest.approx([r for _, _, r in logged])
    assert any(r > 0 for _, _, r in logged)  # the trained tiny refiner writes rewardable answers
    manifest = json.loads((tmp_path / "whole" / "phyprompt_training.json").read_text())
    assert manifest["stage"] == "grpo" and manifest["curriculum"]["schedule"] == "exp"
    assert manifest["rewards"]["semantic"] == "curriculum" and manifest["rewards"]["format"] == 0.5
    assert (tmp_path / "whole" / "rewards.png").is_file()


def three_epochs(folder, prompts):
    """A three-epoch run of the CLI on the first `prompts` seed rows: (the rows, the command for an output
    folder). With seed 0 the first step after each checkpoint in the tests below takes other prompts in
    epoch 1's order than in its own epoch's, so a resume that replays epoch 1's order fails there."""
    rows = [json.loads(line) for line in (REPO / "train/data/seed_mechanics.jsonl").read_text().splitlines()[:prompts]]
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def command(out, model, encoder, *launcher):
        return [*launcher, "-m", "train.grpo", "--config", "train/recipes/smollm2-135m-grpo-cpu.yaml",
                "--model_name_or_path", model, "--sft_adapter", "", "--semantic_encoder", encoder,
                "--train_files", str(data), "--output_dir", str(out), "--max_steps", "-1", "--num_train_epochs", "3",
                "--per_device_train_batch_size", "4", "--max_completion_length", "24", "--learning_rate", "1e-3",
                "--save_steps", "4", "--seed", "0", "--log_completions", "true"]

    return rows, command


def logged_steps(out, rows):
    """Every step as trl logged it: the rows its prompts come from and its rewrites (log_completions), and
    its numbers."""
    import pandas

    rollouts = {}
    for path in (out / "completions").glob("completions_*.parquet"):
        table = pandas.read_parquet(path)
        prompts = [next(i for i, row in enumerate(rows) if row["user_prompt"] in p) for p in table["prompt"]]
        rollouts[int(path.stem.split("_")[1])] = prompts, table["completion"].tolist()
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    numbers = {e["step"]: {k: v for k, v in e.items() if k != "step_time"} for e in history if "reward" in e}
    return rollouts, numbers


def assert_same_steps(resumed, whole, steps, rows):
    (rollouts, numbers), (expected, expected_numbers) = logged_steps(resumed, rows), logged_steps(whole, rows)
    for t in steps:
        assert rollouts[t][0] == expected[t][0], f"step {t}: other prompts"
        assert rollouts[t][1] == expected[t][1], f"step {t}: other rewrites"
        assert numbers[t] == expected_numbers[t], f"step {t}"
    a, b = adapter_weights(whole), adapter_weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run_cli(command):
    import subprocess

    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def test_a_run_killed_in_its_second_and_third_epochs_resumes_bitwise(trained_refiner_dir, encoder_dir, tmp_path):
    """Three epochs of 3 steps (3 prompts, 1 per step), run by the CLI as a user runs it: once through, and
    once killed (SIGKILL) in epoch 2 after checkpoint-4 and in epoch 3 after checkpoint-8, each time started
    again with the same command. Every step's prompts and rewrites, every logged number and the final adapter
    are the uninterrupted run's, bit for bit."""
    import subprocess
    import sys
    import time

    rows, command = three_epochs(tmp_path, 3)

    def train_until_killed(out, checkpoint):
        """Start the command and kill -9 it once `checkpoint` is complete (its trainer_state.json, written
        last, parses), i.e. during the step after it."""
        with open(tmp_path / "killed.log", "w") as log:
            process = subprocess.Popen(command(out, trained_refiner_dir, encoder_dir, sys.executable), cwd=REPO,
                                       stdout=subprocess.DEVNULL, stderr=log)
            try:
                while True:
                    assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                    try:
                        json.loads((out / checkpoint / "trainer_state.json").read_text())
                        break
                    except (OSError, ValueError):
                        time.sleep(0.05)
            finally:
                process.kill()
                process.wait()
        return (tmp_path / "killed.log").read_text()

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_cli(command(whole, trained_refiner_dir, encoder_dir, sys.executable))
    assert "resuming" not in train_until_killed(parts, "checkpoint-4")
    assert f"resuming from {parts / 'checkpoint-4'}" in train_until_killed(parts, "checkpoint-8")
    assert f"resuming from {parts / 'checkpoint-8'}" in run_cli(command(parts, trained_refiner_dir, encoder_dir,
                                                                         sys.executable))

    rollouts, numbers = logged_steps(whole, rows)
    assert sorted(rollouts) == sorted(numbers) == list(range(1, 10))
    orders = [[rollouts[t][0] for t in range(first, first + 3)] for first in (1, 4, 7)]
    assert all(sorted(set(sum(order, []))) == list(range(3)) for order in orders)  # every prompt once an epoch
    assert orders[0] != orders[1] != orders[2]  # in an order of its own
    assert_same_steps(parts, whole, range(1, 10), rows)


def test_two_processes_resume_inside_a_later_epoch_bitwise(trained_refiner_dir, encoder_dir, tmp_path):
    """On two processes (train/accelerate/cpu.yaml) the loader that skips the trained batches of a resumed
    epoch reaches the sampler only through set_sampler (see train.grpo.grpo_trainer). The uninterrupted run's
    checkpoint-4 (epoch 2 of 3 steps of 2 prompts), what a run killed after step 4 leaves, resumed by the
    same command in another output folder trains steps 5-9 as the uninterrupted run did."""
    import shutil
    import sys
    from pathlib import Path

    rows, command = three_epochs(tmp_path, 6)
    launcher = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", "train/accelerate/cpu.yaml"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run_cli(command(whole, trained_refiner_dir, encoder_dir, *launcher))
    shutil.copytree(whole / "checkpoint-4", resumed / "checkpoint-4")
    assert f"resuming from {resumed / 'checkpoint-4'}" in run_cli(command(resumed, trained_refiner_dir, encoder_dir,
                                                                           *launcher))
    rollouts, _ = logged_steps(whole, rows)
    assert [len(set(rollouts[t][0])) for t in range(1, 10)] == [2] * 9  # 2 prompts a step, one on each process
    assert_same_steps(resumed, whole, range(5, 10), rows)


def test_rollout_prompts_are_what_the_refiner_sees(tiny_refiner_dir):
    from transformers import AutoTokenizer

    from phyprompt.language.instruction import build_messages, render_prompt
    from train.data.schema import read_examples

    tokenizer = AutoTokenizer.from_pretrained(tiny_refiner_dir)
    examples = read_examples([str(REPO / "train/data/seed_mechanics.jsonl")]).examples
    rows = prompt_rows(examples + examples[:3], tokenizer)  # duplicates count once
    assert len(rows) == len({(e.user_prompt, e.target) for e in examples})
    first = examples[0]
    assert rows[0] == {"prompt": render_prompt(tokenizer, build_messages(first.user_prompt, first.target)),
                       "original_prompt": first.user_prompt, "target": first.target}


# --- the ablation runner --------------------------------------------------------------------------

def test_the_ablation_trains_each_schedule_in_its_own_folder_and_draws_them(tmp_path):
    from train.ablation import DEFAULT_SCHEDULES, commands, plot_ablation

    runs = commands("recipe.yaml", DEFAULT_SCHEDULES, str(tmp_path), ["--max_steps", "8"])
    assert list(runs) == ["exp", "sa_only", "pc_only", "static"]
    assert runs["pc_only"][-6:] == ["--max_steps", "8", "--curriculum", "pc_only", "--output_dir",
                                    str(tmp_path / "pc_only")]
    history = [{"step": t, "reward": t / 8, "rewards/semantic/mean": 1 - t / 8, "rewards/physics/mean": t / 8}
               for t in range(1, 9)]
    plot_ablation({s: history for s in runs}, "semantic", "physics", str(tmp_path / "ablation.png"))
    assert (tmp_path / "ablation.png").stat().st_size > 10_000


def test_two_cpu_processes_train_together(trained_refiner_dir, encoder_dir, tmp_path):
    """Data parallel on two CPU processes (`accelerate launch` with train/accelerate/cpu.yaml, gloo): each
    rank generates and scores its own rewrites, so a step counts twice the tokens of a single-process step,
    and the run finishes on both ranks."""
    import subprocess
    import sys
    from pathlib import Path

    def train(out, *launcher):
        command = [*launcher, "-m", "train.grpo", "--config", "train/recipes/smollm2-135m-grpo-cpu.yaml",
                   "--model_name_or_path", trained_refiner_dir, "--sft_adapter", "", "--semantic_encoder", encoder_dir,
                   "--output_dir", str(out), "--max_steps", "2", "--max_completion_length", "24", "--save_steps", "2",
                   "--train_files", "train/data/seed_mechanics.jsonl"]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        state = json.loads((out / "trainer_state.json").read_text())
        assert state["global_step"] == 2
        return result.stderr.count("train.grpo: wrote"), [e["num_tokens"] for e in state["log_history"] if "reward" in e]

    ranks, two = train(tmp_path / "two", str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
                       "train/accelerate/cpu.yaml")
    _, one = train(tmp_path / "one", sys.executable)
    assert ranks == 2 and two[0] > one[0]

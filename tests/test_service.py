"""The render-and-judge service: one cache whoever renders (eval, the GRPO video reward), and the same results in
process and on a Ray pool — on a local Ray cluster the tests start on the CPU, with the toy backend and judge
(tests/plugins), whose renders a file-based log and hold reach in the workers' processes."""

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import nullcontext

import pytest
import ray

from conftest import PLUGINS, REPO, TESTS
from phyprompt import cli
from phyprompt.language.contract import format_output
from phyprompt_toy_backend import ToyBackend, write_toy_model
from phyprompt_toy_judge import ToyJudge, write_toy_judge
from train.rewards import RewardArguments, build_reward
from train.rewards import video as video_rewards

CAPTIONS = ["a red ball rolls down a ramp", "water pours into a glass", "a cat jumps onto a table"]
SEEDS = ("--seeds", "0", "1")
VIDEOS = len(CAPTIONS) * 2  # the original prompts, two seeds


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster on two CPUs; its workers find the test plugins and the toy's log and hold files."""
    folder = tmp_path_factory.mktemp("ray")
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS), str(PLUGINS)]),
           "PHYPROMPT_TOY_RENDER_LOG": str(folder / "renders.log"), "PHYPROMPT_TOY_HOLD": str(folder / "hold")}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield {"log": folder / "renders.log", "hold": folder / "hold",
               "address": ray.get_runtime_context().gcs_address, "env": os.environ | env}
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture()
def renders(cluster):
    """The renders finished from here on, in this process and in the workers: [(prompt, seed)]."""
    cluster["log"].write_text("")
    cluster["hold"].unlink(missing_ok=True)
    cluster["hold"].with_name("hold.claimed").unlink(missing_ok=True)

    def finished() -> list[tuple[str, int]]:
        lines = cluster["log"].read_text().splitlines()
        return [(prompt, int(seed)) for prompt, seed in (line.split("\t") for line in lines)]
    return finished


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("service-models")
    prompts = folder / "prompts.txt"
    prompts.write_text("\n".join(CAPTIONS) + "\n")
    return {"toy": write_toy_model(folder / "toy"), "judge": write_toy_judge(folder / "judge"), "prompts": prompts}


def eval_args(models, out, *extra) -> list[str]:
    return ["eval", str(models["prompts"]), "--backend", "toy", models["toy"], "--judge", models["judge"],
            "--device", "cpu", "--out", str(out), "--quiet", "--bootstrap", "200", *SEEDS, *extra]


def evaluate(models, out, *extra, capsys=None) -> tuple[int, str]:
    code = cli.main(eval_args(models, out, *extra))
    return code, (capsys.readouterr().err if capsys else "")


@pytest.fixture(scope="module")
def reference(cluster, models, tmp_path_factory):
    """The in-process run every pool run must equal."""
    out = tmp_path_factory.mktemp("in-process") / "out"
    assert evaluate(models, out)[0] == 0
    return out


def table(out) -> list[dict]:
    """results.csv without its timing columns (what this run's stages cost)."""
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in rows]


def samples(out) -> list[dict]:
    """samples.jsonl, each video named by its cache key (the file's name) rather than its folder."""
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return [line | {"video": os.path.basename(line["video"]) if line["video"] else None} for line in lines]


def same_results(out, reference) -> None:
    assert table(out) == table(reference)
    assert samples(out) == samples(reference)
    assert all(s["sa"] is not None for s in samples(out))


# ------------------------------------------------------------------------------------------- eval

def test_two_workers_give_the_in_process_table(cluster, models, reference, renders, tmp_path, capsys):
    code, err = evaluate(models, tmp_path / "out", "--ray", "--ray-workers", "2", capsys=capsys)
    assert code == 0, err
    same_results(tmp_path / "out", reference)
    assert sorted(renders()) == sorted((c, s) for c in CAPTIONS for s in (0, 1))
    run = json.loads((tmp_path / "out" / "results.json").read_text())["run"]
    assert run["rendered_and_judged"] == "on a Ray pool of 2 workers (1 CPU each)"
    assert run["made_this_run"]["render"] == run["made_this_run"]["judge"] == VIDEOS


def _capture_pool(monkeypatch) -> list:
    from phyprompt.commands import eval as eval_command

    pools, make = [], eval_command._ray_pool
    monkeypatch.setattr(eval_command, "_ray_pool", lambda args: pools.append(make(args)) or pools[-1])
    return pools


def test_a_worker_killed_mid_run_loses_only_its_video(cluster, models, reference, renders, tmp_path, monkeypatch,
                                                       capsys):
    """The first video is held in its worker; when the other worker delivers, the holder is killed (`ray.kill`):
    its video goes to the survivor (which the hold lets through), and the run ends with the same table."""
    from phyprompt.commands import eval as eval_command

    pools, killed = _capture_pool(monkeypatch), []
    held = (CAPTIONS[0], 0)
    cluster["hold"].write_text(f"{held[0]}\t{held[1]}")

    def bars(quiet, description, unit):
        def progress(done, total):
            if killed or not description.startswith("rendering"):
                return
            for actor, batch in pools[0].in_flight.values():
                if any((request.prompt, request.seed) == held for _, request in batch):
                    ray.kill(actor)
                    killed.append(sum(len(b) for a, b in pools[0].in_flight.values() if a == actor))
        return nullcontext(progress)

    monkeypatch.setattr(eval_command, "progress_bar", bars)
    code, err = evaluate(models, tmp_path / "out", "--ray", "--ray-workers", "2", capsys=capsys)
    assert code == 0, err
    assert killed and "a Ray worker" in err and "died" in err
    same_results(tmp_path / "out", reference)
    # every video finished once: the killed worker never finished the held one, the survivor did
    assert sorted(renders()) == sorted((c, s) for c in CAPTIONS for s in (0, 1))
    # renders, those the killed worker had (the held one and one waiting behind it) given again, judgements
    assert pools[0].dispatched == VIDEOS + killed[0] + VIDEOS and killed[0] == 2


def _cached_videos(cache) -> list[tuple[str, int]]:
    """(prompt, seed) of each video in an eval cache (its record is written last)."""
    records = [json.loads(path.read_text()) for path in (cache / "video").rglob("*.json")] if cache.exists() else []
    return [(record["prompt"], record["seed"]) for record in records]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_driver_killed_mid_run_resumes_without_rendering_twice(cluster, models, reference, renders, tmp_path):
    """`phyprompt eval --ray ADDRESS` killed (SIGKILL) while a video is held, then run again: the same table, and
    the second run renders only what the first had not stored in the cache."""
    held = (CAPTIONS[0], 0)
    cluster["hold"].write_text(f"{held[0]}\t{held[1]}")
    command = [sys.executable, "-m", "phyprompt", *eval_args(models, tmp_path / "out", "--ray", cluster["address"],
                                                                 "--ray-workers", "2")]
    driver = subprocess.Popen(command, env=cluster["env"], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    # all but the held video and the one queued behind it on the same worker (ray_pool.CALLS_PER_WORKER),
    # rendered and stored in the cache
    while len(stored := _cached_videos(tmp_path / "out" / "cache")) < VIDEOS - 2:
        assert driver.poll() is None, driver.stderr.read()
        assert time.monotonic() < deadline, "the first run did not render"
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    holder = int(cluster["hold"].with_name("hold.claimed").read_text())
    while _alive(holder):  # Ray stops a dead driver's workers soon, not at once
        assert time.monotonic() < deadline, "the killed driver's worker lives on"
        time.sleep(0.1)
    stored = _cached_videos(tmp_path / "out" / "cache")
    assert held not in stored and set(stored) <= set(renders())
    cluster["hold"].unlink()
    cluster["log"].write_text("")

    code, err = evaluate(models, tmp_path / "out", "--ray", "--ray-workers", "2")
    assert code == 0, err
    # the second run renders exactly what the first had not stored
    assert sorted(renders()) == sorted(set((c, s) for c in CAPTIONS for s in (0, 1)) - set(stored))
    same_results(tmp_path / "out", reference)


def test_an_unreachable_cluster_is_one_clear_error_in_seconds(models, tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "phyprompt", *eval_args(models, tmp_path / "out", "--ray",
                                                                             f"127.0.0.1:{port}")],
                            cwd=REPO, env=os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), str(PLUGINS)])},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and time.monotonic() - began < 60
    assert f"phyprompt eval: error: no Ray cluster answers at 127.0.0.1:{port}" in result.stderr
    assert "ray start --head" in result.stderr
    assert not (tmp_path / "out" / "cache" / "video").exists()


def test_without_ray_installed_only_the_ray_option_asks_for_it(models, renders, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where it is not installed
    code, err = evaluate(models, tmp_path / "ray", "--ray", capsys=capsys)
    assert code == 1 and "needs Ray: pip install 'phyprompt[ray]'" in err and renders() == []
    code, err = evaluate(models, tmp_path / "here", capsys=capsys)
    assert code == 0, err


@pytest.mark.parametrize("extra, message", [
    (("--ray-gpus", "1"), "the Ray cluster has no GPUs (it has 2 CPUs), and each worker asks for 1"),
    (("--ray-workers", "3"), "3 workers with 0 GPU and 1 CPU each do not fit the Ray cluster (0 GPUs, 2 CPUs)"),
])
def test_a_pool_the_cluster_cannot_hold_is_refused_before_any_work(cluster, models, renders, tmp_path, capsys,
                                                                   extra, message):
    code, err = evaluate(models, tmp_path / "out", "--ray", *extra, capsys=capsys)
    assert code == 1 and message in err and renders() == []


def test_a_backend_placed_on_a_gpu_on_a_cluster_without_one_is_refused(cluster, models, renders, tmp_path, capsys):
    args = eval_args(models, tmp_path / "out", "--ray")
    args[args.index("--device") + 1] = "cuda"
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 1 and "placed on cuda, but the pool's workers have no GPU" in err and renders() == []


def test_a_model_a_worker_cannot_load_is_one_error_before_any_work(cluster, models, renders, tmp_path, capsys):
    broken = tmp_path / "broken.toy.safetensors"
    broken.write_bytes(b"not a safetensors file")
    args = eval_args(models, tmp_path / "out", "--ray", "--ray-workers", "2")
    args[args.index("--backend") + 2] = str(broken)
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 1 and "phyprompt eval: error: on the Ray worker at " in err and renders() == []
    assert err.count("error:") == 1


def test_pools_sharing_a_cluster_split_it_and_a_pool_with_no_room_says_so(cluster, models, renders, monkeypatch):
    """The default size is the cluster's share of each pool (one per training process); a pool whose workers
    the cluster cannot place (another holds its CPUs) is a ClusterError, not a wait for ever."""
    from phyprompt.service import ray_pool
    from phyprompt.video.backend import SampleRequest
    from phyprompt.video.spec import BackendSpec

    assert ray_pool.RayPool().size == 2 and ray_pool.RayPool(sharing=2).size == 1
    spec = BackendSpec.build("toy", models["toy"], device="cpu")
    jobs = [("a", SampleRequest(prompt="a ball", seed=0, frames=2)), ("b", SampleRequest(prompt="a cup", seed=0,
                                                                                         frames=2))]
    first = ray_pool.RayPool(workers=2)
    try:
        assert sorted(k for k, _ in first.render(spec, jobs, 1)) == ["a", "b"]  # holds both CPUs, kept loaded
        monkeypatch.setattr(ray_pool, "PLACE_SECONDS", 3.0)
        second = ray_pool.RayPool(workers=1)
        with pytest.raises(ray_pool.ClusterError, match="placed no worker in 3 s: .*free now: 0 GPUs, 0 CPUs"):
            list(second.render(spec, jobs, 1))
        assert len(renders()) == 2
    finally:
        first.close()


# --------------------------------------------------------------------------- the GRPO video reward

REWRITES = [format_output("x", "A red ball rolls down a ramp, pulled by gravity."), "no answer here",
            format_output("x", "Water pours into a glass and its level rises."),
            format_output("x", "A red ball rolls down a ramp, pulled by gravity.")]
ORIGINALS = ["a red ball rolls down a ramp"] * 2 + ["water pours into a glass"] * 2


def reward_options(models, cache, **extra) -> RewardArguments:
    return RewardArguments(video_backend="toy", video_model=models["toy"], judge=models["judge"], render_frames=4,
                           render_width=16, render_height=16, reward_cache_dir=str(cache), **extra)


def test_a_video_rendered_for_the_reward_is_an_eval_cache_hit_and_back(models, renders, tmp_path, capsys):
    cache = tmp_path / "cache"
    prompt = "A red ball rolls down a ramp, pulled by gravity."
    build_reward("video_sa", reward_options(models, cache))([""], [format_output("x", prompt)],
                                                           original_prompt=["a red ball rolls down a ramp"])
    assert renders() == [(prompt, 0)]
    listed = tmp_path / "rewrites.txt"
    listed.write_text(prompt + "\nA glass fills with water from a jug.\n")
    args = ["eval", str(listed), "--backend", "toy", models["toy"], "--judge", models["judge"], "--device", "cpu",
            "--out", str(tmp_path / "out"), "--cache", str(cache), "--quiet", "--bootstrap", "50",
            "--frames", "4", "--size", "16x16"]
    assert cli.main(args) == 0, capsys.readouterr().err
    assert renders() == [(prompt, 0), ("A glass fills with water from a jug.", 0)]  # the reward's video was a hit
    again = reward_options(models, cache)
    build_reward("video_pc", again)([""], [format_output("x", "A glass fills with water from a jug.")],
                                    original_prompt=["water pours into a glass"])
    assert video_rewards.scorer(again).renders == 0 and len(renders()) == 2  # and eval's is the reward's


def test_the_reward_on_the_pool_equals_the_reward_in_process(cluster, models, renders, tmp_path, monkeypatch):
    def loads(*args, **kwargs):
        raise AssertionError("the trainer's process loaded a model")

    in_process = build_reward("video_sa", reward_options(models, tmp_path / "here"))(
        [""] * 4, REWRITES, original_prompt=ORIGINALS)
    monkeypatch.setattr(ToyBackend, "load", classmethod(loads))
    monkeypatch.setattr(ToyJudge, "load", classmethod(loads))
    options = reward_options(models, tmp_path / "pool", video_service="auto", video_workers=2)
    on_pool = build_reward("video_sa", options)([""] * 4, REWRITES, original_prompt=ORIGINALS)
    assert on_pool == in_process and on_pool[1] == 0.0 and on_pool[0] > 0
    video_rewards.scorer(options).service.close()


def test_two_grpo_steps_with_the_pool(cluster, models, trained_refiner_dir, renders, tmp_path, monkeypatch):
    """GRPO with the video rewards on a two-worker pool: the trainer never loads the video model or the judge,
    and every step's rewards are those the in-process reward gives the same completions."""
    from train.grpo import parse, run

    asked = []
    scores = video_rewards.VideoScorer.scores

    def recorded(self, originals, completions):
        results = scores(self, originals, completions)
        if not asked or asked[-1][:2] != (list(originals), list(completions)):  # video_pc re-reads video_sa's
            asked.append((list(originals), list(completions), results))
        return results

    def loads(*args, **kwargs):
        raise AssertionError("the trainer's process loaded a model")

    monkeypatch.setattr(video_rewards.VideoScorer, "scores", recorded)
    monkeypatch.setattr(ToyBackend, "load", classmethod(loads))
    monkeypatch.setattr(ToyJudge, "load", classmethod(loads))
    configs = parse([
        "--config", str(REPO / "train/recipes/smollm2-135m-grpo-cpu.yaml"), "--model_name_or_path",
        trained_refiner_dir, "--sft_adapter", "", "--output_dir", str(tmp_path / "run"),
        "--rewards", "format", "video_sa", "video_pc", "--reward_weights", "0.5", "1.0", "1.0",
        "--curriculum_sa", "video_sa", "--curriculum_pc", "video_pc",
        "--video_backend", "toy", "--video_model", models["toy"], "--judge", models["judge"],
        "--render_frames", "4", "--render_width", "16", "--render_height", "16",
        "--reward_cache_dir", str(tmp_path / "pool-cache"), "--video_service", "auto", "--video_workers", "2",
        "--max_steps", "2", "--per_device_train_batch_size", "4", "--max_completion_length", "48",
        "--save_steps", "2", "--train_files", str(REPO / "train/data/seed_mechanics.jsonl"),
    ])
    run(*configs)
    monkeypatch.undo()
    assert len(asked) == 2  # one batch per step
    assert any(result is not None for _, _, results in asked for result in results)
    here = video_rewards.VideoScorer(reward_options(models, tmp_path / "in-process-cache"))
    for originals, completions, results in asked:
        assert here.scores(originals, completions) == results

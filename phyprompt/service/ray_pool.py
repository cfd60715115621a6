"""The Ray executor: a pool of workers anywhere in a Ray cluster, each holding a video backend and a judge
loaded across calls, fed batches as they free up.

Why Ray Core actors (not Ray Data or Ray Serve): both callers hand the service a finite list of work that the
cache has already filtered — an evaluation's missing videos, a GRPO step's G×B rewrites — and want each result
the moment it exists, so it can be cached. Actors keep a 5B video model and a 7B judge loaded between a
trainer's steps (a Ray Data pipeline is built per call and would load them again); they need no HTTP layer,
replicas or autoscaling (Ray Serve's business); and a plain loop over `ray.wait` gives exactly the two
behaviours the service promises: a batch whose worker died goes to the others, and a cancel kills the work in
flight. verl and OpenRLHF run their rollout and reward workers as actor pools for the same reasons.

Where things live: every worker needs the models at the same path (a shared disk, or a copy per node) and
phyprompt installed (with any plugin kinds); the cache stays with the caller — workers send each video back as
its mp4 file's bytes and receive the files they judge, so the cache needs no shared disk.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..judges.spec import JudgeSpec
from ..video.backend import SampleRequest, VideoSettingsError
from ..video.spec import BackendSpec
from .work import Failed, Held, batches, encode, judge_batch, render_batch

#: how long to wait for a cluster's address to answer before saying it does not (Ray itself waits minutes)
CONNECT_SECONDS = 5.0
#: how long workers may wait for the cluster to place them (free GPUs/CPUs) before that is an error
PLACE_SECONDS = 300.0
#: calls in flight per worker: one on the model, the next waiting for it (while the last one's videos encode)
CALLS_PER_WORKER = 2


class ClusterError(RuntimeError):
    """The cluster cannot do the work: not reachable, too small, without GPUs, or every worker died."""


def connect(address: str | None = "auto"):
    """Ray, connected: to `address` (host:port of a cluster's head, or ray://host:port for Ray Client), or for
    "auto"/None to the cluster RAY_ADDRESS names or this machine runs (`ray start --head`), else a new one on
    this machine. A process already connected (a test, a notebook) stays as it is."""
    try:
        import ray
    except ImportError:
        raise ImportError("running on a Ray cluster needs Ray: pip install 'phyprompt[ray]' (or 'ray[default]')") \
            from None
    if ray.is_initialized():
        return ray
    if address not in (None, "auto"):
        _answers(address)
    import logging

    ray.init(address=None if address == "auto" else address, namespace="phyprompt", logging_level=logging.WARNING)
    return ray


def _answers(address: str) -> None:
    """A ClusterError in seconds when nothing listens at `address` (ray.init would retry for minutes)."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if not (host and port.isdigit()):
        raise ClusterError(f"a Ray cluster's address is HOST:PORT (the head's, e.g. 10.0.0.5:6379) or auto, "
                           f"not {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise ClusterError(f"no Ray cluster answers at {address} ({error.strerror or error}): start one there "
                           "with `ray start --head --port PORT`, or give the address `ray start --head` printed") \
            from None


class Worker:
    """One worker of the pool (a Ray actor with two calls at a time): holds at most one backend and one judge,
    loaded on first use and kept until a call names another. The model runs one call at a time; a video is
    encoded outside that lock, so the next batch renders while the last one encodes (as in process)."""

    def __init__(self):
        from ..infra.console import quiet_libraries

        quiet_libraries()  # a worker's loading bars would interleave in the driver's terminal
        self.held = Held()
        self.model_lock = threading.Lock()

    def where(self) -> str:
        import ray

        gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
        return socket.gethostname() + (f" (GPU {','.join(map(str, gpus))})" if gpus else "")

    def open(self, family: str, spec, probe: SampleRequest | None = None) -> None:
        """Load `spec` (and check the run's settings on a backend) now."""
        with self.model_lock:
            model = self.held.get(family, spec)
            if probe is not None:
                model.settings(probe)

    def render(self, spec: BackendSpec, requests: list[SampleRequest]) -> list:
        with self.model_lock:
            model = self.held.get("backend", spec)
            videos, seconds = render_batch(model, requests)
        return [video if isinstance(video, Failed) else encode(model, request, video, seconds)
                for request, video in zip(requests, videos)]

    def judge(self, spec: JudgeSpec, videos: list[tuple[bytes, str, str]], batch_size: int) -> list:
        """Score record (or Failed) per (file bytes, suffix, caption)."""
        with tempfile.TemporaryDirectory(prefix="phyprompt-judge-") as folder:
            paths = []
            for i, (data, suffix, _) in enumerate(videos):
                path = Path(folder) / f"{i}{suffix}"
                path.write_bytes(data)
                paths.append(str(path))
            with self.model_lock:
                judge = self.held.get("judge", spec)
                return judge_batch(judge, paths, [caption for _, _, caption in videos], batch_size)


class RayPool:
    """`workers` workers on the cluster at `address` (see `connect`), each with `gpus_per_worker` GPUs (a
    fraction shares one; default: 1 when the cluster has GPUs, else the workers run on CPUs) and
    `cpus_per_worker` CPUs. `workers` defaults to as many as the cluster's GPUs (or CPUs) hold, divided among
    the `sharing` pools that use the cluster at once (one per training process). Workers start on first use
    and stay until `close` (or the end of this process)."""

    def __init__(self, address: str | None = "auto", *, workers: int | None = None,
                 gpus_per_worker: float | None = None, cpus_per_worker: float = 1.0, sharing: int = 1,
                 warn: Callable[[str], None] = lambda message: None):
        self.ray = connect(address)
        self.warn = warn
        resources = self.ray.cluster_resources()
        gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
        self.gpus_per_worker = (1.0 if gpus else 0.0) if gpus_per_worker is None else float(gpus_per_worker)
        self.cpus_per_worker = float(cpus_per_worker)
        if self.gpus_per_worker and not gpus:
            raise ClusterError(f"the Ray cluster has no GPUs (it has {cpus:g} CPUs), and each worker asks for "
                               f"{self.gpus_per_worker:g}: add GPU nodes, or run the workers on CPUs")
        fit = int(gpus // self.gpus_per_worker) if self.gpus_per_worker else int(cpus // max(self.cpus_per_worker, 1))
        self.size = workers if workers is not None else max(1, fit // max(1, sharing))
        if self.size < 1:
            raise ClusterError(f"a pool needs at least one worker, not {self.size}")
        if self.size * self.gpus_per_worker > gpus or self.size * self.cpus_per_worker > cpus:
            raise ClusterError(f"{self.size} workers with {self.gpus_per_worker:g} GPU and {self.cpus_per_worker:g} "
                               f"CPU each do not fit the Ray cluster ({gpus:g} GPUs, {cpus:g} CPUs): ask for fewer "
                               "workers or smaller shares")
        self.actors: list = []
        self._where: dict = {}  # actor -> where it runs, once opened
        self.in_flight: dict = {}  # ObjectRef -> (actor, batch): what each busy worker is doing
        #: videos and judgements handed to workers, a batch given again after its worker died counted again
        self.dispatched = 0

    @property
    def description(self) -> str:
        unit = f"{self.gpus_per_worker:g} GPU" if self.gpus_per_worker else f"{self.cpus_per_worker:g} CPU"
        return f"on a Ray pool of {self.size} workers ({unit} each)"

    def device_type(self, device: str) -> str:
        """Where the workers run a model the user placed on `device`: their GPU, or CPU."""
        kind = device.split(":")[0]
        if kind == "auto":
            return "cuda" if self.gpus_per_worker else "cpu"
        if kind == "cuda" and not self.gpus_per_worker:
            raise ClusterError(f"the model is placed on {device}, but the pool's workers have no GPU: the cluster "
                               "has none, or give the workers a share of one")
        if kind not in ("cuda", "cpu"):
            raise ClusterError(f"a Ray pool runs models on cuda or cpu, not {device}")
        return kind

    # --------------------------------------------------------------------------------------- the work

    def render(self, spec: BackendSpec, jobs: Sequence[tuple[str, SampleRequest]],
               batch_size: int) -> Iterator[tuple[str, object]]:
        placed = dataclasses.replace(spec, device=self.device_type(spec.device))
        self._open("backend", placed, jobs[0][1])
        yield from self._map(batches(jobs, batch_size),
                             lambda actor, batch: actor.render.remote(placed, [r for _, r in batch]))

    def judge(self, spec: JudgeSpec, jobs: Sequence[tuple[str, str, str]],
              batch_size: int) -> Iterator[tuple[str, object]]:
        placed = spec
        if spec.family.get(spec.kind).info.option("device") is not None:
            device = self.device_type(spec.options.get("device", "auto"))
            placed = dataclasses.replace(spec, options={**spec.options, "device": device})
        self._open("judge", placed)

        def submit(actor, batch):
            videos = [(Path(path).read_bytes(), Path(path).suffix, caption) for _, path, caption in batch]
            return actor.judge.remote(placed, videos, batch_size)
        yield from self._map(batches(jobs, batch_size), submit)

    def close(self) -> None:
        """Stop every worker now (work in flight included); the next call starts new ones."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors, self.in_flight = [], {}
        self._where.clear()

    # ---------------------------------------------------------------------------------------- helpers

    def _start(self) -> None:
        if self.actors:
            return
        remote = self.ray.remote(Worker).options(
            num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker, max_restarts=0,
            max_concurrency=CALLS_PER_WORKER,
            runtime_env={"env_vars": {"PYTHONPATH": _worker_path()}})
        self.actors = [remote.remote() for _ in range(self.size)]

    def _open(self, family: str, spec, probe: SampleRequest | None = None) -> None:
        """Load `spec` on every worker before any work is scheduled: a model a worker cannot load is one
        error now, naming the worker, not a failure per item."""
        from ray.exceptions import RayActorError, RayTaskError

        self._start()
        placing = {actor: actor.where.remote() for actor in self.actors if actor not in self._where}
        opening = {actor: actor.open.remote(family, spec, probe) for actor in self.actors}
        for actor, opened in opening.items():
            try:
                if actor in placing:
                    self._where[actor] = self._placed(placing[actor])
                self.ray.get(opened)
            except RayActorError as error:
                self._lost(actor, error)
            except RayTaskError as error:
                cause = error.cause
                if isinstance(cause, VideoSettingsError):  # the run's settings: bad arguments, wherever checked
                    raise cause from None
                try:
                    located = type(cause)(f"on the Ray worker at {self._where_of(actor)}: {cause}")
                except Exception:
                    located = cause
                raise located from None
        if not self.actors:
            raise ClusterError("every worker of the Ray pool died while loading the models")

    def _placed(self, where) -> str:
        """Where a new worker runs, once the cluster has placed it; a ClusterError when it cannot (its GPUs
        or CPUs are taken by other jobs) rather than waiting for ever."""
        from ray.exceptions import GetTimeoutError

        try:
            return self.ray.get(where, timeout=PLACE_SECONDS)
        except GetTimeoutError:
            free = self.ray.available_resources()
            self.close()
            raise ClusterError(
                f"the Ray cluster placed no worker in {PLACE_SECONDS:g} s: its GPUs or CPUs are taken by other "
                f"jobs (free now: {free.get('GPU', 0):g} GPUs, {free.get('CPU', 0):g} CPUs, each worker asks for "
                f"{self.gpus_per_worker:g} GPU and {self.cpus_per_worker:g} CPU): ask for fewer workers, or "
                "wait for the others") from None

    def _map(self, work: list[list], submit) -> Iterator[tuple[str, object]]:
        """Each (key, result) of the batches of `work`, fed to the workers as they free up; a batch whose worker died
        goes to the others. Leaving early (a cancel, an error) stops the pool's work in flight."""
        from ray.exceptions import RayActorError, RayTaskError

        queue, idle, finished = deque(work), list(self.actors) * CALLS_PER_WORKER, False
        try:
            while queue or self.in_flight:
                while queue and idle:
                    actor, batch = idle.pop(0), queue.popleft()
                    self.in_flight[submit(actor, batch)] = (actor, batch)
                    self.dispatched += len(batch)
                if not self.in_flight:
                    raise ClusterError("every worker of the Ray pool died; the results so far are in the cache, "
                                       "a re-run resumes from them")
                ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=1.0)
                if not ready:
                    continue  # the timeout lets a Ctrl-C through
                actor, batch = self.in_flight.pop(ready[0])
                try:
                    results = self.ray.get(ready[0])
                except RayActorError as error:
                    if actor in self.actors:  # its other call in flight fails the same way: said once
                        self._lost(actor, error)
                    idle = [a for a in idle if a is not actor]
                    queue.appendleft(batch)
                    continue
                except RayTaskError as error:  # the whole call failed (not one item): every item of it failed
                    results = [Failed(f"{type(error.cause).__name__}: {error.cause}")] * len(batch)
                idle.append(actor)
                for job, result in zip(batch, results):
                    yield job[0], result
            finished = True
        finally:
            if not finished:
                self.close()

    def _lost(self, actor, error) -> None:
        self.actors.remove(actor)
        self.warn(f"a Ray worker ({self._where_of(actor)}) died ({type(error).__name__}); its work goes to the "
                  f"{len(self.actors)} left")

    def _where_of(self, actor) -> str:
        return self._where.get(actor, "not yet placed")


def _worker_path() -> str:
    """PYTHONPATH for the workers: where this phyprompt is (a checkout that is not installed works on every
    node that has it at the same path) and this process's own PYTHONPATH (plugins found there)."""
    here = str(Path(__file__).resolve().parents[2])  # the folder that holds phyprompt/
    return os.pathsep.join(dict.fromkeys([here] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


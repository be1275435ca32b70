"""``memo-rl bench``: throughput benchmarks, printed as a table and written as JSON.

Every measurement is a :class:`BenchRow`; rows come from *groups*, functions registered in
:data:`GROUPS` with :func:`register_group`. A row that is compared with another row (its
``reference``, measured in the same run on the same machine) carries ``ratio = value /
reference_value`` and, where the project has a target for that ratio, ``target`` and ``met``.

Groups (all run by default; ``--only`` picks some):

- ``env``: our numba-batched gridworlds stepped with pre-generated random actions (1, 64 and
  4096 envs), against MiniGrid's Python ``MiniGrid-MemoryS13Random-v0`` (one env, symbolic
  observations). Target: >= 1000x at 4096 envs.
- ``memory`` (:mod:`memo_rl.bench_memory`): memory-core step latency and cache size at trial
  positions 1k-32k for gru, fct and memo (64 envs), and training tokens/s of every core.
  Targets at 16k: FCT's cache >= 8x Memo's, Memo >= 4x faster per step; streaming Memo flat.
- ``train``: end-to-end PPO training on Dark Key-to-Door (rollout + GAE + update), our ``none``,
  ``gru`` (and, for information, ``lstm``) agents against Stable-Baselines3 ``PPO("MlpPolicy")``
  and sb3-contrib ``RecurrentPPO("MlpLstmPolicy")`` with matched settings. Targets: gru >= 10x
  RecurrentPPO, none >= 3x SB3 PPO.
- ``scale`` (:mod:`memo_rl.bench_scale`, what ``--gpu`` runs on CUDA): end-to-end training env
  steps/s of the gru, fct and memo presets at 256-4096 envs (CPU: 64, 256) with the share of env,
  rollout inference and update, and Memo vs GRU inference at 16k. Targets on one H100: Memo PPO
  >= 100,000 env steps/s, Memo inference >= 0.5x GRU's.

Fair, repeatable numbers: the benchmark pins torch and numba to one thread (restored afterwards),
excludes warm-up (numba compilation, torch first calls) from every timing and records the
machine, library versions, thread settings and load average in the JSON.

Adding a group::

    @register_group("memory", "memory-core inference tokens/s")
    def _memory_group(opts: BenchOptions, report: Reporter) -> list[BenchRow]:
        ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from memo_rl.config import ConfigError

KEY_DOOR_ID = "memo_rl/DarkKeyToDoor-v0"
DARK_ROOM_ID = "memo_rl/DarkRoom-v0"
MINIGRID_ID = "MiniGrid-MemoryS13Random-v0"

# Published anchors (REFERENCES.md, measured on a 2-core CPU machine like ours), kept for context.
ANCHORS = {
    "minigrid": "~7,000 steps/s (MiniGrid-MemoryS13Random, symbolic, one env)",
    "sb3_ppo": "~1,550 env steps/s (SB3 PPO MLP on MiniGrid-MemoryS7)",
    "sb3_recurrent_ppo": "~85 env steps/s (RecurrentPPO MLP-LSTM, its defaults)",
}


# ----------------------------------------------------------------------------- rows and groups


@dataclass
class BenchRow:
    """One measurement. ``ratio = value / reference_value`` when the row has a reference."""

    group: str
    name: str
    what: str
    value: float
    unit: str = "env steps/s"
    reference: str | None = None
    """Name of the row this one is compared with (measured in the same run)."""
    reference_value: float | None = None
    target: float | None = None
    """Minimum ratio the project aims for (None = informational)."""
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.reference_value is None:
            return None
        return self.value / self.reference_value

    @property
    def met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio >= self.target

    def compare(self, reference: BenchRow, target: float | None = None) -> BenchRow:
        """Set ``reference`` (another row) and the target ratio; returns self."""
        self.reference, self.reference_value, self.target = reference.name, reference.value, target
        return self

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


@dataclass
class BenchOptions:
    """Budgets of one bench run (``--quick`` shrinks them to a few seconds in all)."""

    quick: bool = False
    train_envs: int = 16
    train_steps: int = 32_768
    """Env steps timed for our agents and SB3 PPO (after warm-up)."""
    recurrent_ppo_rollouts: int = 3
    """Rollouts timed for RecurrentPPO (slow; after a one-rollout warm-up)."""
    rollout_length: int = 128
    epochs: int = 4
    num_minibatches: int = 4
    hidden: int = 128
    env_seconds: float = 1.0
    """Minimum timed seconds per env measurement."""
    env_sizes: tuple[int, ...] = (1, 64, 4096)
    nav3d_sizes: tuple[int, ...] = (1, 64, 256)
    seed: int = 0
    device: str = "cpu"
    """Where the memory group runs (``auto``: CUDA when available)."""
    memory_envs: int = 64
    memory_positions: tuple[int, ...] = (1024, 4096, 16384, 32768)
    """Trial positions (steps) at which the memory group times ``core.step``."""
    memory_seconds: float = 10.0
    """Time budget per memory measurement (at least 3 steps / 2 passes are always timed)."""
    memory_train_batch: int = 16
    memory_train_length: int = 256
    memory_cores: tuple[str, ...] | None = None
    """Restrict the memory group to these cores (None: all it knows)."""
    scale_envs: tuple[int, ...] | None = None
    """Env counts of the scale group (None: 256, 1024, 4096 on CUDA; 64, 256 on CPU)."""
    scale_updates: int = 2
    """Timed updates per scale-group training row (after one warm-up update)."""


class Reporter:
    """Progress lines on stdout: ``[bench i] name: what ... result (seconds; total)``."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        self.count = 0

    def begin(self, name: str, what: str) -> None:
        self.count += 1
        print(f"[bench {self.count:>2}] {name}: {what} ...", end="", file=self.stream, flush=True)

    def done(self, row: BenchRow, seconds: float) -> None:
        extra = f", {row.ratio:,.1f}x {row.reference}" if row.ratio is not None else ""
        print(
            f" {row.value:,.0f} {row.unit}{extra} ({seconds:.1f}s; total {time.perf_counter() - self.start:.0f}s)",
            file=self.stream, flush=True,
        )

    def note(self, text: str) -> None:
        print(f"[bench] {text}", file=self.stream, flush=True)


GroupFn = Callable[[BenchOptions, Reporter], list[BenchRow]]


@dataclass
class BenchGroup:
    name: str
    description: str
    fn: GroupFn


GROUPS: dict[str, BenchGroup] = {}


def register_group(name: str, description: str) -> Callable[[GroupFn], GroupFn]:
    """Decorator: register ``fn(opts, reporter) -> rows`` as bench group ``name``."""

    def wrap(fn: GroupFn) -> GroupFn:
        GROUPS[name] = BenchGroup(name, description, fn)
        return fn

    return wrap


def _measure(report: Reporter, name: str, what: str, fn: Callable[[], BenchRow]) -> BenchRow:
    report.begin(name, what)
    start = time.perf_counter()
    row = fn()
    report.done(row, time.perf_counter() - start)
    return row


# ----------------------------------------------------------------------------- env group


def _time_vector_env(env_id: str, num_envs: int, min_seconds: float, seed: int) -> tuple[float, dict[str, Any]]:
    """Env steps/s of ``gymnasium.make_vec(env_id, num_envs)`` under pre-generated random actions."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers memo_rl/ ids)

    env = gym.make_vec(env_id, num_envs=num_envs)
    try:
        env.reset(seed=seed)
        chunk = 64  # steps between clock reads
        rng = np.random.default_rng(seed)
        actions = rng.integers(0, env.single_action_space.n, size=(chunk, num_envs), dtype=np.int64)
        for t in range(chunk):  # warm-up: numba dispatch, caches
            env.step(actions[t])
        steps, start = 0, time.perf_counter()
        while True:
            for t in range(chunk):
                env.step(actions[t])
            steps += chunk
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
    finally:
        env.close()
    settings = {"num_envs": num_envs, "steps_per_env": steps, "timed_seconds": round(elapsed, 4), "actions": "uniform random, pre-generated"}
    return steps * num_envs / elapsed, settings


def _step_python_env(env, min_seconds: float, seed: int) -> tuple[int, int, float]:
    """Step one Python env with random actions (reset on episode end) for ``min_seconds`` after a
    warm-up; closes it. Returns (steps, episodes, seconds)."""
    try:
        env.reset(seed=seed)
        actions = np.random.default_rng(seed).integers(0, env.action_space.n, size=4096).tolist()
        for a in actions[:256]:  # warm-up
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        steps, episodes, start = 0, 0, time.perf_counter()
        while True:
            for a in actions:
                _, _, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    env.reset()
                    episodes += 1
            steps += len(actions)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return steps, episodes, elapsed
    finally:
        env.close()


def _time_minigrid(min_seconds: float, seed: int) -> tuple[float, dict[str, Any]]:
    """Steps/s of one MiniGrid Python env (symbolic obs), random actions, reset on episode end."""
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers MiniGrid ids)
    from minigrid.wrappers import ImgObsWrapper

    env = ImgObsWrapper(gym.make(MINIGRID_ID))
    steps, episodes, elapsed = _step_python_env(env, min_seconds, seed)
    settings = {
        "num_envs": 1, "steps": steps, "episodes": episodes, "timed_seconds": round(elapsed, 4),
        "observation": "ImgObsWrapper (symbolic 7x7x3)", "actions": "uniform random, reset on done",
        "anchor": ANCHORS["minigrid"],
    }
    return steps / elapsed, settings


@register_group("env", "env steps/s: our batched gridworlds vs MiniGrid's Python env (random actions)")
def env_group(opts: BenchOptions, report: Reporter) -> list[BenchRow]:
    def minigrid_row() -> BenchRow:
        value, settings = _time_minigrid(opts.env_seconds, opts.seed)
        return BenchRow("env", "minigrid-memory-s13random", f"{MINIGRID_ID}, 1 Python env (reference)", value, settings=settings)

    reference = _measure(report, "minigrid-memory-s13random", "MiniGrid Python env, 1 env", minigrid_row)
    rows = [reference]
    cases = [(KEY_DOOR_ID, "key-to-door", n) for n in opts.env_sizes]
    cases.append((DARK_ROOM_ID, "dark-room", max(opts.env_sizes)))
    for env_id, short, n in cases:
        name = f"{short}-{n}"

        def row(env_id: str = env_id, name: str = name, n: int = n) -> BenchRow:
            value, settings = _time_vector_env(env_id, n, opts.env_seconds, opts.seed)
            target = 1000.0 if env_id == KEY_DOOR_ID and n == 4096 else None
            what = f"{env_id}, {n} batched env{'s' if n > 1 else ''} (numba)"
            return BenchRow("env", name, what, value, settings=settings).compare(reference, target)

        rows.append(_measure(report, name, f"{env_id} x{n}", row))
    return rows


NAV3D_ID = "memo_rl/Nav3D-ExtObjNav-v0"
NAV3D_TARGET = 20_000.0  # frames/s at 64x64 RGB-D with 256 envs on the 2-core machine (issue: environments)


def _time_minigrid_rgb(min_seconds: float, seed: int) -> tuple[float, dict[str, Any]]:
    """Frames/s of one MiniGrid Python env rendering its partial view as RGB (3x3 view, 24x24 px)."""
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers MiniGrid ids)
    from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

    env = ImgObsWrapper(RGBImgPartialObsWrapper(gym.make(MINIGRID_ID, agent_view_size=3)))
    steps, _, elapsed = _step_python_env(env, min_seconds, seed)
    settings = {"num_envs": 1, "steps": steps, "timed_seconds": round(elapsed, 4),
                "observation": "RGBImgPartialObsWrapper, 3x3 view (24x24x3)", "actions": "uniform random"}
    return steps / elapsed, settings


@register_group("nav3d", "nav3d frames/s at 64x64 RGB-D (1, 64, 256 envs) vs MiniGrid's RGB Python env")
def nav3d_group(opts: BenchOptions, report: Reporter) -> list[BenchRow]:
    def minigrid_row() -> BenchRow:
        value, settings = _time_minigrid_rgb(opts.env_seconds, opts.seed)
        return BenchRow("nav3d", "minigrid-memory-rgb", f"{MINIGRID_ID} RGB 3x3 view, 1 Python env (reference)",
                        value, unit="frames/s", settings=settings)

    reference = _measure(report, "minigrid-memory-rgb", "MiniGrid RGB Python env, 1 env", minigrid_row)
    rows = [reference]
    for n in opts.nav3d_sizes:
        name = f"nav3d-extobjnav-{n}"

        def row(n: int = n, name: str = name) -> BenchRow:
            value, settings = _time_vector_env(NAV3D_ID, n, opts.env_seconds, opts.seed)
            target = NAV3D_TARGET if n == 256 else None
            what = f"{NAV3D_ID}, {n} batched envs, 64x64 RGB-D (numba)"
            if target:  # an absolute target, expressed as a ratio to the reference measured in this run
                what += f"; target {target:,.0f} frames/s"
                settings["target_frames_per_s"] = target
            return BenchRow("nav3d", name, what, value, unit="frames/s", settings=settings).compare(
                reference, target / reference.value if target else None)

        rows.append(_measure(report, name, f"{NAV3D_ID} x{n}", row))
    return rows


# ----------------------------------------------------------------------------- train group


def _train_ours(
    core: str, opts: BenchOptions, extra: tuple[str, ...] = (), preset: str | None = None
) -> tuple[float, dict[str, Any]]:
    """Env steps/s of ``Trainer.train`` for memory core ``core``, first update excluded (warm-up).

    Without ``preset`` the PPO shapes are the bench's matched settings (``opts``); with a preset
    (e.g. ``dark_key_to_door_gru``) they are that preset's, as a user would run them.
    ``extra``: further config overrides (e.g. ``ppo.sequence_length=32``) for variant rows."""
    import csv

    from memo_rl.config import build_config
    from memo_rl.train import Trainer

    if preset is None:
        shape = [
            f"env.id={KEY_DOOR_ID}", f"env.num_envs={opts.train_envs}", f"memory.core={core}",
            f"agent.hidden_size={opts.hidden}", f"agent.d_model={opts.hidden}",
            f"ppo.rollout_length={opts.rollout_length}", f"ppo.epochs={opts.epochs}",
            f"ppo.num_minibatches={opts.num_minibatches}",
        ]
    elif opts.quick:  # the preset's agent and PPO settings on a tiny batch
        shape = [f"env.num_envs={opts.train_envs}", f"ppo.rollout_length={opts.rollout_length}"]
    else:
        shape = []
    base = build_config(preset, [*shape, *extra])
    updates = 1 + max(1, math.ceil(opts.train_steps / base.batch_size))  # +1: the warm-up update
    with tempfile.TemporaryDirectory(prefix="memo-rl-bench-") as run_dir:
        overrides = [
            *shape, f"train.total_steps={updates * base.batch_size}",
            f"train.seed={opts.seed}", "train.device=cpu", "train.threads=1",
            *extra,
            f"run.dir={run_dir}", "run.progress=false", "run.log_interval=1", "run.checkpoint_interval=1000000",
        ]
        cfg = build_config(preset, overrides)
        start = time.perf_counter()
        trainer = Trainer(cfg, Path(run_dir))
        trainer.train()
        wall = time.perf_counter() - start
        with open(Path(run_dir) / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    timed = rows[1:]  # first update = warm-up
    rollout = sum(float(r["rollout_seconds"]) for r in timed)
    update = sum(float(r["update_seconds"]) for r in timed)
    steps = int(rows[-1]["global_step"]) - int(rows[0]["global_step"])
    settings = {
        "preset": preset, "num_envs": cfg.env.num_envs, "rollout_length": cfg.ppo.rollout_length,
        "epochs": cfg.ppo.epochs, "num_minibatches": cfg.ppo.num_minibatches, "hidden": cfg.agent.d_model,
        "memory_core": cfg.memory.core,
        "timed_steps": steps, "timed_updates": len(timed), "rollout_seconds": round(rollout, 4),
        "update_seconds": round(update, 4), "end_to_end_wall_seconds": round(wall, 3),
        "overrides": overrides[:-4], "device": "cpu", "torch_threads": 1,
    }
    return steps / (rollout + update), settings


class _RolloutTimer:
    """Builds an SB3 callback that sums the wall time spent collecting rollouts (the rest of
    ``learn`` is GAE + update). Built lazily so that importing this module does not import SB3."""

    @staticmethod
    def make():
        from stable_baselines3.common.callbacks import BaseCallback

        class RolloutTimer(BaseCallback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds, self._start = 0.0, 0.0

            def _on_rollout_start(self) -> None:
                self._start = time.perf_counter()

            def _on_rollout_end(self) -> None:
                self.seconds += time.perf_counter() - self._start

            def _on_step(self) -> bool:
                return True

        return RolloutTimer()


SB3_KINDS = ("ppo", "recurrent_ppo", "ppo_defaults", "recurrent_ppo_defaults")


def _train_sb3(kind: str, opts: BenchOptions) -> tuple[float, dict[str, Any]]:
    """Env steps/s of SB3 ``learn()`` after a one-rollout warm-up ``learn`` call.

    ``kind``: ``ppo`` / ``recurrent_ppo`` (PPO shapes matched to the bench's) or ``ppo_defaults``
    / ``recurrent_ppo_defaults`` (one env and the library's own defaults, as a user runs it out of
    the box: the setting of the published anchors in REFERENCES.md).
    """
    import gymnasium as gym
    import torch
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import DummyVecEnv

    import envs  # noqa: F401  (registers memo_rl/ ids)

    if kind not in SB3_KINDS:
        raise ValueError(f"kind must be one of {SB3_KINDS}, got {kind!r}")
    defaults = kind.endswith("_defaults")
    n_envs = 1 if defaults else opts.train_envs
    venv = DummyVecEnv([lambda: gym.make(KEY_DOOR_ID) for _ in range(n_envs)])
    common: dict[str, Any] = dict(device="cpu", seed=opts.seed, verbose=0)
    policy_kwargs: dict[str, Any] = {}
    if kind == "recurrent_ppo_defaults":
        from sb3_contrib import RecurrentPPO

        model = RecurrentPPO("MlpLstmPolicy", venv, **common)
        rollouts = opts.recurrent_ppo_rollouts
    elif kind == "ppo_defaults":
        from stable_baselines3 import PPO

        if opts.quick:
            common.update(n_steps=256)
        model = PPO("MlpPolicy", venv, **common)
        rollouts = max(1, math.ceil(opts.train_steps / (4 * model.n_steps)))
    else:
        common.update(n_steps=opts.rollout_length, n_epochs=opts.epochs,
                      batch_size=max(1, n_envs * opts.rollout_length // opts.num_minibatches))
        if kind == "recurrent_ppo":
            from sb3_contrib import RecurrentPPO

            policy_kwargs = dict(lstm_hidden_size=opts.hidden, net_arch=[opts.hidden, opts.hidden])
            model = RecurrentPPO("MlpLstmPolicy", venv, policy_kwargs=policy_kwargs, **common)
            rollouts = opts.recurrent_ppo_rollouts
        else:
            from stable_baselines3 import PPO

            policy_kwargs = dict(net_arch=[opts.hidden, opts.hidden])
            model = PPO("MlpPolicy", venv, policy_kwargs=policy_kwargs, **common)
            rollouts = max(1, math.ceil(opts.train_steps / (n_envs * opts.rollout_length)))
    model.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default makes an empty /tmp/SB3-* folder
    rollout = n_envs * model.n_steps
    torch.set_num_threads(1)  # keep the pin whatever SB3 does at construction
    model.learn(rollout)  # warm-up: first calls, allocations
    timer = _RolloutTimer.make()
    before = model.num_timesteps
    start = time.perf_counter()
    model.learn(rollouts * rollout, reset_num_timesteps=False, callback=timer)
    elapsed = time.perf_counter() - start
    steps = model.num_timesteps - before
    venv.close()
    settings = {
        "num_envs": n_envs, "n_steps": model.n_steps, "n_epochs": model.n_epochs, "batch_size": model.batch_size,
        "policy": "MlpPolicy" if kind.startswith("ppo") else "MlpLstmPolicy", "policy_kwargs": policy_kwargs,
        "vec_env": f"DummyVecEnv of gymnasium.make('{KEY_DOOR_ID}')", "timed_steps": steps,
        "timed_rollouts": steps // rollout, "rollout_seconds": round(timer.seconds, 4),
        "update_seconds": round(elapsed - timer.seconds, 4), "device": "cpu", "torch_threads": 1,
        "anchor": ANCHORS["sb3_ppo" if kind.startswith("ppo") else "sb3_recurrent_ppo"],
    }
    if not kind.startswith("ppo"):
        lstm = model.policy.lstm_actor
        settings.update(lstm_hidden_size=lstm.hidden_size, separate_critic_lstm=model.policy.lstm_critic is not None)
    return steps / elapsed, settings


@register_group("train", "end-to-end PPO training env steps/s on Dark Key-to-Door: ours vs SB3 / sb3-contrib")
def train_group(opts: BenchOptions, report: Reporter) -> list[BenchRow]:
    """Two comparisons on the same task and machine, side by side.

    *As shipped* (the targets): each library as a user runs it, ours with its Dark Key-to-Door
    preset (64 envs, rollouts of 250 steps), SB3 PPO and sb3-contrib RecurrentPPO with their own
    defaults (one env; the setting of the published anchors). *Matched*: identical PPO shapes
    (envs, rollout, epochs, minibatches, width) on both sides, which isolates the cost of the
    framework from the choice of hyper-parameters; it carries no target.
    """
    n = opts.train_envs
    matched = f"{n} envs, rollout {opts.rollout_length}, {opts.epochs} epochs, {opts.num_minibatches} minibatches"

    def sb3_row(kind: str, name: str, what: str) -> BenchRow:
        value, settings = _train_sb3(kind, opts)
        return BenchRow("train", name, what, value, settings=settings)

    def ours_row(core: str, name: str, what: str, reference: BenchRow, target: float | None, preset: str | None):
        value, settings = _train_ours(core, opts, preset=preset)
        return BenchRow("train", name, what, value, settings=settings).compare(reference, target)

    rows: list[BenchRow] = []
    ppo_defaults = _measure(report, "sb3-ppo-defaults", "SB3 PPO learn(), library defaults", lambda: sb3_row(
        "ppo_defaults", "sb3-ppo-defaults",
        "SB3 PPO MlpPolicy, 1 env, library defaults (n_steps 2048, batch 64, 10 epochs, net 64x64)"))
    rppo_defaults = _measure(report, "sb3-recurrent-ppo-defaults", "RecurrentPPO learn(), library defaults", lambda: sb3_row(
        "recurrent_ppo_defaults", "sb3-recurrent-ppo-defaults",
        "sb3-contrib RecurrentPPO MlpLstmPolicy, 1 env, library defaults (n_steps 128, batch 128, 10 epochs, LSTM 256)"))
    rows += [ppo_defaults, rppo_defaults]
    # As shipped: (core, reference, target); lstm is informational (the same cell type as RecurrentPPO).
    for core, reference, target in (("none", ppo_defaults, 3.0), ("gru", rppo_defaults, 10.0), ("lstm", rppo_defaults, None)):
        preset = f"dark_key_to_door_{core}"
        rows.append(_measure(
            report, f"memo-rl-{core}", f"memo-rl train {preset}",
            lambda core=core, reference=reference, target=target, preset=preset: ours_row(
                core, f"memo-rl-{core}", f"memo-rl PPO, preset {preset} (64 envs, rollout 250, 4 epochs, 4 minibatches)",
                reference, target, preset),
        ))
    ppo = _measure(report, "sb3-ppo-matched", "SB3 PPO learn(), matched shapes", lambda: sb3_row(
        "ppo", "sb3-ppo-matched", f"SB3 PPO MlpPolicy, {matched}, net 128x128"))
    rppo = _measure(report, "sb3-recurrent-ppo-matched", "RecurrentPPO learn(), matched shapes", lambda: sb3_row(
        "recurrent_ppo", "sb3-recurrent-ppo-matched", f"sb3-contrib RecurrentPPO MlpLstmPolicy, {matched}, LSTM 128"))
    rows += [ppo, rppo]
    for core, reference in (("none", ppo), ("gru", rppo), ("lstm", rppo)):
        rows.append(_measure(
            report, f"memo-rl-{core}-matched", f"memo-rl train, memory.core={core}, matched shapes",
            lambda core=core, reference=reference: ours_row(
                core, f"memo-rl-{core}-matched", f"memo-rl PPO, memory.core={core}, {matched}, width 128",
                reference, None, None),
        ))
    return rows


# ----------------------------------------------------------------------------- machine info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Platform, CPU, versions and thread settings, recorded with every bench run."""
    import numba
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "versions": {
            name: _version(name)
            for name in ("memo-rl", "torch", "numpy", "numba", "gymnasium", "minigrid", "stable-baselines3", "sb3-contrib")
        },
        "threads": {
            "torch": torch.get_num_threads(),
            "torch_interop": torch.get_num_interop_threads(),
            "numba": numba.get_num_threads(),
            "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS"),
        },
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ----------------------------------------------------------------------------- table


def format_table(rows: list[BenchRow]) -> str:
    """Aligned text table of the rows (numbers right-aligned)."""
    header = ["group", "name", "value", "unit", "reference", "ratio", "target", "what"]
    lines = []
    for r in rows:
        ratio = f"{r.ratio:,.1f}x" if r.ratio is not None else "-"
        target = "-" if r.target is None else f">={r.target:g}x {'met' if r.met else 'NOT MET'}"
        lines.append([r.group, r.name, f"{r.value:,.0f}", r.unit, r.reference or "-", ratio, target, r.what])
    right = {2, 5}
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(cells) for cells in lines)])


# ----------------------------------------------------------------------------- CLI


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``memo-rl bench`` (validated in :func:`run_bench`, errors are one line)."""
    parser.description = (
        "Throughput benchmarks, printed as a table and written as JSON. Groups: "
        + "; ".join(f"{g.name}: {g.description}" for g in GROUPS.values())
    )
    parser.add_argument("--only", metavar="GROUPS", default=None,
                        help=f"comma-separated groups to run (default: all of {', '.join(GROUPS)})")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (a smoke run in well under a minute)")
    parser.add_argument("--output", metavar="PATH", default=None,
                        help="JSON file to write (default: bench_results/bench-<YYYYmmdd-HHMMSS>.json)")
    parser.add_argument("--train-envs", type=int, default=None, metavar="N",
                        help="envs for the train group (default 16; 4 with --quick)")
    parser.add_argument("--train-steps", type=int, default=None, metavar="N",
                        help="env steps timed per training measurement (default 32768; 2 updates' worth with --quick)")
    parser.add_argument("--device", default=None, metavar="DEV",
                        help="device of the memory group: cpu (default), cuda, or auto")
    parser.add_argument("--gpu", action="store_true",
                        help="the GPU rows: training at 256-4096 envs and Memo vs GRU inference at 16k on CUDA "
                        "(same as --only scale --device cuda; --only scale alone gives the CPU rows)")
    parser.add_argument("--scale-envs", type=int, nargs="+", default=None, metavar="N",
                        help="scale group: env counts (default 256 1024 4096 on CUDA, 64 256 on CPU)")
    parser.add_argument("--memory-cores", nargs="+", default=None, metavar="CORE",
                        help="memory group: time only these cores (e.g. hcam memo; memo-w16 is streaming memo)")


def _parse_groups(only: str | None) -> list[str]:
    if only is None:
        return list(GROUPS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"--only needs at least one group (choose from: {', '.join(GROUPS)})")
    for name in names:
        if name not in GROUPS:
            raise ConfigError(f"unknown bench group '{name}' in --only (choose from: {', '.join(GROUPS)})")
    return list(dict.fromkeys(names))


def options_from_args(ns: argparse.Namespace) -> BenchOptions:
    """:class:`BenchOptions` from parsed arguments; bad values raise :class:`ConfigError`."""
    for flag in ("train_envs", "train_steps"):
        value = getattr(ns, flag, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be a positive integer, got {value}")
    if ns.quick:
        opts = BenchOptions(quick=True, train_envs=4, rollout_length=32, train_steps=128, recurrent_ppo_rollouts=1,
                            env_seconds=0.1, env_sizes=(1, 64, 4096), nav3d_sizes=(1, 4), memory_envs=4, memory_positions=(1024, 2048),
                            memory_seconds=0.2, memory_train_batch=2, memory_train_length=64)
    else:
        opts = BenchOptions()
    if ns.train_envs is not None:
        opts.train_envs = ns.train_envs
    if ns.train_steps is not None:
        opts.train_steps = ns.train_steps
    if getattr(ns, "device", None) is not None:
        if ns.device not in ("auto", "cpu") and not ns.device.startswith("cuda"):
            raise ConfigError(f"bad value '{ns.device}' for --device (choose from: auto, cpu, cuda, cuda:N)")
        opts.device = ns.device
    if getattr(ns, "memory_cores", None):
        opts.memory_cores = tuple(ns.memory_cores)
    if getattr(ns, "scale_envs", None):
        bad = [n for n in ns.scale_envs if n < 1]
        if bad:
            raise ConfigError(f"--scale-envs must be positive integers, got {bad[0]}")
        opts.scale_envs = tuple(ns.scale_envs)
    if getattr(ns, "gpu", False):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--gpu needs a CUDA device (none is available); --only scale gives the same rows on CPU")
        opts.device = "cuda" if getattr(ns, "device", None) in (None, "auto") else ns.device
    return opts


def _default_output() -> Path:
    return Path("bench_results") / f"bench-{datetime.now():%Y%m%d-%H%M%S}.json"


def _pin_threads() -> Callable[[], None]:
    """Pin torch and numba to one thread; return a function that restores the previous settings."""
    if "numba" not in sys.modules:  # caps numba's pool for this process; set_num_threads below otherwise
        os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    import numba
    import torch

    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)

    def restore() -> None:
        torch.set_num_threads(torch_threads)
        numba.set_num_threads(numba_threads)

    return restore


def run_bench(ns: argparse.Namespace) -> dict[str, Any]:
    """``memo-rl bench``: run the selected groups, print progress and a table, write the JSON."""
    opts = options_from_args(ns)
    groups = _parse_groups("scale" if getattr(ns, "gpu", False) and ns.only is None else ns.only)
    output = Path(ns.output) if ns.output else _default_output()
    if output.exists() and output.is_dir():
        raise ConfigError(f"--output '{output}' is a directory; give a file path")
    restore = _pin_threads()
    try:
        report = Reporter()
        load_before = _load_average()
        machine = machine_info()
        report.note(
            f"groups: {', '.join(groups)}{' (quick)' if opts.quick else ''}; {machine['cpu_model']}, "
            f"{machine['cpus_usable']} cores usable, load {load_before}; torch/numba pinned to 1 thread"
        )
        start = time.perf_counter()
        rows: list[BenchRow] = []
        for name in groups:
            rows.extend(GROUPS[name].fn(opts, report))
        duration = time.perf_counter() - start
    finally:
        restore()
    load_after = _load_average()
    result = {
        "format": 1,
        "created": datetime.now().isoformat(timespec="seconds"),
        "command": "memo-rl bench " + " ".join(_argv_of(ns)),
        "machine": {**machine, "load_average_before": load_before, "load_average_after": load_after},
        "options": asdict(opts),
        "groups": groups,
        "duration_seconds": round(duration, 2),
        "rows": [row.to_dict() for row in rows],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    tmp.replace(output)
    print()
    print(format_table(rows))
    print(f"\n[bench] {len(rows)} rows in {duration:.0f}s; load average {load_before} -> {load_after}; wrote {output}")
    return result


def _argv_of(ns: argparse.Namespace) -> list[str]:
    args = []
    if ns.only is not None:
        args += ["--only", ns.only]
    if ns.quick:
        args.append("--quick")
    if ns.train_envs is not None:
        args += ["--train-envs", str(ns.train_envs)]
    if ns.train_steps is not None:
        args += ["--train-steps", str(ns.train_steps)]
    if ns.output is not None:
        args += ["--output", str(ns.output)]
    if getattr(ns, "device", None) is not None:
        args += ["--device", ns.device]
    if getattr(ns, "gpu", False):
        args.append("--gpu")
    if getattr(ns, "scale_envs", None):
        args += ["--scale-envs", *map(str, ns.scale_envs)]
    return args


from memo_rl import bench_memory, bench_scale  # noqa: E402, F401  (register the memory and scale groups)

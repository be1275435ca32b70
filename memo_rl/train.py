"""The training loop: collect a rollout -> GAE -> PPO update -> log -> checkpoint; resumable.

Read top to bottom: :func:`resolve_run` turns CLI input into a config and a run directory,
:class:`Trainer` owns the env, agent, optimizer and storage, :meth:`Trainer.train` is the loop.

Meta-RL trials (DESIGN.md section 3): memory resets only where the env reports ``trial_end``;
episode ends inside a trial are ordinary transitions that the agent sees (``episode_starts``) and,
with ``ppo.gae_cut=trial``, returns flow across them (RL^2 / AMAGO / Memo).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from memo_rl.accel import HostToDevice, autocast, autocast_dtype, compile_agent
from memo_rl.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    checkpoint_dir,
    checkpoint_path,
    latest_intact_checkpoint,
    list_checkpoints,
    load_checkpoint,
    numpy_to_tensors,
    prune_checkpoints,
    remove_stale_temp_files,
    save_checkpoint,
    tensors_to_numpy,
)
from memo_rl.config import (
    ConfigError,
    ExperimentConfig,
    build_config,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
)
from memo_rl.distributed import (
    DistContext,
    all_gather_objects,
    broadcast_object,
    check_parameters_in_sync,
    init_distributed,
    rank_seed,
    shutdown,
    update_model,
    wait_for_all_ranks,
)
from memo_rl.logging import RunLogger, flatten_dict
from memo_rl.ppo import (
    RolloutStorage,
    TrialHistory,
    UpdateStats,
    categorical,
    compute_gae,
    learning_rate,
    ppo_update,
)
from memo_rl.probe import attention_image, has_attention, probe_trial
from memo_rl.provenance import code_version
from memo_rl.types import AgentInputs, first_inputs, next_inputs

# Keys that may differ from the stored config when resuming a run.
RESUMABLE_CHANGES = ("run.", "train.total_steps", "train.device", "train.threads")


# ----------------------------------------------------------------------------- run directory


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def _default_run_dir(cfg: ExperimentConfig) -> Path:
    base = Path("runs") / f"{cfg.preset or 'default'}-{datetime.now():%Y%m%d-%H%M%S}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def _holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in ("config.yaml", "metrics.csv", "checkpoints"))


@dataclass
class ResolvedRun:
    cfg: ExperimentConfig
    run_dir: Path
    checkpoint: dict[str, Any] | None  # payload to resume from, if any
    init_model: dict[str, Any] | None = None  # agent weights a new run starts from (run.init_from)


# Config sections a run started with run.init_from must share with the checkpoint: they shape the weights.
INIT_FROM_MATCHING = ("agent", "memory")
# ... except the past-input recall head's settings: the head is an auxiliary decoder the policy never
# reads, so a run may add, drop or resize it; it then starts from fresh weights.
INIT_FROM_FREE_PREFIX = "agent.recall_"
RECALL_HEAD_PREFIX = "recall."  # the recall head's parameter names in the agent's state dict


def initial_weights(cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The agent weights named by ``run.init_from`` (None when it is not set), after checking that the
    checkpoint's agent and memory settings equal ``cfg``'s; raise ConfigError (one line) otherwise.

    ``run.init_from`` names a checkpoint file or a run directory; a directory stands for its newest
    readable checkpoint, and ``cfg.run.init_from`` is set to that file so the run's config.yaml
    records exactly which weights it started from."""
    if not cfg.run.init_from:
        return None
    path = Path(cfg.run.init_from)
    if cfg.algo != "ppo":
        raise ConfigError(f"run.init_from supports algo=ppo, not algo={cfg.algo}")
    if path.is_dir():
        found = latest_intact_checkpoint(checkpoint_dir(path))
        if found is None:
            raise ConfigError(f"run.init_from={path}: no readable checkpoint in {checkpoint_dir(path)} "
                              "(give a run directory with checkpoints or a checkpoints/ckpt_*.pt file)")
        path, payload = found
        cfg.run.init_from = str(path)
    elif not path.is_file():
        raise ConfigError(f"run.init_from={path}: no such checkpoint file or run directory "
                          "(give a checkpoints/ckpt_*.pt file or a run directory)")
    else:
        try:
            payload = load_checkpoint(path)
        except CheckpointError as err:
            raise ConfigError(f"run.init_from: {err}") from None
    theirs = flatten_dict({section: payload["config"].get(section, {}) for section in INIT_FROM_MATCHING})
    ours = flatten_dict({section: config_to_dict(cfg)[section] for section in INIT_FROM_MATCHING})
    differing = [key for key in sorted(set(theirs) | set(ours)) if theirs.get(key) != ours.get(key)]
    for key in differing:
        if not key.startswith(INIT_FROM_FREE_PREFIX):
            raise ConfigError(
                f"run.init_from: the checkpoint has {key}={theirs.get(key)!r}, this run {ours.get(key)!r}; "
                "agent and memory settings must match the checkpoint's (agent.recall_* may differ)"
            )
    model = payload["model"]
    fresh_recall = ""
    if differing:  # only recall settings differ: the recall head starts fresh (Trainer fills it in)
        model = {name: value for name, value in model.items() if not name.startswith(RECALL_HEAD_PREFIX)}
        fresh_recall = f"; fresh recall head ({', '.join(f'{k}={ours.get(k)!r}' for k in differing)})"
    print(f"[memo-rl] starting from the agent weights of {path} (its step {payload['global_step']:,}); "
          f"fresh optimizer, step 0{fresh_recall}", file=sys.stderr)
    return model


def resolve_run(preset: str | None, overrides: list[str]) -> ResolvedRun:
    """Build the config and pick the run directory; raise ConfigError before touching any file."""
    cfg = build_config(preset, overrides)
    if not cfg.run.resume:
        run_dir = Path(cfg.run.dir) if cfg.run.dir else _default_run_dir(cfg)
        if _holds_run(run_dir):
            raise ConfigError(
                f"run directory '{run_dir}' already holds a run; pass run.resume=true to continue it or choose another run.dir"
            )
        cfg.run.dir = str(run_dir)
        return ResolvedRun(cfg, run_dir, None, initial_weights(cfg))

    if not cfg.run.dir:
        raise ConfigError("run.resume=true needs run.dir=PATH (the run to continue)")
    run_dir = Path(cfg.run.dir)
    stored_path = run_dir / "config.yaml"
    if not stored_path.exists():
        print(f"[memo-rl] {run_dir} holds no run yet: starting a new one there", file=sys.stderr)
        return ResolvedRun(cfg, run_dir, None, initial_weights(cfg))
    stored = yaml.safe_load(stored_path.read_text())
    resumed = config_from_dict(stored)
    if preset is not None and stored.get("preset") not in (None, Path(preset).stem):
        raise ConfigError(f"run '{run_dir}' was started from preset '{stored.get('preset')}', not '{preset}'")
    merged = build_config(None, overrides, base=stored)
    before, after = flatten_dict(config_to_dict(resumed)), flatten_dict(config_to_dict(merged))
    for key in sorted(before):
        if before[key] != after.get(key) and not key.startswith(RESUMABLE_CHANGES):
            raise ConfigError(
                f"cannot change '{key}' when resuming (run has {before[key]!r}, given {after.get(key)!r}); start a new run.dir"
            )
    merged.run.dir, merged.run.resume = str(run_dir), True
    for path in remove_stale_temp_files(checkpoint_dir(run_dir)):
        print(f"[memo-rl] removed {path.name}, left by a checkpoint write that was interrupted", file=sys.stderr)
    found = latest_intact_checkpoint(checkpoint_dir(run_dir))
    if found is None:
        print(f"[memo-rl] no intact checkpoint in {run_dir}: restarting that run from step 0", file=sys.stderr)
        return ResolvedRun(merged, run_dir, None, initial_weights(merged))
    path, payload = found
    print(f"[memo-rl] resuming {run_dir} from {path.name} (step {payload['global_step']:,})", file=sys.stderr)
    return ResolvedRun(merged, run_dir, payload)


# ----------------------------------------------------------------------------- episode statistics


class EpisodeTracker:
    """Per-env running returns and lengths; windows of recent episodes and trials.

    ``first``/``later`` episode lengths (and success rates, where the env reports success) compare
    the first episode of a trial with its episodes 2 to ``LATER_EPISODES + 1``, which shows
    whether an agent remembers the hidden task across episodes. Only early episodes are compared:
    near a trial's end only short episodes finish before the trial cuts them, so including them
    would bias the later lengths downwards. (Episodes cut by the trial's end are left out; with the
    gridworld presets, 50-step episodes in 500-step trials, episodes 1-5 always finish first.)

    These episodes are held per env until their trial ends, then enter the windows together, so
    both windows hold the episodes of the same newest ``trials`` trials (default: one per env, as
    the trial returns). Windows filled as episodes finish would be biased: the envs' trials start
    together, so the first episodes that finish last in a trial are its slowest ones, and a window
    smaller than a trial's worth of them holds only those (with 64 envs and a window of 25 they
    were all timed-out failures: a first-episode length of 50 and a success rate of 0).
    """

    LATER_EPISODES = 4
    ARRAYS = ("ep_return", "ep_length", "trial_return", "ep_index", "first_length", "first_success",
              "later_length", "later_success")

    def __init__(self, num_envs: int, window: int = 100, trials: int | None = None) -> None:
        self.ep_return = np.zeros(num_envs)
        self.ep_length = np.zeros(num_envs, dtype=np.int64)
        self.trial_return = np.zeros(num_envs)
        self.ep_index = np.zeros(num_envs, dtype=np.int64)
        # episodes 1 and 2..LATER_EPISODES+1 of each env's running trial, NaN until they finish whole
        K = self.LATER_EPISODES
        self.first_length = np.full(num_envs, np.nan)
        self.first_success = np.full(num_envs, np.nan)
        self.later_length = np.full((num_envs, K), np.nan)  # [N, K]
        self.later_success = np.full((num_envs, K), np.nan)  # [N, K]
        trials = num_envs if trials is None else trials
        sizes = {"trial_returns": num_envs, "first_lengths": trials, "first_successes": trials,
                 "later_lengths": trials * K, "later_successes": trials * K}
        self.windows = {
            name: deque(maxlen=sizes.get(name, window))
            for name in ("returns", "lengths", "successes", "trial_returns", "first_lengths", "later_lengths",
                         "first_successes", "later_successes")
        }
        self.episodes = 0

    def update(self, rewards: np.ndarray, ended: np.ndarray, trial_end: np.ndarray, success: np.ndarray | None) -> None:
        self.ep_return += rewards
        self.trial_return += rewards
        self.ep_length += 1
        if ended.any():
            w = self.windows
            w["returns"].extend(self.ep_return[ended].tolist())
            w["lengths"].extend(self.ep_length[ended].tolist())
            if success is not None:  # NaN (unknown) flags left out
                w["successes"].extend(s for s in success[ended].tolist() if not math.isnan(s))
            whole = ended & ~trial_end
            first = whole & (self.ep_index == 0)
            later = np.flatnonzero(whole & (self.ep_index > 0) & (self.ep_index <= self.LATER_EPISODES))
            self.first_length[first] = self.ep_length[first]
            self.later_length[later, self.ep_index[later] - 1] = self.ep_length[later]
            if success is not None:
                self.first_success[first] = success[first]
                self.later_success[later, self.ep_index[later] - 1] = success[later]
            self.episodes += int(ended.sum())
            self.ep_index[ended] += 1
            self.ep_return[ended] = 0.0
            self.ep_length[ended] = 0
        if trial_end.any():
            w = self.windows
            w["trial_returns"].extend(self.trial_return[trial_end].tolist())
            for name, held in (("first_lengths", self.first_length), ("first_successes", self.first_success),
                               ("later_lengths", self.later_length), ("later_successes", self.later_success)):
                values = held[trial_end].ravel()  # [n] or [n, K] -> [n * K], env by env
                w[name].extend(values[~np.isnan(values)].tolist())
                held[trial_end] = np.nan
            self.trial_return[trial_end] = 0.0
            self.ep_index[trial_end] = 0

    def summary(self) -> dict[str, float]:
        return self._summarize(self.windows, self.episodes)

    @classmethod
    def merged_summary(cls, states: list[dict[str, Any]]) -> dict[str, float]:
        """The summary over several trackers' :meth:`state_dict` (the ranks of a distributed job):
        their windows pooled, their episode counts summed."""
        windows = {key: [v for state in states for v in state["windows"][key]] for key in states[0]["windows"]}
        return cls._summarize(windows, sum(int(state["episodes"]) for state in states))

    @staticmethod
    def _summarize(w: dict[str, Any], episodes: int) -> dict[str, float]:
        mean = lambda d: float(np.mean(d)) if len(d) else float("nan")  # noqa: E731
        return {
            "episode_return_mean": mean(w["returns"]),
            "episode_length_mean": mean(w["lengths"]),
            "success_rate": mean(w["successes"]),
            "trial_return_mean": mean(w["trial_returns"]),
            "first_episode_length_mean": mean(w["first_lengths"]),
            "later_episode_length_mean": mean(w["later_lengths"]),
            "first_episode_success_rate": mean(w["first_successes"]),
            "later_episode_success_rate": mean(w["later_successes"]),
            "episodes": episodes,
        }

    def state_dict(self) -> dict[str, Any]:
        arrays = {k: torch.from_numpy(getattr(self, k).copy()) for k in self.ARRAYS}
        return {"arrays": arrays, "windows": {k: list(v) for k, v in self.windows.items()}, "episodes": self.episodes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state["arrays"].items():
            setattr(self, key, value.numpy().copy())
        for key, values in state["windows"].items():
            self.windows[key].clear()
            self.windows[key].extend(values)
        self.episodes = int(state["episodes"])


# ----------------------------------------------------------------------------- trainer


def cpu_threads_per_rank(threads: int, dist: DistContext) -> int:
    """``train.threads``, capped for CPU ranks sharing a node so that they do not oversubscribe it
    (two ranks of 2 threads each on 2 cores run several times slower than two of 1 thread)."""
    if not dist.active or dist.device.type != "cpu":
        return threads
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cap = max(1, (os.cpu_count() or 1) // ranks_here)
    if threads == 0 or threads > cap:
        if dist.is_main:
            print(f"[memo-rl] {ranks_here} CPU ranks on {os.cpu_count()} cores: {cap} torch thread(s) per rank "
                  f"(train.threads={threads})", file=sys.stderr, flush=True)
        return cap
    return threads


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def progress_line(m: dict[str, Any], total_steps: int, elapsed: float, label: str = "") -> str:
    """The progress line printed at each log interval from a metrics row ``m`` (any trainer)."""
    step = int(m["global_step"])
    steps_per_s = step / max(elapsed, 1e-9)
    eta = max(0.0, (total_steps - step) / max(steps_per_s, 1e-9))
    parts = [
        f"[memo-rl] {label + ' ' if label else ''}{step:>11,}/{total_steps:,} steps ({100 * step / total_steps:3.0f}%)",
        f"{steps_per_s:,.0f} steps/s",
        f"ETA {int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}",
        "return n/a" if math.isnan(m["episode_return_mean"]) else f"return {m['episode_return_mean']:.3g}",
    ]
    if not math.isnan(m["trial_return_mean"]):
        parts.append(f"trial return {m['trial_return_mean']:.3g}")
    if not math.isnan(m["success_rate"]):
        parts.append(f"success {m['success_rate']:.2f}")
    return " | ".join(parts)


def write_summary(
    run_dir: Path, cfg: ExperimentConfig, global_step: int, updates: int, elapsed: float, last: dict[str, Any],
    memory_core: str, **extra: Any,
) -> dict[str, Any]:
    """Write ``summary.json`` (final figures, wall time, env steps, last checkpoint, code version); return it."""
    checkpoints = list_checkpoints(checkpoint_dir(run_dir))
    summary = {
        "env_id": cfg.env.id,
        "memory_core": memory_core,
        "seed": cfg.train.seed,
        "env_steps": global_step,
        "updates": updates,
        "wall_seconds": elapsed,
        "final": {k: v for k, v in last.items() if k not in ("global_step", "update")},
        "last_checkpoint": str(checkpoints[-1][1]) if checkpoints else None,
        "code": code_version(),
        **extra,
    }
    clean = json.loads(json.dumps(summary, default=float).replace("NaN", "null"))
    _write_text_atomic(Path(run_dir) / "summary.json", json.dumps(clean, indent=2) + "\n")
    return clean


@dataclass
class Carry:
    """What crosses from one rollout into the next: the agent's next inputs and its memory."""

    inputs: AgentInputs
    resets: torch.Tensor  # [N] bool: clear memory before the next step
    memory: Any


class Trainer:
    """PPO on a vector env with a memory agent, writing the run-directory contract.

    In a distributed job (``dist``, see :mod:`memo_rl.distributed`) every rank builds a Trainer
    over its own envs; all ranks call :meth:`train`, and only rank 0 writes files.
    """

    def __init__(
        self, cfg: ExperimentConfig, run_dir: Path, checkpoint: dict[str, Any] | None = None,
        dist: DistContext | None = None, init_model: dict[str, Any] | None = None,
    ) -> None:
        """``checkpoint`` resumes a run exactly; ``init_model`` (agent weights, new runs only; rank 0's
        reach the other ranks with the first weight broadcast) starts a new run from trained weights."""
        from memo_rl import registry

        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.dist = dist or DistContext()
        threads = cpu_threads_per_rank(cfg.train.threads, self.dist)
        if threads > 0:
            torch.set_num_threads(threads)
        self.seed = rank_seed(cfg.train.seed, self.dist.rank)
        torch.manual_seed(self.seed)
        self.device = self.dist.device if self.dist.active else resolve_device(cfg.train.device)
        self.env = registry.make_vector_env(cfg.env)
        self.obs_space = self.env.single_observation_space
        self.h2d = HostToDevice(self.device)
        self.to_tensor = lambda obs: self.h2d.observation(obs, self.obs_space)  # noqa: E731
        self.agent = registry.make_agent(cfg, self.obs_space, self.env.single_action_space).to(self.device)
        if init_model is not None:
            # the recall head's weights are absent when its settings differ from the checkpoint's
            # (initial_weights): this agent's fresh ones fill them in
            init_model = {**{name: value for name, value in self.agent.state_dict().items()
                             if name.startswith(RECALL_HEAD_PREFIX)}, **init_model}
            try:
                self.agent.load_state_dict(init_model)
            except RuntimeError as err:  # same settings, other spaces: the shapes tell
                first = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err))
                raise ConfigError(f"run.init_from: the checkpoint's weights do not fit this env's agent ({first})") from None
        self.amp_dtype = autocast_dtype(cfg.train.amp, self.agent.core, self.device)
        if cfg.train.compile:
            compile_agent(self.agent)
        self.update_model = update_model(self.agent, self.dist)  # after this, every rank holds rank 0's weights
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=cfg.ppo.lr, foreach=True, **cfg.ppo.adam_kwargs())
        self.storage = RolloutStorage(cfg.ppo.rollout_length, cfg.env.num_envs, cfg.sequence_length, self.device)
        self.tracker = EpisodeTracker(cfg.env.num_envs)
        self.steps_per_update = cfg.batch_size * self.dist.world_size  # env steps of all ranks
        self.num_updates = max(1, math.ceil(cfg.train.total_steps / self.steps_per_update))
        self.global_step, self.update, self.elapsed = 0, 0, 0.0
        self.env_seconds = 0.0  # of the current rollout: time inside env.step
        obs, _ = self.env.reset(seed=self.seed)
        self.carry = self._fresh_carry(obs)
        has_memory = len(tree_flatten(self.carry.memory)[0]) > 0
        self.history = TrialHistory(cfg.ppo.refresh_max_steps) if cfg.ppo.refresh_memory and has_memory else None
        self.video_enabled = cfg.run.video_interval > 0
        self.attention_enabled = cfg.run.attention_interval > 0 and has_attention(self.agent.core)
        if checkpoint is not None:
            self._restore(checkpoint)

    # -- rollout ------------------------------------------------------------------------------

    def _fresh_carry(self, obs) -> Carry:
        N = self.cfg.env.num_envs
        inputs = first_inputs(self.to_tensor(obs), N, self.device)
        resets = torch.ones(N, dtype=torch.bool, device=self.device)
        return Carry(inputs, resets, self.agent.initial_state(N, self.device))

    @torch.no_grad()
    def collect(self) -> None:
        """Fill the storage with ``rollout_length`` steps of every env."""
        from memo_rl import registry

        cfg, env, storage, carry = self.cfg, self.env, self.storage, self.carry
        self.agent.eval()
        N = cfg.env.num_envs
        no_resets = torch.zeros(N, dtype=torch.bool, device=self.device)
        # One autocast region for the whole rollout: the weights do not change during it, so
        # autocast casts each weight to bf16 once, not at every step (its cache lives as long as
        # the region). Only the policy's CUDA ops are affected; env.step is numpy.
        with self._autocast():
            for t in range(cfg.ppo.rollout_length):
                storage.insert_inputs(t, carry.inputs, carry.resets, carry.memory)
                out = self.agent.step(carry.inputs, carry.memory, carry.resets)
                actions, log_probs = categorical.sample(out.logits)
                actions_np = actions.cpu().numpy()  # host synchronisation: the env needs the actions
                env_start = time.perf_counter()
                obs, rewards_np, terminated, truncated, info = env.step(actions_np)
                self.env_seconds += time.perf_counter() - env_start
                ended = terminated | truncated
                trial_end = np.asarray(info["trial_end"], dtype=bool) if "trial_end" in info else ended
                cut = trial_end if cfg.ppo.gae_cut == "trial" else ended
                bootstrap = cut & truncated & ~terminated if cfg.ppo.bootstrap_truncation else np.zeros(N, bool)
                rewards = self.h2d(rewards_np, "rewards", torch.float32)
                truncation_values = torch.zeros(N, device=self.device)
                if bootstrap.any():  # value of the final obs, memory carried on (Pardo et al. 2018)
                    final = self.to_tensor(registry.final_observations(info, obs, ended))
                    final_inputs = AgentInputs(final, actions, rewards, torch.zeros(N, device=self.device))
                    final_values = self.agent.step(final_inputs, out.state, no_resets).values
                    truncation_values = final_values * self.h2d(bootstrap, "bootstrap", torch.float32)
                storage.insert_outcome(t, actions, log_probs, out.values, rewards, self.h2d(cut, "cut"), truncation_values)
                self.tracker.update(rewards_np.astype(np.float64), ended, trial_end, registry.episode_success(info, ended))
                trial_end_t = self.h2d(trial_end, "trial_end")
                carry.inputs = next_inputs(self.to_tensor(obs), actions, rewards, self.h2d(ended, "ended"), trial_end_t)
                carry.resets, carry.memory = trial_end_t, out.state
                self.global_step += N * self.dist.world_size

    @torch.no_grad()
    def bootstrap_values(self) -> torch.Tensor:
        """Values of the observations following the rollout (memory carried on) ``[N]``."""
        carry = self.carry
        with self._autocast():
            return self.agent.step(carry.inputs, carry.memory, carry.resets).values

    def update_policy(self) -> UpdateStats:
        """GAE over the collected rollout, then the PPO epochs (the memory is not yet rebuilt)."""
        st, ppo = self.storage, self.cfg.ppo
        advantages, returns = compute_gae(
            st.rewards, st.values, st.dones, self.bootstrap_values(), st.truncation_values, ppo.gamma, ppo.gae_lambda,
        )
        return ppo_update(self.update_model, self.optimizer, st, advantages, returns, ppo, self.amp_dtype)

    def _autocast(self):
        return autocast(self.device, self.amp_dtype)

    def refresh_memory(self) -> None:
        """Rebuild the carried memory with the updated weights (see :mod:`memo_rl.ppo.refresh`)."""
        if self.history is None:
            return
        self.history.record(self.storage)
        if not bool(self.carry.resets.all()):  # every env starts a new trial next: nothing to rebuild
            with self._autocast():
                self.carry.memory = self.history.rebuild(self.agent)

    # -- the loop -----------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        cfg, main = self.cfg, self.dist.is_main
        summary_path = self.run_dir / "summary.json"
        if self.update >= self.num_updates and summary_path.exists():  # resumed a finished run: leave it be
            if main:
                print(f"[memo-rl] {self.run_dir} already finished ({self.global_step:,} steps); nothing to do", flush=True)
            self.env.close()
            return json.loads(summary_path.read_text())
        logger = RunLogger(self.run_dir, resume_step=self.global_step if self.update > 0 else None) if main else None
        if logger is not None and self.update == 0:
            logger.log_config(config_to_yaml(cfg), flatten_dict(config_to_dict(cfg)))
        last_metrics: dict[str, Any] = {}
        try:
            while self.update < self.num_updates:
                start = time.perf_counter()
                lr = learning_rate(
                    self.global_step, cfg.train.total_steps, cfg.ppo.lr, cfg.ppo.lr_schedule,
                    cfg.ppo.warmup_steps, cfg.ppo.min_lr,
                )
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.env_seconds = 0.0
                self.collect()
                rollout_done = time.perf_counter()
                stats = self.update_policy()
                self.refresh_memory()
                end = time.perf_counter()
                self.elapsed += end - start
                self.update += 1
                is_last = self.update == self.num_updates
                if self.update % cfg.run.log_interval == 0 or is_last:
                    last_metrics = {
                        "global_step": self.global_step, "update": self.update, **self._episode_summary(), "lr": lr,
                        **vars(stats), "cached_tokens": self.agent.core.cached_tokens(self.carry.memory),
                        "fps": self.steps_per_update / (end - start), "rollout_seconds": rollout_done - start,
                        "env_seconds": self.env_seconds, "update_seconds": end - rollout_done,
                        "wall_seconds": self.elapsed,
                    }
                    if logger is not None:
                        logger.log_metrics(last_metrics)
                        if cfg.run.progress:
                            print(self._progress_line(last_metrics), flush=True)
                video = self.video_enabled and self.update % cfg.run.video_interval == 0
                attention = self.attention_enabled and self.update % cfg.run.attention_interval == 0
                if logger is not None and (video or attention):
                    self._log_probe(logger, video, attention)
                if self.update % cfg.run.checkpoint_interval == 0 or is_last:
                    check_parameters_in_sync(self.dist, self.agent)
                    self.save()
        finally:
            if logger is not None:
                logger.close()
            self.env.close()
        if not main:
            return {}
        return self._write_summary(last_metrics)

    def _episode_summary(self) -> dict[str, float]:
        """Episode statistics over the recent episodes of every rank (collective when distributed)."""
        if not self.dist.active:
            return self.tracker.summary()
        return EpisodeTracker.merged_summary(all_gather_objects(self.dist, self.tracker.state_dict()))

    def _progress_line(self, m: dict[str, Any]) -> str:
        return progress_line(m, self.cfg.train.total_steps, self.elapsed)

    def _write_summary(self, last: dict[str, Any]) -> dict[str, Any]:
        extra = {"world_size": self.dist.world_size} if self.dist.active else {}
        return write_summary(self.run_dir, self.cfg, self.global_step, self.update, self.elapsed, last,
                             self.cfg.memory.core, **extra)

    # -- checkpoints --------------------------------------------------------------------------

    def save(self) -> Path | None:
        """Write ``checkpoints/ckpt_<global_step>.pt`` atomically (everything needed for an exact resume).

        Distributed: collective. Rank 0 writes the weights and optimizer (equal on every rank), its
        own rollout state at the top level, and the other ranks' under ``rank_states``; other
        ranks return None.
        """
        states = all_gather_objects(self.dist, self._rank_state())
        if not self.dist.is_main:
            return None
        payload = {
            "format": CHECKPOINT_FORMAT,
            "config": config_to_dict(self.cfg),
            "global_step": self.global_step,
            "update": self.update,
            "elapsed": self.elapsed,
            "model": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **states[0],
        }
        if self.dist.active:
            payload.update(world_size=self.dist.world_size, rank_states=states[1:])
        path = save_checkpoint(checkpoint_path(self.run_dir, self.global_step), payload)
        prune_checkpoints(checkpoint_dir(self.run_dir), self.cfg.run.keep_checkpoints)
        return path

    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: RNG, envs, carried inputs and memory, episode statistics."""
        memory_leaves, _ = tree_flatten(self.carry.memory)
        env_state = self.env.get_state() if hasattr(self.env, "get_state") else None
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "rng": rng,
            "env_state": None if env_state is None else numpy_to_tensors(env_state),
            "carry": {
                "inputs": tuple(tree_map(lambda x: x.cpu(), list(self.carry.inputs))),
                "resets": self.carry.resets.cpu(),
                "memory": [leaf.cpu() for leaf in memory_leaves],
            },
            "tracker": self.tracker.state_dict(),
            "history": None if self.history is None else self.history.state_dict(),
        }

    def _restore(self, payload: dict[str, Any]) -> None:
        self.agent.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.global_step, self.update = int(payload["global_step"]), int(payload["update"])
        self.elapsed = float(payload.get("elapsed", 0.0))
        rank = self.dist.rank
        others = payload.get("rank_states", [])
        state = payload if rank == 0 else others[rank - 1] if rank - 1 < len(others) else None
        if state is None:  # the job grew: this rank has no stored state
            print(f"[memo-rl] rank {rank}: the checkpoint holds {len(others) + 1} ranks' state; starting fresh trials",
                  file=sys.stderr, flush=True)
            torch.manual_seed(self.seed + self.global_step)
            self._fresh_trials()
            return
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        if state["env_state"] is not None and hasattr(self.env, "set_state"):
            self.env.set_state(tensors_to_numpy(state["env_state"]))
            carry = state["carry"]
            _, spec = tree_flatten(self.agent.initial_state(self.cfg.env.num_envs, self.device))
            to_device = lambda x: x.to(self.device)  # noqa: E731
            self.carry = Carry(
                AgentInputs(*tree_map(to_device, list(carry["inputs"]))),
                carry["resets"].to(self.device),
                tree_unflatten([leaf.to(self.device) for leaf in carry["memory"]], spec),
            )
            self.tracker.load_state_dict(state["tracker"])
            if self.history is not None and state.get("history") is not None:
                self.history.load_state_dict(state["history"], self.carry.memory, self.device)
        else:  # env state not savable (generic gymnasium env): continue with fresh trials
            self._fresh_trials()

    def _fresh_trials(self) -> None:
        obs, _ = self.env.reset(seed=self.seed + self.global_step)
        self.carry = self._fresh_carry(obs)

    # -- videos and attention maps ------------------------------------------------------------

    def _log_probe(self, logger: RunLogger, video: bool, attention: bool) -> None:
        """Play one trial with the current policy in a separate env (the training envs and RNG are
        untouched) and log its video and/or attention map."""
        cfg = self.cfg
        result = probe_trial(
            self.agent, cfg.env, self.device, seed=cfg.train.seed + 7919 * self.update,
            video_steps=cfg.run.video_steps if video else 0,
            attention_steps=cfg.run.attention_steps if attention else 0,
        )
        if video and result.frames is None:
            self.video_enabled = False
        if result.frames is not None:
            logger.log_video("rollout/video", result.frames, self.global_step)
        if result.attention is not None:
            title = f"{cfg.memory.core}, step {self.global_step:,}: attention over one trial"
            logger.log_image("memory/attention", attention_image(result.attention, title), self.global_step)


def write_run_config(cfg: ExperimentConfig, run_dir: Path) -> None:
    """Write ``config.yaml`` (atomically; left untouched when it already says the same)."""
    # run.resume is an action, not a property of the run: the stored config always says false.
    stored = config_to_yaml(replace(cfg, run=replace(cfg.run, resume=False)))
    config_path = Path(run_dir) / "config.yaml"
    if not config_path.exists() or config_path.read_text() != stored:
        _write_text_atomic(config_path, stored)


def run_training(preset: str | None, overrides: list[str]) -> dict[str, Any]:
    """``memo-rl train``: resolve, build (all validation before any file is written), train.

    Under torchrun (or with ``run.distributed=true``) rank 0 resolves the run and hands the
    config, run directory and checkpoint to the other ranks (no shared filesystem needed for the
    start); every rank then builds its Trainer and trains.
    """
    requested = build_config(preset, overrides)
    code_version()  # fixed now: summary.json names the code this process started with
    dist_ctx = init_distributed(requested.run.distributed, requested.train.device)
    try:
        if dist_ctx.active and requested.algo != "ppo":
            raise ConfigError(f"run.distributed supports algo=ppo, not algo={requested.algo}")
        resolved = _resolve_on_main(dist_ctx, preset, overrides)
        if resolved.cfg.algo.startswith("sb3_"):  # Stable-Baselines3 baselines, same run directory contract
            from memo_rl.sb3_baselines import run_sb3_training

            return run_sb3_training(resolved.cfg, resolved.run_dir, resolved.checkpoint)
        trainer = Trainer(resolved.cfg, resolved.run_dir, resolved.checkpoint, dist_ctx, resolved.init_model)
        cfg = resolved.cfg
        if dist_ctx.is_main:
            resolved.run_dir.mkdir(parents=True, exist_ok=True)
            write_run_config(cfg, resolved.run_dir)
            ranks = f"{dist_ctx.world_size} ranks x " if dist_ctx.active else ""
            print(
                f"[memo-rl] training {cfg.memory.core} on {cfg.env.id} ({ranks}{cfg.env.num_envs} envs, "
                f"{cfg.train.total_steps:,} steps, device {trainer.device}) -> {resolved.run_dir}",
                flush=True,
            )
            print(f"[memo-rl] agent: {trainer.agent.describe()}", flush=True)
        summary = trainer.train()
        wait_for_all_ranks(dist_ctx)
        if dist_ctx.is_main:
            print(f"[memo-rl] done: {summary['env_steps']:,} steps in {summary['wall_seconds']:.0f}s; "
                  f"run in {resolved.run_dir}")
        return summary
    finally:
        shutdown(dist_ctx)


def _resolve_on_main(dist_ctx: DistContext, preset: str | None, overrides: list[str]) -> ResolvedRun:
    """:func:`resolve_run` on rank 0 only (one default run directory, one set of messages), its
    result (or its ConfigError) broadcast to every rank."""
    if not dist_ctx.active:
        return resolve_run(preset, overrides)
    outcome: tuple[str, Any] | None = None
    if dist_ctx.is_main:
        try:
            resolved = resolve_run(preset, overrides)
            outcome = ("ok", (config_to_dict(resolved.cfg), str(resolved.run_dir), resolved.checkpoint))
        except ConfigError as err:
            outcome = ("error", str(err))
    kind, value = broadcast_object(dist_ctx, outcome)
    if kind == "error":
        raise ConfigError(value)
    if dist_ctx.is_main:
        return resolved
    cfg_dict, run_dir, checkpoint = value
    return ResolvedRun(config_from_dict(cfg_dict), Path(run_dir), checkpoint)

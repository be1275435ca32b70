"""Stable-Baselines3 baselines as memo-rl algorithms: ``algo=sb3_ppo`` (SB3 ``PPO``, ``MlpPolicy``)
and ``algo=sb3_recurrent_ppo`` (sb3-contrib ``RecurrentPPO``, ``MlpLstmPolicy``).

They train on the same envs through ``memo-rl train`` and leave the same run directory as our PPO
(:class:`memo_rl.train.Trainer`, DESIGN.md section 3): ``config.yaml``, TensorBoard events and
``metrics.csv`` with our tags and columns (columns SB3 has no counterpart for stay empty),
``checkpoints/ckpt_<step>.pt`` (atomic, ``weights_only``-loadable) and ``summary.json``.

What the baselines see: the observation only, flattened to one vector (SB3's standard setup). Our
agents also see the previous action and reward and an episode-start flag.

Trials: :class:`TrialVecEnv` reports SB3's ``done`` at trial ends, so SB3's returns span a trial and
RecurrentPPO's LSTM resets only there (the meta-RL objective, ``ppo.gae_cut=trial``); episode ends
inside a trial are ordinary transitions. ``ppo`` settings map onto SB3's arguments (see
:func:`build_model`); SB3's value clipping (``ppo.value_clip``) clips the new value only, ours
takes the larger of the clipped and unclipped errors.

Importing this module imports Stable-Baselines3; the rest of memo_rl imports it only when an
``sb3_`` algo is chosen (:func:`memo_rl.train.run_training`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv

from memo_rl.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_dir,
    checkpoint_path,
    numpy_to_tensors,
    prune_checkpoints,
    save_checkpoint,
    tensors_to_numpy,
)
from memo_rl.config import ConfigError, ExperimentConfig, config_to_dict, config_to_yaml
from memo_rl.logging import RunLogger, flatten_dict
from memo_rl.ppo import learning_rate
from memo_rl.train import EpisodeTracker, progress_line, resolve_device, write_run_config, write_summary

SB3_ALGOS = ("sb3_ppo", "sb3_recurrent_ppo")
FLAT_PARTS = (spaces.Box, spaces.Discrete, spaces.MultiBinary)
# Settings our trainer uses that the SB3 baselines do not (a warning names those that were changed).
UNUSED_BY_SB3 = (
    "agent.", "memory.", "ppo.sequence_length", "ppo.refresh_memory", "ppo.refresh_max_steps",
    "run.video_interval", "run.video_steps", "run.attention_interval", "run.attention_steps",
)
LSTM_ONLY = ("sb3.lstm_hidden_size", "sb3.n_lstm_layers", "sb3.enable_critic_lstm")


# ----------------------------------------------------------------------------- observations


def flat_observation_space(space: gym.Space, where: str) -> spaces.Box:
    """The 1-D Box that :func:`flatten_observations` produces for ``space``.

    Box keeps its dtype and bounds (flattened); Discrete (one-hot), MultiBinary and Dicts of these
    become float32. Other spaces raise :class:`ConfigError` naming ``where`` (the algo and env).
    """
    parts = list(space.spaces.values()) if isinstance(space, spaces.Dict) else [space]
    if not all(isinstance(part, FLAT_PARTS) for part in parts):
        raise ConfigError(
            f"{where}: the SB3 baselines cannot use observation space {space} (Box, Discrete, MultiBinary or "
            "a Dict of them)"
        )
    if isinstance(space, spaces.Box):
        return spaces.Box(space.low.reshape(-1), space.high.reshape(-1), dtype=space.dtype)
    flat = spaces.flatten_space(space)  # Dict parts in the order of space.spaces, as below
    return spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32), dtype=np.float32)


def _flat_part(space: gym.Space, x: Any, n: int) -> np.ndarray:
    if isinstance(space, spaces.Discrete):
        return np.eye(space.n, dtype=np.float32)[np.asarray(x) - space.start]  # [N] -> [N, n]
    return np.asarray(x, dtype=np.float32).reshape(n, -1)  # [N, *shape] -> [N, prod(shape)]


def flatten_observations(space: gym.Space, obs: Any, n: int) -> np.ndarray:
    """A batch of ``n`` observations of ``space`` as one array ``[N, D]``, batched (no per-env loop).

    A Box batch is reshaped, which is a view of ``obs`` (for a 1-D Box, ``obs`` itself unchanged).
    """
    if isinstance(space, spaces.Box):
        return obs.reshape(n, -1)  # [N, *shape] -> [N, D]
    if isinstance(space, spaces.Dict):
        return np.concatenate([_flat_part(part, obs[key], n) for key, part in space.spaces.items()], axis=1)
    return _flat_part(space, obs, n)


# ----------------------------------------------------------------------------- env adapter


class TrialVecEnv(VecEnv):
    """SB3 ``VecEnv`` view of a memo-rl ``gymnasium.vector.VectorEnv`` (same-step autoreset).

    Args:
        env: the batched env, e.g. ``registry.make_vector_env(cfg.env)``; closed with this adapter.
        cut: where SB3's ``done`` is reported: ``"trial"`` at trial ends (``info["trial_end"]``;
            at episode ends for envs without trials) or ``"episode"`` at every episode end.
        bootstrap_truncation: mark a done that a time limit caused (truncated, not terminated)
            with ``TimeLimit.truncated`` so SB3 bootstraps with V(terminal observation).

    ``step_wait`` returns ``(obs [N, D], rewards [N] float32, dones [N] bool, infos)``; ``infos[i]``
    is empty except where ``dones[i]``: then ``terminal_observation`` (the observation reached
    before the autoreset) and ``TimeLimit.truncated``. Observations are flattened by
    :func:`flatten_observations` (a 1-D Box batch passes through as the env's own array).
    ``tracker`` (:class:`memo_rl.train.EpisodeTracker`) records every episode and trial as our
    trainer does; ``reset`` starts new trials everywhere with a fresh tracker.
    """

    def __init__(self, env: gym.vector.VectorEnv, cut: str = "trial", bootstrap_truncation: bool = True) -> None:
        if cut not in ("trial", "episode"):
            raise ValueError(f"cut must be 'trial' or 'episode', got {cut!r}")
        self.env, self.cut, self.bootstrap_truncation = env, cut, bootstrap_truncation
        self.source_space = env.single_observation_space
        where = f"env '{getattr(env.spec, 'id', type(env).__name__)}'"
        super().__init__(env.num_envs, flat_observation_space(self.source_space, where), env.single_action_space)
        self.tracker = EpisodeTracker(env.num_envs)
        self._actions: np.ndarray | None = None

    def _flatten(self, obs: Any) -> np.ndarray:
        return flatten_observations(self.source_space, obs, self.num_envs)

    def reset(self) -> np.ndarray:
        """Reset every env (seeded by the last :meth:`seed` call, if any) and the tracker."""
        obs, _ = self.env.reset(seed=self._seeds[0])
        self._reset_seeds()
        self.tracker = EpisodeTracker(self.num_envs)
        return self._flatten(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        from memo_rl import registry

        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        ended = terminated | truncated
        trial_end = np.asarray(info["trial_end"], dtype=bool) if "trial_end" in info else ended
        dones = trial_end if self.cut == "trial" else ended
        self.tracker.update(np.asarray(rewards, np.float64), ended, trial_end, registry.episode_success(info, ended))
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]  # SB3's per-env info list
        if dones.any():
            terminal = self._flatten(registry.final_observations(info, obs, dones))
            timeout = truncated & ~terminated & self.bootstrap_truncation
            for i in np.flatnonzero(dones):  # only the envs whose trial (or episode) ended
                infos[i]["terminal_observation"] = terminal[i]
                infos[i]["TimeLimit.truncated"] = bool(timeout[i])
        # SB3 adds bootstrap values to the rewards in place: hand it its own float32 array
        return self._flatten(obs), np.array(rewards, dtype=np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    # The batched env is one object: attribute and method calls go to it once, for all indices.
    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result] * len(list(self._get_indices(indices)))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))


# ----------------------------------------------------------------------------- model


def check_sb3_config(cfg: ExperimentConfig) -> None:
    """Raise :class:`ConfigError` for settings the SB3 baselines cannot run; warn (stderr, one
    line) about changed settings they ignore."""
    if cfg.algo not in SB3_ALGOS:
        raise ConfigError(f"algo={cfg.algo} is not a Stable-Baselines3 baseline (those are: {', '.join(SB3_ALGOS)})")
    if cfg.algo == "sb3_recurrent_ppo" and cfg.ppo.gae_cut != "trial":
        raise ConfigError(
            "algo=sb3_recurrent_ppo needs ppo.gae_cut=trial: SB3 resets the LSTM wherever returns are cut"
        )
    if cfg.ppo.value_clip is not None and cfg.ppo.value_clip <= 0:
        raise ConfigError(f"bad value {cfg.ppo.value_clip!r} for 'ppo.value_clip': SB3 needs > 0 (or null)")
    if cfg.batch_size // cfg.ppo.num_minibatches < 2:
        raise ConfigError(
            f"bad value {cfg.ppo.num_minibatches} for 'ppo.num_minibatches': SB3 minibatches need at least 2 steps "
            f"(env.num_envs x ppo.rollout_length = {cfg.batch_size})"
        )
    for key, value in [("sb3.lstm_hidden_size", cfg.sb3.lstm_hidden_size), ("sb3.n_lstm_layers", cfg.sb3.n_lstm_layers),
                       *((f"sb3.net_arch[{i}]", width) for i, width in enumerate(cfg.sb3.net_arch))]:
        if value < 1:
            raise ConfigError(f"bad value {value!r} for '{key}': must be >= 1")
    unused = UNUSED_BY_SB3 + (LSTM_ONLY if cfg.algo == "sb3_ppo" else ())
    now, default = flatten_dict(config_to_dict(cfg)), flatten_dict(config_to_dict(ExperimentConfig()))
    changed = [key for key in now if key.startswith(unused) and now[key] != default.get(key)]
    if changed:
        print(f"[memo-rl] algo={cfg.algo} ignores {', '.join(changed)} (SB3 baselines see observations only; "
              "their networks are set by sb3.*)", file=sys.stderr)


def lr_schedule(cfg: ExperimentConfig) -> Callable[[float], float]:
    """SB3 learning-rate schedule (of ``progress_remaining``, 1 -> 0) following ``ppo.lr_schedule``.

    SB3 evaluates it after each rollout; the rate is the one our trainer uses for that update (at
    the env step the rollout began).
    """
    total, batch, ppo = cfg.train.total_steps, cfg.batch_size, cfg.ppo

    def schedule(progress_remaining: float) -> float:
        step = max(0, round((1.0 - progress_remaining) * total) - batch)
        return learning_rate(step, total, ppo.lr, ppo.lr_schedule, ppo.warmup_steps, ppo.min_lr)

    return schedule


def build_model(cfg: ExperimentConfig, venv: TrialVecEnv, device: torch.device):
    """The SB3 ``PPO`` / ``RecurrentPPO`` for ``cfg`` on ``venv`` (seeded with ``train.seed``).

    ``ppo`` maps onto SB3: n_steps = rollout_length, batch_size = rollout_length x num_envs /
    num_minibatches, n_epochs = epochs, clip_range = clip_coef, clip_range_vf = value_clip, the
    Adam eps, and vf_coef / 2 because SB3's value loss is the squared error where ours is half of it.
    """
    if not isinstance(venv.action_space, spaces.Discrete):
        raise ConfigError(f"algo={cfg.algo} needs a Discrete action space; env '{cfg.env.id}' has {venv.action_space}")
    kwargs: dict[str, Any] = dict(
        learning_rate=lr_schedule(cfg), n_steps=cfg.ppo.rollout_length,
        batch_size=cfg.batch_size // cfg.ppo.num_minibatches, n_epochs=cfg.ppo.epochs, gamma=cfg.ppo.gamma,
        gae_lambda=cfg.ppo.gae_lambda, clip_range=cfg.ppo.clip_coef, clip_range_vf=cfg.ppo.value_clip,
        normalize_advantage=cfg.ppo.normalize_advantages, ent_coef=cfg.ppo.ent_coef, vf_coef=cfg.ppo.vf_coef / 2,
        max_grad_norm=cfg.ppo.max_grad_norm, seed=cfg.train.seed, device=str(device), verbose=0,
    )
    policy_kwargs: dict[str, Any] = dict(net_arch=list(cfg.sb3.net_arch), optimizer_kwargs=cfg.ppo.adam_kwargs())
    if cfg.algo == "sb3_ppo":
        from stable_baselines3 import PPO

        model = PPO("MlpPolicy", venv, policy_kwargs=policy_kwargs, **kwargs)
    else:
        from sb3_contrib import RecurrentPPO

        policy_kwargs.update(lstm_hidden_size=cfg.sb3.lstm_hidden_size, n_lstm_layers=cfg.sb3.n_lstm_layers,
                             enable_critic_lstm=cfg.sb3.enable_critic_lstm)
        model = RecurrentPPO("MlpLstmPolicy", venv, policy_kwargs=policy_kwargs, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))  # values kept in memory, read per update
    return model


# ----------------------------------------------------------------------------- RNG state


def _numpy_rng_state() -> dict[str, Any]:
    """numpy's global RNG (SB3 draws minibatch permutations from it) as tensors and numbers."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_rng_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


# ----------------------------------------------------------------------------- trainer


class _UpdateHook(BaseCallback):
    """Calls ``trainer.after_update(rollout_seconds, update_seconds)`` once per SB3 update.

    SB3's ``learn`` has no hook after an update: update k is complete when rollout k+1 starts,
    or when training ends after the last one.
    """

    def __init__(self, trainer: SB3Trainer) -> None:
        super().__init__()
        self.trainer = trainer
        self._rollout_start = 0.0
        self._rollout_end: float | None = None  # set while an update is in progress
        self._rollout_seconds = 0.0

    def _finish_update(self) -> None:
        if self._rollout_end is not None:
            self.trainer.after_update(self._rollout_seconds, time.perf_counter() - self._rollout_end)
            self._rollout_end = None

    def _on_rollout_start(self) -> None:
        self._finish_update()
        self._rollout_start = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self._rollout_end = time.perf_counter()
        self._rollout_seconds = self._rollout_end - self._rollout_start

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._finish_update()


class SB3Trainer:
    """An SB3 baseline on ``registry.make_vector_env(cfg.env)`` writing the run-directory contract.

    With ``checkpoint`` (a payload written by :meth:`save`) the SB3 model is rebuilt and the
    policy, optimizer, step and update counts, RNG states, env state (our batched envs; other envs
    start fresh trials), last observation, episode starts, LSTM states and tracker are loaded. The
    resumed run continues from there but, unlike our trainer's, is not promised to be bit-identical
    to an uninterrupted one: it relies on SB3 internals (``_last_obs``, ``_last_lstm_states``,
    numpy's global RNG for minibatch order) that SB3 does not promise to keep. With SB3 2.9 on CPU
    it is identical, and tests/test_sb3_baselines.py checks that so a change in SB3 shows up there.
    """

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, checkpoint: dict[str, Any] | None = None) -> None:
        from memo_rl import registry

        check_sb3_config(cfg)
        self.cfg, self.run_dir = cfg, Path(run_dir)
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        self.device = resolve_device(cfg.train.device)
        cut = "trial" if cfg.algo == "sb3_recurrent_ppo" else cfg.ppo.gae_cut
        env = registry.make_vector_env(cfg.env)
        try:
            self.venv = TrialVecEnv(env, cut, cfg.ppo.bootstrap_truncation)
            self.model = build_model(cfg, self.venv, self.device)
        except ConfigError:
            env.close()
            raise
        self.update, self.elapsed = 0, 0.0
        self.last_metrics: dict[str, Any] = {}
        self.logger: RunLogger | None = None
        if checkpoint is not None:
            self._restore(checkpoint)

    @property
    def global_step(self) -> int:
        return int(self.model.num_timesteps)

    @property
    def recurrent(self) -> bool:
        return self.cfg.algo == "sb3_recurrent_ppo"

    def train(self) -> dict[str, Any]:
        """Run SB3's ``learn`` up to ``train.total_steps``; return the summary."""
        cfg = self.cfg
        summary_path = self.run_dir / "summary.json"
        if self.update >= cfg.num_updates and summary_path.exists():  # resumed a finished run: leave it be
            print(f"[memo-rl] {self.run_dir} already finished ({self.global_step:,} steps); nothing to do", flush=True)
            self.venv.close()
            return json.loads(summary_path.read_text())
        self.logger = RunLogger(self.run_dir, resume_step=self.global_step if self.update > 0 else None)
        if self.update == 0:
            self.logger.log_config(config_to_yaml(cfg), flatten_dict(config_to_dict(cfg)))
        try:
            remaining = cfg.train.total_steps - self.global_step
            self.model.learn(remaining, callback=_UpdateHook(self), log_interval=None, reset_num_timesteps=False)
        finally:
            self.logger.close()
            self.venv.close()
        return self._write_summary()

    def after_update(self, rollout_seconds: float, update_seconds: float) -> None:
        """Log a metrics row and write a checkpoint where the intervals say (always after the last update)."""
        cfg = self.cfg
        self.update += 1
        self.elapsed += rollout_seconds + update_seconds
        is_last = self.global_step >= cfg.train.total_steps
        if self.update % cfg.run.log_interval == 0 or is_last:
            self.last_metrics = self._metrics(rollout_seconds, update_seconds)
            self.logger.log_metrics(self.last_metrics)
            if cfg.run.progress:
                print(self._progress_line(self.last_metrics), flush=True)
        if self.update % cfg.run.checkpoint_interval == 0 or is_last:
            self.save()

    def _metrics(self, rollout_seconds: float, update_seconds: float) -> dict[str, Any]:
        """One metrics.csv row: our tracker's episode figures and SB3's last update statistics."""
        recorded = self.model.logger.name_to_value
        sb3 = lambda key: float(recorded[key]) if key in recorded else float("nan")  # noqa: E731
        return {
            "global_step": self.global_step, "update": self.update, **self.venv.tracker.summary(),
            "lr": sb3("train/learning_rate"), "policy_loss": sb3("train/policy_gradient_loss"),
            "value_loss": 0.5 * sb3("train/value_loss"),  # ours is half the squared error
            "entropy": -sb3("train/entropy_loss"), "approx_kl": sb3("train/approx_kl"),
            "clip_fraction": sb3("train/clip_fraction"), "explained_variance": sb3("train/explained_variance"),
            "fps": self.cfg.batch_size / max(rollout_seconds + update_seconds, 1e-9),
            "rollout_seconds": rollout_seconds, "update_seconds": update_seconds, "wall_seconds": self.elapsed,
        }

    def _progress_line(self, m: dict[str, Any]) -> str:
        return progress_line(m, self.cfg.train.total_steps, self.elapsed, label=self.cfg.algo)

    def _write_summary(self) -> dict[str, Any]:
        """summary.json with the keys of our trainer's (and ``algo``)."""
        return write_summary(self.run_dir, self.cfg, self.global_step, self.update, self.elapsed, self.last_metrics,
                             "lstm" if self.recurrent else "none", algo=self.cfg.algo)

    # -- checkpoints --------------------------------------------------------------------------

    def save(self) -> Path:
        """Write ``checkpoints/ckpt_<global_step>.pt`` atomically (tensors and plain values only)."""
        model, env = self.model, self.venv.env
        lstm = model._last_lstm_states if self.recurrent else None
        payload = {
            "format": CHECKPOINT_FORMAT,
            "algo": self.cfg.algo,
            "config": config_to_dict(self.cfg),
            "global_step": self.global_step,
            "update": self.update,
            "elapsed": self.elapsed,
            "model": model.policy.state_dict(),
            "optimizer": model.policy.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state()},
            "env_state": numpy_to_tensors(env.get_state()) if hasattr(env, "get_state") else None,
            "carry": {
                "obs": torch.tensor(np.asarray(model._last_obs)),
                "episode_starts": torch.tensor(np.asarray(model._last_episode_starts)),
                "lstm": [] if lstm is None else [x.cpu() for x in (*lstm.pi, *lstm.vf)],
            },
            "tracker": self.venv.tracker.state_dict(),
        }
        if torch.cuda.is_available():
            payload["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        path = save_checkpoint(checkpoint_path(self.run_dir, self.global_step), payload)
        prune_checkpoints(checkpoint_dir(self.run_dir), self.cfg.run.keep_checkpoints)
        return path

    def _restore(self, payload: dict[str, Any]) -> None:
        if payload.get("algo") != self.cfg.algo:
            raise ConfigError(f"checkpoint of step {payload['global_step']} was written by algo="
                              f"{payload.get('algo', 'ppo')}, not {self.cfg.algo}; start a new run.dir")
        model, env = self.model, self.venv.env
        model.policy.load_state_dict(payload["model"])
        model.policy.optimizer.load_state_dict(payload["optimizer"])
        model.num_timesteps = int(payload["global_step"])
        self.update, self.elapsed = int(payload["update"]), float(payload.get("elapsed", 0.0))
        model._n_updates = self.update * self.cfg.ppo.epochs
        if payload["env_state"] is not None and hasattr(env, "set_state"):
            env.set_state(tensors_to_numpy(payload["env_state"]))
            carry = payload["carry"]
            model._last_obs = carry["obs"].numpy()
            model._last_episode_starts = carry["episode_starts"].numpy()
            if self.recurrent:
                from sb3_contrib.common.recurrent.type_aliases import RNNStates

                h_pi, c_pi, h_vf, c_vf = (x.to(self.device) for x in carry["lstm"])
                model._last_lstm_states = RNNStates((h_pi, c_pi), (h_vf, c_vf))
            self.venv.tracker.load_state_dict(payload["tracker"])
        else:  # env state not savable (generic gymnasium env): SB3 resets it into fresh trials
            self.venv.seed(self.cfg.train.seed + self.global_step)
        torch.set_rng_state(payload["rng"]["torch"])
        _set_numpy_rng_state(payload["rng"]["numpy"])
        if "cuda" in payload["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["rng"]["cuda"])


def run_sb3_training(cfg: ExperimentConfig, run_dir: Path, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """``memo-rl train`` for ``algo=sb3_*`` (called by :func:`memo_rl.train.run_training` after
    ``resolve_run``): build and validate everything, then write config.yaml and train."""
    trainer = SB3Trainer(cfg, run_dir, checkpoint)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_config(cfg, run_dir)
    print(
        f"[memo-rl] training {cfg.algo} (Stable-Baselines3) on {cfg.env.id} ({cfg.env.num_envs} envs, "
        f"{cfg.train.total_steps:,} steps, device {trainer.device}) -> {run_dir}",
        flush=True,
    )
    summary = trainer.train()
    print(f"[memo-rl] done: {summary['env_steps']:,} steps in {summary['wall_seconds']:.0f}s; run in {run_dir}")
    return summary

"""The one place that wires ``envs`` and ``agents`` into the framework (DESIGN.md section 2).

``make_vector_env`` turns an :class:`EnvConfig` into a gymnasium ``VectorEnv`` with same-step
autoreset (our batched envs natively, any other registered id through gymnasium's sync/async
vector envs); ``make_agent`` builds the actor-critic around the configured memory core.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
from functools import partial

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from agents.encoders import obs_to_tensor
from envs.trials import EpisodesPerTrial
from memo_rl.config import ConfigError, EnvConfig, ExperimentConfig

__all__ = ["env_spec", "episode_metric", "episode_success", "final_observations", "make_agent", "make_vector_env", "obs_to_tensor"]

NUMERIC_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def _import_env_module(env_id: str) -> str:
    """Import ``envs`` (registers memo_rl/ ids) and, for ``module:Id``, that module; return the id."""
    importlib.import_module("envs")
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"cannot import module '{module}' for env.id: {err}") from None
    return env_id


def _drop_non_numeric_observations(env: gym.Env) -> gym.Env:
    """Drop Dict observation keys that are not numeric (e.g. MiniGrid's text ``mission``)."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Dict):
        keep = [k for k, s in space.spaces.items() if isinstance(s, NUMERIC_SPACES)]
        if len(keep) < len(space.spaces):
            return gym.wrappers.FilterObservation(env, keep)
    return env


def _import_wrapper(path: str):
    """The wrapper class named ``module:Class`` (``env.wrappers``)."""
    if ":" not in path:
        raise ConfigError(f"bad env.wrappers entry '{path}': write it as module:Class, e.g. minigrid.wrappers:ImgObsWrapper")
    module, name = path.split(":", 1)
    try:
        wrapper = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot import env.wrappers entry '{path}': {err}") from None
    if not (isinstance(wrapper, type) and issubclass(wrapper, gym.Wrapper)):
        raise ConfigError(f"env.wrappers entry '{path}' is not a gymnasium.Wrapper class")
    return wrapper


# Packages (dependencies of memo-rl) whose import registers gymnasium ids that users name directly.
ENV_PACKAGES = ("minigrid",)

# Wrappers every env from a package gets (outermost), for what the package does not report itself.
PACKAGE_WRAPPERS = {"minigrid": ("envs.minigrid:SuccessInfo",)}


def _package_wrappers(spec: gym.envs.registration.EnvSpec) -> list:
    entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
    package = entry.split(":")[0].split(".")[0]
    return [_import_wrapper(w) for w in PACKAGE_WRAPPERS.get(package, ())]


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    env_id = _import_env_module(env_id)
    for package in ENV_PACKAGES:
        if env_id in gym.registry:
            break
        try:
            importlib.import_module(package)
        except ImportError:
            continue
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unregistered env id '{env_id}'{hint} (use a gymnasium id, or module:Id to import it)")
    return gym.spec(env_id)


def make_vector_env(
    env_cfg: EnvConfig, num_envs: int | None = None, render_mode: str | None = None
) -> gym.vector.VectorEnv:
    """Build the configured env batch (not yet reset). Bad ids or kwargs raise :class:`ConfigError`."""
    spec = env_spec(env_cfg.id)
    num_envs = env_cfg.num_envs if num_envs is None else num_envs
    kwargs = dict(env_cfg.kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    mode = env_cfg.vectorization
    if mode == "auto":
        mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    options: dict = {}
    if mode == "vector_entry_point" and env_cfg.wrappers:
        raise ConfigError(
            f"env.wrappers {list(env_cfg.wrappers)} apply to envs run through gymnasium's vector envs; '{spec.id}' is "
            "batched natively (set env.vectorization=sync or async to wrap its single-env version)"
        )
    if mode == "vector_entry_point" and env_cfg.episodes_per_trial != 1:
        raise ConfigError(
            f"env.episodes_per_trial={env_cfg.episodes_per_trial} applies to envs run through gymnasium's vector envs; "
            f"'{spec.id}' is batched natively and sets its trials with its own env.kwargs"
        )
    if mode != "vector_entry_point":
        wrappers = [*(_import_wrapper(w) for w in env_cfg.wrappers), *_package_wrappers(spec), _drop_non_numeric_observations]
        if env_cfg.episodes_per_trial != 1:
            wrappers.append(partial(EpisodesPerTrial, episodes=env_cfg.episodes_per_trial))
        options = dict(vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, wrappers=wrappers)
    try:
        env = gym.make_vec(spec.id, num_envs=num_envs, vectorization_mode=mode, **options, **kwargs)
    except TypeError as err:
        allowed = ", ".join(accepted_kwargs(spec.id)) or "none"
        raise ConfigError(f"bad env.kwargs {dict(env_cfg.kwargs)} for '{spec.id}': {err} (accepted: {allowed})") from None
    except ValueError as err:
        raise ConfigError(f"bad env options for '{spec.id}': {str(err).splitlines()[0]}") from None
    if env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP) != AutoresetMode.SAME_STEP:
        env.close()
        raise ConfigError(f"env '{spec.id}' must autoreset in the same step (gymnasium AutoresetMode.SAME_STEP)")
    return env


def final_observations(info: dict, obs, ended: np.ndarray):
    """The last observation of each ended episode (rows of ``obs`` elsewhere), same structure as obs.

    Handles our batched envs (dense ``final_obs`` array) and gymnasium's vector envs (object array
    of per-env observations, None where no episode ended).
    """
    if not ended.any() or "final_obs" not in info:
        return obs
    final = info["final_obs"]
    rows = np.flatnonzero(ended)
    if isinstance(obs, dict):
        out = {k: v.copy() for k, v in obs.items()}
        if isinstance(final, dict):  # a dict of batched arrays
            for k in out:
                out[k][rows] = final[k][rows]
            return out
        for k in out:  # an object array of per-env dicts (None where no episode ended)
            for i in rows:
                out[k][i] = final[i][k]
        return out
    out = obs.copy()
    if final.dtype == object:
        for i in rows:  # only ended envs, only on generic gymnasium envs
            out[i] = final[i]
    else:
        out[rows] = final[rows]
    return out


def episode_metric(info: dict, ended: np.ndarray, keys: tuple[str, ...]) -> np.ndarray | None:
    """Per-env value of an end-of-episode metric (first of ``keys`` the env reports) where an episode
    ended, NaN elsewhere; None if the env reports none of ``keys``."""
    for key in keys:
        if key in info:
            return np.where(ended, np.asarray(info[key], dtype=np.float64), np.nan)
    final_info = info.get("final_info")
    if isinstance(final_info, dict):
        for key in keys:
            if key in final_info:
                mask = final_info.get(f"_{key}", ended)
                return np.where(ended & mask, np.asarray(final_info[key], dtype=np.float64), np.nan)
    return None


def episode_success(info: dict, ended: np.ndarray) -> np.ndarray | None:
    """Success flags of ended episodes (NaN where unknown), or None if the env reports none."""
    return episode_metric(info, ended, ("success", "is_success"))


def make_agent(cfg: ExperimentConfig, observation_space: gym.Space, action_space: gym.Space):
    """The actor-critic for this config (memory core options taken from the ``memory`` section)."""
    from agents import ActorCritic
    from memo_rl.memory import build_memory_core, core_option_names

    accepted = core_option_names(cfg.memory.core)
    options = cfg.memory.core_options()
    ignored = sorted(k for k in options if k not in accepted)
    if ignored:
        print(
            f"[memo-rl] memory core '{cfg.memory.core}' ignores {', '.join(f'memory.{k}' for k in ignored)} "
            f"(its options: {', '.join(accepted) or 'none'})",
            file=sys.stderr,
        )
    try:
        core = build_memory_core(cfg.memory.core, cfg.agent.d_model, **{k: options[k] for k in options if k in accepted})
    except ValueError as err:
        raise ConfigError(f"memory core '{cfg.memory.core}' with agent.d_model={cfg.agent.d_model}: {err}") from None
    try:
        return ActorCritic(
            observation_space, action_space, core,
            hidden_size=cfg.agent.hidden_size, use_prev_action=cfg.agent.prev_action,
            use_prev_reward=cfg.agent.prev_reward, use_episode_start=cfg.agent.episode_start,
            head_hidden=cfg.agent.head_hidden, core_skip=cfg.agent.core_skip, cnn_channels=tuple(cfg.agent.cnn_channels),
            recall_max_lag=cfg.agent.recall_max_lag, recall_target=cfg.agent.recall_target,
            recall_keys=cfg.agent.recall_keys,
            head_trunk=cfg.agent.head_trunk, head_activation=cfg.agent.head_activation,
            policy_gain=cfg.agent.policy_gain, input_proj=cfg.agent.input_proj,
            privileged_keys=cfg.agent.privileged_keys,
        )
    except ValueError as err:
        raise ConfigError(f"env '{cfg.env.id}': {err}") from None


def accepted_kwargs(env_id: str) -> list[str]:
    """Constructor keyword names of a registered env (for error messages)."""
    spec = env_spec(env_id)
    entry = spec.entry_point
    if isinstance(entry, str):
        module, name = entry.split(":")
        entry = getattr(importlib.import_module(module), name)
    return [p for p in inspect.signature(entry).parameters if p not in ("self", "render_mode")]

"""``memo-rl eval PATH [PATH ...] [eval.key=value ...]``: play checkpoints in (streaming) trials.

Each PATH is a checkpoint file, a run directory, or a folder of checkpoints. The model and env are
rebuilt from the config stored in each checkpoint; only ``eval.*`` options may be overridden
(DESIGN.md section 3). For every checkpoint, ``eval.trials`` fresh trials of ``eval.trial_steps``
steps are played and reported in bins of ``eval.bin_steps`` trial steps: return, success, SPL
(where the env reports it), episode length, tokens held, memory bytes and step latency. The bins
show whether an agent keeps improving inside a trial or collapses once streaming truncates its
context.

Streaming (``eval.streaming=true``) bounds memory by ``eval.window`` (memo: newest W summary blocks,
fct/trxl: newest W steps); recurrent cores are bounded already and refuse a window.

Outputs go to ``<run>/eval/<tag>/`` (:class:`EvalFolder`): ``results.json`` (settings, one entry
per checkpoint, checkpoints that could not be read), ``bins.csv`` (a row per checkpoint and bin),
``bins.png`` (mean and 95% confidence band over trials per bin, a line per checkpoint),
``attention_<step>.png`` and TensorBoard events (``eval/`` scalars per checkpoint step and per
bin, ``eval/video``, ``eval/attention``). A folder is evaluated in order of checkpoint step;
entries already in ``results.json`` are skipped, so an interrupted evaluation resumes; with
``eval.follow=true`` new checkpoints are picked up while training writes them.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._pytree import tree_flatten

from memo_rl.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from memo_rl.config import ConfigError, EvalConfig, ExperimentConfig, build_config
from memo_rl.ppo import categorical
from memo_rl.types import first_inputs, next_inputs

RESULTS_FORMAT = 1
# Eval options that change what is measured: an evaluation folder holds results of one setting
# (eval.env_id is part of it through the env id the checkpoint is played on).
MEASURED_OPTIONS = ("streaming", "window", "token_budget", "trial_steps", "trials", "deterministic", "seed",
                    "bin_steps", "env_kwargs", "env_wrappers", "forget_episodes")
MAX_EPISODE_STEPS = 10_000  # cap on an eval trial of an env that reports neither trials nor a time limit
EPISODE_SLOTS = 8  # episodes_by_index: the 1st..7th episode of a trial, the 8th slot pooling the 8th and later
BIN_COLUMNS = ("return_mean", "return_ci95", "success_rate", "spl", "episode_length", "episodes",
               "cached_tokens", "memory_bytes", "step_ms")


# ----------------------------------------------------------------------------- targets


@dataclass
class Target:
    """What one PATH names: its checkpoints (or the folder they appear in) and the run it belongs to."""

    path: Path
    run_dir: Path
    folder: Path | None  # None: a single checkpoint file

    def checkpoints(self) -> list[tuple[int, Path]]:
        return list_checkpoints(self.folder) if self.folder is not None else [(-1, self.path)]


def resolve_target(path_arg: str, follow: bool) -> Target:
    path = Path(path_arg)
    if not path.exists():
        raise ConfigError(f"no such checkpoint or folder: '{path_arg}'")
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return Target(path, run_dir, None)
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    run_dir = folder.parent if folder.name == "checkpoints" else folder
    target = Target(path, run_dir, folder)
    if not follow and not target.checkpoints():
        raise ConfigError(
            f"no checkpoints in '{path_arg}' (looked for ckpt_<step>.pt in {folder}); pass eval.follow=true to wait for a training run"
        )
    return target


def _split_args(args: list[str]) -> tuple[list[str], list[str]]:
    paths = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if not paths:
        raise ConfigError("memo-rl eval needs a checkpoint file or folder: memo-rl eval PATH [eval.key=value ...]")
    for item in overrides:
        if not item.startswith("eval."):
            raise ConfigError(
                f"override '{item}' is not an eval option: memo-rl eval takes eval.* overrides (the rest comes from the checkpoint)"
            )
    return paths, overrides


# ----------------------------------------------------------------------------- config per checkpoint


def eval_config(stored: dict[str, Any], overrides: list[str]) -> ExperimentConfig:
    """The checkpoint's config with the eval overrides and the eval-time memory bound applied."""
    cfg = build_config(None, overrides, base=stored)
    ev = cfg.eval
    from memo_rl.memory import core_option_names

    accepts_window = "window" in core_option_names(cfg.memory.core)
    bound = "eval.window" if ev.window is not None else "eval.token_budget" if ev.token_budget is not None else None
    if ev.window is not None and ev.token_budget is not None:
        raise ConfigError("give eval.window or eval.token_budget, not both")
    if bound and not ev.streaming:
        raise ConfigError(f"{bound} bounds streaming memory: pass eval.streaming=true with it")
    if bound and not accepts_window:
        raise ConfigError(
            f"{bound} does not apply to memory.core={cfg.memory.core}: its memory is a fixed-size state already "
            f"(windows apply to {', '.join(windowed_cores())})"
        )
    if ev.streaming and accepts_window and bound is None:
        raise ConfigError(
            f"eval.streaming=true needs eval.window=W or eval.token_budget=B for memory.core={cfg.memory.core} "
            "(memo: summary blocks kept; fct/trxl: steps kept; hcam: chunks kept)"
        )
    if ev.fixed_buffers:
        if cfg.memory.core != "memo":
            problem = f"memory.core={cfg.memory.core} (it steps memory.core=memo only)"
        elif (cfg.memory.read or "full") != "full":
            problem = f"memory.read={cfg.memory.read} (it steps memory.read=full only)"
        elif bound is None:
            problem = "no eval.window or eval.token_budget (they set the buffers' size; pass one with eval.streaming=true)"
        else:
            problem = None
        if problem:
            raise ConfigError(f"eval.fixed_buffers=true steps streaming Memo on fixed-size buffers, got {problem}")
    if ev.window is not None:
        cfg.memory.window = ev.window
    elif ev.token_budget is not None:
        cfg.memory.window = window_for_budget(cfg, ev.token_budget)
    if ev.env_id is not None:
        cfg.env.id = ev.env_id
    cfg.env.kwargs = {**cfg.env.kwargs, **ev.env_kwargs}
    if ev.env_wrappers is not None:
        cfg.env.wrappers = list(ev.env_wrappers)
    if ev.trial_steps is not None:
        from memo_rl.registry import accepted_kwargs

        if "trial_length" not in accepted_kwargs(cfg.env.id):
            raise ConfigError(
                f"eval.trial_steps={ev.trial_steps} needs an env with a trial_length option; '{cfg.env.id}' has none "
                "(its trials are single episodes)"
            )
        cfg.env.kwargs["trial_length"] = ev.trial_steps
    return cfg


def window_for_budget(cfg: ExperimentConfig, budget: int) -> int:
    """The ``memory.window`` that keeps at most ``budget`` tokens in the checkpoint's core."""
    from memo_rl.memory import build_memory_core, core_option_names

    options = {k: v for k, v in cfg.memory.core_options().items() if k in core_option_names(cfg.memory.core)}
    core = build_memory_core(cfg.memory.core, cfg.agent.d_model, **options)
    if hasattr(core, "summary_length"):  # memo: W summary blocks plus the open segment
        fixed, per_unit, unit = core.segment_length, core.summary_length, "summary blocks"
    elif hasattr(core, "chunk_size"):  # hcam: W chunks plus the open chunk
        fixed, per_unit, unit = core.chunk_size, core.chunk_size, "chunks"
    else:  # fct, trxl: W steps
        fixed, per_unit, unit = 0, 1, "steps"
    window = (budget - fixed) // per_unit
    if window < 1:
        raise ConfigError(f"eval.token_budget={budget} is too small for memory.core={cfg.memory.core}: it needs at "
                          f"least {fixed + per_unit} tokens (one unit of {per_unit} plus the open {fixed})")
    print(f"[memo-rl eval] token budget {budget}: memory.core={cfg.memory.core} keeps {window} {unit}", flush=True)
    return window


def windowed_cores() -> list[str]:
    """Cores whose memory ``eval.window`` can bound."""
    from memo_rl.memory import core_names, core_option_names

    return [name for name in core_names() if "window" in core_option_names(name)]


def measured_settings(cfg: ExperimentConfig) -> dict[str, Any]:
    """What makes two evaluations comparable: env, core and the measured eval options."""
    ev = asdict(cfg.eval)
    return {"env_id": cfg.env.id, "memory_core": cfg.memory.core, "memory_window": cfg.memory.window,
            **{k: ev[k] for k in MEASURED_OPTIONS}}


# ----------------------------------------------------------------------------- playing trials


@dataclass
class BinnedTrials:
    """Per-trial, per-bin sums over ``trials`` trials cut into bins of ``bin_steps`` trial steps."""

    bin_steps: int
    trial_steps: int
    returns: np.ndarray  # [trials, bins]
    episodes: np.ndarray  # [trials, bins]: episodes that ended in the bin
    episode_length: np.ndarray  # [trials, bins]: summed lengths of those episodes
    successes: np.ndarray  # [trials, bins]: summed success flags (NaN-free)
    success_count: np.ndarray  # [trials, bins]: episodes with a success flag
    spl: np.ndarray  # [trials, bins]
    spl_count: np.ndarray  # [trials, bins]
    cached_tokens: np.ndarray  # [bins]: most tokens any env held
    memory_bytes: np.ndarray  # [bins]: most bytes of memory state per env
    step_seconds: np.ndarray  # [bins]: summed agent-step wall time (all envs at once)
    step_count: np.ndarray  # [bins]
    # per episode index in the trial (EPISODE_SLOTS slots); episodes cut by the trial's end left out
    index_episodes: np.ndarray  # [trials, slots]
    index_returns: np.ndarray  # [trials, slots]: summed episode returns
    index_lengths: np.ndarray  # [trials, slots]: summed episode lengths
    index_successes: np.ndarray  # [trials, slots]
    index_success_count: np.ndarray  # [trials, slots]

    def episode_table(self) -> list[dict[str, float]]:
        """One row per episode index of a trial (1 = the first episode; the last slot pools the
        later ones), for the slots some trial reached: whether later episodes of a trial do better
        than the first, i.e. whether the agent remembers the trial's hidden task. Episodes cut by
        the trial's end are left out (only short ones finish near it)."""
        rows = []
        for k in range(self.index_episodes.shape[1]):
            episodes = self.index_episodes[:, k].sum()
            if episodes == 0:
                break
            rows.append({
                "episode": k + 1,
                "pools_later": k == self.index_episodes.shape[1] - 1,
                "return_mean": _ratio(self.index_returns[:, k].sum(), episodes),
                "success_rate": _ratio(self.index_successes[:, k].sum(), self.index_success_count[:, k].sum()),
                "episode_length": _ratio(self.index_lengths[:, k].sum(), episodes),
                "episodes": float(episodes),
            })
        return rows

    def table(self) -> list[dict[str, float]]:
        """One row per bin: means over trials (95% normal confidence half-width for the return)."""
        rows = []
        for b in range(self.returns.shape[1]):
            ret = self.returns[:, b]
            ci = 1.96 * ret.std(ddof=1) / math.sqrt(len(ret)) if len(ret) > 1 else float("nan")
            episodes = self.episodes[:, b].sum()
            rows.append({
                "bin": b + 1,
                "first_step": b * self.bin_steps,
                "last_step": min((b + 1) * self.bin_steps, self.trial_steps) - 1,
                "return_mean": float(ret.mean()),
                "return_ci95": float(ci),
                "success_rate": _ratio(self.successes[:, b].sum(), self.success_count[:, b].sum()),
                "spl": _ratio(self.spl[:, b].sum(), self.spl_count[:, b].sum()),
                "episode_length": _ratio(self.episode_length[:, b].sum(), episodes),
                "episodes": float(episodes),
                "cached_tokens": float(self.cached_tokens[b]),
                "memory_bytes": float(self.memory_bytes[b]),
                "step_ms": _ratio(1000 * self.step_seconds[b], self.step_count[b]),
            })
        return rows


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def state_bytes_per_env(state: Any, num_envs: int) -> float:
    """Bytes of the memory state's tensors per env (what streaming must keep bounded)."""
    leaves, _ = tree_flatten(state)
    return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor)) / max(num_envs, 1)


@torch.no_grad()
def play_trials(agent, cfg: ExperimentConfig, device: torch.device, progress: bool = True) -> BinnedTrials:
    """Play ``eval.trials`` fresh trials (in rounds of ``eval.num_envs`` envs) and bin their metrics.

    Every env starts a trial at step 0; an env's data after its first trial ended is ignored.
    With ``eval.forget_episodes`` the agent starts every episode as it starts a trial (memory
    cleared, no previous action or reward); the metrics still follow the env's trials.
    """
    from memo_rl import registry

    ev = cfg.eval
    n_envs = min(ev.num_envs or ev.trials, ev.trials)
    env = registry.make_vector_env(cfg.env, num_envs=n_envs)
    # Our envs say how long a trial lasts; for others (a trial = an episode) play until every env's
    # first episode ended, at most the time limit or MAX_EPISODE_STEPS, and drop bins no env reached.
    trial_steps = (getattr(env, "trial_length", None) or ev.trial_steps
                   or registry.env_spec(cfg.env.id).max_episode_steps or MAX_EPISODE_STEPS)
    n_bins = math.ceil(trial_steps / ev.bin_steps)
    rounds = math.ceil(ev.trials / n_envs)
    per_trial = {k: np.zeros((rounds * n_envs, n_bins)) for k in
                 ("returns", "episodes", "episode_length", "successes", "success_count", "spl", "spl_count")}
    per_index = {k: np.zeros((rounds * n_envs, EPISODE_SLOTS)) for k in
                 ("index_episodes", "index_returns", "index_lengths", "index_successes", "index_success_count")}
    tokens, mem_bytes = np.zeros(n_bins), np.zeros(n_bins)
    step_seconds, step_count = np.zeros(n_bins), np.zeros(n_bins)
    generator = torch.Generator().manual_seed(ev.seed)
    to_tensor = lambda o: registry.obs_to_tensor(o, env.single_observation_space, device)  # noqa: E731
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    agent.eval()
    stepper = None  # eval.fixed_buffers: the core's memory lives in the stepper, agent.step is not used
    if ev.fixed_buffers:
        from memo_rl.memory import StreamingMemoStepper

        stepper = StreamingMemoStepper(agent.core, n_envs, device, cuda_graph=device.type == "cuda")
    started, longest = time.perf_counter(), 0
    try:
        for r in range(rounds):
            rows = slice(r * n_envs, (r + 1) * n_envs)
            obs, _ = env.reset(seed=ev.seed + r * n_envs)
            inputs = first_inputs(to_tensor(obs), n_envs, device)
            state = agent.initial_state(n_envs, device)
            resets = torch.ones(n_envs, dtype=torch.bool, device=device)
            resets_host = np.ones(n_envs, dtype=bool)  # the same, for the stepper (no device round trip)
            active = np.ones(n_envs, dtype=bool)
            ep_length, ep_return = np.zeros(n_envs), np.zeros(n_envs)
            ep_index = np.zeros(n_envs, dtype=np.int64)  # episodes of the trial ended so far
            for t in range(trial_steps):
                b = t // ev.bin_steps
                sync()
                tic = time.perf_counter()
                if stepper is None:
                    out = agent.step(inputs, state, resets)
                else:
                    embedded = agent.embed(inputs)
                    out = agent.heads(embedded, stepper.step(embedded, resets_host), None)
                if ev.deterministic:
                    actions = out.logits.argmax(dim=-1)
                else:
                    actions, _ = categorical.sample(out.logits.cpu(), generator)
                    actions = actions.to(device)
                sync()
                step_seconds[b] += time.perf_counter() - tic
                step_count[b] += 1
                obs, rewards, terminated, truncated, info = env.step(actions.cpu().numpy())
                ended = terminated | truncated
                trial_end = np.asarray(info["trial_end"], dtype=bool) if "trial_end" in info else ended
                ep_length += 1
                ep_return += rewards
                per_trial["returns"][rows, b] += np.where(active, rewards, 0.0)
                counted = ended & active
                whole = np.flatnonzero(counted & ~trial_end)  # env indices of episodes the trial did not cut
                per_trial["episodes"][rows, b] += counted
                per_trial["episode_length"][rows, b] += np.where(counted, ep_length, 0.0)
                success = success_known = None  # [n_envs] flags (NaN where unknown), and where known
                for key, keys in (("successes", ("success", "is_success")), ("spl", ("spl",))):
                    values = registry.episode_metric(info, counted, keys)
                    if values is not None:
                        known = counted & ~np.isnan(values)
                        per_trial[key][rows, b] += np.where(known, values, 0.0)
                        per_trial["success_count" if key == "successes" else "spl_count"][rows, b] += known
                        if key == "successes":
                            success, success_known = values, known
                if whole.size:
                    slot = (r * n_envs + whole, np.minimum(ep_index[whole], EPISODE_SLOTS - 1))  # (trial rows, slots)
                    np.add.at(per_index["index_episodes"], slot, 1.0)
                    np.add.at(per_index["index_returns"], slot, ep_return[whole])
                    np.add.at(per_index["index_lengths"], slot, ep_length[whole])
                    if success is not None:
                        np.add.at(per_index["index_successes"], slot, np.where(success_known[whole], success[whole], 0.0))
                        np.add.at(per_index["index_success_count"], slot, success_known[whole])
                ep_index[ended] += 1
                ep_length[ended] = 0
                ep_return[ended] = 0.0
                if stepper is None:
                    tokens[b] = max(tokens[b], agent.core.cached_tokens(out.state))
                    mem_bytes[b] = max(mem_bytes[b], state_bytes_per_env(out.state, n_envs))
                else:
                    tokens[b] = max(tokens[b], stepper.cached_tokens())
                    mem_bytes[b] = max(mem_bytes[b], stepper.bytes_per_env())
                active &= ~trial_end
                longest = max(longest, t + 1)
                if not active.any():
                    break
                forget_host = (trial_end | ended) if ev.forget_episodes else trial_end
                forget = torch.as_tensor(forget_host, device=device)
                inputs = next_inputs(to_tensor(obs), actions, torch.as_tensor(rewards, dtype=torch.float32, device=device),
                                     torch.as_tensor(ended, device=device), forget)
                state, resets, resets_host = out.state, forget, forget_host
                if progress and (t + 1) % ev.bin_steps == 0 and trial_steps > ev.bin_steps:
                    done = (r * trial_steps + t + 1) / (rounds * trial_steps)
                    eta = (time.perf_counter() - started) * (1 - done) / done
                    print(f"[memo-rl eval]   round {r + 1}/{rounds}, trial step {t + 1:,}/{trial_steps:,} | "
                          f"{1000 * step_seconds[b] / step_count[b]:.2f} ms/step | {int(tokens[b])} tokens | "
                          f"ETA {int(eta // 60)}:{int(eta % 60):02d}", flush=True)
    finally:
        env.close()
    keep, reached = slice(0, ev.trials), int(np.flatnonzero(step_count).max()) + 1  # bins any env reached
    trial_steps = min(trial_steps, longest)
    return BinnedTrials(ev.bin_steps, trial_steps, **{k: v[keep, :reached] for k, v in per_trial.items()},
                        cached_tokens=tokens[:reached], memory_bytes=mem_bytes[:reached],
                        step_seconds=step_seconds[:reached], step_count=step_count[:reached],
                        **{k: v[keep] for k, v in per_index.items()})


# ----------------------------------------------------------------------------- results folder


class EvalFolder:
    """``<run>/eval/<tag>/``: results.json (+ bins.csv, bins.png, TensorBoard), rewritten atomically.

    ``settings`` identify what was measured (:func:`measured_settings`): a folder never mixes
    evaluations of different eval options, envs or cores.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.results_path = self.path / "results.json"
        self.data: dict[str, Any] = {"format": RESULTS_FORMAT, "settings": {}, "checkpoints": [], "failed": []}
        if self.results_path.exists():
            try:
                self.data = json.loads(self.results_path.read_text())
            except json.JSONDecodeError as err:
                raise ConfigError(f"cannot read {self.results_path}: {err}; move it away to start over") from None

    def check_options(self, options: EvalConfig) -> None:
        """Raise ConfigError if the folder holds results measured with other eval options."""
        stored = self.data["settings"]
        now = asdict(options)
        changed = [k for k in MEASURED_OPTIONS if k in stored and json.dumps(stored[k]) != json.dumps(now[k])]
        if changed:
            diffs = ", ".join(f"eval.{k}: {stored[k]!r} there, {now[k]!r} now" for k in changed)
            raise ConfigError(f"{self.path} holds an evaluation with other settings ({diffs}); pass eval.tag=NAME for a new one")

    def check_settings(self, settings: dict[str, Any], checkpoint: Path) -> str | None:
        """Adopt ``settings`` if the folder has none yet; else return an error line if the env or
        core differ from the stored ones (a checkpoint of another run, to be skipped)."""
        stored = self.data["settings"]
        if "env_id" not in stored:
            self.data["settings"] = settings
            return None
        if (stored["env_id"], stored["memory_core"]) != (settings["env_id"], settings["memory_core"]):
            return (f"{checkpoint.name} is from env '{settings['env_id']}' with core '{settings['memory_core']}', but "
                    f"{self.path} evaluates env '{stored['env_id']}' with core '{stored['memory_core']}'")
        return None

    def done_steps(self) -> set[int]:
        return {int(c["global_step"]) for c in self.data["checkpoints"]}

    def failed_before(self, path: Path) -> dict[str, Any] | None:
        """The earlier failure of this very file (same name, size and mtime), if any."""
        stat = path.stat()
        for f in self.data["failed"]:
            if f["name"] == path.name and f["size"] == stat.st_size and f["mtime"] == stat.st_mtime:
                return f
        return None

    def add_failure(self, path: Path, error: str) -> None:
        stat = path.stat()
        self.data["failed"] = [f for f in self.data["failed"] if f["name"] != path.name]
        self.data["failed"].append({"name": path.name, "size": stat.st_size, "mtime": stat.st_mtime, "error": error})
        self.save()

    def add_result(self, entry: dict[str, Any]) -> None:
        self.data["failed"] = [f for f in self.data["failed"] if f["name"] != entry["checkpoint"]]
        self.data["checkpoints"] = sorted(
            [c for c in self.data["checkpoints"] if c["global_step"] != entry["global_step"]] + [entry],
            key=lambda c: c["global_step"],
        )
        self.save()

    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.data, indent=2, default=float).replace("NaN", "null") + "\n"
        _write_atomic(self.results_path, text)
        columns = ["global_step", "bin", "first_step", "last_step", *BIN_COLUMNS]
        lines = [",".join(columns)]
        for c in self.data["checkpoints"]:
            for row in c["bins"]:
                values = [c["global_step"], *(row[k] for k in columns[1:])]
                lines.append(",".join("" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"
                                      if isinstance(v, float) else str(v) for v in values))
        _write_atomic(self.path / "bins.csv", "\n".join(lines) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def read_results(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "results.json").read_text())


# ----------------------------------------------------------------------------- one checkpoint


def _load_agent(payload: dict[str, Any], cfg: ExperimentConfig, device: torch.device, path: Path):
    """Rebuild the agent for ``cfg.env`` and load the checkpoint's weights; mismatches raise CheckpointError."""
    from memo_rl import registry

    env = registry.make_vector_env(cfg.env, num_envs=1)
    try:
        agent = registry.make_agent(cfg, env.single_observation_space, env.single_action_space)
    finally:
        env.close()
    try:
        agent.load_state_dict(payload["model"])
    except RuntimeError as err:
        first = str(err).splitlines()
        detail = " ".join(line.strip() for line in first[:2])[:300]
        raise CheckpointError(
            f"{path} does not fit the agent for env '{cfg.env.id}' and core '{cfg.memory.core}' "
            f"(trained on another env, or by another memo-rl version): {detail}"
        ) from None
    return agent.to(device)


def evaluate_checkpoint(
    path: Path, payload: dict[str, Any], cfg: ExperimentConfig, device: torch.device, writer: Any | None,
    out_dir: Path,
) -> dict[str, Any]:
    """Play the checkpoint's trials; return its results entry (and log to TensorBoard)."""
    from memo_rl.logging import write_gif
    from memo_rl.probe import attention_image, probe_trial

    agent = _load_agent(payload, cfg, device, path)
    step = int(payload["global_step"])
    started = time.perf_counter()
    binned = play_trials(agent, cfg, device)
    bins = binned.table()
    trial_returns = binned.returns.sum(axis=1)  # [trials]
    entry = {
        "checkpoint": path.name,
        "global_step": step,
        "trial_return_mean": float(trial_returns.mean()),
        "trial_return_ci95": float(1.96 * trial_returns.std(ddof=1) / math.sqrt(len(trial_returns)))
        if len(trial_returns) > 1 else float("nan"),
        "trial_steps": binned.trial_steps,
        "episodes": float(binned.episodes.sum()),
        # over every episode that reported info["success"] (NaN when the env reports none)
        "success_rate": _ratio(binned.successes.sum(), binned.success_count.sum()),
        "max_cached_tokens": float(binned.cached_tokens.max()),
        "seconds": 0.0,
        "bins": bins,
        "trial_returns_by_bin": binned.returns.tolist(),
        "episodes_by_index": binned.episode_table(),
    }
    ev = cfg.eval
    probe = probe_trial(agent, cfg.env, device, seed=ev.seed + 999_983, video_steps=ev.video_steps,
                        attention_steps=min(ev.attention_steps, binned.trial_steps), deterministic=ev.deterministic)
    if probe.attention is not None:
        title = f"{cfg.memory.core} ckpt step {step:,}" + (f", window {cfg.memory.window}" if cfg.memory.window else "")
        image = attention_image(probe.attention, title)
        from PIL import Image

        out_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out_dir / f"attention_{step:012d}.png")
        entry["attention_png"] = f"attention_{step:012d}.png"
        if writer is not None:
            writer.add_image("eval/attention", image, step, dataformats="HWC")
    if writer is not None:
        if probe.frames is not None:
            write_gif(writer, "eval/video", probe.frames, step)
        writer.add_scalar("eval/trial_return_mean", entry["trial_return_mean"], step)
        writer.add_scalar("eval/max_cached_tokens", entry["max_cached_tokens"], step)
        if not math.isnan(entry["success_rate"]):
            writer.add_scalar("eval/success_rate", entry["success_rate"], step)
        for row in bins:
            for key in ("return_mean", "success_rate", "episode_length", "cached_tokens", "step_ms"):
                if not math.isnan(row[key]):
                    writer.add_scalar(f"eval/bin{row['bin']:02d}/{key}", row[key], step)
        for row in entry["episodes_by_index"]:
            for key in ("return_mean", "success_rate", "episode_length"):
                if not math.isnan(row[key]):
                    writer.add_scalar(f"eval/episode{row['episode']:02d}/{key}", row[key], step)
        writer.flush()
    entry["seconds"] = time.perf_counter() - started
    return entry


def describe(entry: dict[str, Any]) -> str:
    bins = " ".join(f"{row['return_mean']:.2f}" for row in entry["bins"])
    latency = [row["step_ms"] for row in entry["bins"]]
    by_episode = entry.get("episodes_by_index") or []
    if by_episode:  # success where the env reports it, else return, of episode 1, 2, ... of a trial
        label, key = ("success", "success_rate") if not math.isnan(by_episode[0]["success_rate"]) else ("return", "return_mean")
        values = " ".join(f"{row[key]:.2f}" for row in by_episode)
        by_episode_text = f" | {label} by episode of the trial: {values}"
    else:
        by_episode_text = ""
    success = entry.get("success_rate", math.nan)  # absent from results written before it was recorded
    success_text = "" if math.isnan(success) else f"success {success:.3f} over {entry['episodes']:,.0f} episodes | "
    return (
        f"{success_text}trial return {entry['trial_return_mean']:.2f} ± {entry['trial_return_ci95']:.2f} | return per bin: {bins}"
        f"{by_episode_text} | "
        f"tokens <= {entry['max_cached_tokens']:.0f} | {latency[0]:.2f} -> {latency[-1]:.2f} ms/step | "
        f"{entry['seconds']:.0f}s"
    )


# ----------------------------------------------------------------------------- the command


def evaluate_target(target: Target, overrides: list[str]) -> Path | None:
    """Evaluate every checkpoint of one PATH not evaluated yet (following the folder if asked).

    Unreadable or foreign checkpoints are reported on stderr, recorded in results.json and
    skipped (a single-file PATH fails with that one line instead). Returns the eval folder, or
    None when nothing could be evaluated.
    """
    from torch.utils.tensorboard import SummaryWriter

    from memo_rl.train import resolve_device

    options = build_config(None, overrides).eval
    out = Path(options.output) if options.output else target.run_dir / "eval" / (options.tag or options.default_tag)
    folder = EvalFolder(out)
    folder.check_options(options)
    follow = options.follow and target.folder is not None
    writer, evaluated, last_new = None, 0, time.monotonic()
    print(f"[memo-rl eval] {target.path} -> {folder.path}", flush=True)

    def skip(path: Path, error: str) -> None:
        if target.folder is None:
            raise ConfigError(error)
        print(f"[memo-rl eval] skipping {error}", file=sys.stderr)
        folder.add_failure(path, error)

    try:
        while True:
            found_new = False
            for listed_step, path in target.checkpoints():
                if listed_step in folder.done_steps() or folder.failed_before(path):
                    continue
                try:
                    payload = load_checkpoint(path)
                except CheckpointError as err:
                    skip(path, str(err))
                    continue
                algo = payload["config"].get("algo", "ppo")
                if algo != "ppo":
                    skip(path, f"{path.name} is a {algo} baseline checkpoint; memo-rl eval plays memo-rl agents "
                               "(algo=ppo) only, compare baselines through their training metrics")
                    continue
                step = int(payload["global_step"])
                if step in folder.done_steps():
                    print(f"[memo-rl eval] {path.name} (step {step:,}) already evaluated in {folder.path}", flush=True)
                    continue
                cfg = eval_config(payload["config"], overrides)
                mismatch = folder.check_settings(measured_settings(cfg), path)
                if mismatch:
                    skip(path, mismatch)
                    continue
                if writer is None and cfg.eval.tensorboard:
                    folder.path.mkdir(parents=True, exist_ok=True)
                    writer = SummaryWriter(log_dir=str(folder.path))
                if cfg.eval.threads > 0:
                    torch.set_num_threads(cfg.eval.threads)
                device = resolve_device(cfg.eval.device)
                print(f"[memo-rl eval] {path.name} (step {step:,}): {cfg.eval.trials} trials, core {cfg.memory.core}"
                      + (f", window {cfg.memory.window}" if cfg.memory.window else "") + f", device {device}", flush=True)
                try:
                    entry = evaluate_checkpoint(path, payload, cfg, device, writer, folder.path)
                except CheckpointError as err:
                    skip(path, str(err))
                    continue
                folder.add_result(entry)
                plot_checkpoints(folder)
                print(f"[memo-rl eval]   {describe(entry)}", flush=True)
                found_new, evaluated = True, evaluated + 1
            if found_new:
                last_new = time.monotonic()
            if not follow:
                break
            waited = time.monotonic() - last_new
            finished = (target.run_dir / "summary.json").exists() and not found_new
            if finished or waited > options.follow_timeout:
                reason = "training finished" if finished else f"no new checkpoint for {waited:.0f}s"
                print(f"[memo-rl eval] stopped following {target.path}: {reason}", flush=True)
                break
            time.sleep(options.poll_seconds)
    finally:
        if writer is not None:
            writer.close()
    done = len(folder.data["checkpoints"])
    failed = len(folder.data["failed"])
    print(f"[memo-rl eval] {folder.path}: {evaluated} evaluated now, {done} in total, {failed} unreadable or foreign", flush=True)
    return folder.path if done else None


def plot_checkpoints(folder: EvalFolder) -> Path:
    from memo_rl.plots import plot_eval_bins

    entries = folder.data["checkpoints"]
    curves = {f"step {c['global_step']:,}": c for c in entries}
    under_run = folder.path.parent.name == "eval"
    title = f"{folder.path.parent.parent.name}: {folder.path.name}" if under_run else str(folder.path)
    return plot_eval_bins(curves, folder.path / "bins.png", title=title)


def run_eval(args: list[str]) -> list[Path]:
    """``memo-rl eval``: evaluate each PATH; with several, also plot their newest checkpoints together."""
    paths, overrides = _split_args(args)
    base = build_config(None, overrides)  # validates the eval.* overrides before anything runs
    if base.eval.output and len(paths) > 1:
        raise ConfigError(f"eval.output names one folder but {len(paths)} PATHs were given; use eval.tag=NAME instead")
    targets = [resolve_target(p, base.eval.follow) for p in paths]
    folders = []
    for target in targets:
        out = evaluate_target(target, overrides)
        if out is not None:
            folders.append(out)
    if len(folders) > 1:
        from memo_rl.plots import plot_eval_bins

        curves = {}
        for out in folders:
            data = read_results(out)
            if data["checkpoints"]:
                newest = data["checkpoints"][-1]
                curves[f"{out.parent.parent.name} (step {newest['global_step']:,})"] = newest
        tag = folders[0].name
        default = Path(os.path.commonpath([str(f.parent.parent.parent) for f in folders])) / f"eval_{tag}_compare.png"
        plot = Path(base.eval.plot) if base.eval.plot else default
        plot_eval_bins(curves, plot, title=f"{tag}")
        print(f"[memo-rl eval] comparison plot: {plot}")
    return folders

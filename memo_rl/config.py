"""Typed experiment configuration: dataclass schema, YAML presets and dotted overrides.

A run's configuration is built in three layers, later ones winning:

1. the defaults of the dataclasses below;
2. a preset, ``configs/NAME.yaml``; a preset may list other presets under ``defaults:``
   (e.g. ``[env/dark_key_to_door, agent/gru]``), merged in order before its own keys;
3. command-line overrides ``section.key=value`` (OmegaConf dotlist syntax).

Every problem (unknown key, wrong type, bad choice, missing preset) raises :class:`ConfigError`
with a one-line message naming the bad key or value and what is allowed.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError


class ConfigError(ValueError):
    """A configuration problem, reported to the user as one line."""


@dataclass
class EnvConfig:
    """Which environment, how many copies, and its constructor options."""

    id: str = "memo_rl/DarkKeyToDoor-v0"
    """A registered gymnasium id (``memo_rl/...`` ids are ours; ``module:Id`` imports module first)."""
    num_envs: int = 16
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to the env constructor, e.g. ``env.kwargs.trial_length=2000``."""
    vectorization: str = "auto"
    """For envs without a batched implementation: ``sync`` or ``async`` gymnasium vector envs
    (``auto`` = the env's own batched version when it has one, else ``sync``)."""
    wrappers: list[str] = field(default_factory=list)
    """Gymnasium wrappers applied to each env, innermost first, as ``module:Class`` (e.g.
    ``minigrid.wrappers:RGBImgPartialObsWrapper``); for envs run through gymnasium's vector envs."""
    episodes_per_trial: int = 1
    """For envs run through gymnasium's vector envs: group this many consecutive episodes into one
    trial (``envs.trials.EpisodesPerTrial``), so memory carries across the episode ends inside it.
    1 = every episode is a trial. Our batched envs set their trials with their own kwargs."""


@dataclass
class AgentConfig:
    """Encoder, extra inputs and heads around the memory core."""

    hidden_size: int = 128
    """Width of the observation encoder."""
    d_model: int = 128
    """Width of the memory core's input and output."""
    prev_action: bool = True
    """Feed the previous action (one-hot) to the agent."""
    prev_reward: bool = True
    """Feed the previous reward to the agent."""
    episode_start: bool = True
    """Feed a flag marking the first step of an episode (episode ends inside a trial are visible)."""
    head_hidden: int = 0
    """Hidden width of the policy and value heads (0 = linear heads)."""
    core_skip: bool = False
    """Feed the heads the memory core's input beside its output (current features + memory)."""
    head_trunk: int = 0
    """Width of one hidden layer shared by the policy and value heads (0 = none)."""
    head_activation: str = "tanh"
    """Activation of the heads' hidden layers (and the trunk's): tanh or relu."""
    policy_gain: float = 0.01
    """Orthogonal-init gain of the policy's output layer (0.01: a near-uniform first policy)."""
    input_proj: bool = True
    """Project encoder features + extra inputs to d_model (Linear + ReLU) before the core; false feeds
    them as they are (their width must then equal d_model)."""
    cnn_channels: list[int] = field(default_factory=lambda: [32, 64])
    recall_max_lag: int = 0
    """Past-input recall (``agents.recall``): an auxiliary loss, weighted by ``ppo.recall_coef``, in
    which a decoder reproduces what was seen 1 to this many steps back (``recall_target``) from the
    core's output, giving the memory a direct signal to keep it. 0 = off."""
    recall_target: str = "observation"
    """What the recall decoder reproduces: ``observation`` (scaled and flattened, indices one-hot)
    or ``features`` (the encoder's output)."""
    recall_keys: list[str] | None = None
    """With ``recall_target=observation`` and a Dict observation, the keys recalled (e.g.
    ``[gps_compass]`` for nav3d: where the agent was, rather than thousands of pixel values);
    None = all encoded keys."""
    privileged_keys: list[str] | None = None
    """Keys of a Dict observation that the agent never reads but learns to predict from its memory
    core's output (``agents.privileged``): an auxiliary loss weighted by ``ppo.privileged_coef``,
    for state the env knows and the agent must infer, e.g. nav3d's ``goal_vector`` (where the goal
    is from the agent, with ``env.kwargs.goal_vector=true``). Training only: acting never uses
    them. None = off."""


@dataclass
class MemoryConfig:
    """The memory core (``memo_rl.memory``) and its options."""

    core: str = "gru"
    """One of the registered cores: none, gru, lstm, fct, trxl, memo, rmt, hcam (``memo_rl.memory``)."""
    # Core options (DESIGN.md section 3). None = the core's own default; an option the chosen
    # core does not take is ignored with a warning.
    n_layers: int | None = None
    n_heads: int | None = None
    segment_length: int | None = None
    """memo/rmt: steps per segment (l_seg); trxl: steps between stop-gradients of the cache."""
    summary_length: int | None = None
    """memo/rmt: summary tokens written per segment (l_sum)."""
    window: int | None = None
    """Streaming bound: memo keeps the newest W summary blocks, fct/trxl the newest W steps, hcam the
    newest W chunks."""
    randomize_segments: bool | None = None
    """memo/rmt: draw the training segment length from [0.8, 1.2] x segment_length per forward."""
    mlp_ratio: float | None = None
    """Transformer cores: gated-MLP width as a multiple of agent.d_model."""
    chunk_size: int | None = None
    """hcam: steps per memory chunk."""
    top_k: int | None = None
    """hcam: memory chunks each query reads; memo with read=hcam: summary blocks each query reads."""
    chunk_grad: bool | None = None
    """hcam: chunks stored during a training forward keep their gradient (default false: detached,
    as in the HCAM reference)."""
    chrono_timescale: int | None = None
    """gru/lstm: chrono initialisation of the gate biases, so units start keeping their state for
    2..T steps (uniform) instead of about 2; e.g. the trial length. None: PyTorch's init."""
    orthogonal_gain: float | None = None
    """gru/lstm: orthogonal init of the weight matrices with this gain and zero biases (e.g. 1.414,
    the recurrent-ppo-truncated-bptt recipe). None: PyTorch's init."""
    read: str | None = None
    """memo: how a step reads the summaries, ``full`` (attention to every summary token) or ``hcam``
    (the top_k most relevant summary blocks through hierarchical chunk attention)."""

    def core_options(self) -> dict[str, Any]:
        """The options that are set (not None), by name."""
        return {k: v for k, v in vars(self).items() if k != "core" and v is not None}


@dataclass
class PPOConfig:
    """PPO loss and update settings."""

    rollout_length: int = 128
    """Env steps per env collected before each update (T)."""
    epochs: int = 4
    num_minibatches: int = 4
    sequence_length: int | None = None
    """Split each env's rollout into sequences of this many steps for minibatching (the memory
    state at each sequence start is stored during rollout). None = whole rollouts."""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    gae_cut: str = "trial"
    """Where returns stop: ``trial`` (meta-RL: the objective spans the whole trial, episode ends
    inside a trial are ordinary transitions) or ``episode`` (cut at every episode end)."""
    bootstrap_truncation: bool = True
    """Where a return is cut by a time limit (truncated episode, or trial end), bootstrap with the
    value of the final observation instead of zero."""
    clip_coef: float = 0.2
    value_clip: float | None = None
    """Clip the value loss around the old values by this much (None = unclipped)."""
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    lr: float = 3e-4
    lr_schedule: str = "linear"
    """``constant``, ``linear`` (decay to ``min_lr``) or ``cosine`` (to ``min_lr``)."""
    warmup_steps: int = 0
    """Env steps of linear learning-rate warm-up."""
    min_lr: float = 0.0
    adam_eps: float = 1e-5
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW's): each step shrinks every weight by ``lr x weight_decay``.
    0 is plain Adam. The recurrent-PPO reference on MiniGrid uses AdamW's defaults (0.01, eps 1e-8)."""
    normalize_advantages: bool = True
    recall_coef: float = 1.0
    """Weight of the past-input recall loss (used when ``agent.recall_max_lag`` > 0)."""
    privileged_coef: float = 1.0
    """Weight of the privileged-prediction loss (used when ``agent.privileged_keys`` is set)."""
    recompute_old_policy: bool = False
    """For cores whose training forward is random (Memo's segment lengths in [0.8, 1.2] x l_seg):
    hold one draw for the whole update and recompute the rollout's log-probs and values under it
    before the first epoch, so PPO's ratio starts at 1. Off: a draw per forward, and the ratio is
    taken against the rollout's fixed-length segments (as Memo's reference trainer does). Other
    cores replay the rollout exactly either way and skip the recompute. Measured on Dark
    Key-to-Door (docs/results.md): on, Memo's updates grew and it learned far less in 3M steps,
    hence off by default."""
    refresh_memory: bool = True
    """After each update, rebuild the memory carried into the next rollout with the new weights by
    replaying the running trials' inputs (Memo's reference trainer does this). The replay is a
    forward pass over every running trial's steps so far (up to ``refresh_max_steps``), so its cost
    grows with the trial: on Nav3D (two CNN encoders, 4,000-step trials, 16 envs x 128 steps) the
    update took 2.3 s after the first rollout of a trial and 7.7 s twenty rollouts later, on 2 CPU
    cores. Recurrent cores are commonly trained on stale carried state (SB3's RecurrentPPO,
    cleanrl): ``false`` trades that exactness for a constant update time."""
    refresh_max_steps: int = 4096
    """Most steps per env kept for that replay; older parts of longer trials stay as recorded."""

    def adam_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``torch.optim.Adam`` (besides lr) for our trainer and the SB3
        baselines alike: ``adam_eps`` and AdamW's decoupled ``weight_decay`` (0 = plain Adam)."""
        return dict(eps=self.adam_eps, weight_decay=self.weight_decay, decoupled_weight_decay=True)


@dataclass
class SB3Config:
    """Stable-Baselines3 baselines (``algo=sb3_ppo`` / ``sb3_recurrent_ppo``, ``memo_rl.sb3_baselines``).

    Rollout and loss settings come from the ``ppo`` section (n_steps = ``ppo.rollout_length``,
    batch size = rollout_length x num_envs / ``ppo.num_minibatches``, ...); only the network
    shapes, which have no ``ppo`` counterpart, live here (defaults: SB3's own).
    """

    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden widths of the policy and value MLPs (after the LSTM for sb3_recurrent_ppo)."""
    lstm_hidden_size: int = 256
    """sb3_recurrent_ppo: LSTM width."""
    n_lstm_layers: int = 1
    """sb3_recurrent_ppo: stacked LSTM layers."""
    enable_critic_lstm: bool = True
    """sb3_recurrent_ppo: the critic has its own LSTM (False: it sees the observation only)."""


@dataclass
class TrainConfig:
    """Budget, seed and hardware."""

    total_steps: int = 200_000
    """Env steps summed over all envs."""
    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    threads: int = 1
    """torch CPU threads (pinned for speed and determinism; 0 = torch's default)."""
    amp: str = "auto"
    """Mixed precision: ``auto`` (bf16 autocast for transformer cores on CUDA), ``bf16`` or ``fp32``."""
    compile: bool = False
    """``torch.compile`` the agent's encoder, heads and attention blocks (first updates are slower)."""


@dataclass
class RunConfig:
    """Run directory, logging, checkpointing."""

    dir: str | None = None
    """Run directory; default ``runs/<preset>-<YYYYmmdd-HHMMSS>``."""
    resume: bool = False
    """Continue the run in ``run.dir`` from its newest intact checkpoint."""
    init_from: str | None = None
    """Start a new run from the agent weights of this checkpoint file, or of a run directory's newest
    checkpoint (fine-tuning, curricula: e.g. the same agent on a harder env variant; the run's
    config.yaml then names the file). Only the weights carry over: the optimizer, the
    step count, the RNG and the trials start fresh. The checkpoint's ``agent.*`` and ``memory.*``
    settings must equal this run's (except ``agent.recall_*``: the auxiliary recall head then starts
    fresh); the env may differ if its observation and action spaces do not. Ignored when resuming (the run's own checkpoint holds its weights)."""
    log_interval: int = 1
    """Updates between rows of metrics.csv / TensorBoard scalars."""
    checkpoint_interval: int = 10
    """Updates between checkpoints (a final checkpoint is always written)."""
    keep_checkpoints: int = 0
    """Keep only the newest K checkpoints (0 = keep all)."""
    video_interval: int = 0
    """Updates between TensorBoard videos of the agent (0 = off)."""
    video_steps: int = 200
    """Env steps recorded per video."""
    attention_interval: int = 50
    """Updates between TensorBoard attention heatmaps of one trial (attention cores; 0 = off)."""
    attention_steps: int = 1000
    """Most trial steps covered by a training attention heatmap."""
    progress: bool = True
    """Print a progress line at each log interval."""
    distributed: bool = False
    """Train on several ranks (DD-PPO style, :mod:`memo_rl.distributed`); needs the torchrun launcher,
    and a torchrun job is distributed even without it. ``env.num_envs`` is per rank,
    ``train.total_steps`` counts all ranks."""


@dataclass
class EvalConfig:
    """``memo-rl eval``: how checkpoints are played and what is recorded (DESIGN.md section 3)."""

    streaming: bool = False
    """Bound the memory by ``eval.window`` so memory and step time stay flat however long the trial."""
    window: int | None = None
    """Streaming bound: memo keeps the newest W summary blocks, fct/trxl the newest W steps, hcam the
    newest W chunks."""
    token_budget: int | None = None
    """Streaming bound in tokens instead of ``eval.window``, converted per core so cores compare at
    equal memory: memo keeps (B - segment_length) / summary_length summary blocks, fct/trxl B steps,
    hcam (B - chunk_size) / chunk_size chunks."""
    fixed_buffers: bool = False
    """Streaming Memo (``memory.read=full``): step the memory on fixed-size buffers
    (``memo_rl.memory.StreamingMemoStepper``) instead of ``core.step``. Same outputs up to float
    rounding, no per-step copy of the cache; on CUDA each step replays a recorded CUDA graph."""
    trial_steps: int | None = None
    """Trial length (env option ``trial_length``); None = the length the checkpoint trained on."""
    trials: int = 32
    """Trials played per checkpoint (fresh envs, one trial each)."""
    forget_episodes: bool = False
    """Clear the memory at every episode start, not only at trial starts, and hide the previous
    episode's last action and reward: an ablation of what the memory carries from one episode to
    the next (with it, a later episode knows no more than a first one)."""
    num_envs: int | None = None
    """Envs stepped in parallel (None = all trials at once); trials run in rounds of this many."""
    deterministic: bool = False
    """Greedy actions (argmax) instead of sampling."""
    seed: int = 1000
    bin_steps: int = 500
    """Width of the trial-step bins the metrics are reported in."""
    env_id: str | None = None
    """Evaluate on another registered env (observation and action spaces must match training's)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Env options merged over the training ones (e.g. a harder task variant)."""
    env_wrappers: list[str] | None = None
    """Replace the run's ``env.wrappers`` (None = keep them), e.g. to drop a training-only diagnostic."""
    tag: str | None = None
    """Name of this evaluation's folder under ``<run>/eval/`` (default: from the settings)."""
    output: str | None = None
    """Folder for results (default ``<run>/eval/<tag>``)."""
    plot: str | None = None
    """PNG comparing several PATHs (default: next to the runs, ``eval_<tag>_compare.png``)."""
    follow: bool = False
    """Folder mode: keep polling for new checkpoints while training writes them."""
    poll_seconds: float = 30.0
    follow_timeout: float = 1800.0
    """Stop following after this many seconds without a new checkpoint (or when training finished)."""
    video_steps: int = 200
    """Steps of one trial recorded as a TensorBoard video per checkpoint (0 = off)."""
    attention_steps: int = 1000
    """Steps of one trial covered by the attention heatmap (attention cores; 0 = off)."""
    tensorboard: bool = True
    device: str = "cpu"
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``."""
    threads: int = 1
    """torch CPU threads (0 = torch's default)."""

    @property
    def default_tag(self) -> str:
        memory = "full"
        if self.streaming and self.window is not None:
            memory = f"stream-w{self.window}"
        elif self.streaming and self.token_budget is not None:
            memory = f"stream-b{self.token_budget}"
        trial = f"t{self.trial_steps}" if self.trial_steps else "ttrain"
        mode = "greedy" if self.deterministic else "sampled"
        return f"{memory}-{trial}-{mode}" + ("-forget" if self.forget_episodes else "")


@dataclass
class ExperimentConfig:
    """The whole experiment. Section names are a public contract (DESIGN.md section 3)."""

    preset: str | None = None
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    algo: str = "ppo"
    ppo: PPOConfig = field(default_factory=PPOConfig)
    sb3: SB3Config = field(default_factory=SB3Config)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # Derived values: properties, never stored.
    @property
    def batch_size(self) -> int:
        """Env steps per update (rollout_length x num_envs)."""
        return self.ppo.rollout_length * self.env.num_envs

    @property
    def num_updates(self) -> int:
        return max(1, math.ceil(self.train.total_steps / self.batch_size))

    @property
    def sequence_length(self) -> int:
        return self.ppo.sequence_length or self.ppo.rollout_length


ALGOS = ("ppo", "sb3_ppo", "sb3_recurrent_ppo")
LR_SCHEDULES = ("constant", "linear", "cosine")
GAE_CUTS = ("trial", "episode")
VECTORIZATIONS = ("auto", "sync", "async")
MEMO_READS = ("full", "hcam")
AMP_MODES = ("auto", "bf16", "fp32")  # memo_rl.accel
RECALL_TARGETS = ("observation", "features")  # agent.recall_target (agents.recall)
HEAD_ACTIVATIONS = ("tanh", "relu")  # agent.head_activation (agents.actor_critic)


# ----------------------------------------------------------------------------- presets


def configs_dirs() -> list[Path]:
    """Where presets are looked up: ./configs, then the repository's configs/."""
    repo_configs = Path(__file__).resolve().parent.parent / "configs"
    dirs = [Path.cwd() / "configs", repo_configs]
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def available_presets() -> list[str]:
    names: set[str] = set()
    for d in configs_dirs():
        names.update(str(p.relative_to(d).with_suffix("")) for p in d.rglob("*.yaml"))
    return sorted(names)


def find_preset(name: str) -> Path:
    """Resolve a preset name (``dark_key_to_door_gru``, ``env/dark_room``, ``x.yaml`` or a path)."""
    direct = Path(name)
    if direct.suffix in (".yaml", ".yml") and direct.is_file():
        return direct
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    for d in configs_dirs():
        candidate = d / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    choices = available_presets()
    close = difflib.get_close_matches(stem, choices, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"unknown preset '{name}'{hint} (available: {', '.join(choices) or 'none'})")


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> DictConfig:
    """Load a preset and, recursively, the presets listed in its ``defaults``."""
    path = find_preset(name)
    if str(path) in _seen:
        raise ConfigError(f"preset '{name}' includes itself through 'defaults'")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"preset {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"preset {path} must be a mapping of config sections, got {type(raw).__name__}")
    merged = OmegaConf.create({})
    for parent in raw.pop("defaults", None) or []:
        merged = OmegaConf.merge(merged, load_preset(str(parent), _seen + (str(path),)))
    return OmegaConf.merge(merged, OmegaConf.create(raw))


# ----------------------------------------------------------------------------- building


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in fields(node):
        value = getattr(node, f.name)
        full = f"{prefix}{f.name}"
        keys.append(full)
        if is_dataclass(value):
            keys.extend(_all_keys(value, full + "."))
    return keys


def _friendly(err: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, ConfigKeyError):
        known = _all_keys(ExperimentConfig())
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        section = key.split(".")[0]
        if section not in {f.name for f in fields(ExperimentConfig)}:
            sections = ", ".join(f.name for f in fields(ExperimentConfig))
            return ConfigError(f"unknown config key '{key}' in {source}{hint} (sections: {sections})")
        return ConfigError(f"unknown config key '{key}' in {source}{hint}")
    if isinstance(err, ValidationError):
        value = getattr(err, "value", None)
        expected = re.search(r"converted to (\w+)", str(err))
        kind = expected.group(1).lower() if expected else "the declared type"
        return ConfigError(f"bad value {value!r} for '{key}' in {source}: expected {kind}")
    return ConfigError(f"bad config in {source}: {str(err).splitlines()[0]}")


def _parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form section.key=value")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse overrides {overrides}: {str(err).splitlines()[0]}") from None


def build_config(
    preset: str | None = None, overrides: list[str] | tuple[str, ...] = (), base: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Merge defaults, ``base`` (e.g. a stored run config), a preset and overrides into a validated
    :class:`ExperimentConfig`."""
    cfg = OmegaConf.structured(ExperimentConfig)
    layers: list[tuple[str, DictConfig]] = []
    if base is not None:
        layers.append(("stored config", OmegaConf.create(base)))
    if preset is not None:
        layers.append((f"preset '{preset}'", load_preset(preset)))
        layers.append(("preset name", OmegaConf.create({"preset": Path(preset).stem})))
    layers.append(("overrides", _parse_overrides(list(overrides))))
    for source, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as err:
            raise _friendly(err, source) from None
    experiment: ExperimentConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    validate(experiment)
    return experiment


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Rebuild a config saved with :func:`config_to_dict` (e.g. from a checkpoint or config.yaml)."""
    return build_config(base=data)


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def config_to_yaml(cfg: ExperimentConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


# ----------------------------------------------------------------------------- validation


def _choice(key: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), list(allowed), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"bad value {value!r} for '{key}'{hint} (choose from: {', '.join(allowed)})")


def _at_least(key: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"bad value {value!r} for '{key}': must be >= {low}")


def _in_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"bad value {value!r} for '{key}': must be in [{low}, {high}]")


def validate(cfg: ExperimentConfig) -> None:
    """Check choices and ranges that the type system cannot; raise ConfigError on the first problem."""
    from memo_rl.memory import core_names  # local: memory imports torch

    _choice("algo", cfg.algo, ALGOS)
    _choice("memory.core", cfg.memory.core, core_names())
    _choice("ppo.lr_schedule", cfg.ppo.lr_schedule, LR_SCHEDULES)
    _choice("ppo.gae_cut", cfg.ppo.gae_cut, GAE_CUTS)
    _choice("env.vectorization", cfg.env.vectorization, VECTORIZATIONS)
    _choice("train.amp", cfg.train.amp, AMP_MODES)
    _choice("agent.recall_target", cfg.agent.recall_target, RECALL_TARGETS)
    _choice("agent.head_activation", cfg.agent.head_activation, HEAD_ACTIVATIONS)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", cfg.train.device):
        raise ConfigError(f"bad value {cfg.train.device!r} for 'train.device' (choose from: auto, cpu, cuda, cuda:N)")
    for key, value, low in [
        ("env.num_envs", cfg.env.num_envs, 1),
        ("env.episodes_per_trial", cfg.env.episodes_per_trial, 1),
        ("agent.hidden_size", cfg.agent.hidden_size, 1),
        ("agent.d_model", cfg.agent.d_model, 1),
        ("agent.head_hidden", cfg.agent.head_hidden, 0),
        ("agent.head_trunk", cfg.agent.head_trunk, 0),
        ("agent.recall_max_lag", cfg.agent.recall_max_lag, 0),
        ("ppo.rollout_length", cfg.ppo.rollout_length, 1),
        ("ppo.epochs", cfg.ppo.epochs, 1),
        ("ppo.num_minibatches", cfg.ppo.num_minibatches, 1),
        ("ppo.lr", cfg.ppo.lr, 0.0),
        ("ppo.min_lr", cfg.ppo.min_lr, 0.0),
        ("ppo.warmup_steps", cfg.ppo.warmup_steps, 0),
        ("ppo.clip_coef", cfg.ppo.clip_coef, 0.0),
        ("ppo.vf_coef", cfg.ppo.vf_coef, 0.0),
        ("ppo.ent_coef", cfg.ppo.ent_coef, 0.0),
        ("ppo.recall_coef", cfg.ppo.recall_coef, 0.0),
        ("ppo.privileged_coef", cfg.ppo.privileged_coef, 0.0),
        ("ppo.max_grad_norm", cfg.ppo.max_grad_norm, 0.0),
        ("ppo.adam_eps", cfg.ppo.adam_eps, 0.0),
        ("ppo.weight_decay", cfg.ppo.weight_decay, 0.0),
        ("ppo.refresh_max_steps", cfg.ppo.refresh_max_steps, 1),
        ("train.total_steps", cfg.train.total_steps, 1),
        ("train.seed", cfg.train.seed, 0),
        ("train.threads", cfg.train.threads, 0),
        ("run.log_interval", cfg.run.log_interval, 1),
        ("run.checkpoint_interval", cfg.run.checkpoint_interval, 1),
        ("run.keep_checkpoints", cfg.run.keep_checkpoints, 0),
        ("run.video_interval", cfg.run.video_interval, 0),
        ("run.video_steps", cfg.run.video_steps, 1),
        ("run.attention_interval", cfg.run.attention_interval, 0),
        ("run.attention_steps", cfg.run.attention_steps, 1),
        ("eval.trials", cfg.eval.trials, 1),
        ("eval.seed", cfg.eval.seed, 0),
        ("eval.bin_steps", cfg.eval.bin_steps, 1),
        ("eval.poll_seconds", cfg.eval.poll_seconds, 0.0),
        ("eval.follow_timeout", cfg.eval.follow_timeout, 0.0),
        ("eval.video_steps", cfg.eval.video_steps, 0),
        ("eval.attention_steps", cfg.eval.attention_steps, 0),
        ("eval.threads", cfg.eval.threads, 0),
    ]:
        _at_least(key, value, low)
    if not cfg.agent.policy_gain > 0:
        raise ConfigError(f"bad value {cfg.agent.policy_gain!r} for 'agent.policy_gain': must be > 0")
    for key in ("n_layers", "n_heads", "segment_length", "summary_length", "window", "chunk_size", "top_k"):
        value = getattr(cfg.memory, key)
        if value is not None:
            _at_least(f"memory.{key}", value, 1)
    for key in ("window", "token_budget", "trial_steps", "num_envs"):
        value = getattr(cfg.eval, key)
        if value is not None:
            _at_least(f"eval.{key}", value, 1)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", cfg.eval.device):
        raise ConfigError(f"bad value {cfg.eval.device!r} for 'eval.device' (choose from: auto, cpu, cuda, cuda:N)")
    if cfg.eval.tag is not None and not re.fullmatch(r"[A-Za-z0-9_.=-]+", cfg.eval.tag):
        raise ConfigError(f"bad value {cfg.eval.tag!r} for 'eval.tag': use letters, digits and _ . = - only")
    if cfg.memory.read is not None:
        _choice("memory.read", cfg.memory.read, MEMO_READS)
    if cfg.memory.mlp_ratio is not None and cfg.memory.mlp_ratio <= 0:
        raise ConfigError(f"bad value {cfg.memory.mlp_ratio!r} for 'memory.mlp_ratio': must be > 0")
    _in_range("ppo.gamma", cfg.ppo.gamma, 0.0, 1.0)
    _in_range("ppo.gae_lambda", cfg.ppo.gae_lambda, 0.0, 1.0)
    if cfg.ppo.value_clip is not None:
        _at_least("ppo.value_clip", cfg.ppo.value_clip, 0.0)
    if cfg.ppo.sequence_length is not None:
        seq = cfg.ppo.sequence_length
        if seq < 1 or cfg.ppo.rollout_length % seq:
            raise ConfigError(
                f"bad value {seq} for 'ppo.sequence_length': must divide ppo.rollout_length={cfg.ppo.rollout_length}"
            )
    num_sequences = cfg.env.num_envs * (cfg.ppo.rollout_length // cfg.sequence_length)
    if num_sequences % cfg.ppo.num_minibatches:
        raise ConfigError(
            f"bad value {cfg.ppo.num_minibatches} for 'ppo.num_minibatches': must divide the number of "
            f"sequences per update ({num_sequences} = env.num_envs x rollout_length / sequence_length)"
        )

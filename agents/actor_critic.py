"""Actor-critic assembly: encoder -> (+ previous action, reward, episode flag) -> memory core -> heads.

The memory core is any :class:`memo_rl.memory.MemoryCore`; encoders are chosen from the
observation space (:mod:`agents.encoders`). Policies are categorical over a Discrete action space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.encoders import build_encoder
from agents.privileged import PrivilegedPrediction, split_privileged
from agents.recall import PastInputRecall
from memo_rl.config import RECALL_TARGETS
from memo_rl.memory import MemoryCore
from memo_rl.memory.base import resets_as_bool
from memo_rl.types import AgentInputs, AgentOutput


def _layer_init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}  # keys: memo_rl.config.HEAD_ACTIVATIONS


def _hidden_layer(d_in: int, d_out: int, activation: str) -> nn.Module:
    return nn.Sequential(_layer_init(nn.Linear(d_in, d_out), 2**0.5), _ACTIVATIONS[activation]())


def _head(d_in: int, hidden: int, d_out: int, out_gain: float, activation: str) -> nn.Module:
    if hidden == 0:
        return _layer_init(nn.Linear(d_in, d_out), out_gain)
    return nn.Sequential(_hidden_layer(d_in, hidden, activation), _layer_init(nn.Linear(hidden, d_out), out_gain))


class ActorCritic(nn.Module):
    """A memory policy with a categorical action head and a scalar value head.

    Args:
        observation_space: single-env observation space (any space ``build_encoder`` supports).
        action_space: single-env ``Discrete`` action space.
        core: the memory core; its ``d_model`` is the width fed to it and read from it.
        hidden_size: encoder width.
        use_prev_action / use_prev_reward / use_episode_start: which extra inputs are fed.
        head_hidden: hidden width of the heads (0 = linear heads).
        head_trunk: width of one hidden layer shared by both heads, between the core and them
            (0 = none: each head reads the core directly).
        head_activation: activation of the head and trunk hidden layers, ``tanh`` or ``relu``.
        policy_gain: orthogonal-init gain of the policy's output layer (small = near-uniform start).
        input_proj: project the encoder's features (and extra inputs) to ``d_model`` with a
            Linear + ReLU before the core. Without it the core reads them as they are, so their
            width (``hidden_size`` + extras) must equal ``d_model``.
        core_skip: feed the heads the core's input embedding beside its output, so the policy can
            compare what memory holds with what it sees now (e.g. a remembered goal position with
            the current position) without the core having to compute that comparison itself.
        cnn_channels: channels of the image encoder.
        recall_max_lag: with a value >= 1, add a :class:`agents.recall.PastInputRecall` decoder;
            the training forward (``forward_sequence`` with gradients on) then also returns its
            auxiliary loss in ``AgentOutput.recall_loss``. 0 = no recall head.
        recall_target: what is recalled: ``observation`` (the observation as the encoder first sees
            it, scaled and flattened, indices one-hot) or ``features`` (the encoder's output).
        recall_keys: with ``recall_target="observation"`` and a Dict observation space, recall only
            these keys (e.g. the GPS of an embodied task, which would otherwise be 3 of thousands of
            recalled pixel values). None = every encoded key.
        privileged_keys: keys of a Dict observation the agent never reads (the encoder is built
            without them) but learns to predict from the core's output at each step
            (:class:`agents.privileged.PrivilegedPrediction`); the training forward then returns that
            auxiliary loss in ``AgentOutput.privileged_loss``. None = off.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        core: MemoryCore,
        hidden_size: int = 128,
        use_prev_action: bool = True,
        use_prev_reward: bool = True,
        use_episode_start: bool = True,
        head_hidden: int = 0,
        core_skip: bool = False,
        cnn_channels: tuple[int, ...] = (32, 64),
        recall_max_lag: int = 0,
        recall_target: str = "observation",
        recall_keys: Sequence[str] | None = None,
        head_trunk: int = 0,
        head_activation: str = "tanh",
        policy_gain: float = 0.01,
        input_proj: bool = True,
        privileged_keys: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"action space {action_space} is not supported; memo-rl agents need Discrete actions")
        privileged_width = 0
        if privileged_keys is not None:
            try:
                observation_space, privileged_width = split_privileged(observation_space, privileged_keys)
            except ValueError as err:
                raise ValueError(f"agent.privileged_keys: {err}") from None
        self.num_actions = int(action_space.n)
        self.use_prev_action = use_prev_action
        self.use_prev_reward = use_prev_reward
        self.use_episode_start = use_episode_start
        self.encoder = build_encoder(observation_space, hidden_size=hidden_size, cnn_channels=tuple(cnn_channels))
        extra = self.num_actions * use_prev_action + int(use_prev_reward) + int(use_episode_start)
        if input_proj:
            self.input_proj = nn.Sequential(nn.Linear(self.encoder.out_dim + extra, core.d_model), nn.ReLU())
        elif self.encoder.out_dim + extra != core.d_model:
            raise ValueError(
                f"agent.input_proj=false feeds the core the encoder's {self.encoder.out_dim} features + {extra} "
                f"extra inputs = {self.encoder.out_dim + extra}, but agent.d_model is {core.d_model}; "
                "make them equal or set agent.input_proj=true")
        else:
            self.input_proj = nn.Identity()
        if head_activation not in _ACTIVATIONS:
            raise ValueError(f"agent.head_activation must be one of {', '.join(_ACTIVATIONS)}, got {head_activation!r}")
        if head_trunk < 0:
            raise ValueError(f"agent.head_trunk must be >= 0 (0 = no shared layer), got {head_trunk}")
        if not policy_gain > 0:
            raise ValueError(f"agent.policy_gain must be > 0, got {policy_gain}")
        self.core = core
        self.core_skip = core_skip
        head_in = core.d_model * (2 if core_skip else 1)
        self.head_trunk = _hidden_layer(head_in, head_trunk, head_activation) if head_trunk else nn.Identity()
        head_in = head_trunk or head_in
        self.policy_head = _head(head_in, head_hidden, self.num_actions, out_gain=policy_gain, activation=head_activation)
        self.value_head = _head(head_in, head_hidden, 1, out_gain=1.0, activation=head_activation)
        if recall_max_lag < 0:
            raise ValueError(f"agent.recall_max_lag must be >= 0 (0 = off), got {recall_max_lag}")
        if recall_target not in RECALL_TARGETS:
            raise ValueError(f"agent.recall_target must be one of {', '.join(RECALL_TARGETS)}, got {recall_target!r}")
        self.recall_target = recall_target
        self.recall_keys = tuple(recall_keys) if recall_keys is not None else None
        if self.recall_keys is not None and recall_target != "observation":
            raise ValueError(f"agent.recall_keys={list(self.recall_keys)} needs agent.recall_target=observation, "
                             f"got {recall_target!r}")
        try:
            d_target = self.encoder.flat_width(self.recall_keys) if recall_target == "observation" else self.encoder.out_dim
        except ValueError as err:
            raise ValueError(f"agent.recall_keys: {err}") from None
        self.recall = (PastInputRecall(core.d_model, d_target, recall_max_lag, hidden=max(head_hidden, core.d_model))
                       if recall_max_lag else None)
        self.privileged = (PrivilegedPrediction(privileged_keys, core.d_model, privileged_width,
                                                hidden=max(head_hidden, core.d_model))
                           if privileged_keys is not None else None)

    def initial_state(self, batch_size: int, device: torch.device | str) -> Any:
        return self.core.initial_state(batch_size, device)

    def describe(self) -> str:
        """One line for the training log: how observations are read, the extra inputs, the core
        and the parameter count (so a misread input layout is visible before training starts)."""
        extras = [name for name, used in (("previous action", self.use_prev_action),
                                          ("previous reward", self.use_prev_reward),
                                          ("episode start", self.use_episode_start)) if used]
        core = type(self.core).__name__
        n_params = sum(p.numel() for p in self.parameters())
        what = self.recall_target + (f": {', '.join(self.recall_keys)}" if self.recall_keys else "")
        auxiliary = f"; past-input recall ({what}) up to {self.recall.max_lag} steps back" if self.recall is not None else ""
        if self.privileged is not None:
            auxiliary += f"; predicts the unread {', '.join(self.privileged.keys)}"
        return (f"{self.encoder.describe()}; + {', '.join(extras) or 'no extra inputs'} -> "
                f"{core}({self.core.extra_repr()}){auxiliary}; {n_params:,} parameters")

    def embed(self, inputs: AgentInputs) -> Tensor:
        """Features ``[..., d_model]`` for the core, from inputs with any leading dims."""
        return self._embed(inputs)[1]

    def _embed(self, inputs: AgentInputs) -> tuple[Tensor, Tensor]:
        """(observation features ``[..., hidden_size]``, core input ``[..., d_model]``)."""
        observed = self.encoder(inputs.obs)
        parts = [observed]
        if self.use_prev_action:
            prev = inputs.prev_actions
            one_hot = F.one_hot(prev.clamp_min(0), self.num_actions).float()  # [..., A]
            parts.append(one_hot * (prev >= 0).unsqueeze(-1).float())
        if self.use_prev_reward:
            parts.append(inputs.prev_rewards.float().unsqueeze(-1))
        if self.use_episode_start:
            parts.append(inputs.episode_starts.float().unsqueeze(-1))
        return observed, self.input_proj(torch.cat(parts, dim=-1))

    def heads(self, embedded: Tensor, features: Tensor, state: Any) -> AgentOutput:
        """Policy logits and values from the core's output ``features`` (and its input ``embedded``
        with ``agent.core_skip``); ``state`` is passed through to the output."""
        if self.core_skip:
            features = torch.cat([features, embedded], dim=-1)  # [..., 2 * d_model]
        features = self.head_trunk(features)
        # fp32 outputs also under bf16 autocast (memo_rl.accel): sampling and losses stay exact.
        return AgentOutput(self.policy_head(features).float(), self.value_head(features).squeeze(-1).float(), state)

    def step(self, inputs: AgentInputs, state: Any, resets: Tensor) -> AgentOutput:
        """One env step for N envs: inputs ``[N, ...]``, resets ``[N]`` -> logits ``[N, A]``, values ``[N]``."""
        embedded = self.embed(inputs)
        features, state = self.core.step(embedded, state, resets)
        return self.heads(embedded, features, state)

    def forward_sequence(self, inputs: AgentInputs, state: Any, resets: Tensor) -> AgentOutput:
        """T steps for N envs: inputs ``[T, N, ...]``, resets ``[T, N]`` -> logits ``[T, N, A]``, values ``[T, N]``.

        With a recall head and gradients enabled (a PPO minibatch), ``recall_loss`` is set too;
        likewise ``privileged_loss`` with privileged keys.
        """
        observed, embedded = self._embed(inputs)
        features, state = self.core.forward_sequence(embedded, state, resets)
        out = self.heads(embedded, features, state)
        if self.recall is not None and torch.is_grad_enabled():
            resets = resets_as_bool(resets, tuple(embedded.shape[:2]), embedded.device)  # [T, N]
            target = (self.encoder.flat_scaled(inputs.obs, self.recall_keys) if self.recall_target == "observation"
                      else observed)  # [T, N, d_target]
            out = out._replace(recall_loss=self.recall(target, features, resets))
        if self.privileged is not None and torch.is_grad_enabled():
            targets = self.privileged.targets(inputs.obs, embedded.shape[:2])  # [T, N, d_privileged]
            out = out._replace(privileged_loss=self.privileged(targets, features))
        return out

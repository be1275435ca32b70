"""One PPO update over a filled :class:`RolloutStorage` (sequences replayed through the memory core)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from memo_rl.accel import autocast
from memo_rl.config import PPOConfig
from memo_rl.memory.base import MemoryCore
from memo_rl.ppo.categorical import log_prob_and_entropy
from memo_rl.ppo.losses import clipped_policy_loss, explained_variance, normalize_advantages, value_loss
from memo_rl.ppo.storage import RolloutStorage, from_sequences


@dataclass
class UpdateStats:
    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    grad_norm: float
    explained_variance: float
    recall_loss: float | None = None
    """Mean past-input recall loss (agents with a recall head; None otherwise)."""
    privileged_loss: float | None = None
    """Mean privileged-prediction loss (agents with ``agent.privileged_keys``; None otherwise)."""


def ppo_update(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    storage: RolloutStorage,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    cfg: PPOConfig,
    autocast_dtype: torch.dtype | None = None,
) -> UpdateStats:
    """Run ``cfg.epochs`` epochs of minibatch PPO; return the stats averaged over minibatches.

    ``model(inputs, initial_state, resets)`` is the agent's ``forward_sequence`` as a module
    (:class:`memo_rl.distributed.SequenceForward`, wrapped in DistributedDataParallel in a
    distributed job, which then averages each minibatch's gradients across ranks in ``backward``).
    Each minibatch replays whole sequences from the memory snapshot stored at the sequence start,
    so recurrent/transformer cores see what rollout saw. ``autocast_dtype`` (bf16, see
    :mod:`memo_rl.accel`) runs the forward under autocast; the losses use fp32 outputs.

    With ``cfg.recompute_old_policy`` and a core whose training forward is random (Memo's
    segment lengths), the update holds one draw for all its epochs and first recomputes the old
    log-probs and values under it, so the clipped ratio starts at exactly 1; otherwise the
    ratio is taken against the rollout's log-probs.
    """
    model.train()
    random_cores = [m for m in model.modules() if isinstance(m, MemoryCore) and m.random_training_forward]
    with contextlib.ExitStack() as held:
        old_log_probs = old_values = None
        if cfg.recompute_old_policy and random_cores:
            for core in random_cores:
                held.enter_context(core.fixed_training_draws())
            old_log_probs, old_values = replay_log_probs_and_values(
                model, storage, cfg.num_minibatches, autocast_dtype)
        return _run_epochs(model, optimizer, storage, advantages, returns, cfg, autocast_dtype,
                           old_log_probs, old_values)


def replay_log_probs_and_values(
    model: nn.Module, storage: RolloutStorage, num_chunks: int, autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[T, N]`` log-probs of the stored actions and values under ``model``'s forward as it is
    now (mode, weights, held draws), replaying every sequence from its stored memory snapshot."""
    device = next(model.parameters()).device
    zeros = torch.zeros_like(storage.values)
    log_probs = torch.empty(storage.S, storage.values.numel() // storage.S, device=device)  # [S, K*N]
    values = torch.empty_like(log_probs)  # [S, K*N]
    with torch.no_grad():
        for batch in storage.minibatches(zeros, zeros, num_chunks):
            with autocast(device, autocast_dtype):
                out = model(batch.inputs, batch.initial_state, batch.resets)
            log_probs[:, batch.index] = log_prob_and_entropy(out.logits, batch.actions)[0].float()
            values[:, batch.index] = out.values.float()
    return from_sequences(log_probs, storage.N), from_sequences(values, storage.N)  # [S, K*N] -> [T, N]


def _run_epochs(
    model: nn.Module, optimizer: torch.optim.Optimizer, storage: RolloutStorage, advantages: torch.Tensor,
    returns: torch.Tensor, cfg: PPOConfig, autocast_dtype: torch.dtype | None,
    old_log_probs: torch.Tensor | None, old_values: torch.Tensor | None,
) -> UpdateStats:
    device = next(model.parameters()).device
    totals = dict(policy_loss=0.0, value_loss=0.0, entropy=0.0, approx_kl=0.0, clip_fraction=0.0, grad_norm=0.0)
    count = 0
    for _ in range(cfg.epochs):
        for batch in storage.minibatches(advantages, returns, cfg.num_minibatches,
                                         log_probs=old_log_probs, values=old_values):
            with autocast(device, autocast_dtype):
                out = model(batch.inputs, batch.initial_state, batch.resets)
            log_probs, entropy = log_prob_and_entropy(out.logits, batch.actions)
            entropy = entropy.mean()
            adv = normalize_advantages(batch.advantages) if cfg.normalize_advantages else batch.advantages
            policy = clipped_policy_loss(log_probs, batch.log_probs, adv, cfg.clip_coef)
            v_loss = value_loss(out.values, batch.values, batch.returns, cfg.value_clip)
            loss = policy.loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
            if out.recall_loss is not None:
                loss = loss + cfg.recall_coef * out.recall_loss
                totals["recall_loss"] = totals.get("recall_loss", 0.0) + out.recall_loss.item()
            if out.privileged_loss is not None:
                loss = loss + cfg.privileged_coef * out.privileged_loss
                totals["privileged_loss"] = totals.get("privileged_loss", 0.0) + out.privileged_loss.item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            totals["policy_loss"] += policy.loss.item()
            totals["value_loss"] += v_loss.item()
            totals["entropy"] += entropy.item()
            totals["approx_kl"] += policy.approx_kl.item()
            totals["clip_fraction"] += policy.clip_fraction.item()
            totals["grad_norm"] += float(grad_norm)
            count += 1
    means = {k: v / count for k, v in totals.items()}
    return UpdateStats(**means, explained_variance=explained_variance(storage.values.flatten(), returns.flatten()))

"""PPO loss terms as small functions with an explicit valid mask (sample-factory style).

All inputs share one shape (e.g. ``[T, B]``); ``mask`` marks the entries that count (None = all).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x.mean()
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


class PolicyLoss(NamedTuple):
    loss: Tensor
    approx_kl: Tensor
    clip_fraction: Tensor


def clipped_policy_loss(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip_coef: float, mask: Tensor | None = None
) -> PolicyLoss:
    """PPO's clipped surrogate (Schulman et al. 2017), as a loss to minimise.

    loss = mean(max(-A * r, -A * clip(r, 1 - eps, 1 + eps))), r = exp(log_probs - old_log_probs).
    ``approx_kl`` is the low-variance estimator mean((r - 1) - log r).
    """
    log_ratio = log_probs - old_log_probs
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip_coef).to(ratio.dtype), mask)
    return PolicyLoss(loss, approx_kl, clip_fraction)


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, value_clip: float | None = None, mask: Tensor | None = None
) -> Tensor:
    """0.5 * squared error to the returns; with ``value_clip``, the max of the clipped and
    unclipped errors around the old values (as in PPO2 / cleanrl)."""
    error = (values - returns) ** 2
    if value_clip is not None:
        clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
        error = torch.maximum(error, (clipped - returns) ** 2)
    return 0.5 * masked_mean(error, mask)


def normalize_advantages(advantages: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    mean = masked_mean(advantages, mask)
    var = masked_mean((advantages - mean) ** 2, mask)
    return (advantages - mean) / (var.sqrt() + eps)


def explained_variance(values: Tensor, returns: Tensor) -> float:
    """1 - Var[returns - values] / Var[returns] (NaN when the returns are constant)."""
    var = returns.var()
    if var.item() == 0:
        return float("nan")
    return float(1.0 - (returns - values).var() / var)

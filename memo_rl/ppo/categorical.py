"""Categorical policy maths on raw logits, without building ``torch.distributions`` objects.

``torch.distributions.Categorical`` validates and normalises on construction, which costs more
than the policy itself for small agents (~200 us per rollout step on a 2-core CPU); these
functions do the same maths in two or three kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sample(logits: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Sample actions ``[...]`` from ``logits [..., A]`` (Gumbel-max) and return their log-probs."""
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(1e-20, 1.0)
    actions = (logits - (-uniform.log()).log()).argmax(-1)
    return actions, log_prob(logits, actions)


def log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """log pi(a) for ``logits [..., A]`` and ``actions [...]``."""
    return F.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def log_prob_and_entropy(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """``(log pi(a), H(pi))``, both ``[...]``, sharing one log-softmax."""
    log_p = F.log_softmax(logits, -1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1), entropy

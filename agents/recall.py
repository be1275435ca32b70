"""Past-input recall: an auxiliary loss that asks the memory to hold what the agent saw.

A policy gradient reaches a memory core only through what the policy does with the memory. When
the reward depends on an interaction between what was seen long ago and what is seen now (the
MiniGrid Memory decision compares the remembered cue with the object in view: an XOR), the
gradient that would teach the core to keep the cue is second-order and tiny until the policy
already reads it (docs/results.md, MiniGrid section). The recall loss gives the core a first-order
signal instead: at every training step ``t`` it draws a lag ``k`` in ``[1, max_lag]`` and asks a
small decoder to reproduce, from the core's output at ``t`` and the lag, what was seen at
``t - k``. Only pairs inside one memory span count (no memory reset in ``(t - k, t]``, and
``t - k`` inside the replayed sequence).

What is reproduced (``agent.recall_target``) is either the observation as the encoder first sees
it (``observation``: scaled, flattened, indices one-hot; the default) or the encoder's output
(``features``). Either is detached and standardised per feature over the minibatch. The loss is
then scale-free and cannot be lowered by shrinking the target, and a feature that is rarely on
(the cell of a one-hot view that shows the cue) weighs as much as one that always varies (walls,
as the agent turns). Choices measured on the cue XOR probe task and MiniGrid (docs/results.md):

- the agent's own previous actions are left out: early in training they are random and carry most
  of the input's variance, and with them in the target the cue was stored only faintly;
- the raw observation is the default: it does not depend on what the policy has learned so far
  (a policy that ignores the cue gives its encoder no reason to tell it apart), and with it the
  GRU solved the XOR task 2 to 3 times sooner than with the features target;
- standardising per feature rather than layer-normalising each target vector: MiniGrid's cue is 2
  of the 180 entries of the one-hot view.

This is our variant of the reconstruction losses used to help memory agents (e.g. the observation
reconstruction Memory Gym's Transformer-XL agent needs).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memo_rl.ppo.losses import masked_mean


def standardize(x: Tensor, min_std: float) -> Tensor:
    """Each feature of ``x`` ``[..., d]`` standardised over all leading positions (std floored at
    ``min_std``). A feature that is rarely on, such as the cell of a one-hot view that shows the
    cue, weighs as much as one that always varies."""
    flat = x.reshape(-1, x.shape[-1])  # [..., d] -> [M, d]
    mean, std = flat.mean(0), flat.std(0, correction=0).clamp_min(min_std)  # [d] each
    return (x - mean) / std


class PastInputRecall(nn.Module):
    """Decoder from (core output at ``t``, lag ``k``) to what was seen at ``t - k``.

    Args:
        d_model: width of the core's output.
        d_target: width of the recalled vectors.
        max_lag: largest lag drawn (lags are uniform in ``[1, max_lag]``), >= 1.
        hidden: hidden width of the decoder MLP.
        min_std: floor of the per-feature std the targets are standardised by (:func:`standardize`).
    """

    def __init__(self, d_model: int, d_target: int, max_lag: int, hidden: int, min_std: float = 0.05) -> None:
        super().__init__()
        self.min_std = min_std
        if max_lag < 1:
            raise ValueError(f"the recall lag must be >= 1, got {max_lag}")
        self.max_lag = max_lag
        self.lag_embedding = nn.Embedding(max_lag, d_model)
        self.decoder = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, d_target))

    def extra_repr(self) -> str:
        return f"max_lag={self.max_lag}"

    def forward(self, observed: Tensor, core_outputs: Tensor, resets: Tensor, lags: Tensor | None = None) -> Tensor:
        """Mean squared recall error over the valid (step, lag) pairs (0 when there is none).

        ``observed`` is ``[T, N, d_target]`` (what is recalled), ``core_outputs`` ``[T, N, d_model]``,
        ``resets`` ``[T, N]`` (True: memory cleared before step t). ``lags`` ``[T, N]`` in
        ``[1, max_lag]`` is drawn uniformly when None.
        """
        T, N, d = observed.shape
        if lags is None:
            lags = torch.randint(1, self.max_lag + 1, (T, N), device=observed.device)  # [T, N]
        steps = torch.arange(T, device=observed.device).unsqueeze(1)  # [T, 1]
        source = steps - lags  # [T, N]: the step to recall
        # span[t] counts the resets up to and including t: equal spans = no reset in (t - k, t].
        span = resets.long().cumsum(0)  # [T, N]
        safe_source = source.clamp_min(0)  # [T, N]
        valid = (source >= 0) & (span.gather(0, safe_source) == span)  # [T, N]
        target = standardize(observed.detach().float(), self.min_std)  # [T, N, d]
        target = target.gather(0, safe_source.unsqueeze(-1).expand(T, N, d))  # [T, N, d]: input at t - k
        prediction = self.decoder(core_outputs + self.lag_embedding(lags - 1)).float()  # [T, N, d]
        error = (prediction - target).pow(2).mean(-1)  # [T, N]
        return masked_mean(error, valid)

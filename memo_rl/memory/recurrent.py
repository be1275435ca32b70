"""Recurrent baselines (GRU, LSTM) and the memoryless core.

States (env dimension first, see ``base``):
- ``none``: ``()``.
- ``gru``: ``h [N, L, d]``.
- ``lstm``: ``LSTMState(h [N, L, d], c [N, L, d])``.
nn.GRU / nn.LSTM keep their hidden state as ``[L, N, d]``; we transpose at the call boundary.

``chrono_timescale=T`` sets the gate biases by chrono initialisation (Tallec & Ollivier 2018, "Can
recurrent neural networks warp time?"): each unit's update/forget gate starts so that it keeps its
state for a number of steps drawn uniformly from [2, T] instead of about 2. With PyTorch's
default init a unit halves its content every step, so information from an earlier episode of a
trial reaches the loss only through a product of ~0.5 factors per step and memory is slow to learn
across episodes; chrono init starts with long memory and lets training shorten it.

``orthogonal_gain=g`` initialises every weight matrix (input and recurrent, all gates stacked as
nn.GRU/nn.LSTM hold them) orthogonally with gain ``g`` and every bias at 0, as the recurrent PPO of
MarcoMeter/recurrent-ppo-truncated-bptt does with ``g = sqrt(2)``. PyTorch's default draws every
weight uniformly in +-1/sqrt(d), so each gate's recurrent block has RMS singular value 1/sqrt(3)
= 0.58, spread up to about 1.15; orthogonal init sets every singular value of the stacked matrix to
``g``, which gives each of the GRU's 3 gate blocks an RMS singular value of ``g / sqrt(3)`` (0.82 at
``g = sqrt(2)``) and a flatter spectrum. Chrono biases, when also asked for, are written after it.

``forward_sequence`` cuts the time axis at the steps where ANY env resets and runs the RNN over
each reset-free span in one cuDNN call, zeroing the resetting envs' state at the span start.
Resets in meta-RL trials are mostly synchronized across envs, so there are few spans; the result
equals looping ``step`` (sample-factory uses the same idea with packed sequences).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .base import MemoryCore, register_core, resets_as_bool, span_bounds


class NoMemory(MemoryCore):
    """Memoryless core: the identity, ``y = x``, with state ``()`` (a feed-forward agent)."""

    def __init__(self, d_model: int) -> None:
        super().__init__(d_model)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> tuple[()]:
        return ()

    def step(self, x: Tensor, state: tuple[()], resets: Tensor | None) -> tuple[Tensor, tuple[()]]:
        return x, ()

    def forward_sequence(
        self, x: Tensor, state: tuple[()], resets: Tensor | None
    ) -> tuple[Tensor, tuple[()]]:
        return x, ()

    def reset_state(self, state: tuple[()], resets: Tensor | None) -> tuple[()]:
        return ()


class _RNNCore(MemoryCore):
    """Shared logic of the GRU and LSTM cores. Subclasses set ``rnn`` and the state packing."""

    is_recurrent = True
    rnn_type: type[nn.GRU] | type[nn.LSTM]
    rnn: nn.GRU | nn.LSTM

    def __init__(
        self, d_model: int, n_layers: int = 1, chrono_timescale: int | None = None,
        orthogonal_gain: float | None = None,
    ) -> None:
        super().__init__(d_model)
        if int(n_layers) < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers!r}")
        if chrono_timescale is not None and int(chrono_timescale) < 2:
            raise ValueError(f"chrono_timescale must be an integer >= 2 (steps), got {chrono_timescale!r}")
        self.n_layers = int(n_layers)
        if orthogonal_gain is not None and not float(orthogonal_gain) > 0:
            raise ValueError(f"orthogonal_gain must be a number > 0, got {orthogonal_gain!r}")
        self.chrono_timescale = None if chrono_timescale is None else int(chrono_timescale)
        self.orthogonal_gain = None if orthogonal_gain is None else float(orthogonal_gain)
        self.rnn = self.rnn_type(self.d_model, self.d_model, num_layers=self.n_layers)
        if self.orthogonal_gain is not None:
            self._init_orthogonal()
        if self.chrono_timescale is not None:
            self._init_chrono()

    @torch.no_grad()
    def _init_orthogonal(self) -> None:
        """Orthogonal weights with gain ``orthogonal_gain``, zero biases (see the module docstring)."""
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight"):
                nn.init.orthogonal_(param, self.orthogonal_gain)
            else:
                nn.init.zeros_(param)

    @torch.no_grad()
    def _init_chrono(self) -> None:
        """Chrono initialisation of every layer: keep-gate biases ``log(u)``, ``u ~ U(1, T - 1)``
        per unit (timescales 2..T steps), written by :meth:`_set_keep_biases`."""
        for layer in range(self.n_layers):
            keep = torch.empty(self.d_model).uniform_(1.0, float(self.chrono_timescale - 1)).log()  # [d]
            self._set_keep_biases(getattr(self.rnn, f"bias_ih_l{layer}"), getattr(self.rnn, f"bias_hh_l{layer}"), keep)

    @abstractmethod
    def _set_keep_biases(self, b_ih: Tensor, b_hh: Tensor, keep: Tensor) -> None:
        """Write one layer's gate biases (in place) so its keep gate has bias ``keep [d]``."""

    # State packing: ours is [N, L, d] per tensor, nn.RNN's is [L, N, d].
    @abstractmethod
    def _to_rnn(self, state):
        """Our state (env dim first) -> nn.GRU/nn.LSTM's hidden layout."""

    @abstractmethod
    def _from_rnn(self, hidden):
        """nn.GRU/nn.LSTM's hidden layout -> our state (env dim first)."""

    def _zeros(self, batch_size: int, device: torch.device | str | None) -> Tensor:
        dtype = next(self.parameters()).dtype
        return torch.zeros(batch_size, self.n_layers, self.d_model, device=device, dtype=dtype)  # [N, L, d]

    def step(self, x: Tensor, state, resets: Tensor | None):
        """``x [N, d]``, ``resets [N]`` -> ``y [N, d]``, new state."""
        N = x.shape[0]
        state = self.reset_state(state, resets_as_bool(resets, (N,), x.device))
        y, hidden = self.rnn(x.unsqueeze(0), self._to_rnn(state))  # [N, d] -> [1, N, d]
        return y.squeeze(0), self._from_rnn(hidden)  # [1, N, d] -> [N, d]

    def forward_sequence(self, x: Tensor, state, resets: Tensor | None):
        """``x [T, N, d]``, ``resets [T, N]`` -> ``y [T, N, d]``, state after step T-1."""
        T, N = x.shape[:2]
        resets = resets_as_bool(resets, (T, N), x.device)
        if T == 0:
            return x, state
        bounds = span_bounds(resets)
        ys = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            state = self.reset_state(state, resets[a])  # only step a of [a, b) may hold resets
            y, hidden = self.rnn(x[a:b], self._to_rnn(state))  # y [b - a, N, d]
            state = self._from_rnn(hidden)
            ys.append(y)
        return torch.cat(ys, dim=0) if len(ys) > 1 else ys[0], state  # [T, N, d]

    def extra_repr(self) -> str:
        chrono = "" if self.chrono_timescale is None else f", chrono_timescale={self.chrono_timescale}"
        ortho = "" if self.orthogonal_gain is None else f", orthogonal_gain={self.orthogonal_gain:g}"
        return f"d_model={self.d_model}, n_layers={self.n_layers}{chrono}{ortho}"


class GRUCore(_RNNCore):
    """A stacked GRU of width ``d_model`` (``n_layers`` layers). State: ``h [N, L, d]``.

    ``chrono_timescale``: see the module docstring (update-gate biases; None = PyTorch's init).
    """

    rnn_type = nn.GRU

    def _set_keep_biases(self, b_ih: Tensor, b_hh: Tensor, keep: Tensor) -> None:
        # nn.GRU: h' = (1 - z) * n + z * h, gates stacked (r, z, n) in the biases [3d]; z -> 1 keeps h.
        d = self.d_model
        b_ih[d : 2 * d] = keep
        b_hh[d : 2 * d] = 0.0

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Tensor:
        return self._zeros(batch_size, device)

    def reset_state(self, state: Tensor, resets: Tensor | None) -> Tensor:
        if resets is None:
            return state
        return state.masked_fill(resets.to(torch.bool).view(-1, 1, 1), 0.0)  # mask [N] -> [N, 1, 1]

    def _to_rnn(self, state: Tensor) -> Tensor:
        return state.transpose(0, 1).contiguous()  # [N, L, d] -> [L, N, d]

    def _from_rnn(self, hidden: Tensor) -> Tensor:
        return hidden.transpose(0, 1)  # [L, N, d] -> [N, L, d]


class LSTMState(NamedTuple):
    """LSTM memory: hidden and cell states, each ``[N, L, d]``."""

    h: Tensor
    c: Tensor


class LSTMCore(_RNNCore):
    """A stacked LSTM of width ``d_model`` (``n_layers`` layers). State: ``LSTMState(h, c)``.

    ``chrono_timescale``: see the module docstring (forget-gate biases ``b_f`` and input-gate
    biases ``-b_f``; None = PyTorch's init).
    """

    rnn_type = nn.LSTM

    def _set_keep_biases(self, b_ih: Tensor, b_hh: Tensor, keep: Tensor) -> None:
        # nn.LSTM: c' = f * c + i * g, gates stacked (i, f, g, o) in the biases [4d]; f = keep, i = -keep.
        d = self.d_model
        b_ih[0:d], b_ih[d : 2 * d] = -keep, keep
        b_hh[0 : 2 * d] = 0.0

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> LSTMState:
        return LSTMState(self._zeros(batch_size, device), self._zeros(batch_size, device))

    def reset_state(self, state: LSTMState, resets: Tensor | None) -> LSTMState:
        if resets is None:
            return state
        mask = resets.to(torch.bool).view(-1, 1, 1)  # [N] -> [N, 1, 1]
        return LSTMState(state.h.masked_fill(mask, 0.0), state.c.masked_fill(mask, 0.0))

    def _to_rnn(self, state: LSTMState) -> tuple[Tensor, Tensor]:
        h, c = state
        return h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous()  # [N, L, d] -> [L, N, d]

    def _from_rnn(self, hidden: tuple[Tensor, Tensor]) -> LSTMState:
        h, c = hidden
        return LSTMState(h.transpose(0, 1), c.transpose(0, 1))  # [L, N, d] -> [N, L, d]


register_core("none", NoMemory)
register_core("gru", GRUCore)
register_core("lstm", LSTMCore)

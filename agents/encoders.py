"""Observation encoders chosen from the observation space.

``build_encoder(space)`` returns an :class:`ObservationEncoder` mapping raw observations with any
leading dims ``[..., *obs_shape]`` (e.g. ``[N, ...]`` at rollout, ``[T, N, ...]`` in training;
dicts of such tensors for ``Dict`` spaces) to float features ``[..., out_dim]``:

- ``Box`` with 3 dims (an image; channel-last HWC like gymnasium/MiniGrid, or channel-first when
  the first dim is 1/3/4, the last is not, and the first is strictly the smallest, so a 3x3 view
  with 20 one-hot channels ``[3, 3, 20]`` stays HWC while ``[3, 64, 64]`` is CHW): inputs are
  scaled to [0, 1] with the space's finite bounds, ``(x - low) / (high - low)`` (uint8 0..255 ->
  x / 255), then a CNN:
  * small images (min side < 36, e.g. MiniGrid 3x3 / 7x7 views): 3x3 convs, padding 1, stride 1;
  * larger images (e.g. 64x64 RGB): a Nature-CNN-like strided stack (8x8/4, 4x4/2, then 3x3/1),
    kernels shrunk to the feature map when it gets smaller than a kernel (Mnih et al. 2015);
  then flatten -> Linear -> ReLU to ``hidden_size``. All convs are ReLU-activated.
  Note: the scaling uses the DECLARED bounds. MiniGrid declares ``Box(0, 255)`` for its symbolic
  grid (category indices <= 10); the MiniGrid presets one-hot it first
  (``envs.minigrid.SymbolicOneHot``), and other adapters should declare their true bounds.
- any other ``Box`` (flattened) and ``MultiBinary``: MLP, 2 layers of ``hidden_size`` with ReLU.
  A Box dimension whose bounds are both finite and reach outside [-1, 1] is mapped affinely to
  [-1, 1]; other dimensions are used as they are.
- ``Discrete(n)``: ``nn.Embedding(n, hidden_size)`` (``start`` is subtracted).
- ``MultiDiscrete``: one embedding table per component (stored as one table with row offsets),
  outputs concatenated: ``out_dim = n_components * hidden_size``.
- ``Dict``: one encoder per key (sorted keys, nested Dicts allowed), outputs concatenated. Keys
  whose space is non-numeric (``Text``, MiniGrid's ``MissionSpace``, ...) are skipped and listed in
  ``encoder.skipped_keys`` (nested keys as ``"outer.inner"``).

Linear and conv layers use orthogonal init with gain sqrt(2) and zero bias (as in cleanrl's PPO).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn

SUPPORTED_SPACES = (
    "Box (3-dim image, HWC or CHW; any other shape as a vector), Discrete, MultiDiscrete, MultiBinary, "
    "and Dict of these (non-numeric keys such as Text are skipped)"
)
SMALL_IMAGE_SIDE = 36  # below this (min side) images get unstrided 3x3 convs
_NATURE_SCHEDULE = ((8, 4), (4, 2), (3, 1))  # (kernel, stride) of the Nature-CNN layers


def _unsupported(space: Any) -> ValueError:
    return ValueError(f"unsupported observation space {space!r}; supported: {SUPPORTED_SPACES}")


def _is_non_numeric(space: spaces.Space) -> bool:
    """True for spaces with no numeric tensor form (Text, MiniGrid's MissionSpace, ...)."""
    if isinstance(space, spaces.Text):
        return True
    dtype = getattr(space, "dtype", None)
    return dtype is not None and np.dtype(dtype).kind in "USO"


def _init(layer: nn.Module) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain=2**0.5)
    nn.init.zeros_(layer.bias)
    return layer


def _affine_buffers(scale: np.ndarray, shift: np.ndarray) -> tuple[Tensor, Tensor]:
    """Tensors for ``x * scale + shift``; collapsed to scalars when uniform."""
    if np.all(scale == scale.flat[0]) and np.all(shift == shift.flat[0]):
        scale, shift = scale.reshape(-1)[:1].reshape(()), shift.reshape(-1)[:1].reshape(())
    return torch.as_tensor(scale, dtype=torch.float32), torch.as_tensor(shift, dtype=torch.float32)


def _unit_affine(box: spaces.Box) -> tuple[Tensor, Tensor]:
    """Image scaling ``(x - low) / (high - low)`` where both bounds are finite, identity elsewhere."""
    low, high = box.low.astype(np.float64), box.high.astype(np.float64)
    ok = np.isfinite(low) & np.isfinite(high) & (high > low)
    span = np.where(ok, high - low, 1.0)
    return _affine_buffers(np.where(ok, 1.0 / span, 1.0), np.where(ok, -low / span, 0.0))


def _symmetric_affine(box: spaces.Box) -> tuple[Tensor, Tensor]:
    """Vector scaling to [-1, 1] where bounds are finite and reach outside [-1, 1], identity elsewhere."""
    low, high = box.low.astype(np.float64), box.high.astype(np.float64)
    ok = np.isfinite(low) & np.isfinite(high) & (high > low) & ((low < -1) | (high > 1))
    span = np.where(ok, high - low, 1.0)
    return _affine_buffers(np.where(ok, 2.0 / span, 1.0), np.where(ok, -1.0 - 2.0 * low / span, 0.0))


class SpaceEncoder(nn.Module, metaclass=ABCMeta):
    """Encoder of one non-Dict space: ``[..., *event_shape]`` -> ``[..., out_dim]``.

    Subclasses implement ``encode`` on a flat batch ``[B, *event_shape]``; ``forward`` flattens the
    leading dims into B and restores them.
    """

    event_shape: tuple[int, ...]
    out_dim: int
    flat_dim: int
    """Width of :meth:`flat_scaled`'s output."""

    @abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """Implemented by each subclass."""

    def flat_scaled(self, x: Tensor) -> Tensor:
        """The observation itself as the network first sees it, ``[..., flat_dim]``: boxes scaled as in
        ``encode`` and flattened (the default), indices one-hot (Discrete, MultiDiscrete). A
        reconstruction target that does not depend on learned weights (``agents.recall``)."""
        lead = x.shape[: x.dim() - len(self.event_shape)]
        return (x.float() * self.scale + self.shift).reshape(*lead, self.flat_dim)  # [..., *event] -> [..., F]

    @abstractmethod
    def describe(self) -> str:
        """One line saying how the input is read, e.g. ``image [3, 3, 20] HWC: 20 channels of 3x3 -> CNN 32-64 -> 64``."""

    def forward(self, x: Tensor) -> Tensor:
        k = len(self.event_shape)
        if x.dim() < k or tuple(x.shape[x.dim() - k :]) != self.event_shape:
            raise ValueError(
                f"{type(self).__name__}: expected observations [..., {', '.join(map(str, self.event_shape))}], "
                f"got {list(x.shape)}"
            )
        lead = x.shape[: x.dim() - k]
        out = self.encode(x.reshape(-1, *self.event_shape))  # [..., *event] -> [B, *event] -> [B, out]
        return out.reshape(*lead, self.out_dim)  # [B, out] -> [..., out]


def image_is_channel_first(shape: Sequence[int]) -> bool:
    """Whether a 3-dim image shape is CHW rather than HWC (the gymnasium/MiniGrid convention).

    CHW needs a channel-like first dim (1, 3 or 4) that is strictly smaller than both others and a
    last dim that is not channel-like; ties go to HWC. So ``[3, 64, 64]`` and ``[4, 84, 84]`` are
    CHW, while ``[64, 64, 3]``, ``[3, 3, 3]`` and a small one-hot view ``[3, 3, 20]`` are HWC.
    """
    a, b, c = shape
    return a in (1, 3, 4) and c not in (1, 3, 4) and a < min(b, c)


class ImageEncoder(SpaceEncoder):
    """CNN over a 3-dim ``Box`` (HWC or CHW), see the module docstring for the architecture."""

    def __init__(self, space: spaces.Box, hidden_size: int, cnn_channels: Sequence[int]) -> None:
        super().__init__()
        a, b, c = space.shape
        self.event_shape = tuple(space.shape)
        self.channel_first = image_is_channel_first(space.shape)
        C, H, W = (a, b, c) if self.channel_first else (c, a, b)
        if not cnn_channels:
            raise ValueError("cnn_channels must name at least one conv layer")
        scale, shift = _unit_affine(space)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

        layers: list[nn.Module] = []
        in_c, h, w = C, H, W
        self.small = min(H, W) < SMALL_IMAGE_SIDE
        for i, out_c in enumerate(cnn_channels):
            if self.small:
                conv = nn.Conv2d(in_c, out_c, kernel_size=3, padding=1)
            else:
                k, s = _NATURE_SCHEDULE[min(i, len(_NATURE_SCHEDULE) - 1)]
                if min(h, w) < k:  # feature map smaller than the kernel: shrink it, stop striding
                    k, s = min(h, w, 3), 1
                conv = nn.Conv2d(in_c, out_c, kernel_size=k, stride=s)
                h, w = (h - k) // s + 1, (w - k) // s + 1
            layers += [_init(conv), nn.ReLU()]
            in_c = out_c
        self.convs = nn.Sequential(*layers)
        n_flat = in_c * h * w
        self.fc = nn.Sequential(_init(nn.Linear(n_flat, hidden_size)), nn.ReLU())
        self.out_dim = hidden_size
        self.flat_dim = a * b * c

    def describe(self) -> str:
        a, b, c = self.event_shape
        C, H, W = (a, b, c) if self.channel_first else (c, a, b)
        layout = "CHW" if self.channel_first else "HWC"
        channels = "-".join(str(m.out_channels) for m in self.convs if isinstance(m, nn.Conv2d))
        return (f"image {list(self.event_shape)} {layout}: {C} channel{'s' if C != 1 else ''} of {H}x{W} -> "
                f"CNN {channels} -> {self.out_dim}")

    def encode(self, x: Tensor) -> Tensor:
        x = x.float() * self.scale + self.shift
        if not self.channel_first:
            x = x.permute(0, 3, 1, 2)  # [B, H, W, C] -> [B, C, H, W]
        x = self.convs(x).flatten(1)  # [B, c, h, w] -> [B, c * h * w]
        return self.fc(x)


class VectorEncoder(SpaceEncoder):
    """Two-layer ReLU MLP over a flattened ``Box`` (scaled, see module docstring) or ``MultiBinary``."""

    def __init__(self, space: spaces.Box | spaces.MultiBinary, hidden_size: int) -> None:
        super().__init__()
        self.event_shape = tuple(space.shape)
        if isinstance(space, spaces.Box):
            scale, shift = _symmetric_affine(space)
        else:
            scale, shift = torch.tensor(1.0), torch.tensor(0.0)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
        n_in = int(np.prod(self.event_shape))  # 1 for a scalar Box
        self.flat_dim = n_in
        self.mlp = nn.Sequential(
            _init(nn.Linear(n_in, hidden_size)),
            nn.ReLU(),
            _init(nn.Linear(hidden_size, hidden_size)),
            nn.ReLU(),
        )
        self.out_dim = hidden_size

    def describe(self) -> str:
        n_in = self.mlp[0].in_features
        return f"vector {list(self.event_shape)} -> MLP {n_in}-{self.out_dim}-{self.out_dim}"

    def encode(self, x: Tensor) -> Tensor:
        x = x.float() * self.scale + self.shift
        return self.mlp(x.reshape(x.shape[0], -1))  # [B, *shape] -> [B, F]


class DiscreteEncoder(SpaceEncoder):
    """``nn.Embedding(n, hidden_size)`` over a ``Discrete(n, start)`` index ``[...]``."""

    def __init__(self, space: spaces.Discrete, hidden_size: int) -> None:
        super().__init__()
        self.event_shape = ()
        self.start = int(space.start)
        self.embedding = nn.Embedding(int(space.n), hidden_size)
        self.out_dim = hidden_size
        self.flat_dim = int(space.n)

    def describe(self) -> str:
        return f"discrete({self.embedding.num_embeddings}) -> embedding {self.out_dim}"

    def encode(self, x: Tensor) -> Tensor:
        return self.embedding(x.long() - self.start)  # [B] -> [B, hidden]

    def flat_scaled(self, x: Tensor) -> Tensor:
        return F.one_hot(x.long() - self.start, self.flat_dim).float()  # [...] -> [..., n]


class MultiDiscreteEncoder(SpaceEncoder):
    """One embedding table per ``MultiDiscrete`` component, concatenated: ``K * hidden_size`` wide.

    The K tables are stored as one table whose rows for component k start at ``offsets[k]``.
    """

    def __init__(self, space: spaces.MultiDiscrete, hidden_size: int) -> None:
        super().__init__()
        self.event_shape = tuple(space.shape)
        nvec = np.asarray(space.nvec, dtype=np.int64).reshape(-1)
        start = np.asarray(space.start, dtype=np.int64).reshape(-1)
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]]) - start
        self.register_buffer("offsets", torch.as_tensor(offsets), persistent=False)  # [K]
        self.n_components = nvec.size
        self.embedding = nn.Embedding(int(nvec.sum()), hidden_size)
        self.out_dim = self.n_components * hidden_size
        self.flat_dim = int(nvec.sum())

    def describe(self) -> str:
        return f"multi-discrete {list(self.event_shape)} -> {self.n_components} embeddings of {self.embedding.embedding_dim}"

    def encode(self, x: Tensor) -> Tensor:
        idx = x.long().reshape(x.shape[0], self.n_components) + self.offsets  # [B, *shape] -> [B, K]
        return self.embedding(idx).flatten(1)  # [B, K, hidden] -> [B, K * hidden]

    def flat_scaled(self, x: Tensor) -> Tensor:
        lead = x.shape[: x.dim() - len(self.event_shape)]
        idx = x.long().reshape(*lead, self.n_components) + self.offsets  # [..., *shape] -> [..., K]
        return F.one_hot(idx, self.flat_dim).sum(-2).float()  # [..., K, F] -> [..., F]: K ones


def _build_space_encoder(space: spaces.Space, hidden_size: int, cnn_channels: Sequence[int]) -> SpaceEncoder:
    if isinstance(space, spaces.Box):
        if len(space.shape) == 3:
            return ImageEncoder(space, hidden_size, cnn_channels)
        return VectorEncoder(space, hidden_size)
    if isinstance(space, spaces.MultiBinary):
        return VectorEncoder(space, hidden_size)
    if isinstance(space, spaces.Discrete):
        return DiscreteEncoder(space, hidden_size)
    if isinstance(space, spaces.MultiDiscrete):
        return MultiDiscreteEncoder(space, hidden_size)
    raise _unsupported(space)


class ObservationEncoder(nn.Module):
    """Features ``[..., out_dim]`` from observations ``[..., *obs_shape]`` (or a dict of them).

    Attributes:
        out_dim: feature width.
        keys: encoded keys of a ``Dict`` space in order (sorted), or None for a non-Dict space.
        skipped_keys: keys of a ``Dict`` space that are not encoded (non-numeric spaces).
    """

    def __init__(
        self, observation_space: spaces.Space, hidden_size: int = 128, cnn_channels: Sequence[int] = (32, 64)
    ) -> None:
        super().__init__()
        if int(hidden_size) <= 0:
            raise ValueError(f"hidden_size must be a positive int, got {hidden_size!r}")
        hidden_size = int(hidden_size)
        skipped: list[str] = []
        if isinstance(observation_space, spaces.Dict):
            keys, encoders = [], []
            for key in sorted(observation_space.spaces):
                sub = observation_space.spaces[key]
                if _is_non_numeric(sub):
                    skipped.append(key)
                    continue
                if isinstance(sub, spaces.Dict):
                    enc: nn.Module = ObservationEncoder(sub, hidden_size, cnn_channels)
                    skipped += [f"{key}.{k}" for k in enc.skipped_keys]
                else:
                    enc = _build_space_encoder(sub, hidden_size, cnn_channels)
                keys.append(key)
                encoders.append(enc)
            if not keys:
                raise ValueError(f"observation space {observation_space!r} has no numeric keys to encode")
            self.keys: tuple[str, ...] | None = tuple(keys)
        else:
            encoders = [_build_space_encoder(observation_space, hidden_size, cnn_channels)]
            self.keys = None
        self.encoders = nn.ModuleList(encoders)
        self.skipped_keys: tuple[str, ...] = tuple(skipped)
        self.out_dim: int = sum(e.out_dim for e in encoders)
        self.flat_dim: int = sum(e.flat_dim for e in encoders)

    def describe(self) -> str:
        """How each input is read, one clause per key (``key: ...; key: ...``), skipped keys last."""
        if self.keys is None:
            return self.encoders[0].describe()
        parts = [f"{key}: {enc.describe()}" for key, enc in zip(self.keys, self.encoders)]
        if self.skipped_keys:
            parts.append(f"skipped: {', '.join(self.skipped_keys)}")
        return "; ".join(parts)

    def forward(self, obs: Tensor | Mapping[str, Any]) -> Tensor:
        if self.keys is None:
            return self.encoders[0](obs)
        if not isinstance(obs, Mapping):
            raise TypeError(f"a Dict observation space needs a dict of tensors, got {type(obs).__name__}")
        missing = [k for k in self.keys if k not in obs]
        if missing:
            raise KeyError(f"observation is missing keys {missing}; expected {list(self.keys)}")
        feats = [enc(obs[k]) for k, enc in zip(self.keys, self.encoders)]  # each [..., d_k]
        return torch.cat(feats, dim=-1) if len(feats) > 1 else feats[0]  # [..., out_dim]

    def flat_width(self, keys: Sequence[str] | None = None) -> int:
        """Width of :meth:`flat_scaled` over ``keys`` (None: all encoded keys)."""
        return sum(enc.flat_dim for _, enc in self._selected(keys))

    def flat_scaled(self, obs: Tensor | Mapping[str, Any], keys: Sequence[str] | None = None) -> Tensor:
        """The observation as the encoders first see it, ``[..., flat_width(keys)]`` (see
        ``SpaceEncoder``): the encoded keys of a Dict observation in sorted order, or only ``keys``
        (still in sorted order) when given."""
        selected = self._selected(keys)
        if self.keys is None:
            return self.encoders[0].flat_scaled(obs)
        parts = [enc.flat_scaled(obs[k]) for k, enc in selected]  # each [..., F_k]
        return torch.cat(parts, dim=-1)  # [..., flat_width(keys)]

    def _selected(self, keys: Sequence[str] | None) -> list[tuple[str | None, nn.Module]]:
        """(key, encoder) pairs for ``keys`` (None: all); ValueError naming the allowed keys otherwise."""
        if keys is None:
            return list(zip(self.keys or (None,), self.encoders))
        if self.keys is None:
            raise ValueError(f"observation keys {list(keys)} were given, but the observation space is not a Dict")
        unknown = [k for k in keys if k not in self.keys]
        if unknown or not keys:
            raise ValueError(f"{unknown or 'an empty list'}: choose from the encoded observation keys "
                             f"({', '.join(self.keys)})")
        return [(k, enc) for k, enc in zip(self.keys, self.encoders) if k in keys]


def build_encoder(
    observation_space: spaces.Space, hidden_size: int = 128, cnn_channels: Sequence[int] = (32, 64)
) -> ObservationEncoder:
    """The encoder for ``observation_space`` (a single env's space); see the module docstring.

    Raises ``ValueError`` for an unsupported space, naming it and the supported kinds.
    """
    return ObservationEncoder(observation_space, hidden_size, tuple(cnn_channels))


def obs_to_tensor(
    obs: Any, observation_space: spaces.Space, device: torch.device | str | None = None
) -> Tensor | dict[str, Any]:
    """Convert a (batched) numpy observation to tensors on ``device``, dict-aware.

    Dtypes keep their meaning: ``Box``/``MultiBinary`` keep the space's dtype (uint8 images stay
    uint8 until the encoder scales them), ``Discrete``/``MultiDiscrete`` become int64. Non-numeric
    ``Dict`` keys (see ``ObservationEncoder.skipped_keys``) are dropped. Tensors are accepted too.
    """
    if isinstance(observation_space, spaces.Dict):
        return {
            key: obs_to_tensor(obs[key], sub, device)
            for key, sub in observation_space.spaces.items()
            if not _is_non_numeric(sub)
        }
    if isinstance(observation_space, (spaces.Discrete, spaces.MultiDiscrete)):
        dtype = torch.int64
    elif isinstance(observation_space, (spaces.Box, spaces.MultiBinary)):
        dtype = None
    else:
        raise _unsupported(observation_space)
    if isinstance(obs, Tensor):
        return obs.to(device=device, dtype=dtype or obs.dtype)
    arr = np.asarray(obs)
    if dtype is None and arr.dtype != observation_space.dtype:
        arr = arr.astype(observation_space.dtype)
    if not arr.flags.writeable:
        arr = arr.copy()  # torch.as_tensor warns on read-only arrays
    return torch.as_tensor(arr, dtype=dtype, device=device)

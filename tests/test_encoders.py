"""Tests of the observation encoders (agents.encoders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.encoders import ImageEncoder, ObservationEncoder, build_encoder, obs_to_tensor

torch.set_num_threads(1)

H = 16  # hidden_size used in most tests
LEADS = [(5,), (3, 2)]  # [N, ...] and [T, N, ...]


def sample(space: spaces.Space, lead: tuple[int, ...], seed: int = 0):
    """A numpy batch ``[*lead, ...]`` (dict-aware) of samples from ``space``."""
    space.seed(seed)
    n = int(np.prod(lead))
    if isinstance(space, spaces.Dict):
        return {k: sample(s, lead, seed) for k, s in space.spaces.items() if not isinstance(s, spaces.Text)}
    batch = np.stack([np.asarray(space.sample()) for _ in range(n)])  # [n, ...]
    return batch.reshape(*lead, *batch.shape[1:])  # [n, ...] -> [*lead, ...]


def encode(space: spaces.Space, lead: tuple[int, ...], **kwargs) -> tuple[ObservationEncoder, torch.Tensor]:
    torch.manual_seed(0)
    enc = build_encoder(space, **kwargs)
    return enc, enc(obs_to_tensor(sample(space, lead), space))


@pytest.mark.parametrize("lead", LEADS)
@pytest.mark.parametrize(
    "space,out_dim",
    [
        (spaces.Box(0, 255, (3, 3, 3), np.uint8), H),  # MiniGrid 3x3 view
        (spaces.Box(0, 255, (7, 7, 3), np.uint8), H),  # MiniGrid 7x7 view
        (spaces.Box(0, 255, (64, 64, 3), np.uint8), H),  # RGB
        (spaces.Box(0.0, 1.0, (3, 40, 48), np.float32), H),  # channel-first
        (spaces.Box(-np.inf, np.inf, (6,), np.float32), H),
        (spaces.Box(-5.0, 5.0, (2, 3), np.float32), H),
        (spaces.Box(0.0, 1.0, (), np.float32), H),
        (spaces.Box(0.0, 1.0, (2, 3, 4, 5), np.float32), H),  # 4 dims: flattened
        (spaces.MultiBinary(5), H),
        (spaces.Discrete(4), H),
        (spaces.Discrete(3, start=-1), H),
        (spaces.MultiDiscrete([3, 5, 2], start=[1, 0, 0]), 3 * H),
    ],
    ids=lambda v: str(v).replace(" ", ""),
)
def test_output_shapes(space, out_dim, lead):
    enc, y = encode(space, lead, hidden_size=H)
    assert enc.out_dim == out_dim and enc.keys is None and enc.skipped_keys == ()
    assert y.shape == (*lead, out_dim) and y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("lead", LEADS)
def test_leading_dims_are_independent_rows(lead):
    """[T, N, ...] gives the same features as encoding each row alone."""
    space = spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3), np.uint8), "direction": spaces.Discrete(4)})
    enc, y = encode(space, lead, hidden_size=H)
    obs = obs_to_tensor(sample(space, lead), space)
    flat = {k: v.reshape(-1, *v.shape[len(lead) :]) for k, v in obs.items()}  # [*lead, ...] -> [n, ...]
    rows = torch.stack([enc({k: v[i] for k, v in flat.items()}) for i in range(flat["image"].shape[0])])
    torch.testing.assert_close(rows.reshape(*lead, -1), y)


def test_image_layouts_and_cnn_choice():
    small = build_encoder(spaces.Box(0, 255, (7, 7, 3), np.uint8), hidden_size=H).encoders[0]
    assert isinstance(small, ImageEncoder) and small.small and not small.channel_first
    convs = [m for m in small.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) and c.padding == (1, 1) for c in convs)
    assert small.fc[0].in_features == 64 * 7 * 7

    big = build_encoder(spaces.Box(0, 255, (64, 64, 3), np.uint8), hidden_size=H, cnn_channels=(32, 64, 64))
    big = big.encoders[0]
    assert not big.small
    strides = [m.stride for m in big.convs if isinstance(m, torch.nn.Conv2d)]
    assert strides == [(4, 4), (2, 2), (1, 1)]
    assert big.fc[0].in_features == 64 * 4 * 4  # 64 -> 15 -> 6 -> 4

    chw = build_encoder(spaces.Box(0, 255, (3, 64, 64), np.uint8), hidden_size=H).encoders[0]
    assert chw.channel_first and chw.convs[0].in_channels == 3
    assert build_encoder(spaces.Box(0, 255, (4, 84, 84), np.uint8)).encoders[0].convs[0].in_channels == 4
    # A small one-hot view [3, 3, 20] (MiniGrid 3x3 through envs.minigrid.SymbolicOneHot) is HWC
    # with 20 channels, not a 3-channel image 3 high and 20 wide.
    onehot = build_encoder(spaces.Box(0, 1, (3, 3, 20), np.uint8), hidden_size=H).encoders[0]
    assert not onehot.channel_first and onehot.convs[0].in_channels == 20
    assert onehot.fc[0].in_features == 64 * 3 * 3
    assert not build_encoder(spaces.Box(0, 1, (4, 4, 20), np.uint8)).encoders[0].channel_first
    assert not build_encoder(spaces.Box(0, 1, (3, 3, 3), np.uint8)).encoders[0].channel_first
    # The layout is said in the training log's agent line.
    assert onehot.describe() == f"image [3, 3, 20] HWC: 20 channels of 3x3 -> CNN 32-64 -> {H}"
    assert chw.describe() == f"image [3, 64, 64] CHW: 3 channels of 64x64 -> CNN 32-64 -> {H}"


def test_describe_names_every_key_and_the_skipped_ones():
    space = spaces.Dict({"image": spaces.Box(0, 1, (3, 3, 20), np.uint8), "direction": spaces.Discrete(4),
                         "mission": spaces.Text(8), "pos": spaces.Box(-1, 1, (2,), np.float32),
                         "cells": spaces.MultiDiscrete([3, 5])})
    text = build_encoder(space, hidden_size=8).describe()
    assert text == ("cells: multi-discrete [2] -> 2 embeddings of 8; direction: discrete(4) -> embedding 8; "
                    "image: image [3, 3, 20] HWC: 20 channels of 3x3 -> CNN 32-64 -> 8; pos: vector [2] -> MLP 2-8-8; "
                    "skipped: mission")
    assert build_encoder(spaces.Box(0, 1, (1, 5, 5), np.float32), hidden_size=8).describe().startswith(
        "image [1, 5, 5] CHW: 1 channel of 5x5")


def test_image_scaling_uses_space_bounds():
    """uint8 0..255 -> [0, 1]: an image of 255s equals a float image of 1s with bounds [0, 1]."""
    torch.manual_seed(0)
    enc8 = build_encoder(spaces.Box(0, 255, (7, 7, 3), np.uint8), hidden_size=H)
    torch.manual_seed(0)
    encf = build_encoder(spaces.Box(0.0, 1.0, (7, 7, 3), np.float32), hidden_size=H)
    x8 = torch.randint(0, 256, (4, 7, 7, 3), dtype=torch.uint8)
    torch.testing.assert_close(enc8(x8), encf(x8.float() / 255))
    # MiniGrid-like bounds (symbolic values up to 10) are scaled by their declared high.
    torch.manual_seed(0)
    enc10 = build_encoder(spaces.Box(0, 10, (7, 7, 3), np.uint8), hidden_size=H)
    x10 = torch.randint(0, 11, (4, 7, 7, 3), dtype=torch.uint8)
    torch.testing.assert_close(enc10(x10), encf(x10.float() / 10))


def test_vector_scaling():
    torch.manual_seed(0)
    wide = build_encoder(spaces.Box(-5.0, 15.0, (3,), np.float32), hidden_size=H)
    torch.manual_seed(0)
    unit = build_encoder(spaces.Box(-1.0, 1.0, (3,), np.float32), hidden_size=H)
    x = torch.rand(6, 3) * 20 - 5
    torch.testing.assert_close(wide(x), unit((x + 5) / 10 - 1))
    torch.testing.assert_close(unit(x), unit.encoders[0].mlp(x))  # already in [-1, 1]: unscaled


def test_dict_with_text_key_skipped():
    space = spaces.Dict(
        {
            "mission": spaces.Text(max_length=20),
            "image": spaces.Box(0, 255, (7, 7, 3), np.uint8),
            "direction": spaces.Discrete(4),
            "extra": spaces.Dict({"pos": spaces.Box(-1, 1, (2,)), "note": spaces.Text(5)}),
        }
    )
    for lead in LEADS:
        enc, y = encode(space, lead, hidden_size=H)
        assert enc.keys == ("direction", "extra", "image")
        assert enc.skipped_keys == ("extra.note", "mission")
        assert enc.out_dim == 3 * H and y.shape == (*lead, 3 * H)
    obs = obs_to_tensor(
        {
            "mission": np.array(["go"] * 2),
            "image": np.zeros((2, 7, 7, 3), np.uint8),
            "direction": np.array([0, 3]),
            "extra": {"pos": np.zeros((2, 2)), "note": ["a", "b"]},
        },
        space,
    )
    assert set(obs) == {"image", "direction", "extra"} and set(obs["extra"]) == {"pos"}


def test_minigrid_env_observations():
    gym = pytest.importorskip("gymnasium")
    pytest.importorskip("minigrid")
    env = gym.make("MiniGrid-Empty-5x5-v0")
    obs, _ = env.reset(seed=0)
    enc = build_encoder(env.observation_space, hidden_size=H)
    assert enc.skipped_keys == ("mission",)  # MissionSpace is non-numeric
    batch = {k: np.stack([v, v]) for k, v in obs.items() if k != "mission"}
    x = obs_to_tensor(batch, env.observation_space)
    assert x["image"].dtype == torch.uint8 and x["direction"].dtype == torch.int64
    assert enc(x).shape == (2, 2 * H)
    env.close()


def test_obs_to_tensor_dtypes():
    img = spaces.Box(0, 255, (3, 3, 3), np.uint8)
    assert obs_to_tensor(np.zeros((2, 3, 3, 3), np.uint8), img).dtype == torch.uint8
    vec = spaces.Box(-1, 1, (4,), np.float32)
    assert obs_to_tensor(np.zeros((2, 4), np.float64), vec).dtype == torch.float32
    assert obs_to_tensor(np.array([1, 2], np.int32), spaces.Discrete(3)).dtype == torch.int64
    assert obs_to_tensor(np.zeros((2, 2), np.int32), spaces.MultiDiscrete([2, 2])).dtype == torch.int64
    assert obs_to_tensor(torch.tensor([1, 2], dtype=torch.int32), spaces.Discrete(3)).dtype == torch.int64
    ro = np.zeros((2, 4), np.float32)
    ro.flags.writeable = False
    assert obs_to_tensor(ro, vec).shape == (2, 4)


def test_discrete_embedding():
    torch.manual_seed(0)
    enc = build_encoder(spaces.Discrete(4, start=2), hidden_size=H)
    emb = enc.encoders[0].embedding
    assert isinstance(emb, torch.nn.Embedding) and emb.num_embeddings == 4
    x = torch.tensor([[2, 5], [3, 2]])  # [T, N]
    torch.testing.assert_close(enc(x), emb.weight[x - 2])
    md = build_encoder(spaces.MultiDiscrete([2, 3]), hidden_size=H)
    y = md(torch.tensor([[1, 2]]))
    w = md.encoders[0].embedding.weight
    torch.testing.assert_close(y, torch.cat([w[1], w[2 + 2]])[None])


def test_gradients_reach_all_parameters():
    space = spaces.Dict({"image": spaces.Box(0, 255, (64, 64, 3), np.uint8), "vec": spaces.Box(-1, 1, (3,))})
    enc, y = encode(space, (2, 3), hidden_size=H)
    y.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    assert not [k for k in enc.state_dict() if k.endswith(("scale", "shift", "offsets"))]  # not persistent


@pytest.mark.parametrize(
    "space",
    [
        spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))),
        spaces.Text(10),
        spaces.Sequence(spaces.Discrete(2)),
        spaces.Graph(node_space=spaces.Discrete(2), edge_space=None),
    ],
    ids=["tuple", "text", "sequence", "graph"],
)
def test_unsupported_space_error(space):
    with pytest.raises(ValueError, match=r"unsupported observation space .*supported: Box .*Discrete.*Dict"):
        build_encoder(space)
    with pytest.raises(ValueError, match="unsupported observation space"):
        build_encoder(
            spaces.Dict({"a": spaces.Discrete(2), "b": space})
            if not isinstance(space, spaces.Text)
            else spaces.Tuple((space,))
        )


def test_dict_without_numeric_keys_and_bad_inputs():
    with pytest.raises(ValueError, match="no numeric keys"):
        build_encoder(spaces.Dict({"mission": spaces.Text(5)}))
    enc = build_encoder(spaces.Box(0, 255, (7, 7, 3), np.uint8), hidden_size=H)
    with pytest.raises(ValueError, match=r"expected observations \[\.\.\., 7, 7, 3\]"):
        enc(torch.zeros(2, 7, 3, 7, dtype=torch.uint8))


def test_flat_scaled_is_the_observation_as_the_encoder_first_sees_it():
    """The recall target (agents/recall.py): boxes scaled by their bounds and flattened, indices
    one-hot, Dict keys concatenated in sorted order; widths match ``flat_dim``."""
    space = spaces.Dict({
        "image": spaces.Box(0, 255, (2, 2, 3), np.uint8),
        "goal": spaces.Discrete(3, start=1),
        "grid": spaces.MultiDiscrete([2, 3]),
        "gps": spaces.Box(-10.0, 10.0, (2,), np.float32),
    })
    enc = ObservationEncoder(space, hidden_size=8)
    obs = {
        "image": torch.full((4, 2, 2, 3), 255, dtype=torch.uint8),
        "goal": torch.tensor([1, 2, 3, 3]),
        "grid": torch.tensor([[1, 2]] * 4),
        "gps": torch.tensor([[10.0, -10.0]] * 4),
    }
    flat = enc.flat_scaled(obs)
    assert flat.shape == (4, enc.flat_dim) and enc.flat_dim == 3 + 2 + 5 + 12  # goal, gps, grid, image
    goal, gps, grid, image = flat[:, :3], flat[:, 3:5], flat[:, 5:10], flat[:, 10:]
    assert torch.equal(goal, torch.eye(3)[[0, 1, 2, 2]])
    assert torch.allclose(gps, torch.tensor([[1.0, -1.0]] * 4))
    assert torch.equal(grid, torch.tensor([[0.0, 1.0, 0.0, 0.0, 1.0]] * 4))
    assert torch.allclose(image, torch.ones(4, 12))

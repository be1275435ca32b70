"""Past-input recall (agents/recall.py): which pairs count, the loss value, where it is computed."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import ActorCritic
from agents.recall import PastInputRecall, standardize
from memo_rl.cli import main
from memo_rl.config import ConfigError, build_config
from memo_rl.memory import build_memory_core
from memo_rl.plots import read_metric
from memo_rl.types import AgentInputs


def _expected_loss(recall, observed, outputs, resets, lags):
    """The loss written out pair by pair."""
    T, N, d = observed.shape
    flat = observed.reshape(T * N, d)
    standardized = (observed - flat.mean(0)) / flat.std(0, correction=0).clamp_min(recall.min_std)
    errors = []
    for t in range(T):
        for n in range(N):
            k = int(lags[t, n])
            if t - k < 0 or resets[t - k + 1:t + 1, n].any():
                continue
            target = standardized[t - k, n]
            prediction = recall.decoder(outputs[t, n] + recall.lag_embedding.weight[k - 1])
            errors.append((prediction - target).pow(2).mean())
    return torch.stack(errors).mean() if errors else torch.tensor(0.0)


def test_recall_loss_counts_only_pairs_inside_one_memory_span():
    torch.manual_seed(0)
    T, N = 7, 3
    recall = PastInputRecall(d_model=4, d_target=5, max_lag=3, hidden=8)
    observed, outputs = torch.randn(T, N, 5), torch.randn(T, N, 4)
    resets = torch.zeros(T, N, dtype=torch.bool)
    resets[0] = True
    resets[4, 1] = True  # env 1: steps 4.. cannot recall steps 0..3
    lags = torch.randint(1, 4, (T, N))
    loss = recall(observed, outputs, resets, lags)
    assert torch.allclose(loss, _expected_loss(recall, observed, outputs, resets, lags), atol=1e-6)


def test_targets_are_standardised_per_feature_so_rare_features_weigh_as_much():
    x = torch.zeros(100, 2, 2)
    x[:, :, 0] = torch.randn(100, 2) * 10  # a feature that always varies, widely
    x[:50, 0, 1] = 1.0  # a feature that is on in a quarter of the positions
    z = standardize(x, min_std=0.05)
    flat = z.reshape(-1, 2)
    assert torch.allclose(flat.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(flat.std(0, correction=0), torch.ones(2), atol=1e-5)
    constant = standardize(torch.full((5, 3), 7.0), min_std=0.05)
    assert torch.equal(constant, torch.zeros(5, 3))  # no variation: nothing to recall


def test_recall_loss_is_zero_without_a_valid_pair_and_gradient_reaches_only_valid_steps():
    torch.manual_seed(0)
    recall = PastInputRecall(d_model=4, d_target=4, max_lag=2, hidden=8)
    observed = torch.randn(4, 2, 4)
    outputs = torch.randn(4, 2, 4, requires_grad=True)
    every_step_resets = torch.ones(4, 2, dtype=torch.bool)
    assert recall(observed, outputs, every_step_resets).item() == 0.0
    lags = torch.full((4, 2), 2)  # step t recalls t - 2: only steps 2 and 3 have a source
    recall(observed, outputs, torch.zeros(4, 2, dtype=torch.bool), lags).backward()
    touched = outputs.grad.abs().sum(-1) > 0  # [T, N]
    assert touched[2:].all() and not touched[:2].any()


def _agent(recall_max_lag):
    torch.manual_seed(0)
    core = build_memory_core("gru", 16)
    return ActorCritic(gym.spaces.Box(0.0, 1.0, (3,), np.float32), gym.spaces.Discrete(2), core,
                       hidden_size=8, recall_max_lag=recall_max_lag)


def test_agent_returns_a_recall_loss_only_in_the_training_forward():
    T, N = 5, 2
    inputs = AgentInputs(torch.rand(T, N, 3), torch.zeros(T, N, dtype=torch.long), torch.zeros(T, N), torch.zeros(T, N))
    resets = torch.zeros(T, N, dtype=torch.bool)
    agent = _agent(4)
    out = agent.forward_sequence(inputs, agent.initial_state(N, "cpu"), resets)
    assert out.recall_loss is not None and out.recall_loss.ndim == 0 and out.recall_loss.item() > 0
    with torch.no_grad():
        assert agent.forward_sequence(inputs, agent.initial_state(N, "cpu"), resets).recall_loss is None
    assert _agent(0).forward_sequence(inputs, agent.initial_state(N, "cpu"), resets).recall_loss is None
    assert "past-input recall (observation) up to 4 steps back" in agent.describe()
    # The recall head sits beside the policy: with the same seed, the policy's weights are equal.
    plain = _agent(0).state_dict()
    assert all(torch.equal(plain[k], v) for k, v in agent.state_dict().items() if k in plain)


def test_bad_recall_settings_are_rejected():
    with pytest.raises(ConfigError, match="agent.recall_max_lag"):
        build_config("dark_room_gru", ["agent.recall_max_lag=-1"])
    with pytest.raises(ConfigError, match="ppo.recall_coef"):
        build_config("dark_room_gru", ["ppo.recall_coef=-0.5"])


def test_recall_loss_is_logged(tmp_path):
    args = ["dark_room_gru", "agent.recall_max_lag=8", "env.num_envs=4", "ppo.rollout_length=20",
            "train.total_steps=160", "run.progress=false", f"run.dir={tmp_path}"]
    assert main(["train", *args]) == 0
    _, recall = read_metric(tmp_path, "recall_loss")
    assert len(recall) == 2 and np.all(np.isfinite(recall)) and np.all(recall > 0)


# The cue XOR probe task (tests/cue_recall.py) at 8 steps. Measured over seeds 0-4 at 200k steps
# (docs/results.md, MiniGrid section): the plain GRU solved it for 1 seed of 5, with recall for all 5.
XOR_TASK = ["env.id=tests.cue_recall:CueRecall-v0", "env.kwargs.length=8", "env.kwargs.probe=true",
            "memory.core=gru", "env.num_envs=16", "agent.hidden_size=64", "agent.d_model=64",
            "agent.head_hidden=64", "ppo.rollout_length=128", "ppo.gae_cut=episode", "ppo.lr=1e-3",
            "train.total_steps=200000", "train.threads=1", "run.progress=false"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 2])
def test_recall_lets_the_gru_solve_cue_xor_probe(tmp_path, seed):
    args = [*XOR_TASK, "agent.recall_max_lag=12", f"train.seed={seed}", f"run.dir={tmp_path}"]
    assert main(["train", *args]) == 0
    _, returns = read_metric(tmp_path, "episode_return_mean")
    assert returns[-5:].mean() >= 0.9, returns[-5:]


def test_recall_target_choice_is_checked():
    with pytest.raises(ConfigError, match="agent.recall_target"):
        build_config("dark_room_gru", ["agent.recall_max_lag=4", "agent.recall_target=actions"])


DICT_SPACE = gym.spaces.Dict({"gps": gym.spaces.Box(-4.0, 4.0, (2,), np.float32),
                              "view": gym.spaces.Box(0.0, 1.0, (5,), np.float32)})


def _dict_agent(**recall):
    torch.manual_seed(0)
    return ActorCritic(DICT_SPACE, gym.spaces.Discrete(2), build_memory_core("gru", 16), hidden_size=8,
                       recall_max_lag=3, **recall)


def test_recall_keys_recall_only_the_named_observation_keys():
    """agent.recall_keys=[gps]: the decoder reproduces the 2 scaled GPS values and nothing else; the
    loss is the recall of exactly those values (the same draw of lags, seeded)."""
    T, N = 6, 3
    obs = {"gps": torch.rand(T, N, 2) * 8 - 4, "view": torch.rand(T, N, 5)}
    inputs = AgentInputs(obs, torch.zeros(T, N, dtype=torch.long), torch.zeros(T, N), torch.zeros(T, N))
    resets = torch.zeros(T, N, dtype=torch.bool)
    agent = _dict_agent(recall_keys=["gps"])
    assert agent.recall.decoder[-1].out_features == 2 and _dict_agent().recall.decoder[-1].out_features == 7
    assert "past-input recall (observation: gps) up to 3 steps back" in agent.describe()
    torch.manual_seed(1)
    loss = agent.forward_sequence(inputs, agent.initial_state(N, "cpu"), resets).recall_loss
    features, _ = agent.core.forward_sequence(agent.embed(inputs), agent.initial_state(N, "cpu"), resets)
    torch.manual_seed(1)
    expected = agent.recall(obs["gps"] / 4, features, resets)  # Box(-4, 4) is scaled to [-1, 1]
    assert torch.allclose(loss, expected)


def test_bad_recall_keys_are_one_line_errors():
    with pytest.raises(ValueError, match=r"agent.recall_keys: \['pos'\]: choose from the encoded observation keys "
                                         r"\(gps, view\)"):
        _dict_agent(recall_keys=["pos"])
    with pytest.raises(ValueError, match="needs agent.recall_target=observation"):
        _dict_agent(recall_keys=["gps"], recall_target="features")
    with pytest.raises(ValueError, match="not a Dict"):
        ActorCritic(gym.spaces.Box(0.0, 1.0, (3,), np.float32), gym.spaces.Discrete(2),
                    build_memory_core("gru", 16), hidden_size=8, recall_max_lag=2,
                    recall_keys=["gps"])

"""Privileged prediction (agents/privileged.py): the agent never reads the privileged keys, the
loss is the standardised prediction error from the core's output, and bad keys are one-line errors."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import ActorCritic
from memo_rl.cli import main
from memo_rl.memory import build_memory_core
from memo_rl.plots import read_metric
from memo_rl.types import AgentInputs

SPACE = gym.spaces.Dict({"answer": gym.spaces.Box(-5.0, 5.0, (2,), np.float32),
                         "gps": gym.spaces.Box(-4.0, 4.0, (2,), np.float32),
                         "view": gym.spaces.Box(0.0, 1.0, (5,), np.float32),
                         "mode": gym.spaces.Discrete(3)})
T, N = 6, 3


def _agent(privileged_keys=("answer",)):
    torch.manual_seed(0)
    return ActorCritic(SPACE, gym.spaces.Discrete(2), build_memory_core("gru", 16), hidden_size=8,
                       head_hidden=8, privileged_keys=privileged_keys)


def _inputs(answer: torch.Tensor) -> AgentInputs:
    torch.manual_seed(1)
    obs = {"answer": answer, "gps": torch.rand(T, N, 2) * 8 - 4, "view": torch.rand(T, N, 5),
           "mode": torch.randint(0, 3, (T, N))}
    return AgentInputs(obs, torch.zeros(T, N, dtype=torch.long), torch.zeros(T, N), torch.zeros(T, N))


def _first_step(inputs: AgentInputs) -> AgentInputs:
    """Step 0 of ``[T, N, ...]`` inputs: ``[N, ...]``."""
    obs, *rest = inputs
    return AgentInputs({k: v[0] for k, v in obs.items()}, *(x[0] for x in rest))


def test_the_agent_never_reads_the_privileged_keys():
    """Two different values of the privileged key give identical logits, values and memory, in the
    one-step and the sequence forward; the encoder has no branch for it."""
    agent = _agent()
    assert agent.encoder.keys == ("gps", "mode", "view")
    resets = torch.zeros(T, N, dtype=torch.bool)
    a, b = _inputs(torch.zeros(T, N, 2)), _inputs(torch.full((T, N, 2), 3.0))
    with torch.no_grad():
        out_a = agent.forward_sequence(a, agent.initial_state(N, "cpu"), resets)
        out_b = agent.forward_sequence(b, agent.initial_state(N, "cpu"), resets)
        step_a = agent.step(_first_step(a), agent.initial_state(N, "cpu"), resets[0])
        step_b = agent.step(_first_step(b), agent.initial_state(N, "cpu"), resets[0])
    assert torch.equal(out_a.logits, out_b.logits) and torch.equal(out_a.values, out_b.values)
    assert torch.equal(out_a.state, out_b.state)
    assert torch.equal(step_a.logits, step_b.logits) and torch.equal(step_a.values, step_b.values)


def test_privileged_loss_is_the_standardised_prediction_error_of_the_core_output():
    agent = _agent()
    answer = torch.randn(T, N, 2) * torch.tensor([3.0, 0.5]) + 1.0
    inputs = _inputs(answer)
    resets = torch.zeros(T, N, dtype=torch.bool)
    out = agent.forward_sequence(inputs, agent.initial_state(N, "cpu"), resets)
    features, _ = agent.core.forward_sequence(agent.embed(inputs), agent.initial_state(N, "cpu"), resets)
    flat = answer.reshape(T * N, 2)
    target = (answer - flat.mean(0)) / flat.std(0, correction=0)  # [T, N, 2]
    expected = (agent.privileged.decoder(features) - target).pow(2).mean()
    assert torch.allclose(out.privileged_loss, expected, atol=1e-6)
    # only the training forward computes it; an agent without privileged keys never does
    with torch.no_grad():
        assert agent.forward_sequence(inputs, agent.initial_state(N, "cpu"), resets).privileged_loss is None
    assert _agent(None).forward_sequence(inputs, agent.initial_state(N, "cpu"), resets).privileged_loss is None
    assert "predicts the unread answer" in agent.describe()


def test_privileged_loss_trains_the_memory_not_the_policy_head():
    agent = _agent()
    inputs = _inputs(torch.randn(T, N, 2))
    out = agent.forward_sequence(inputs, agent.initial_state(N, "cpu"), torch.zeros(T, N, dtype=torch.bool))
    out.privileged_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.core.parameters())
    assert all(p.grad is None for p in agent.policy_head.parameters())
    assert all(p.grad is None for p in agent.value_head.parameters())


@pytest.mark.parametrize("keys,message", [
    (["goal"], r"agent.privileged_keys: privileged keys \['goal'\]: choose from the observation's Box keys "
               r"\(answer, gps, view\)"),
    (["mode"], r"privileged keys \['mode'\]: choose from the observation's Box keys"),
    ([], r"privileged keys an empty list: choose from"),
])
def test_bad_privileged_keys_are_one_line_errors(keys, message):
    with pytest.raises(ValueError, match=message):
        _agent(keys)


def test_privileged_keys_need_a_dict_with_something_left_to_read():
    with pytest.raises(ValueError, match="not a Dict"):
        ActorCritic(gym.spaces.Box(0.0, 1.0, (3,), np.float32), gym.spaces.Discrete(2),
                    build_memory_core("gru", 16), hidden_size=8, privileged_keys=["answer"])
    only = gym.spaces.Dict({"answer": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})
    with pytest.raises(ValueError, match="would leave the agent no observation to read"):
        ActorCritic(only, gym.spaces.Discrete(2), build_memory_core("gru", 16), hidden_size=8,
                    privileged_keys=["answer"])


def test_nav3d_goal_vector_prediction_trains_and_evaluates(tmp_path):
    """End to end on nav3d: the loss is logged every update, and the checkpoint evaluates."""
    args = ["nav3d_extobjnav_gru", "env.kwargs.rooms=1", "env.kwargs.num_objects=1", "env.kwargs.resolution=16",
            "env.kwargs.goal_vector=true", "agent.privileged_keys=[goal_vector]", "env.num_envs=4",
            "ppo.rollout_length=16", "train.total_steps=128", "run.progress=false", f"run.dir={tmp_path}"]
    assert main(["train", *args]) == 0
    _, loss = read_metric(tmp_path, "privileged_loss")
    assert len(loss) == 2 and np.all(np.isfinite(loss)) and np.all(loss > 0)
    assert main(["eval", str(tmp_path), "eval.trials=2", "eval.num_envs=2", "eval.env_kwargs.trial_length=20"]) == 0


def test_a_bad_privileged_key_in_a_run_is_a_config_error(tmp_path, capsys):
    args = ["nav3d_extobjnav_gru", "env.kwargs.rooms=1", "env.kwargs.num_objects=1", "env.kwargs.resolution=16",
            "agent.privileged_keys=[goal_vector]", "env.num_envs=4", "ppo.rollout_length=16",
            "train.total_steps=64", "run.progress=false", f"run.dir={tmp_path}"]
    assert main(["train", *args]) != 0
    err = capsys.readouterr().err
    assert "agent.privileged_keys: privileged keys ['goal_vector']: choose from the observation's Box keys" in err


def test_privileged_coef_must_not_be_negative():
    from memo_rl.config import ConfigError, build_config

    with pytest.raises(ConfigError, match="ppo.privileged_coef"):
        build_config("nav3d_extobjnav_small_gru", ["ppo.privileged_coef=-1"])

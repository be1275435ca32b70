"""Actor-critic assembly options (agents/actor_critic.py): shared head trunk, head activation,
policy output gain, and feeding the core without an input projection."""

import gymnasium as gym
import pytest
import torch
from torch import nn

from agents import ActorCritic
from memo_rl.config import ConfigError, build_config
from memo_rl.memory import build_memory_core
from memo_rl.registry import make_agent
from memo_rl.types import AgentInputs

OBS = gym.spaces.Box(-1.0, 1.0, (5,))
ACTIONS = gym.spaces.Discrete(3)


def _agent(seed: int = 0, d_model: int = 8, **kwargs) -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic(OBS, ACTIONS, build_memory_core("gru", d_model), hidden_size=8, **kwargs)


def _inputs(T: int = 4, N: int = 2) -> AgentInputs:
    g = torch.Generator().manual_seed(1)
    return AgentInputs(torch.rand(T, N, 5, generator=g) * 2 - 1, torch.randint(0, 3, (T, N), generator=g),
                       torch.rand(T, N, generator=g), torch.zeros(T, N, dtype=torch.bool))


def _run(agent: ActorCritic):
    resets = torch.zeros(4, 2, dtype=torch.bool)
    resets[0] = True
    return agent.forward_sequence(_inputs(), agent.initial_state(2, "cpu"), resets)


def test_policy_gain_scales_the_first_logits_exactly():
    """Same seed, zero biases: the output layer is gain x the same orthogonal matrix."""
    small, large = _run(_agent(policy_gain=0.01)), _run(_agent(policy_gain=1.0))
    torch.testing.assert_close(large.logits, 100 * small.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(large.values, small.values)  # the value head does not depend on it


def test_head_trunk_is_one_layer_both_heads_read():
    agent = _agent(head_trunk=16, head_hidden=12, head_activation="relu")
    linear, activation = agent.head_trunk
    assert (linear.in_features, linear.out_features) == (8, 16) and isinstance(activation, nn.ReLU)
    for head, d_out in ((agent.policy_head, 3), (agent.value_head, 1)):
        hidden, out = head
        assert hidden[0].in_features == 16 and isinstance(hidden[1], nn.ReLU) and out.out_features == d_out
    out = _run(agent)
    assert out.logits.shape == (4, 2, 3) and out.values.shape == (4, 2)
    # Both losses move the shared layer: its gradient is the sum of the two heads' gradients.
    grads = []
    for loss in (out.logits.sum(), out.values.sum()):
        agent.zero_grad()
        loss.backward(retain_graph=True)
        grads.append(linear.weight.grad.clone())
    assert all(g.abs().sum() > 0 for g in grads)
    agent.zero_grad()
    (out.logits.sum() + out.values.sum()).backward()
    torch.testing.assert_close(linear.weight.grad, grads[0] + grads[1])


def test_without_input_projection_the_core_reads_the_encoder_features():
    agent = _agent(d_model=8, input_proj=False, use_prev_action=False, use_prev_reward=False,
                   use_episode_start=False)
    inputs = _inputs()
    torch.testing.assert_close(agent.embed(inputs), agent.encoder(inputs.obs))
    with pytest.raises(ValueError, match=r"encoder's 8 features \+ 5 extra inputs = 13, but agent.d_model is 8"):
        _agent(d_model=8, input_proj=False)  # previous action (3), reward and episode flag: 5 extras


def test_options_reach_the_agent_from_the_config():
    cfg = build_config(None, ["agent.hidden_size=8", "agent.d_model=8", "agent.prev_action=false",
                              "agent.prev_reward=false", "agent.episode_start=false", "agent.input_proj=false",
                              "agent.head_trunk=16", "agent.head_activation=relu", "agent.policy_gain=0.1"])
    agent = make_agent(cfg, OBS, ACTIONS)
    assert isinstance(agent.input_proj, nn.Identity) and agent.head_trunk[0].out_features == 16
    assert isinstance(agent.head_trunk[1], nn.ReLU)
    cfg = build_config(None, ["agent.hidden_size=8", "agent.d_model=16", "agent.input_proj=false"])
    with pytest.raises(ConfigError, match="agent.input_proj=false"):
        make_agent(cfg, OBS, ACTIONS)

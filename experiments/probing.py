"""What the probe scripts share (``minigrid_cue_probe.py``, ``nav3d_memory_probe.py``): their
command line, a run's agent loaded for an env batch, and a player that steps the agent with its
memory carried as in training while showing each step's encoder and memory-core outputs.

The scripts import this module as a sibling (``python experiments/<script>.py`` puts this folder
first on ``sys.path``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from agents.encoders import obs_to_tensor
from memo_rl.checkpoint import list_checkpoints, load_checkpoint
from memo_rl.config import ExperimentConfig, config_from_dict
from memo_rl.registry import make_agent
from memo_rl.types import first_inputs, next_inputs


def probe_parser(description: str, run_help: str, envs: int, steps: int) -> argparse.ArgumentParser:
    """The arguments every probe takes: the run directory, ``--checkpoint`` (default: the newest),
    ``--envs``, ``--steps`` (per env) and ``--seed``; a script adds its own after these."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run", type=Path, help=run_help)
    parser.add_argument("--checkpoint", type=Path, help="default: the run's newest checkpoint")
    parser.add_argument("--envs", type=int, default=envs)
    parser.add_argument("--steps", type=int, default=steps, help="env steps per env")
    parser.add_argument("--seed", type=int, default=123)
    return parser


def run_config(run: Path) -> ExperimentConfig:
    """The config a run trained with (its ``config.yaml``)."""
    return config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))


def load_agent(cfg: ExperimentConfig, env, run: Path, checkpoint: Path | None):
    """The run's agent built for ``env``'s spaces with ``checkpoint``'s weights (default: the run's
    newest checkpoint), in eval mode; returns ``(agent, checkpoint path)``."""
    agent = make_agent(cfg, env.single_observation_space, env.single_action_space)
    checkpoint = checkpoint or list_checkpoints(run / "checkpoints")[-1][1]
    agent.load_state_dict(load_checkpoint(checkpoint)["model"])
    agent.eval()
    return agent, checkpoint


class Player:
    """Steps ``agent`` on a batch of N envs on the CPU, its memory reset only at trial ends (as in
    training). Each step: :meth:`outputs`, pick actions, step the env, :meth:`advance`."""

    def __init__(self, agent, env, obs: dict) -> None:
        self.agent, self.space, n = agent, env.single_observation_space, env.num_envs
        self.inputs = first_inputs(obs_to_tensor(obs, self.space, "cpu"), n, "cpu")  # what the agent sees now
        self.state, self.resets = agent.initial_state(n, "cpu"), torch.ones(n, dtype=torch.bool)

    @torch.no_grad()
    def outputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(embedded [N, e], features [N, d], logits [N, A])``: the encoders' output, the memory
        core's output and the policy's logits for the current inputs; the core's state moves on."""
        embedded = self.agent.embed(self.inputs)  # [N, e]
        features, self.state = self.agent.core.step(embedded, self.state, self.resets)  # [N, d]
        logits = self.agent.heads(embedded, features, self.state).logits  # [N, A]
        return embedded, features, logits

    def advance(self, obs: dict, actions: torch.Tensor, rewards: np.ndarray, ended: np.ndarray,
                trial_end: np.ndarray) -> None:
        """Take in what ``env.step(actions)`` returned; the memory resets where ``trial_end``."""
        self.resets = torch.as_tensor(trial_end)
        self.inputs = next_inputs(obs_to_tensor(obs, self.space, "cpu"), actions,
                                  torch.as_tensor(rewards, dtype=torch.float32), torch.as_tensor(ended), self.resets)

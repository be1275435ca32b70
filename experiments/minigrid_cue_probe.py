"""Does a trained agent's memory hold MiniGrid Memory's cue? A linear probe by step of the episode.

Plays a checkpoint of a run on ``MiniGrid-MemoryS13Random-v0`` (any view size or wrappers the run
used) with sampled actions, records the memory core's output at every step and the episode's cue
(key or ball in the start room), and for a few steps of the episode fits a least-squares linear
probe on half of the episodes and tests it on the other half. It prints, per step, the probe's
accuracy and the distance between the two cues' mean outputs beside the mean output norm: a cue
that is decodable but held faintly shows a small gap (docs/results.md, MiniGrid section).

    python experiments/minigrid_cue_probe.py runs/minigrid/diag-startatcue-gru-recallstd16-s0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from agents.encoders import obs_to_tensor
from envs.minigrid import memory_cue_cell
from memo_rl.checkpoint import list_checkpoints, load_checkpoint
from memo_rl.config import config_from_dict
from memo_rl.registry import make_agent, make_vector_env
from memo_rl.types import first_inputs, next_inputs


def cue_is_key(env) -> np.ndarray:
    """``[N]`` bool: whether each env's cue (the start-room object) is a key."""
    flags = []
    for single in env.envs:
        base = single.unwrapped
        flags.append(base.grid.get(*memory_cue_cell(base)).type == "key")
    return np.array(flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory of a MiniGrid Memory run")
    parser.add_argument("--checkpoint", type=Path, help="default: the run's newest checkpoint")
    parser.add_argument("--envs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1500, help="env steps per env")
    parser.add_argument("--probe-steps", type=int, nargs="+", default=[0, 2, 5, 8, 11])
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()

    cfg = config_from_dict(yaml.safe_load((args.run / "config.yaml").read_text()))
    cfg.env.vectorization = "sync"  # cue_is_key reads each env's grid
    env = make_vector_env(cfg.env, args.envs)
    from minigrid.envs.memory import MemoryEnv

    if not isinstance(env.envs[0].unwrapped, MemoryEnv):
        raise SystemExit(f"{args.run}: env '{cfg.env.id}' is not MiniGrid's Memory task")
    agent = make_agent(cfg, env.single_observation_space, env.single_action_space)
    checkpoint = args.checkpoint or list_checkpoints(args.run / "checkpoints")[-1][1]
    agent.load_state_dict(load_checkpoint(checkpoint)["model"])
    agent.eval()
    torch.manual_seed(args.seed)

    N = args.envs
    obs, _ = env.reset(seed=args.seed)
    cue, step_in_episode = cue_is_key(env), np.zeros(N, dtype=int)
    inputs = first_inputs(obs_to_tensor(obs, env.single_observation_space, "cpu"), N, "cpu")
    state, resets = agent.initial_state(N, "cpu"), torch.ones(N, dtype=torch.bool)
    outputs, cues, steps, successes = [], [], [], []
    with torch.no_grad():
        for _ in range(args.steps):
            embedded = agent.embed(inputs)  # [N, d]
            features, state = agent.core.step(embedded, state, resets)  # [N, d]
            logits = agent._heads(embedded, features, state).logits  # [N, A]: the policy on these outputs
            outputs.append(features.numpy())
            cues.append(cue.copy())
            steps.append(step_in_episode.copy())
            actions = torch.distributions.Categorical(logits=logits).sample()  # [N]
            obs, rewards, terminated, truncated, _ = env.step(actions.numpy())
            ended = terminated | truncated
            successes += [rewards[i] > 0 for i in np.nonzero(ended)[0]]
            step_in_episode = np.where(ended, 0, step_in_episode + 1)
            if ended.any():  # same-step autoreset: read the new episodes' cues
                cue = np.where(ended, cue_is_key(env), cue)
            resets = torch.as_tensor(ended)
            inputs = next_inputs(obs_to_tensor(obs, env.single_observation_space, "cpu"), actions,
                                 torch.as_tensor(rewards, dtype=torch.float32), resets, resets)
    env.close()
    H = np.concatenate(outputs)  # [steps * N, d]
    C, S = np.concatenate(cues), np.concatenate(steps)  # [steps * N] each
    print(f"{checkpoint}: {len(successes)} episodes, success {np.mean(successes):.2f}")
    for s in args.probe_steps:
        at = S == s
        if at.sum() < 20 or C[at].all() or not C[at].any():
            print(f"  step {s:2d}: too few episodes ({at.sum()})")
            continue
        X = np.c_[H[at], np.ones(at.sum())]  # [n, d + 1]: outputs and a bias
        y = C[at] * 2.0 - 1.0
        half = len(y) // 2
        w = np.linalg.lstsq(X[:half], y[:half], rcond=None)[0]
        accuracy = ((X[half:] @ w > 0) == (y[half:] > 0)).mean()
        gap = np.linalg.norm(H[at][C[at]].mean(0) - H[at][~C[at]].mean(0))
        norm = np.linalg.norm(H[at], axis=1).mean()
        print(f"  step {s:2d}: {at.sum()} episodes, cue decodable {accuracy:.2f}, "
              f"gap between the cues' mean outputs {gap:.2f}, mean output norm {norm:.2f}")


if __name__ == "__main__":
    main()

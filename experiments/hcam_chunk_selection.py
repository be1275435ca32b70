"""Does a trained ``hcam`` agent read the chunk that matters? Dark Key-to-Door, by layer.

Plays one trial of a checkpoint with sampled actions and, at every step after the chunk holding
the trial's first reward (the key) is stored, asks per layer: is that chunk among the top-k the
step's query selects, what weight does it get, and, inside it, how much attention (mean over
heads) goes to the step that saw the reward (the input after the pickup: prev reward 1, the key's
cell). Chance for the first two: k / M and 1 / M over the M stored chunks; for the last: 1 / C.

    python experiments/hcam_chunk_selection.py runs/sweeps/dark_key_to_door_compare/preset-dark_key_to_door_hcam_s1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from agents.encoders import obs_to_tensor
from memo_rl.checkpoint import list_checkpoints, load_checkpoint
from memo_rl.config import config_from_dict
from memo_rl.memory.hcam import HCAMCore, HCAMRead
from memo_rl.registry import make_agent, make_vector_env
from memo_rl.types import first_inputs, next_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory of an hcam run on a gridworld trial task")
    parser.add_argument("--checkpoint", type=Path, help="default: the run's newest checkpoint")
    parser.add_argument("--envs", type=int, default=32)
    parser.add_argument("--steps", type=int, help="env steps (default: one trial)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    cfg = config_from_dict(yaml.safe_load((args.run / "config.yaml").read_text()))
    N = args.envs
    env = make_vector_env(cfg.env, N)
    agent = make_agent(cfg, env.single_observation_space, env.single_action_space)
    if not isinstance(agent.core, HCAMCore):
        raise SystemExit(f"{args.run}: memory.core is '{cfg.memory.core}', not hcam")
    checkpoint = args.checkpoint or list_checkpoints(args.run / "checkpoints")[-1][1]
    agent.load_state_dict(load_checkpoint(checkpoint)["model"])
    agent.eval()
    torch.manual_seed(args.seed)
    steps = args.steps or int(cfg.env.kwargs.get("trial_length", 500))
    C, k = agent.core.chunk_size, agent.core.top_k

    queries: list[tuple[HCAMRead, torch.Tensor, torch.Tensor]] = []  # per layer of this step: (read, h, scores)
    score = HCAMRead.chunk_scores

    def recording(self, h, keys, valid):
        scores = score(self, h, keys, valid)
        queries.append((self, h, scores))
        return scores

    HCAMRead.chunk_scores = recording
    obs, _ = env.reset(seed=args.seed)
    inputs = first_inputs(obs_to_tensor(obs, env.single_observation_space, "cpu"), N, "cpu")
    state, resets = agent.initial_state(N, "cpu"), torch.ones(N, dtype=torch.bool)
    reward_step = np.full(N, -1)  # the trial step whose input first shows a reward this trial
    trial_step = np.zeros(N, dtype=int)  # of the step about to be taken
    rows = []  # per layer: [n, 5] (selected, weight, attention on the reward step, chance of selection, chunks)
    with torch.no_grad():
        for _ in range(steps):
            queries.clear()
            memory = state.memory
            out = agent.step(inputs, state, resets)
            envs = torch.as_tensor(np.nonzero((reward_step >= 0) & (reward_step // C < trial_step // C))[0])
            if len(envs) and queries:
                chunk = torch.as_tensor(reward_step[envs.numpy()] // C)  # [n]; column = chunk number (no window)
                slot = torch.as_tensor(reward_step[envs.numpy()] % C)  # [n]: the reward step inside it
                for layer, (read, h, scores) in enumerate(queries):
                    scores = scores[envs, 0]  # [n, M]
                    held = torch.isfinite(scores).sum(-1)  # [n]
                    top_scores, top_index = scores.topk(min(k, scores.shape[-1]), dim=-1)  # [n, k]; invalid: -inf
                    chosen = top_index == chunk.unsqueeze(1)  # [n, k]
                    weight = (torch.nan_to_num(top_scores.softmax(-1), nan=0.0) * chosen).sum(-1)  # [n]
                    kv = memory.kv[envs, layer, chunk].unsqueeze(1)  # [n, 1, C, 2d]: the reward chunk
                    inside = read.within_chunk_weights(h[envs], kv)[:, 0, 0]  # [n, H, C]
                    on_step = inside.gather(-1, slot.view(-1, 1, 1).expand(-1, inside.shape[1], 1)).mean((1, 2))  # [n]
                    rows.append((layer, torch.stack([chosen.any(-1).float(), weight, on_step,
                                                     held.clamp(max=k) / held, held.float()], dim=1)))
            actions = torch.distributions.Categorical(logits=out.logits).sample()  # [N]
            obs, rewards, terminated, truncated, info = env.step(actions.numpy())
            reward_step = np.where((rewards > 0) & (reward_step < 0), trial_step + 1, reward_step)
            trial_end = np.asarray(info.get("trial_end", terminated | truncated), dtype=bool)
            reward_step = np.where(trial_end, -1, reward_step)
            trial_step = np.where(trial_end, 0, trial_step + 1)
            resets = torch.as_tensor(trial_end)
            inputs = next_inputs(obs_to_tensor(obs, env.single_observation_space, "cpu"), actions,
                                 torch.as_tensor(rewards, dtype=torch.float32),
                                 torch.as_tensor(terminated | truncated), resets)
            state = out.state
    env.close()
    HCAMRead.chunk_scores = score
    if not rows:
        raise SystemExit("no step came after a stored chunk with a reward: play more steps (--steps)")
    print(f"{checkpoint}: {N} envs x {steps} steps; chunks of {C}, top-{k}")
    for layer in range(agent.core.n_layers):
        x = torch.cat([r for at, r in rows if at == layer]).numpy()  # [rows, 5]
        print(f"  layer {layer}: reward chunk selected {x[:, 0].mean():.2f} (chance {x[:, 3].mean():.2f}), "
              f"its weight {x[:, 1].mean():.2f} (uniform {np.mean(1 / x[:, 4]):.2f}), "
              f"attention inside it on the reward step {x[:, 2].mean():.2f} (uniform {1 / C:.2f})")


if __name__ == "__main__":
    main()

"""A probe trial: one env played by an agent to record video frames and an attention map.

Training (now and then) and evaluation (once per checkpoint) both show the user what an agent does
and what it remembers: the first ``video_steps`` frames of a trial, and for attention cores a
heatmap of where each step's attention goes over the trial (DESIGN.md section 3, TensorBoard).

The attention map is in trial time on both axes: row t is the step taken at trial step t; its
attention weights (averaged over heads and layers, :func:`memo_rl.memory.record_attention`) are
drawn over the trial steps each key stands for (:meth:`MemoryCore.key_step_spans`): a raw step
key covers its own step, a Memo summary key the whole segment it summarises (with its full
weight, so a segment's column band shows how much the step reads that segment's summary). FCT therefore shows
a triangle of raw steps, Memo bands of summaries plus a triangle inside the current segment.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass

import numpy as np
import torch

from memo_rl.config import ConfigError, EnvConfig
from memo_rl.memory import MemoryCore, record_attention
from memo_rl.ppo import categorical
from memo_rl.types import first_inputs, next_inputs


def has_attention(core: MemoryCore) -> bool:
    """Whether the core reports attention (it overrides ``key_step_spans``)."""
    return type(core).key_step_spans is not MemoryCore.key_step_spans


class AttentionMap:
    """Accumulates one env's attention over a trial into ``weights [steps, steps]``."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self._delta = np.zeros((steps, steps + 1))  # per row, a difference array over columns
        self.rows = 0

    def add(self, weights: np.ndarray, spans: np.ndarray) -> None:
        """The next step's attention: ``weights [K]`` over keys standing for ``spans [K, 2]``."""
        t = self.rows
        first = np.clip(spans[:, 0], 0, self.steps)
        last = np.clip(spans[:, 1], 0, self.steps)
        np.add.at(self._delta[t], first, weights)
        np.add.at(self._delta[t], last, -weights)
        self.rows += 1

    @property
    def weights(self) -> np.ndarray:
        """``[rows, rows]``: per current step, the attention weight on each past trial step (a key
        standing for several steps, e.g. a summary, counts in full on each of them); keys never
        stand for steps after the current one, so later columns would be empty."""
        return np.cumsum(self._delta[: self.rows, :-1], axis=1)[:, : self.rows]


def attention_image(weights: np.ndarray, title: str, max_pixels: int = 400) -> np.ndarray:
    """Render a ``[rows, steps]`` attention map as an RGB uint8 image ``[H, W, 3]`` (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    rows, cols = weights.shape
    factor = max(1, int(np.ceil(max(rows, cols) / max_pixels)))
    r, c = rows // factor * factor, cols // factor * factor
    if r == 0 or c == 0:
        factor, r, c = 1, rows, cols
    binned = weights[:r, :c].reshape(r // factor, factor, c // factor, factor).mean(axis=(1, 3))  # [r, c] -> [r/f, c/f]
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    extent = (0, c, r, 0)
    im = ax.imshow(binned, cmap="magma", norm=PowerNorm(0.4, vmin=0.0), extent=extent, aspect="auto", interpolation="nearest")
    ax.set_xlabel("attended trial step (a summary covers its segment)")
    ax.set_ylabel("current trial step")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    buffer.seek(0)
    from PIL import Image

    return np.asarray(Image.open(buffer).convert("RGB"))


@dataclass
class ProbeResult:
    frames: np.ndarray | None  # uint8 [F, H, W, 3]
    attention: np.ndarray | None  # [steps, steps]


@torch.no_grad()
def probe_trial(
    agent, env_cfg: EnvConfig, device: torch.device, seed: int, video_steps: int, attention_steps: int,
    deterministic: bool = False,
) -> ProbeResult:
    """Play one trial's first ``max(video_steps, attention_steps)`` steps in a single env.

    Frames are rendered when ``video_steps > 0`` and the env renders (``rgb_array``); attention is
    recorded when ``attention_steps > 0`` and the core has attention. A render failure disables
    the video with a message, never the caller.
    """
    from memo_rl import registry

    want_attention = attention_steps > 0 and has_attention(agent.core)
    want_video = video_steps > 0
    if not (want_attention or want_video):
        return ProbeResult(None, None)
    env = None
    if want_video:
        try:
            env = registry.make_vector_env(env_cfg, num_envs=1, render_mode="rgb_array")
        except (ConfigError, ValueError, TypeError) as err:
            print(f"[memo-rl] no video: cannot render {env_cfg.id}: {err}", file=sys.stderr)
            want_video = False
    if env is None:
        env = registry.make_vector_env(env_cfg, num_envs=1)
    agent.eval()
    generator = torch.Generator().manual_seed(seed)
    to_tensor = lambda o: registry.obs_to_tensor(o, env.single_observation_space, device)  # noqa: E731
    steps = max(video_steps if want_video else 0, attention_steps if want_attention else 0)
    attention = AttentionMap(attention_steps) if want_attention else None
    frames: list[np.ndarray] = []
    try:
        obs, _ = env.reset(seed=seed)
        inputs = first_inputs(to_tensor(obs), 1, device)
        state, resets = agent.initial_state(1, device), torch.ones(1, dtype=torch.bool, device=device)
        for t in range(steps):
            if want_video and t < video_steps:
                try:
                    frames.append(np.asarray(env.render())[0])
                except Exception as err:  # a render problem must never stop training or evaluation
                    print(f"[memo-rl] no video: cannot render {env_cfg.id}: {err}", file=sys.stderr)
                    want_video, frames = False, []
            if attention is not None and t < attention_steps:
                with record_attention(agent.core) as log:
                    out = agent.step(inputs, state, resets)
                spans = agent.core.key_step_spans(log[0].key_pos, agent.core.reset_state(state, resets))
                valid = log[0].key_valid[0].cpu().numpy()
                attention.add(log[0].weights[0, -1].cpu().numpy()[valid], spans[0].cpu().numpy()[valid])
            else:
                out = agent.step(inputs, state, resets)
            if deterministic:
                actions = out.logits.argmax(dim=-1)
            else:
                actions, _ = categorical.sample(out.logits.cpu(), generator)
                actions = actions.to(device)
            obs, rewards, terminated, truncated, info = env.step(actions.cpu().numpy())
            ended = terminated | truncated
            trial_end = np.asarray(info.get("trial_end", ended), dtype=bool)
            rewards_t = torch.as_tensor(rewards, dtype=torch.float32, device=device)
            inputs = next_inputs(to_tensor(obs), actions, rewards_t, torch.as_tensor(ended, device=device),
                                 torch.as_tensor(trial_end, device=device))
            state, resets = out.state, torch.as_tensor(trial_end, device=device)
            if bool(trial_end[0]):
                break
    finally:
        env.close()
    video = np.stack(frames).astype(np.uint8) if want_video and frames else None
    return ProbeResult(video, None if attention is None or attention.rows == 0 else attention.weights)

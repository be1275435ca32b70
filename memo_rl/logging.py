"""Run logging: ``metrics.csv`` (one row per log interval) and TensorBoard.

TensorBoard tags are grouped as DESIGN.md prescribes: ``train/``, ``rollout/``, ``loss/``,
``memory/``, ``perf/`` (and ``eval/`` for evaluation). Videos are logged as animated GIF image
summaries encoded with Pillow, which TensorBoard's image dashboard plays; this avoids
``add_video``'s moviepy dependency (REFERENCES.md, pitfalls).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

# metrics.csv columns, in order, with their TensorBoard tag. Timing columns are listed in
# TIMING_COLUMNS: they are the only ones that differ between two runs with the same seed.
METRIC_TAGS: dict[str, str] = {
    "global_step": "",
    "update": "",
    "episode_return_mean": "rollout/episode_return_mean",
    "episode_length_mean": "rollout/episode_length_mean",
    "success_rate": "rollout/success_rate",
    "trial_return_mean": "rollout/trial_return_mean",
    "first_episode_length_mean": "rollout/first_episode_length_mean",
    "later_episode_length_mean": "rollout/later_episode_length_mean",
    "first_episode_success_rate": "rollout/first_episode_success_rate",
    "later_episode_success_rate": "rollout/later_episode_success_rate",
    "episodes": "rollout/episodes",
    "lr": "train/lr",
    "policy_loss": "loss/policy",
    "value_loss": "loss/value",
    "entropy": "loss/entropy",
    "approx_kl": "loss/approx_kl",
    "clip_fraction": "loss/clip_fraction",
    "explained_variance": "loss/explained_variance",
    "grad_norm": "loss/grad_norm",
    "recall_loss": "loss/recall",  # agents with a past-input recall head (agent.recall_max_lag)
    "privileged_loss": "loss/privileged",  # agents with agent.privileged_keys
    "cached_tokens": "memory/cached_tokens",
    "fps": "perf/fps",
    "rollout_seconds": "perf/rollout_seconds",
    "env_seconds": "perf/env_seconds",  # the part of rollout_seconds spent inside env.step
    "update_seconds": "perf/update_seconds",
    "wall_seconds": "perf/wall_seconds",
}
TIMING_COLUMNS = ("fps", "rollout_seconds", "env_seconds", "update_seconds", "wall_seconds")


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class RunLogger:
    """Writes metrics rows to CSV and TensorBoard. On resume, rows after ``resume_step`` (logged
    by the interrupted run after its last checkpoint) are dropped from both."""

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"
        if resume_step is not None and self.csv_path.exists():
            self._truncate_csv(resume_step)
        else:
            with open(self.csv_path, "w", newline="") as f:
                csv.writer(f).writerow(METRIC_TAGS)
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge)

    def _truncate_csv(self, resume_step: int) -> None:
        """Keep the rows up to ``resume_step``, under the current columns (a run started by an
        older version may lack some: they stay empty in its earlier rows)."""
        with open(self.csv_path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("global_step") and int(r["global_step"]) <= resume_step]
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(METRIC_TAGS), extrasaction="ignore", restval="")
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.csv_path)

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        step = int(metrics["global_step"])
        unknown = set(metrics) - set(METRIC_TAGS)
        if unknown:
            raise KeyError(f"metrics without a column: {sorted(unknown)}")
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerow([_format(metrics.get(name)) for name in METRIC_TAGS])
        for name, tag in METRIC_TAGS.items():
            value = metrics.get(name)
            if tag and value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def log_config(self, config_yaml: str, hparams: dict[str, Any]) -> None:
        """The resolved config as text, and the hyper-parameters once in TensorBoard's HParams view."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        self.writer.add_text("train/config", "```\n" + config_yaml + "\n```", 0)
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        metric_keys = {"rollout/episode_return_mean": float("nan"), "rollout/trial_return_mean": float("nan")}
        for summary in hparams_summary(clean, metric_keys):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def log_video(self, tag: str, frames: np.ndarray, step: int, fps: int = 10) -> None:
        """Log ``frames`` uint8 ``[F, H, W, 3]`` as an animated GIF image summary."""
        write_gif(self.writer, tag, frames, step, fps)

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """Log an RGB image uint8 ``[H, W, 3]``."""
        self.writer.add_image(tag, image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_gif(writer: Any, tag: str, frames: np.ndarray, step: int, fps: int = 10) -> None:
    """Write ``frames`` uint8 ``[F, H, W, 3]`` to a ``SummaryWriter`` as an animated GIF image summary."""
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    height, width = frames.shape[1:3]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue())
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    writer.flush()


def flatten_dict(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out

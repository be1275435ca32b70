"""Learning-curve plots from run directories' ``metrics.csv`` (matplotlib, headless)."""

from __future__ import annotations

import csv
import math
import os
import textwrap
from pathlib import Path

import numpy as np


def read_metric(run_dir: Path, column: str) -> tuple[np.ndarray, np.ndarray]:
    """``(global_step, values)`` of one metrics.csv column, rows with an empty value dropped."""
    steps, values = [], []
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if column not in row:
                raise KeyError(f"{run_dir}/metrics.csv has no column '{column}'")
            if row[column] != "":
                steps.append(int(row["global_step"]))
                values.append(float(row[column]))
    return np.asarray(steps), np.asarray(values)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` rows (shorter at the start)."""
    if window <= 1 or len(values) == 0:
        return values
    cumsum = np.cumsum(np.insert(np.asarray(values, dtype=float), 0, 0.0))
    end = np.arange(1, len(values) + 1)
    start = np.maximum(0, end - window)
    return (cumsum[end] - cumsum[start]) / (end - start)


def strip_common_prefix(labels: list[str], separators: str = "-_=,/.") -> tuple[str, list[str]]:
    """``(prefix, rest)``: the longest prefix every label shares, cut back to just after a
    separator, and each label without it. Nothing is stripped from fewer than 2 labels or where
    a label would become empty: ``["preset-dkd_none", "preset-dkd_gru"]`` -> ``("preset-dkd_", ["none", "gru"])``."""
    if len(labels) < 2:
        return "", list(labels)
    prefix = os.path.commonprefix(labels)
    cut = max((prefix.rfind(c) for c in separators), default=-1) + 1
    prefix = prefix[:cut]
    if not prefix or any(len(label) == len(prefix) for label in labels):
        return "", list(labels)
    return prefix, [label[len(prefix):] for label in labels]


def plot_learning_curves(
    runs: dict[str, list[Path]], columns: list[str], output: Path, smooth_window: int = 10, title: str | None = None
) -> Path:
    """One panel per column; per label, the mean over its runs (seeds) with a min-max band.

    ``runs`` maps a label (e.g. a memory core) to its run directories. A prefix all labels share
    (a sweep's ``preset-dark_key_to_door_``) moves into the title; with more than 4 labels the
    legend sits beside the panels, where it hides no curve.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix, labels = strip_common_prefix(list(runs))
    outside = len(labels) > 4
    colors = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20").colors
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns) + 2.2 * outside, 3.8), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for i, (label, dirs) in enumerate(zip(labels, runs.values())):
            curves = [read_metric(d, column) for d in dirs]
            length = min(len(s) for s, _ in curves)
            if length == 0:
                continue
            steps = curves[0][0][:length]
            stack = np.stack([smooth(v[:length], smooth_window) for _, v in curves])  # [seeds, rows]
            color = colors[i % len(colors)]
            ax.plot(steps, stack.mean(0), color=color, label=f"{label} (n={len(dirs)})")
            if len(dirs) > 1:
                ax.fill_between(steps, stack.min(0), stack.max(0), color=color, alpha=0.2)
        ax.set_xlabel("env steps")
        ax.set_ylabel(column)
        ax.grid(alpha=0.3)
    handles, names = axes[0][-1].get_legend_handles_labels()
    if outside:
        axes[0][-1].legend(handles, names, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        axes[0][0].legend(handles, names, fontsize=8)
    if prefix:
        title = f"{title} ({prefix}*)" if title else f"{prefix}*"
    return _save(fig, output, title)


def fit_title(title: str, width_inches: float, font_size: float) -> str:
    """``title`` broken at spaces into lines that fit a figure ``width_inches`` wide at
    ``font_size`` points (a character taken as 0.6 em), so a long sweep title is not cut off at the
    figure's edges. A word longer than a line stays whole."""
    chars_per_line = max(20, int(width_inches * 72 / (0.6 * font_size)))
    return textwrap.fill(title, width=chars_per_line, break_long_words=False, break_on_hyphens=False)


def _save(fig, output: Path, title: str | None) -> Path:
    """Title, lay out and write ``fig`` as a PNG (creating the folder), then close it."""
    import matplotlib.pyplot as plt
    from matplotlib.font_manager import FontProperties

    if title:
        title_points = FontProperties(size=plt.rcParams["figure.titlesize"]).get_size_in_points()  # suptitle's size
        fig.suptitle(fit_title(title, fig.get_figwidth(), title_points))
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def final_value(run_dir: Path, column: str, last_rows: int = 10) -> float:
    """Mean of a column over the last ``last_rows`` non-empty rows (NaN if none)."""
    _, values = read_metric(run_dir, column)
    return float(np.mean(values[-last_rows:])) if len(values) else math.nan


def plot_eval_bins(curves: dict[str, dict], output: Path, title: str | None = None) -> Path:
    """Evaluation results per trial-step bin: return (mean and 95% band over trials), tokens held
    and step latency, a line per label. ``curves`` maps a label to a results.json checkpoint entry.
    When an entry reports success by the episode's index in the trial (``episodes_by_index``), a
    last panel shows it (95% binomial band): later episodes above the first mean memory pays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("return_mean", "return per bin"), ("cached_tokens", "tokens held (max)"), ("step_ms", "agent step (ms)"))
    by_index = any(_episode_success(entry) is not None for entry in curves.values())
    n_panels = len(panels) + by_index
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 3.8), squeeze=False)
    for (label, entry), color in zip(curves.items(), _eval_colors(len(curves))):
        bins = entry["bins"]
        x = np.array([(row["first_step"] + row["last_step"] + 1) / 2 for row in bins])  # bin centres
        for ax, (key, ylabel) in zip(axes[0], panels):
            y = np.array([np.nan if row[key] is None else row[key] for row in bins], dtype=float)
            ax.plot(x, y, marker="o", ms=3, color=color, label=label)
            if key == "return_mean":
                ci = np.array([np.nan if row["return_ci95"] is None else row["return_ci95"] for row in bins], dtype=float)
                ax.fill_between(x, y - ci, y + ci, color=color, alpha=0.2)
            ax.set_xlabel("trial step")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
    for ax in axes[0][1:len(panels)]:
        ax.set_ylim(bottom=0)
    if by_index:
        _draw_episode_success(axes[0][-1], curves)
    axes[0][0].legend(fontsize=7)
    return _save(fig, output, title)


def plot_episode_success(curves: dict[str, dict], output: Path, title: str | None = None) -> Path:
    """Success by the episode's index in the trial (95% binomial band), a line per label;
    ``curves`` maps a label to a results.json checkpoint entry with ``episodes_by_index``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    _draw_episode_success(ax, curves)
    ax.legend(fontsize=8)
    return _save(fig, output, title)


def _eval_colors(n: int) -> list:
    """One colour per evaluation curve, the same in every panel: tab10 for up to 4, else viridis."""
    import matplotlib.pyplot as plt

    if n > 4:
        return [plt.get_cmap("viridis")(i / max(n - 1, 1)) for i in range(n)]
    return [plt.get_cmap("tab10")(i) for i in range(n)]


def _draw_episode_success(ax, curves: dict[str, dict]) -> None:
    for (label, entry), color in zip(curves.items(), _eval_colors(len(curves))):
        success = _episode_success(entry)
        if success is None:
            continue
        index, rate, half_width = success
        ax.plot(index, rate, marker="o", ms=3, color=color, label=label)
        ax.fill_between(index, rate - half_width, rate + half_width, color=color, alpha=0.2)
    ax.set_xlabel("episode of the trial (the last point pools the later ones)")
    ax.set_ylabel("success")
    ax.grid(alpha=0.3)


def _episode_success(entry: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(episode index, success rate, 95% half-width) of the episodes_by_index rows that report
    success, or None if none does."""
    rows = [row for row in entry.get("episodes_by_index") or [] if row.get("success_rate") is not None
            and row["episodes"] > 0 and not math.isnan(row["success_rate"])]
    if not rows:
        return None
    index = np.array([row["episode"] for row in rows], dtype=float)
    rate = np.array([row["success_rate"] for row in rows], dtype=float)
    n = np.array([row["episodes"] for row in rows], dtype=float)
    return index, rate, 1.96 * np.sqrt(rate * (1 - rate) / n)

"""``memo-rl report SWEEP_DIR``: aggregate a sweep's runs per method over seeds.

For each method (a grid cell without its seed, from ``sweep.json``): the final performance of each
run (the mean of the metric's last ``--last`` logged values) is aggregated over seeds as the
interquartile mean (IQM) with a 95% stratified-bootstrap confidence interval (rliable, Agarwal et
al. 2021), beside the mean and the per-seed values. Writes into the sweep directory:

- ``report.md``: the table (and the sweep's grid and command);
- ``report.json``: the same numbers;
- ``curves.png``: learning curves vs env steps, mean over seeds with a min-max band;
- ``hparams/``: TensorBoard HParams view, one entry per run (grid values + final metrics).

Unfinished runs are reported with the steps they reached and left out of the aggregates.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memo_rl.config import ConfigError
from memo_rl.plots import final_value, plot_learning_curves, read_metric

DEFAULT_METRICS = ("trial_return_mean", "episode_return_mean")


@dataclass
class MethodResult:
    method: str
    runs: list[str]  # finished runs
    finals: list[float]  # final metric per finished run
    unfinished: list[str]
    iqm: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan

    @property
    def mean(self) -> float:
        return float(np.mean(self.finals)) if self.finals else math.nan


def load_manifest(sweep_dir: Path) -> dict[str, Any]:
    if not sweep_dir.is_dir():
        raise ConfigError(f"no sweep directory '{sweep_dir}' (run memo-rl sweep first; sweeps live in runs/sweeps/NAME)")
    path = sweep_dir / "sweep.json"
    if not path.exists():
        raise ConfigError(f"'{sweep_dir}' is not a sweep directory: it has no sweep.json (written by memo-rl sweep)")
    return json.loads(path.read_text())


def pick_metric(sweep_dir: Path, cells: list[dict[str, Any]], requested: str | None) -> str:
    """The metric to report: the requested one, else the first default every finished run logs.

    Only finished runs decide (all runs while none has finished): a cell that has just started
    has no trial return yet, and must not switch the whole report to another metric.
    """
    logged = [sweep_dir / c["name"] for c in cells if (sweep_dir / c["name"] / "metrics.csv").exists()]
    if not logged:
        raise ConfigError(f"no run in '{sweep_dir}' has logged metrics yet")
    runs = [r for r in logged if (r / "summary.json").exists()] or logged
    for metric in [requested] if requested else DEFAULT_METRICS:
        try:
            if all(len(read_metric(r, metric)[1]) for r in runs):
                return metric
        except KeyError:
            pass
        if requested:
            raise ConfigError(f"metric '{requested}' is not logged by every run of '{sweep_dir}' (see metrics.csv columns)")
    raise ConfigError(f"the runs of '{sweep_dir}' log none of {', '.join(DEFAULT_METRICS)}; pass --metric")


def aggregate(results: list[MethodResult], reps: int, seed: int) -> None:
    """Fill IQM and its 95% stratified-bootstrap CI for every method with finished runs."""
    from rliable import library as rly
    from rliable import metrics

    scores = {r.method: np.asarray(r.finals, dtype=float).reshape(-1, 1) for r in results if r.finals}  # [runs, 1 task]
    if not scores:
        return
    with warnings.catch_warnings():  # arch (under rliable) deprecates the RandomState rliable passes
        warnings.simplefilter("ignore", FutureWarning)
        points, intervals = rly.get_interval_estimates(
            scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps,
            random_state=np.random.RandomState(seed),
        )
    for r in results:
        if r.method in points:
            r.iqm = float(points[r.method][0])
            r.ci_low, r.ci_high = (float(v) for v in intervals[r.method][:, 0])


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3g}"


def write_hparams(sweep_dir: Path, manifest: dict[str, Any], metric: str, last: int) -> None:
    """One HParams entry per finished run: its grid values and final metrics."""
    from torch.utils.tensorboard import SummaryWriter

    grid_keys = list(manifest["grid"])
    writer = SummaryWriter(log_dir=str(sweep_dir / "hparams"))
    for cell in manifest["cells"]:
        run_dir = sweep_dir / cell["name"]
        if not (run_dir / "summary.json").exists():
            continue
        values = dict(o.split("=", 1) for o in cell["overrides"])
        hparams: dict[str, Any] = {k: values.get(k, cell.get("preset") if k == "preset" else "") for k in grid_keys}
        hparams["seed"] = cell["seed"]
        final = {f"final/{metric}": final_value(run_dir, metric, last)}
        summary = json.loads((run_dir / "summary.json").read_text())
        final["final/env_steps"] = float(summary.get("env_steps", math.nan))
        writer.add_hparams({k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()},
                           final, run_name=cell["name"])
    writer.close()


def run_report(ns: argparse.Namespace) -> int:
    sweep_dir = Path(ns.sweep_dir)
    manifest = load_manifest(sweep_dir)
    cells = manifest["cells"]
    metric = pick_metric(sweep_dir, cells, ns.metric)
    results: dict[str, MethodResult] = {}
    for cell in cells:
        r = results.setdefault(cell["method"], MethodResult(cell["method"], [], [], []))
        run_dir = sweep_dir / cell["name"]
        if (run_dir / "summary.json").exists():
            r.runs.append(cell["name"])
            r.finals.append(final_value(run_dir, metric, ns.last))
        else:
            r.unfinished.append(cell["name"])
    ordered = list(results.values())
    aggregate(ordered, ns.reps, ns.seed)

    curves = {r.method: [sweep_dir / n for n in r.runs] for r in ordered if r.runs}
    plot = plot_learning_curves(curves, [metric], sweep_dir / "curves.png", title=f"{manifest['name']}: {metric}")
    lines = [
        f"# Sweep report: {manifest['name']}",
        "",
        f"Sweep file `{manifest['file']}`; grid {json.dumps(manifest['grid'])}; seeds {manifest['seeds']}; "
        f"shared overrides `{' '.join(manifest['overrides']) or 'none'}`.",
        f"Final performance = mean of the last {ns.last} logged values of `{metric}` per run; IQM over runs with a 95% "
        f"stratified-bootstrap CI (rliable, {ns.reps} resamples).",
        "",
        "| method | runs | IQM | 95% CI | mean | per seed | unfinished |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    for r in ordered:
        per_seed = ", ".join(f"{v:.3g}" for v in r.finals) or "-"
        lines.append(f"| {r.method} | {len(r.runs)} | {_fmt(r.iqm)} | [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | "
                     f"{_fmt(r.mean)} | {per_seed} | {', '.join(r.unfinished) or '-'} |")
    lines += ["", f"![learning curves]({plot.name})", ""]
    (sweep_dir / "report.md").write_text("\n".join(lines))
    data = {"metric": metric, "last": ns.last, "methods": [
        {"method": r.method, "runs": r.runs, "finals": r.finals, "iqm": r.iqm, "ci95": [r.ci_low, r.ci_high],
         "mean": r.mean, "unfinished": r.unfinished} for r in ordered]}
    (sweep_dir / "report.json").write_text(json.dumps(data, indent=2).replace("NaN", "null") + "\n")
    write_hparams(sweep_dir, manifest, metric, ns.last)
    print("\n".join(lines[5:-3]))
    print(f"\n[memo-rl report] wrote {sweep_dir / 'report.md'}, {plot}, report.json and hparams/ (TensorBoard HParams)")
    return 0


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="the sweep directory (runs/sweeps/NAME)")
    parser.add_argument("--metric", default=None, help="metrics.csv column (default: trial_return_mean, else episode_return_mean)")
    parser.add_argument("--last", type=int, default=10, help="logged values averaged into a run's final figure")
    parser.add_argument("--reps", type=int, default=20000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")

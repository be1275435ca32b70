"""``memo-rl sweep experiments/NAME.py``: a grid of config overrides x seeds, one run per cell.

A sweep file is a Python file defining ``SWEEP``, a :class:`Sweep`::

    from memo_rl.sweep import Sweep

    SWEEP = Sweep(
        preset="dark_key_to_door_gru",
        grid={"memory.core": ["gru", "lstm"], "ppo.lr": [3e-4, 1e-3]},
        seeds=[0, 1, 2],
        overrides=["train.total_steps=3000000"],
    )

Every cell is a normal run directory ``<sweep dir>/<cell name>`` (names built from the grid values,
e.g. ``core-gru_lr-0.001_s0``) trained by ``memo-rl train ... run.resume=true``, so re-running a
sweep skips finished cells (they hold ``summary.json``), resumes interrupted ones from their newest
checkpoint and retries failed ones. Every cell's config is built before anything is launched, so
an unknown key or bad value stops the sweep with one line and nothing started.

Launchers: ``local`` (parallel subprocesses, ``--max-parallel``, one GPU each when there are GPUs)
and ``slurm`` (submitit job array; partition, time, GPUs, CPUs and array parallelism are options;
``--slurm-cluster local`` runs it through submitit's local executor). ``sweep.json`` in the sweep
directory records the grid and the cells for ``memo-rl report``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memo_rl.config import ConfigError, build_config


@dataclass
class Sweep:
    """A grid of overrides crossed with seeds.

    Args:
        grid: dotted config key -> values; cells are the cartesian product. The key ``preset``
            varies the preset itself.
        seeds: ``train.seed`` of each cell's runs.
        preset: preset shared by all cells (unless the grid varies ``preset``).
        overrides: ``key=value`` overrides shared by all cells (applied before the grid's).
        name: sweep name (default: the file's stem); the sweep directory is ``runs/sweeps/<name>``.
    """

    grid: dict[str, list[Any]]
    seeds: list[int] = field(default_factory=lambda: [0])
    preset: str | None = None
    overrides: list[str] = field(default_factory=list)
    name: str | None = None


@dataclass
class Cell:
    """One run of the sweep."""

    name: str  # directory name, e.g. core-gru_lr-0.001_s0
    method: str  # the name without the seed: what the report aggregates over seeds
    preset: str | None
    overrides: list[str]  # shared, then the grid's, then train.seed
    seed: int

    def command(self, run_dir: Path) -> list[str]:
        preset = [self.preset] if self.preset else []
        return [sys.executable, "-m", "memo_rl", "train", *preset, *self.overrides, f"run.dir={run_dir}", "run.resume=true"]


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _value_name(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text.replace("/", "-").replace("=", "-").replace(" ", "")


def expand(sweep: Sweep) -> list[Cell]:
    """The cells of a sweep, in grid order then seed order; each cell's config is validated."""
    if not isinstance(sweep.grid, dict) or not sweep.grid:
        raise ConfigError("the sweep's grid is empty: give Sweep(grid={'section.key': [values, ...]})")
    for key, values in sweep.grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"grid key '{key}' needs a non-empty list of values, got {values!r}")
    if not sweep.seeds:
        raise ConfigError("the sweep has no seeds: give Sweep(seeds=[0, 1, 2])")
    keys = list(sweep.grid)
    shorts = [_short(k) for k in keys]
    if len(set(shorts)) < len(shorts):  # e.g. ppo.lr and sb3.lr: keep the full key in names
        shorts = [k.replace(".", "-") for k in keys]
    cells = []
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        method = "_".join(f"{s}-{_value_name(v)}" for s, v in zip(shorts, values))
        preset = sweep.preset
        grid_overrides = []
        for key, value in zip(keys, values):
            if key == "preset":
                preset = str(value)
            else:
                grid_overrides.append(f"{key}={json.dumps(value) if isinstance(value, (list, dict)) else value}")
        for seed in sweep.seeds:
            overrides = [*sweep.overrides, *grid_overrides, f"train.seed={seed}"]
            try:
                build_config(preset, overrides)
            except ConfigError as err:
                raise ConfigError(f"cell {method}_s{seed}: {err}") from None
            cells.append(Cell(f"{method}_s{seed}", method, preset, overrides, int(seed)))
    return cells


def load_sweep(path_arg: str) -> tuple[Sweep, Path]:
    """Import a sweep file (a path, or a name under experiments/) and return its ``SWEEP``."""
    path = Path(path_arg)
    if not path.exists() and not path.suffix:
        path = Path("experiments") / f"{path_arg}.py"
    if not path.is_file():
        raise ConfigError(f"no sweep file '{path_arg}' (give experiments/NAME.py)")
    spec = importlib.util.spec_from_file_location(f"memo_rl_sweep_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as err:
        raise ConfigError(f"cannot import sweep file {path}: {type(err).__name__}: {err}") from None
    sweep = getattr(module, "SWEEP", None)
    if not isinstance(sweep, Sweep):
        raise ConfigError(f"{path} defines no grid: it needs SWEEP = memo_rl.sweep.Sweep(grid={{...}}, seeds=[...])")
    return sweep, path


# ----------------------------------------------------------------------------- cell status


def cell_status(run_dir: Path) -> str:
    """``finished`` (summary.json), ``interrupted`` (a run without summary), or ``new``."""
    if (run_dir / "summary.json").exists():
        return "finished"
    if (run_dir / "config.yaml").exists():
        return "interrupted"
    return "new"


def final_metric(run_dir: Path) -> str:
    """A short description of a finished cell's final figures."""
    try:
        final = json.loads((run_dir / "summary.json").read_text())["final"]
    except (OSError, KeyError, json.JSONDecodeError):
        return ""
    for key in ("trial_return_mean", "episode_return_mean"):
        if final.get(key) is not None:
            return f"{key.replace('_mean', '')} {final[key]:.3g}"
    return ""


@dataclass
class Outcome:
    cell: Cell
    status: str  # finished, skipped, failed
    seconds: float = 0.0
    detail: str = ""


# ----------------------------------------------------------------------------- launchers


def _tail(path: Path, lines: int = 1) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " / ".join(text[-lines:])


def run_local(cells: list[Cell], sweep_dir: Path, max_parallel: int) -> list[Outcome]:
    """Run cells as subprocesses, at most ``max_parallel`` at once; a failing cell never stops the others."""
    import torch

    gpus = torch.cuda.device_count()
    logs = sweep_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pending = list(cells)
    running: dict[subprocess.Popen, tuple[Cell, float, int | None, Any]] = {}
    outcomes: list[Outcome] = []
    free_gpus = list(range(gpus))
    total = len(cells)
    while pending or running:
        while pending and len(running) < max_parallel:
            cell = pending.pop(0)
            gpu = free_gpus.pop(0) if free_gpus else None
            env = dict(os.environ)
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = str(gpu)
            log = open(logs / f"{cell.name}.log", "a")
            proc = subprocess.Popen(cell.command(sweep_dir / cell.name), stdout=log, stderr=subprocess.STDOUT, env=env)
            running[proc] = (cell, time.monotonic(), gpu, log)
            print(f"[memo-rl sweep] started {cell.name}" + (f" on GPU {gpu}" if gpu is not None else ""), flush=True)
        time.sleep(0.2)
        for proc in [p for p in running if p.poll() is not None]:
            cell, started, gpu, log = running.pop(proc)
            log.close()
            if gpu is not None:
                free_gpus.append(gpu)
            seconds = time.monotonic() - started
            if proc.returncode == 0 and cell_status(sweep_dir / cell.name) == "finished":
                outcome = Outcome(cell, "finished", seconds, final_metric(sweep_dir / cell.name))
            else:
                outcome = Outcome(cell, "failed", seconds, f"exit {proc.returncode}: {_tail(logs / f'{cell.name}.log')}")
            outcomes.append(outcome)
            print(f"[memo-rl sweep] [{len(outcomes)}/{total}] {cell.name} {outcome.status} in {seconds:.0f}s"
                  + (f" ({outcome.detail})" if outcome.detail else ""), flush=True)
    return outcomes


def _run_cell_in_process(command: list[str]) -> int:
    """Entry point of a submitit job: run one cell's training command, return its exit status."""
    return subprocess.run(command, check=False).returncode


def run_slurm(cells: list[Cell], sweep_dir: Path, ns: argparse.Namespace) -> list[Outcome]:
    """Submit cells as a submitit job array and wait for them."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install 'memo-rl[slurm]'") from None
    executor = submitit.AutoExecutor(folder=str(sweep_dir / "slurm" / "%j"), cluster=ns.slurm_cluster)
    params: dict[str, Any] = {"timeout_min": ns.time, "cpus_per_task": ns.cpus_per_task, "name": sweep_dir.name}
    if ns.slurm_cluster == "slurm":
        params.update(slurm_partition=ns.partition, gpus_per_node=ns.gpus, slurm_array_parallelism=ns.array_parallelism)
    elif ns.gpus:
        params["gpus_per_node"] = ns.gpus
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    commands = [cell.command(sweep_dir / cell.name) for cell in cells]
    started = time.monotonic()
    jobs = executor.map_array(_run_cell_in_process, commands)
    print(f"[memo-rl sweep] submitted {len(jobs)} cells as job array {jobs[0].job_id.split('_')[0]} "
          f"(logs in {sweep_dir / 'slurm'})", flush=True)
    outcomes = []
    for cell, job in zip(cells, jobs):
        try:
            code = job.result()
            error = "" if code == 0 else f"exit {code}"
        except Exception as err:  # a job that crashed or was cancelled
            code, error = 1, f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
        seconds = time.monotonic() - started
        if code == 0 and cell_status(sweep_dir / cell.name) == "finished":
            outcome = Outcome(cell, "finished", seconds, final_metric(sweep_dir / cell.name))
        else:
            outcome = Outcome(cell, "failed", seconds, error or "no summary.json")
        outcomes.append(outcome)
        print(f"[memo-rl sweep] [{len(outcomes)}/{len(cells)}] {cell.name} {outcome.status}"
              + (f" ({outcome.detail})" if outcome.detail else ""), flush=True)
    return outcomes


# ----------------------------------------------------------------------------- the command


def default_parallel() -> int:
    import torch

    return max(1, torch.cuda.device_count() or (os.cpu_count() or 1))


def write_manifest(sweep: Sweep, sweep_path: Path, sweep_dir: Path, cells: list[Cell]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": sweep_dir.name,
        "file": str(sweep_path),
        "grid": sweep.grid,
        "seeds": sweep.seeds,
        "preset": sweep.preset,
        "overrides": sweep.overrides,
        "cells": [{"name": c.name, "method": c.method, "seed": c.seed, "preset": c.preset, "overrides": c.overrides}
                  for c in cells],
    }
    tmp = sweep_dir / ".sweep.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    tmp.replace(sweep_dir / "sweep.json")


def run_sweep(ns: argparse.Namespace) -> int:
    """``memo-rl sweep``: expand, validate, skip finished cells, launch the rest, summarise."""
    sweep, sweep_path = load_sweep(ns.sweep_file)
    cells = expand(sweep)
    name = sweep.name or sweep_path.stem
    sweep_dir = Path(ns.sweep_dir) if ns.sweep_dir else Path("runs") / "sweeps" / name
    if ns.max_parallel is not None and ns.max_parallel < 1:
        raise ConfigError(f"bad value {ns.max_parallel} for --max-parallel: must be >= 1")
    if ns.dry_run:
        print(f"[memo-rl sweep] {name}: {len(cells)} cells -> {sweep_dir}")
        for cell in cells:
            status = cell_status(sweep_dir / cell.name)
            print(f"{cell.name} [{status}]: memo-rl train {' '.join(cell.command(sweep_dir / cell.name)[4:])}")
        return 0
    write_manifest(sweep, sweep_path, sweep_dir, cells)
    todo = [c for c in cells if cell_status(sweep_dir / c.name) != "finished"]
    skipped = [Outcome(c, "skipped", 0.0, "finished before; " + final_metric(sweep_dir / c.name))
               for c in cells if c not in todo]
    print(f"[memo-rl sweep] {name}: {len(cells)} cells, {len(skipped)} finished before, {len(todo)} to run "
          f"({ns.launcher}) -> {sweep_dir}", flush=True)
    if ns.launcher == "local":
        outcomes = run_local(todo, sweep_dir, ns.max_parallel or default_parallel()) if todo else []
    else:
        outcomes = run_slurm(todo, sweep_dir, ns) if todo else []
    by_name = {o.cell.name: o for o in [*skipped, *outcomes]}
    print(f"\n[memo-rl sweep] {name} summary:")
    for cell in cells:
        o = by_name[cell.name]
        print(f"  {cell.name:<40} {o.status:<9}" + (f" {o.detail}" if o.detail else ""))
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        print(f"[memo-rl sweep] {len(failed)} cell(s) failed (logs in {sweep_dir / 'logs'}); re-run the sweep to retry them")
    print(f"[memo-rl sweep] report: memo-rl report {sweep_dir}")
    return 1 if failed else 0


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_file", help="experiments/NAME.py (or NAME) defining SWEEP = Sweep(...)")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local")
    parser.add_argument("--max-parallel", type=int, default=None,
                        help="local: cells at once (default: number of GPUs, else CPU cores)")
    parser.add_argument("--sweep-dir", default=None, help="default runs/sweeps/<name>")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and their commands, run nothing")
    slurm = parser.add_argument_group("slurm (submitit)")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--time", type=int, default=240, help="minutes per cell")
    slurm.add_argument("--gpus", type=int, default=0, help="GPUs per cell")
    slurm.add_argument("--cpus-per-task", type=int, default=4)
    slurm.add_argument("--array-parallelism", type=int, default=64, help="cells running at once")
    slurm.add_argument("--slurm-cluster", choices=("slurm", "local", "debug"), default="slurm",
                       help="submitit executor: slurm, or local/debug to run the same path on this machine")

"""``memo-rl sweep`` and ``memo-rl report``: the smoke sweep end to end, failures, skips, Slurm path."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from memo_rl.cli import main
from memo_rl.sweep import Sweep, expand

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "experiments" / "smoke.py"
TINY_CELL = (
    '"train.total_steps=256", "env.num_envs=4", "env.kwargs.trial_length=40", "env.kwargs.episode_length=10", '
    '"ppo.rollout_length=16", "ppo.num_minibatches=2", "ppo.epochs=1", "agent.hidden_size=16", "agent.d_model=16", '
    '"run.checkpoint_interval=2", "run.progress=false"'
)


def sweep_file(tmp_path: Path, grid: str, seeds: str = "[0]", name: str = "s") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(
        "from memo_rl.sweep import Sweep\n"
        f"SWEEP = Sweep(preset='quickstart', grid={grid}, seeds={seeds}, overrides=[{TINY_CELL}])\n"
    )
    return path


def test_cells_are_named_from_grid_values_and_validated_before_launch():
    cells = expand(Sweep(grid={"memory.core": ["gru", "none"], "ppo.lr": [3e-4, 0.001]}, seeds=[0, 1], preset="quickstart"))
    assert [c.name for c in cells][:3] == ["core-gru_lr-0.0003_s0", "core-gru_lr-0.0003_s1", "core-gru_lr-0.001_s0"]
    assert len(cells) == 8 and len({c.method for c in cells}) == 4
    assert cells[0].overrides[-3:] == ["memory.core=gru", "ppo.lr=0.0003", "train.seed=0"]
    presets = expand(Sweep(grid={"preset": ["dark_key_to_door_gru", "dark_key_to_door_none"]}))
    assert [(c.name, c.preset) for c in presets] == [
        ("preset-dark_key_to_door_gru_s0", "dark_key_to_door_gru"), ("preset-dark_key_to_door_none_s0", "dark_key_to_door_none")]


def test_smoke_sweep_runs_reports_and_skips_finished_cells(tmp_path, capsys):
    sweep_dir = tmp_path / "smoke"
    assert main(["sweep", str(SMOKE), "--sweep-dir", str(sweep_dir), "--max-parallel", "2"]) == 0
    out = capsys.readouterr().out
    names = ["core-gru_s0", "core-gru_s1", "core-none_s0", "core-none_s1"]
    for name in names:
        assert (sweep_dir / name / "summary.json").exists()
        assert f"{name}" in out.split("summary:")[1]
    assert json.loads((sweep_dir / "sweep.json").read_text())["grid"] == {"memory.core": ["gru", "none"]}

    assert main(["report", str(sweep_dir), "--reps", "500"]) == 0
    report = (sweep_dir / "report.md").read_text()
    assert "| core-gru | 2 |" in report and "| core-none | 2 |" in report
    data = json.loads((sweep_dir / "report.json").read_text())
    gru = data["methods"][0]
    assert data["metric"] == "trial_return_mean" and len(gru["finals"]) == 2
    assert gru["ci95"][0] <= gru["iqm"] <= gru["ci95"][1]
    assert (sweep_dir / "curves.png").stat().st_size > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    hparams = EventAccumulator(str(sweep_dir / "hparams" / "core-gru_s0")).Reload()
    assert "final/trial_return_mean" in hparams.Tags()["scalars"]

    mtimes = {n: (sweep_dir / n / "summary.json").stat().st_mtime for n in names}
    assert main(["sweep", str(SMOKE), "--sweep-dir", str(sweep_dir)]) == 0
    assert "4 finished before, 0 to run" in capsys.readouterr().out
    assert {n: (sweep_dir / n / "summary.json").stat().st_mtime for n in names} == mtimes

    # A cell that has just started (no trial finished yet, so no trial return logged) is listed
    # as unfinished and does not switch the report to another metric.
    started = sweep_dir / "core-none_s1"
    (started / "summary.json").unlink()
    header, first = (started / "metrics.csv").read_text().splitlines()[:2]
    assert first.split(",")[header.split(",").index("trial_return_mean")] == ""
    (started / "metrics.csv").write_text(f"{header}\n{first}\n")
    assert main(["report", str(sweep_dir), "--reps", "500"]) == 0
    data = json.loads((sweep_dir / "report.json").read_text())
    assert data["metric"] == "trial_return_mean"
    none = next(m for m in data["methods"] if m["method"] == "core-none")
    assert none["runs"] == ["core-none_s0"] and none["unfinished"] == ["core-none_s1"]


def test_a_failing_cell_is_reported_while_the_others_finish_and_is_retried(tmp_path, capsys):
    path = sweep_file(tmp_path, "{'env.kwargs.episode_length': [10, -5]}")
    sweep_dir = tmp_path / "out"
    assert main(["sweep", str(path), "--sweep-dir", str(sweep_dir), "--max-parallel", "2"]) == 1
    out = capsys.readouterr().out
    assert "episode_length-10_s0" in out and (sweep_dir / "episode_length-10_s0" / "summary.json").exists()
    failed = [line for line in out.splitlines() if "episode_length--5_s0" in line and "failed" in line]
    assert failed and "episode_length" in failed[-1] and "exit 2" in failed[-1]
    assert main(["sweep", str(path), "--sweep-dir", str(sweep_dir)]) == 1
    assert "1 finished before, 1 to run" in capsys.readouterr().out


def test_an_interrupted_cell_is_resumed(tmp_path, capsys):
    path = sweep_file(tmp_path, "{'memory.core': ['gru']}")
    sweep_dir = tmp_path / "out"
    cell = sweep_dir / "core-gru_s0"
    assert main(["sweep", str(path), "--sweep-dir", str(sweep_dir)]) == 0
    (cell / "summary.json").unlink()  # as if killed after its last checkpoint
    (cell / "checkpoints" / "ckpt_000000000256.pt").unlink()
    assert main(["sweep", str(path), "--sweep-dir", str(sweep_dir), "--dry-run"]) == 0
    assert "core-gru_s0 [interrupted]" in capsys.readouterr().out
    assert main(["sweep", str(path), "--sweep-dir", str(sweep_dir)]) == 0
    assert "resuming" in (sweep_dir / "logs" / "core-gru_s0.log").read_text()
    assert json.loads((cell / "summary.json").read_text())["env_steps"] == 256


def test_dry_run_lists_cells_and_commands_without_running(tmp_path, capsys):
    assert main(["sweep", str(SMOKE), "--sweep-dir", str(tmp_path / "d"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("[memo-rl sweep] smoke: 4 cells")
    assert lines[1].startswith("core-gru_s0 [new]: memo-rl train quickstart") and "train.seed=0" in lines[1]
    assert not (tmp_path / "d").exists()


def test_slurm_launcher_runs_cells_through_submitit(tmp_path, capsys):
    pytest.importorskip("submitit")
    path = sweep_file(tmp_path, "{'memory.core': ['none']}")
    sweep_dir = tmp_path / "out"
    assert main(["sweep", str(path), "--sweep-dir", str(sweep_dir), "--launcher", "slurm", "--slurm-cluster", "local",
                 "--time", "5", "--cpus-per-task", "1"]) == 0
    assert "submitted 1 cells as job array" in capsys.readouterr().out
    assert (sweep_dir / "core-none_s0" / "summary.json").exists()
    assert list((sweep_dir / "slurm").rglob("*.out"))  # submitit's job logs


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: (d / "nogrid.py").write_text("X = 1\n") and d / "nogrid.py", "defines no grid"),
        (lambda d: sweep_file(d, "{'ppo.lrr': [1]}"), "cell lrr-1_s0: unknown config key 'ppo.lrr'"),
        (lambda d: sweep_file(d, "{}"), "grid is empty"),
        (lambda d: d / "missing.py", "no sweep file"),
    ],
)
def test_bad_sweep_input_is_one_line_and_launches_nothing(tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert main(["sweep", str(path), "--sweep-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_report_on_a_missing_sweep_directory_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sweep directory" in err[0]


def test_dry_run_piped_into_a_closed_reader_exits_quietly(tmp_path):
    """`memo-rl sweep ... --dry-run | head -1`: the reader closes the pipe early; no traceback.
    (100 lines of over 1,000 characters are more than a pipe holds, so the writer is still writing
    when the reader closes.)"""
    path = tmp_path / "many.py"
    path.write_text("from memo_rl.sweep import Sweep\nSWEEP = Sweep(grid={'ppo.lr': [0.001]}, seeds=list(range(100)))\n")
    long_dir = tmp_path.joinpath(*["d" * 200] * 5)  # not created: a dry run only looks
    proc = subprocess.Popen([sys.executable, "-m", "memo_rl", "sweep", str(path), "--dry-run", "--sweep-dir", str(long_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    first = proc.stdout.readline()
    proc.stdout.close()  # like `head -1` exiting
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert first.startswith(b"[memo-rl sweep] many: 100 cells") and "Traceback" not in stderr, stderr


SHIPPED_SWEEPS = sorted(p for p in (REPO / "experiments").glob("*.py") if "\nSWEEP = " in p.read_text())


@pytest.mark.parametrize("path", SHIPPED_SWEEPS, ids=lambda p: p.stem)
def test_every_shipped_sweep_file_expands_to_valid_cells(path):
    """Each experiments/*.py that defines SWEEP loads and validates every cell's config (a bad
    preset or override in a shipped sweep is caught here, not hours into a sweep)."""
    from memo_rl.sweep import load_sweep

    sweep, _ = load_sweep(str(path))
    cells = expand(sweep)
    assert len(cells) == len(sweep.seeds) * math.prod(len(values) for values in sweep.grid.values())
    assert len({c.name for c in cells}) == len(cells)


@pytest.mark.parametrize(
    "labels, prefix, rest",
    [
        (["preset-dark_key_to_door_none", "preset-dark_key_to_door_gru"], "preset-dark_key_to_door_", ["none", "gru"]),
        (["memory.core=gru", "memory.core=gru_big"], "memory.core=", ["gru", "gru_big"]),  # cut at a separator
        (["gru", "gru_big"], "", ["gru", "gru_big"]),  # no separator inside the shared "gru"
        (["lr_", "lr_0.001"], "", ["lr_", "lr_0.001"]),  # a label would become empty
        (["memo", "none"], "", ["memo", "none"]),  # nothing shared
        (["only_one"], "", ["only_one"]),
    ],
)
def test_curve_labels_lose_the_prefix_every_method_shares(labels, prefix, rest):
    from memo_rl.plots import strip_common_prefix

    assert strip_common_prefix(labels) == (prefix, rest)


def test_a_long_curve_title_breaks_into_lines_that_fit_the_figure():
    from memo_rl.plots import fit_title

    title = "dark_key_to_door_long: trial_return_mean (preset-dark_key_to_door_long_*)"
    fitted = fit_title(title, width_inches=5.5, font_size=12.0)  # 5.5 in at 12 pt: 55 characters a line
    assert fitted.split("\n") == ["dark_key_to_door_long: trial_return_mean", "(preset-dark_key_to_door_long_*)"]
    assert fit_title("memo: trial_return_mean", 5.5, 12.0) == "memo: trial_return_mean"  # short titles stay whole
    word = "preset-" + "x" * 80  # a word wider than the figure is kept whole, not split mid-name
    assert fit_title(f"a {word}", 5.5, 12.0) == f"a\n{word}"

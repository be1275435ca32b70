"""``memo-rl bench``: quick runs in-process, JSON structure, table, option errors.

Speed targets are never asserted here (they live in docs/benchmarks.md); only structure and
consistency (positive figures, ratio == value / reference value).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import pytest
import torch

from memo_rl import bench
from memo_rl.cli import main


@pytest.mark.parametrize("module", ["memo_rl.bench_memory", "memo_rl.bench_scale"])
def test_a_group_module_imports_first_in_a_fresh_interpreter(module):
    """bench.py imports the group modules at its end and they import bench: no circular-import error
    whichever is imported first (a script importing ``memo_rl.bench_memory`` hit one)."""
    done = subprocess.run([sys.executable, "-c", f"import {module}; import memo_rl.bench as b; print(sorted(b.GROUPS))"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'memory'" in done.stdout and "'scale'" in done.stdout


def _run(tmp_path, capsys, only: str) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--only", only, "--output", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def _check_rows(result: dict) -> dict[str, dict]:
    rows = {row["name"]: row for row in result["rows"]}
    assert len(rows) == len(result["rows"]), "row names are unique"
    for row in rows.values():
        assert set(row) >= {"group", "name", "what", "value", "unit", "reference", "reference_value", "ratio",
                            "target", "met", "settings"}
        assert row["group"] in result["groups"]
        assert math.isfinite(row["value"]) and row["value"] > 0
        assert row["what"] and isinstance(row["settings"], dict)
        if row["reference"] is None:
            assert row["ratio"] is None and row["target"] is None and row["met"] is None
            continue
        reference = rows[row["reference"]]
        assert row["reference_value"] == reference["value"]
        assert row["ratio"] == pytest.approx(row["value"] / reference["value"])
        if row["target"] is not None:
            assert row["met"] == (row["ratio"] >= row["target"])
    return rows


def _check_machine(result: dict) -> None:
    machine = result["machine"]
    for key in ("platform", "cpu_model", "cpu_count", "versions", "threads", "load_average_before"):
        assert key in machine
    for name in ("torch", "numba", "gymnasium", "stable-baselines3"):
        assert machine["versions"][name]
    assert machine["threads"]["torch"] == 1 and machine["threads"]["numba"] == 1


def test_quick_env_bench_writes_json_and_table(tmp_path, capsys):
    threads = torch.get_num_threads()
    result, out = _run(tmp_path, capsys, "env")
    assert torch.get_num_threads() == threads, "thread pinning is undone after the bench"
    assert result["groups"] == ["env"] and result["options"]["quick"] is True
    _check_machine(result)
    rows = _check_rows(result)
    assert set(rows) == {"minigrid-memory-s13random", "key-to-door-1", "key-to-door-64", "key-to-door-4096",
                         "dark-room-4096"}
    assert all(row["group"] == "env" for row in rows.values())
    assert rows["key-to-door-4096"]["reference"] == "minigrid-memory-s13random"
    assert rows["key-to-door-4096"]["target"] == 1000
    assert rows["key-to-door-4096"]["settings"]["num_envs"] == 4096
    # progress lines, then an aligned table with a header and one line per row
    assert "[bench  1] minigrid-memory-s13random" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("group") and "ratio" in line)
    assert set(lines[header + 1]) <= {"-", " "}
    table = lines[header + 2: header + 2 + len(rows)]
    assert [line.split()[1] for line in table] == [row["name"] for row in result["rows"]]
    assert len({line.index(" env steps/s") for line in table}) == 1, "value column is right-aligned"
    assert "wrote" in out


def test_quick_train_bench(tmp_path, capsys):
    result, out = _run(tmp_path, capsys, "train")
    rows = _check_rows(result)
    shipped = {"sb3-ppo-defaults", "sb3-recurrent-ppo-defaults", "memo-rl-none", "memo-rl-gru", "memo-rl-lstm"}
    matched = {"sb3-ppo-matched", "sb3-recurrent-ppo-matched", "memo-rl-none-matched", "memo-rl-gru-matched",
               "memo-rl-lstm-matched"}
    assert set(rows) == shipped | matched
    # The targets are judged against each library as shipped; matched rows carry no target.
    assert rows["memo-rl-none"]["reference"] == "sb3-ppo-defaults" and rows["memo-rl-none"]["target"] == 3
    assert rows["memo-rl-gru"]["reference"] == "sb3-recurrent-ppo-defaults" and rows["memo-rl-gru"]["target"] == 10
    assert rows["memo-rl-gru"]["settings"]["preset"] == "dark_key_to_door_gru"
    assert rows["memo-rl-gru-matched"]["reference"] == "sb3-recurrent-ppo-matched"
    assert all(rows[name]["target"] is None for name in matched)
    n = result["options"]["train_envs"]
    for name, row in rows.items():
        assert row["settings"]["num_envs"] == (1 if name.endswith("-defaults") else n)
        assert row["settings"]["timed_steps"] > 0
    assert rows["sb3-ppo-matched"]["settings"]["batch_size"] == n * result["options"]["rollout_length"] // 4
    assert rows["sb3-ppo-defaults"]["settings"]["n_epochs"] == 10
    assert "memo-rl-gru" in out


def test_unknown_group_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert main(["bench", "--only", "env,nope", "--output", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err and "env" in err
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--train-envs", "--train-steps"])
def test_non_positive_numbers_are_rejected(tmp_path, capsys, flag):
    assert main(["bench", "--quick", flag, "0", "--output", str(tmp_path / "x.json")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err


def test_groups_registry_and_options():
    assert {"env", "train"} <= set(bench.GROUPS)
    parser = argparse.ArgumentParser()
    bench.add_bench_arguments(parser)
    ns = parser.parse_args(["--quick", "--train-envs", "3"])
    opts = bench.options_from_args(ns)
    assert opts.quick and opts.train_envs == 3
    row = bench.BenchRow("g", "a", "x", 6.0).compare(bench.BenchRow("g", "b", "y", 2.0), target=4.0)
    assert row.ratio == 3.0 and row.met is False and row.to_dict()["reference"] == "b"
    assert "a" in bench.format_table([row])


def test_quick_nav3d_bench_rows(tmp_path, capsys):
    result, _ = _run(tmp_path, capsys, "nav3d")
    rows = _check_rows(result)
    assert set(rows) == {"minigrid-memory-rgb", "nav3d-extobjnav-1", "nav3d-extobjnav-4"}
    assert rows["nav3d-extobjnav-4"]["reference"] == "minigrid-memory-rgb"
    assert rows["nav3d-extobjnav-4"]["settings"]["num_envs"] == 4 and rows["nav3d-extobjnav-4"]["unit"] == "frames/s"


def test_quick_scale_bench_rows_profile_where_time_goes(tmp_path, capsys):
    result, out = _run(tmp_path, capsys, "scale")
    rows = _check_rows(result)
    assert set(rows) == {"train gru x4", "train fct x4", "train memo x4", "infer gru @2k", "infer memo @2k",
                         "infer memo-w16 @2k", "infer memo stepper @2k", "infer memo-w16 stepper @2k"}
    for core in ("gru", "fct", "memo"):
        settings = rows[f"train {core} x4"]["settings"]
        assert settings["preset"] == f"dark_key_to_door_{core}" and settings["timed_updates"] == 2
        assert settings["timed_steps"] == 2 * 4 * 32  # 2 timed updates of 4 envs x 32-step rollouts
        assert abs(sum(settings["shares"].values()) - 1.0) < 0.01 and settings["seconds"]["update"] > 0
        assert settings["amp"] == "fp32" and settings["gpu_utilisation_percent"] is None  # CPU: no bf16, no GPU
    for name in ("infer memo @2k", "infer memo-w16 @2k", "infer memo stepper @2k", "infer memo-w16 stepper @2k"):
        assert rows[name]["reference"] == "infer gru @2k" and rows[name]["target"] is None
    # the stepper holds what core.step holds at the same trial step: every summary, or the newest 16 blocks
    for name in ("memo", "memo-w16"):
        stepper = rows[f"infer {name} stepper @2k"]["settings"]
        assert stepper["cached_tokens"] == rows[f"infer {name} @2k"]["settings"]["cached_tokens"]
        assert stepper["stepper"] == "fixed buffers, eager"
    # streaming Memo holds the newest 16 of the 32 summary blocks written by step 2k; full Memo all 32
    assert rows["infer memo-w16 @2k"]["settings"]["options"]["window"] == 16
    assert rows["infer memo-w16 @2k"]["settings"]["cached_tokens"] < rows["infer memo @2k"]["settings"]["cached_tokens"]
    assert "env " in rows["train memo x4"]["what"] and "update " in rows["train memo x4"]["what"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error without CUDA")
def test_gpu_rows_without_cuda_are_one_line(tmp_path, capsys):
    assert main(["bench", "--gpu", "--output", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gpu needs a CUDA device" in err[0] and "--only scale" in err[0]


def test_profile_script_prints_each_phase_and_its_operators(monkeypatch, capsys):
    """experiments/profile_update.py (the tool behind docs/benchmarks.md's GPU profile), on CPU."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "experiments" / "profile_update.py"
    argv = [str(script), "dark_key_to_door_gru", "--envs", "4", "--device", "cpu", "--position", "64",
            "--rows", "3", "ppo.rollout_length=16"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    for phase in ("rollout", "update (GAE + PPO epochs)", "memory rebuild", "core.step x64 at trial position 64"):
        assert f"=== {phase}: " in out
    assert "aten::" in out  # operator tables follow each phase
    monkeypatch.setattr(sys, "argv", [*argv, "ppo.num_minibatches=3"])
    with pytest.raises(SystemExit):  # a bad override is a one-line usage error
        runpy.run_path(str(script), run_name="__main__")
    assert "ppo.num_minibatches" in capsys.readouterr().err

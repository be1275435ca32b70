"""``memo-rl bench --gpu`` (``--only scale`` for the same rows on CPU): training at scale.

Training rows: end-to-end PPO env steps/s of ``Trainer.train`` with the Dark Key-to-Door presets
of ``gru``, ``fct`` and ``memo`` (their agents and PPO settings: rollouts of 250 steps, 4 epochs
of 4 minibatches) at N envs (GPU: 256, 1024, 4096; CPU: 64, 256), ``train.amp=auto`` (bf16 for
the transformers on CUDA). One warm-up update, then ``--scale-updates`` timed updates (default 2).
Each row's settings hold where the time goes: env (inside ``env.step``), rollout inference (the
rest of the rollout: policy steps, host/device copies, storage), and the update (GAE, PPO epochs,
Memo's memory rebuild), as seconds and shares, plus the mean GPU utilisation sampled during the
timed updates (CUDA only).

Inference rows: ``core.step`` env steps/s of GRU, Memo keeping every summary, and streaming Memo
(the newest 16 summary blocks, ``memo-w16``) at trial position 16k (N envs, state of that position
built by ``synthetic_state``, KV cache in the autocast dtype; see :mod:`memo_rl.bench_memory`),
under the same autocast as training; then the same two Memo cores through
:class:`~memo_rl.memory.streaming.StreamingMemoStepper` (fixed buffers; on GPU replayed from a
CUDA graph; "keeping every summary" is a window as long as the trial). Targets (issue: scale out
and speed up; on one H100): Memo PPO >= 100,000 env steps/s end to end, and Memo inference within
2x of GRU's at 16k (every Memo row is compared). On CPU the rows carry no target.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from memo_rl import bench_memory  # the module, not its names: importing bench_memory first works too
from memo_rl.bench import BenchOptions, BenchRow, Reporter, _measure, register_group

SCALE_CORES = ("gru", "fct", "memo")
GPU_ENV_COUNTS = (256, 1024, 4096)
CPU_ENV_COUNTS = (64, 256)
INFERENCE_POSITION = 16_384
TRAIN_TARGET = 100_000.0  # Memo env steps/s end to end on one H100
INFERENCE_TARGET = 0.5  # Memo's inference steps/s at least half of GRU's at 16k


def scale_device(opts: BenchOptions):
    import torch

    if opts.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(opts.device)


class GpuUtilisation:
    """Samples the GPU's utilisation (percent) in a background thread between ``start`` and
    ``stop``: ``torch.cuda.utilization`` (pynvml) where it works, else ``nvidia-smi``."""

    def __init__(self, device, interval: float = 0.2) -> None:
        self.device, self.interval = device, interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> float | None:
        import torch

        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # pynvml missing or not usable: ask nvidia-smi
            if shutil.which("nvidia-smi") is None:
                return None
            index = self.device.index or 0
            out = subprocess.run(
                ["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=5,
            )
            return float(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            value = self._read()
            if value is None:
                return
            self.samples.append(value)

    def start(self) -> None:
        """Start sampling (CUDA only); a second call does nothing."""
        if self.device.type == "cuda" and self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def stop(self) -> float | None:
        """Mean utilisation (percent) over the samples, None without CUDA or a way to read it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def time_training(core: str, num_envs: int, device, opts: BenchOptions) -> tuple[float, dict[str, Any]]:
    """End-to-end env steps/s of ``Trainer.train`` with preset ``dark_key_to_door_<core>`` at
    ``num_envs`` envs on ``device``; the first update is a warm-up and is not timed."""
    from memo_rl.config import build_config
    from memo_rl.train import Trainer

    preset = f"dark_key_to_door_{core}"
    base = build_config(preset, [f"env.num_envs={num_envs}"])
    if opts.quick:
        base = build_config(preset, [f"env.num_envs={num_envs}", "ppo.rollout_length=32"])
    updates = 1 + opts.scale_updates
    with tempfile.TemporaryDirectory(prefix="memo-rl-bench-") as run_dir:
        overrides = [
            f"env.num_envs={num_envs}", f"ppo.rollout_length={base.ppo.rollout_length}",
            f"train.total_steps={updates * base.batch_size}", f"train.seed={opts.seed}", f"train.device={device}",
            "train.threads=1", "train.amp=auto", f"run.dir={run_dir}", "run.progress=false", "run.log_interval=1",
            "run.checkpoint_interval=1000000", "run.attention_interval=0",
        ]
        cfg = build_config(preset, overrides)
        trainer = Trainer(cfg, Path(run_dir))
        utilisation = GpuUtilisation(trainer.device)
        original_collect = trainer.collect

        def collect_and_mark() -> None:  # start sampling the GPU with the first timed rollout
            if trainer.update == 1:
                utilisation.start()
            original_collect()

        trainer.collect = collect_and_mark
        trainer.train()
        gpu_percent = utilisation.stop()
        with open(Path(run_dir) / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    timed = rows[1:]  # first update = warm-up
    rollout = sum(float(r["rollout_seconds"]) for r in timed)
    env = sum(float(r["env_seconds"]) for r in timed)
    update = sum(float(r["update_seconds"]) for r in timed)
    total = rollout + update
    steps = int(timed[-1]["global_step"]) - int(rows[0]["global_step"])
    settings = {
        "preset": preset, "num_envs": num_envs, "rollout_length": cfg.ppo.rollout_length, "epochs": cfg.ppo.epochs,
        "num_minibatches": cfg.ppo.num_minibatches, "device": str(trainer.device),
        "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32",
        "timed_updates": len(timed), "timed_steps": steps,
        "seconds": {"env": round(env, 3), "inference": round(rollout - env, 3), "update": round(update, 3)},
        "shares": {"env": round(env / total, 3), "inference": round((rollout - env) / total, 3),
                   "update": round(update / total, 3)},
        "gpu_utilisation_percent": gpu_percent,
    }
    return steps / total, settings


@register_group("scale", "training env steps/s at 256-4096 envs (GPU) for gru, fct, memo with a time profile; "
                "Memo vs GRU inference at 16k (run by --gpu)")
def scale_group(opts: BenchOptions, report: Reporter) -> list[BenchRow]:
    import torch

    from memo_rl.accel import autocast, autocast_dtype, is_transformer_core

    device = scale_device(opts)
    on_gpu = device.type == "cuda"
    counts = opts.scale_envs or (GPU_ENV_COUNTS if on_gpu else CPU_ENV_COUNTS)
    if opts.quick:
        counts = (4,)
    rows: list[BenchRow] = []
    best_memo: BenchRow | None = None
    for core in SCALE_CORES:
        for n in counts:
            def measure(core=core, n=n) -> BenchRow:
                value, settings = time_training(core, n, device, opts)
                s = settings["shares"]
                what = (f"memo-rl train dark_key_to_door_{core}, {n} envs on {device} ({settings['amp']}): "
                        f"env {s['env']:.0%}, inference {s['inference']:.0%}, update {s['update']:.0%}")
                if settings["gpu_utilisation_percent"] is not None:
                    what += f", GPU {settings['gpu_utilisation_percent']:.0f}% busy"
                return BenchRow("scale", f"train {core} x{n}", what, value, settings=settings)

            row = _measure(report, f"train {core} x{n}", f"{core}, {n} envs, {device}", measure)
            rows.append(row)
            if core == "memo" and (best_memo is None or row.value > best_memo.value):
                best_memo = row
    if best_memo is not None and on_gpu:
        target = BenchRow("scale", "memo PPO best", f"best Memo end-to-end rate ({best_memo.name})", best_memo.value,
                          settings={"row": best_memo.name})
        rows.append(target.compare(BenchRow("scale", "target", "", TRAIN_TARGET), 1.0))

    n = counts[-1] if on_gpu else min(counts[-1], 64)
    position = 2048 if opts.quick else INFERENCE_POSITION
    label = f"{position // 1024}k"
    inference: dict[str, BenchRow] = {}
    streaming = f"memo-w{bench_memory.STREAMING_WINDOW}"
    for name in ("gru", "memo", streaming):
        core, options = bench_memory.step_core(name)
        dtype = autocast_dtype("auto", core, device)

        def measure(core=core, name=name, options=options, dtype=dtype) -> BenchRow:
            torch.manual_seed(opts.seed)
            with autocast(device, dtype):
                cache_dtype = dtype if is_transformer_core(core) else None  # rollout's KV cache is bf16 under amp
                value, settings = bench_memory._time_steps(core, n, position, device, opts.memory_seconds, cache_dtype)
            return BenchRow("scale", f"infer {name} @{label}", f"core.step, {n} envs at trial step {position}",
                            value, unit="env steps/s", settings={**settings, "options": options, "amp": str(dtype)})

        inference[name] = _measure(report, f"infer {name} @{label}", f"{n} envs at trial step {position}", measure)
        rows.append(inference[name])
    # the same two Memo cores stepped on fixed buffers (StreamingMemoStepper), from a CUDA graph on GPU;
    # keeping every summary is a window of every block the trial has written by the last timed step
    segment_length = bench_memory.step_core("memo")[0].segment_length
    every_block = position // segment_length + 2
    for name, window in (("memo", every_block), (streaming, bench_memory.STREAMING_WINDOW)):
        core, options = bench_memory._core("memo", window=window)
        dtype = autocast_dtype("auto", core, device)
        row_name = f"infer {name} stepper @{label}"

        def measure(core=core, options=options, dtype=dtype, row_name=row_name) -> BenchRow:
            torch.manual_seed(opts.seed)
            value, settings = bench_memory.time_stepper(core, n, position, device, opts.memory_seconds, dtype, on_gpu)
            return BenchRow("scale", row_name, f"StreamingMemoStepper ({settings['stepper']}), {n} envs at trial step "
                            f"{position}", value, unit="env steps/s", settings={**settings, "options": options,
                                                                                 "amp": str(dtype)})

        inference[f"{name} stepper"] = _measure(report, row_name, f"{n} envs at trial step {position}", measure)
        rows.append(inference[f"{name} stepper"])
    for name in ("memo", streaming, "memo stepper", f"{streaming} stepper"):
        inference[name].compare(inference["gru"], INFERENCE_TARGET if on_gpu else None)
    return rows

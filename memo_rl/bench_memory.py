"""``memo-rl bench --only memory``: memory-core inference cost along a trial, and training tokens/s.

Inference rows: N envs (default 64) each at trial position P (1k, 4k, 16k, 32k steps). The state
at P is built by ``core.synthetic_state`` (a cache of exactly the shape stepping there would
leave, random contents), then ``core.step`` runs a few consecutive steps: for Memo a whole segment,
so the summary write it triggers is included (amortised). Value: env steps/s of the core alone
(``N / seconds per step``); settings record the cache size (MiB, all envs) and tokens held.

Cores at their agent-preset sizes (``configs/agent/*.yaml``: width 128, 3 layers, 4 heads for the
transformers; Memo segments of 64 steps, 4 summary tokens): ``gru``, ``fct`` (whole trial in the
cache), ``memo`` (all summaries kept) and ``memo`` streaming (``window`` = 16 summary blocks,
the bounded memory of streaming evaluation). Targets (issue: Memo core): at 16k, FCT's cache is
at least 8x Memo's and Memo steps at least 4x faster; streaming Memo's speed at 32k is at least
0.8x its speed at 1k (flat).

Training rows: tokens/s of forward + backward through each core in training mode over a PPO
minibatch (16 sequences of 256 steps, one trial start), the cost that dominates PPO's update.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from memo_rl.bench import BenchOptions, BenchRow, Reporter, _measure, register_group

STREAMING_WINDOW = 16
MIB = 2**20


def _core(name: str, **overrides: Any):
    """The memory core of ``configs/agent/<name>.yaml`` (its width and options), eval mode."""
    from memo_rl.config import build_config
    from memo_rl.memory import build_memory_core, core_option_names

    cfg = build_config(f"agent/{name}", [])
    options = {k: v for k, v in cfg.memory.core_options().items() if k in core_option_names(cfg.memory.core)}
    options.update(overrides)
    return build_memory_core(cfg.memory.core, cfg.agent.d_model, **options), options


# The cores the step rows time, by row name: (agent preset under configs/agent/, core options).
STEP_CORES: dict[str, tuple[str, dict[str, Any]]] = {
    "gru": ("gru", {}),
    "fct": ("fct", {}),
    "memo": ("memo", {}),
    f"memo-w{STREAMING_WINDOW}": ("memo", {"window": STREAMING_WINDOW}),
    "hcam": ("hcam", {}),
    "memo-hcam": ("memo", {"read": "hcam", "top_k": 4}),
}


def step_core(name: str):
    """The core of step row ``name`` (a key of :data:`STEP_CORES`) and its options."""
    agent, overrides = STEP_CORES[name]
    return _core(agent, **overrides)


def _state_bytes(state) -> int:
    import torch
    from torch.utils._pytree import tree_leaves

    return sum(leaf.numel() * leaf.element_size() for leaf in tree_leaves(state) if isinstance(leaf, torch.Tensor))


def _time_steps(
    core, num_envs: int, position: int, device, max_seconds: float, cache_dtype=None,
) -> tuple[float, dict[str, Any]]:
    """Env steps/s of ``core.step`` for ``num_envs`` envs from trial ``position`` + 1 (after one
    untimed warm-up step).

    ``cache_dtype`` (the autocast dtype, for transformer cores) stores the synthetic KV cache in
    that dtype, as a rollout under autocast holds it (see ``append_slots``)."""
    import torch
    from torch.utils._pytree import tree_map

    core = core.to(device).eval()
    state0 = core.synthetic_state(num_envs, position, device)
    if cache_dtype is not None:
        state0 = tree_map(lambda t: t.to(cache_dtype) if t.is_floating_point() else t, state0)
    x = torch.randn(num_envs, core.d_model, device=device)
    target_steps = getattr(core, "segment_length", None) or getattr(core, "chunk_size", 16)  # includes one memory write
    with torch.no_grad():
        # warm-up; its state holds the cache as rollout does (a buffer with room to append into;
        # the synthetic one has none, and growing it is a one-off copy a rollout pays rarely)
        _, state = core.step(x, state0, None)

        def step() -> None:
            nonlocal state
            _, state = core.step(x, state, None)

        steps, seconds = _timed_steps(step, target_steps, device, max_seconds)
    settings = {
        "num_envs": num_envs, "position": position, "timed_steps": steps, "ms_per_step": round(1000 * seconds / steps, 3),
        "cache_mib": round(_state_bytes(state0) / MIB, 3), "cached_tokens": core.cached_tokens(state0),
        "device": str(device),
    }
    return num_envs * steps / seconds, settings


def _timed_steps(step: Callable[[], None], target_steps: int, device, max_seconds: float) -> tuple[int, float]:
    """Run ``step`` ``target_steps`` times (at least 3, fewer once ``max_seconds`` have passed),
    waiting for the device after each; returns (steps, seconds)."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    steps, start = 0, time.perf_counter()
    while steps < target_steps:
        step()
        steps += 1
        sync()
        if steps >= 3 and time.perf_counter() - start > max_seconds:
            break
    return steps, time.perf_counter() - start


def time_stepper(
    core, num_envs: int, position: int, device, max_seconds: float, amp_dtype=None, cuda_graph: bool = False,
) -> tuple[float, dict[str, Any]]:
    """Env steps/s of a windowed Memo ``core`` stepped by :class:`StreamingMemoStepper` (fixed
    buffers; ``cuda_graph``: replayed from a CUDA graph) from trial ``position`` + 1, as
    :func:`_time_steps` times ``core.step``: one untimed warm-up step, then one segment."""
    import torch

    from memo_rl.memory.streaming import StreamingMemoStepper

    core = core.to(device).eval()
    stepper = StreamingMemoStepper(core, num_envs, device, amp_dtype=amp_dtype, cuda_graph=cuda_graph)
    stepper.load(core.synthetic_state(num_envs, position, device))
    cached_tokens = stepper.cached_tokens()
    x = torch.randn(num_envs, core.d_model, device=device)
    stepper.step(x)  # warm-up (records the graph)
    steps, seconds = _timed_steps(lambda: stepper.step(x), core.segment_length, device, max_seconds)
    settings = {
        "num_envs": num_envs, "position": position, "timed_steps": steps, "ms_per_step": round(1000 * seconds / steps, 3),
        "cache_mib": round(stepper.bytes_per_env() * num_envs / MIB, 3), "cached_tokens": cached_tokens,
        "device": str(device),
        "stepper": "fixed buffers" + (", CUDA graph" if cuda_graph else ", eager"),
    }
    return num_envs * steps / seconds, settings


def _time_training(core, batch: int, seq_len: int, device, min_seconds: float) -> tuple[float, dict[str, Any]]:
    """Tokens/s of forward + backward through ``core`` (train mode) over ``batch`` sequences."""
    import torch

    core = core.to(device).train()
    x = torch.randn(seq_len, batch, core.d_model, device=device, requires_grad=True)  # (the none core has no weights)
    resets = torch.zeros(seq_len, batch, dtype=torch.bool, device=device)
    resets[0] = True
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def once() -> None:
        y, _ = core.forward_sequence(x, core.initial_state(batch, device), resets)
        y.square().mean().backward()
        core.zero_grad(set_to_none=True)

    once()  # warm-up
    sync()
    passes, start = 0, time.perf_counter()
    while passes < 2 or time.perf_counter() - start < min_seconds:
        once()
        passes += 1
    sync()
    seconds = time.perf_counter() - start
    settings = {"batch": batch, "sequence_length": seq_len, "passes": passes, "device": str(device),
                "parameters": sum(p.numel() for p in core.parameters())}
    return passes * batch * seq_len / seconds, settings


@register_group("memory", "memory cores: step latency and cache size at trial positions 1k-32k, training tokens/s")
def memory_group(opts: BenchOptions, report: Reporter) -> list[BenchRow]:
    import torch

    device = torch.device("cuda" if opts.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if opts.device == "auto" else opts.device))
    N = opts.memory_envs
    step_names = list(STEP_CORES)
    train_names = ("none", "gru", "lstm", "trxl", "fct", "rmt", "memo", "hcam")
    if opts.memory_cores is not None:
        known = sorted(set(step_names) | set(train_names))
        unknown = [c for c in opts.memory_cores if c not in known]
        if unknown:
            from memo_rl.config import ConfigError

            raise ConfigError(f"unknown core '{unknown[0]}' in --memory-cores (choose from: {', '.join(known)})")
        step_names = [n for n in step_names if n in opts.memory_cores]
        train_names = tuple(n for n in train_names if n in opts.memory_cores)
    cores = {name: step_core(name) for name in step_names}
    rows: list[BenchRow] = []
    by_name: dict[str, BenchRow] = {}
    for position in opts.memory_positions:
        label = f"{position // 1024}k" if position % 1024 == 0 else str(position)
        for name, (core, options) in cores.items():
            torch.manual_seed(opts.seed)

            def measure(core=core, name=name, options=options, label=label, position=position) -> BenchRow:
                value, settings = _time_steps(core, N, position, device, opts.memory_seconds)
                return BenchRow("memory", f"step {name} @{label}", f"core.step, {N} envs at trial step {position}",
                                value, unit="env steps/s", settings={**settings, "options": options})

            row = _measure(report, f"step {name} @{label}", f"{N} envs at trial step {position}", measure)
            row.what += f"; cache {row.settings['cache_mib']:,.1f} MiB ({row.settings['cached_tokens']} tokens/env)"
            by_name[row.name] = row
            rows.append(row)
    for label in [f"{p // 1024}k" for p in opts.memory_positions if p % 1024 == 0]:
        memo, fct = by_name.get(f"step memo @{label}"), by_name.get(f"step fct @{label}")
        if memo is None or fct is None:
            continue
        target = label == "16k"
        memo.compare(fct, 4.0 if target else None)
        rows.append(BenchRow(
            "memory", f"cache fct/memo @{label}", "FCT's cache size relative to Memo's (higher = Memo smaller)",
            fct.settings["cache_mib"], unit="MiB (fct)", settings={"memo_mib": memo.settings["cache_mib"]},
        ).compare(BenchRow("memory", f"cache memo @{label}", "", memo.settings["cache_mib"]), 8.0 if target else None))
    first, last = opts.memory_positions[0], opts.memory_positions[-1]
    for flat_core, what, target in (
        (f"memo-w{STREAMING_WINDOW}", "streaming Memo's step speed far into the trial relative to early on", 0.8),
        ("hcam", "HCAM's step speed far into the trial relative to early on (reads k chunks, however many are stored)",
         None),
        ("memo", "Memo keeping every summary: step speed far into the trial relative to early on", None),
        ("memo-hcam", "Memo reading its top-4 summary blocks (HCAM): step speed far into the trial relative to "
         "early on", None),
    ):
        lo, hi = by_name.get(f"step {flat_core} @{first // 1024}k"), by_name.get(f"step {flat_core} @{last // 1024}k")
        if lo is not None and hi is not None and lo is not hi:
            flat = BenchRow("memory", f"flat {flat_core} {last // 1024}k/{first // 1024}k", what, hi.value,
                            settings={"cache_mib_first": lo.settings["cache_mib"], "cache_mib_last": hi.settings["cache_mib"]})
            rows.append(flat.compare(lo, target))

    batch, seq_len = opts.memory_train_batch, opts.memory_train_length
    for name in train_names:
        core, options = _core(name)
        torch.manual_seed(opts.seed)

        def measure(core=core, name=name, options=options) -> BenchRow:
            value, settings = _time_training(core, batch, seq_len, device, opts.memory_seconds)
            return BenchRow("memory", f"train {name}", f"forward+backward, {batch} x {seq_len}-step sequences",
                            value, unit="tokens/s", settings={**settings, "options": options})

        rows.append(_measure(report, f"train {name}", f"forward+backward, {batch} x {seq_len} steps", measure))
    return rows

"""The fast path (memo_rl.accel): bf16 autocast, host-to-device buffers, torch.compile.

bf16 autocast runs on CPU too, so its code path (transformer cores writing bf16 keys/values into
their fp32 caches, fp32 heads and losses) is tested here; pinned buffers and the CUDA defaults are
tested under the ``gpu`` marker.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import TINY

from agents.encoders import obs_to_tensor
from memo_rl.accel import HostToDevice, autocast, autocast_dtype, is_transformer_core
from memo_rl.checkpoint import list_checkpoints, load_checkpoint
from memo_rl.config import build_config
from memo_rl.memory import build_memory_core
from memo_rl.train import Trainer

TRANSFORMER = ["agent.d_model=16", "memory.n_layers=1", "memory.n_heads=2", "memory.segment_length=8",
               "memory.summary_length=2"]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_precision_is_bf16_for_transformer_cores_on_cuda_only():
    fct, gru = build_memory_core("fct", 16, n_heads=2), build_memory_core("gru", 16)
    assert is_transformer_core(fct) and not is_transformer_core(gru)
    assert autocast_dtype("auto", fct, CUDA) == torch.bfloat16
    assert autocast_dtype("auto", gru, CUDA) is None and autocast_dtype("auto", fct, CPU) is None
    assert autocast_dtype("bf16", gru, CPU) == torch.bfloat16 and autocast_dtype("fp32", fct, CUDA) is None
    with pytest.raises(ValueError, match="amp must be one of"):
        autocast_dtype("fp8", fct, CPU)


def test_bad_amp_value_is_one_line(tmp_path, capsys):
    from memo_rl.cli import main

    assert main(["train", *TINY, "train.amp=fp16", f"run.dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'train.amp'" in err[0] and "bf16" in err[0]


@pytest.mark.parametrize("core,extra", [("fct", []), ("memo", []), ("hcam", ["memory.chunk_size=4", "memory.top_k=1"]),
                                        ("memo", ["memory.read=hcam", "memory.top_k=1"])])
def test_bf16_autocast_trains_transformer_cores(tmp_path, core, extra):
    cfg = build_config(None, [*TINY, f"memory.core={core}", *TRANSFORMER, *extra, "train.amp=bf16",
                              f"run.dir={tmp_path}"])
    trainer = Trainer(cfg, tmp_path)
    assert trainer.amp_dtype == torch.bfloat16
    before = {k: v.clone() for k, v in trainer.agent.state_dict().items()}
    with autocast(CPU, torch.bfloat16):
        out = trainer.agent.step(trainer.carry.inputs, trainer.carry.memory, trainer.carry.resets)
    assert out.logits.dtype == torch.float32 and out.values.dtype == torch.float32  # heads cast back
    summary = trainer.train()
    assert summary["env_steps"] == 384 and np.isfinite(summary["final"]["policy_loss"])
    after = trainer.agent.state_dict()
    assert all(after[k].dtype == before[k].dtype for k in before)  # weights stay fp32
    assert any(not torch.equal(after[k], before[k]) for k in before)
    # The checkpoint resumes in full precision too (the carried caches are stored as they are).
    _, path = list_checkpoints(tmp_path / "checkpoints")[-1]
    resumed = Trainer(build_config(None, [*TINY, f"memory.core={core}", *TRANSFORMER, *extra, "train.amp=fp32"]),
                      tmp_path / "resumed", load_checkpoint(path))
    assert resumed.global_step == 384


def test_host_to_device_keeps_obs_to_tensor_dtypes_on_cpu():
    space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (3, 3, 3), np.uint8), "direction": gym.spaces.Discrete(4)})
    obs = {"image": np.arange(2 * 27, dtype=np.uint8).reshape(2, 3, 3, 3), "direction": np.array([1, 3])}
    h2d = HostToDevice(CPU)
    got, want = h2d.observation(obs, space), obs_to_tensor(obs, space, CPU)
    assert got.keys() == want.keys()
    assert all(got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]) for k in want)
    flags = h2d(np.array([True, False]), "ended")
    assert flags.dtype == torch.bool and flags.tolist() == [True, False]
    assert h2d(np.array([1, 2], np.float64), "rewards", torch.float32).dtype == torch.float32
    assert not h2d.pinned and not h2d._buffers  # no pinned memory without CUDA


@pytest.mark.slow
def test_compiled_agent_trains_and_keeps_checkpoint_names(tmp_path):
    """train.compile=true (inductor on CPU needs a C compiler): same parameter names, so its
    checkpoints load into an eager agent."""
    cfg = build_config(None, [*TINY, "memory.core=fct", *TRANSFORMER, "train.compile=true", f"run.dir={tmp_path}"])
    trainer = Trainer(cfg, tmp_path)
    summary = trainer.train()
    assert summary["env_steps"] == 384
    _, path = list_checkpoints(tmp_path / "checkpoints")[-1]
    eager = Trainer(build_config(None, [*TINY, "memory.core=fct", *TRANSFORMER]), tmp_path / "eager")
    eager.agent.load_state_dict(load_checkpoint(path)["model"])  # strict: same names


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("core", ["memo", "gru"])
def test_cuda_training_uses_pinned_buffers_and_bf16_for_transformers(tmp_path, core):
    cfg = build_config(None, [*TINY, f"memory.core={core}", *TRANSFORMER, "train.device=cuda", f"run.dir={tmp_path}"])
    trainer = Trainer(cfg, tmp_path)
    assert trainer.amp_dtype == (torch.bfloat16 if core == "memo" else None)
    summary = trainer.train()
    assert summary["env_steps"] == 384 and np.isfinite(summary["final"]["policy_loss"])
    assert trainer.h2d.pinned and all(b.is_pinned() for b in trainer.h2d._buffers.values())
    assert next(trainer.agent.parameters()).device.type == "cuda"

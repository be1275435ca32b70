"""How far PPO's ratio is from 1 before any gradient step, for a trained checkpoint.

Loads a run's newest checkpoint, collects one rollout with it, then replays the rollout the way
the PPO update does (train mode) and reports the approximate KL and clip fraction of the replayed
log-probs against the rollout's, and the mean |value change|. For cores whose training forward is
random (Memo's segment lengths) this is the noise the update starts from. A second line replays
with one draw held and the old policy recomputed under it (``ppo.recompute_old_policy=true``),
which starts at exactly 1.

    python experiments/ratio_at_update_start.py runs/dktd3/memo-s0
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile

import torch

from memo_rl.checkpoint import checkpoint_dir, list_checkpoints, load_checkpoint
from memo_rl.config import config_from_dict
from memo_rl.memory.base import MemoryCore
from memo_rl.ppo import clipped_policy_loss
from memo_rl.ppo.update import replay_log_probs_and_values
from memo_rl.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--draws", type=int, default=5, help="replays (each with fresh random draws)")
    parser.add_argument("--minibatches", type=int, default=4)
    ns = parser.parse_args()
    torch.set_num_threads(1)
    checkpoints = list_checkpoints(checkpoint_dir(ns.run_dir))
    if not checkpoints:
        raise SystemExit(f"no checkpoints under {ns.run_dir}")
    step, path = checkpoints[-1]
    ckpt = load_checkpoint(path)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(config_from_dict(ckpt["config"]), scratch, checkpoint=ckpt)
        trainer.collect()
        storage, model = trainer.storage, trainer.update_model
        model.train()
        cores = [m for m in model.modules() if isinstance(m, MemoryCore) and m.random_training_forward]
        print(f"{ns.run_dir} @ {step:,} steps, {storage.T} x {storage.N} rollout, random training forward: {bool(cores)}")
        for held in (False, True):
            kls, clips, dvs = [], [], []
            for draw in range(ns.draws):
                torch.manual_seed(draw)
                with contextlib.ExitStack() as stack:
                    old = storage.log_probs, storage.values
                    if held:
                        for core in cores:
                            stack.enter_context(core.fixed_training_draws())
                        old = replay_log_probs_and_values(model, storage, ns.minibatches)
                    log_probs, values = replay_log_probs_and_values(model, storage, ns.minibatches)
                ratio = clipped_policy_loss(log_probs, old[0], torch.zeros_like(log_probs), trainer.cfg.ppo.clip_coef)
                kls.append(ratio.approx_kl.item())
                clips.append(ratio.clip_fraction.item())
                dvs.append((values - old[1]).abs().mean().item())
            label = "held draw, old policy recomputed" if held else "draw per forward vs rollout"
            print(f"  {label:<34} approx_kl {sum(kls) / len(kls):.5f}  clip_fraction {sum(clips) / len(clips):.4f}  "
                  f"|dV| {sum(dvs) / len(dvs):.4f}")


if __name__ == "__main__":
    main()

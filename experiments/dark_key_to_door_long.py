"""HCAM issue: Dark Key-to-Door with 2,000-step trials (40 episodes per trial), 3 seeds.

``hcam`` and Memo with an HCAM read of its summary blocks against plain Memo, with ``gru`` and the
memoryless ``none`` beside them; each runs its ``configs/dark_key_to_door_long_<method>.yaml``
preset at one shared budget, 1 torch thread per cell:

    memo-rl sweep experiments/dark_key_to_door_long.py --max-parallel 2
    memo-rl report runs/sweeps/dark_key_to_door_long

Cheapest methods run first, so an interrupted sweep keeps whole methods; re-running resumes the
unfinished cells from their checkpoints.

Each cell keeps only its 3 newest checkpoints: an ``hcam`` checkpoint holds the running trials'
inputs for the memory refresh and takes 1-2.5 GB; keeping all of them (about 12 GB a cell) filled
the disk (docs/results.md, HCAM section). The report reads ``metrics.csv``, not the checkpoints.
"""

from memo_rl.sweep import Sweep

METHODS = ["none", "gru", "memo", "memo_hcam", "hcam"]

SWEEP = Sweep(
    grid={"preset": [f"dark_key_to_door_long_{m}" for m in METHODS]},
    seeds=[0, 1, 2],
    overrides=["train.total_steps=3000000", "train.threads=1", "run.checkpoint_interval=20",
               "run.keep_checkpoints=3"],
)

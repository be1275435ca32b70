"""Every memory core against the Stable-Baselines3 baselines on Dark Key-to-Door (500-step trials).

Each method runs its own preset (``configs/dark_key_to_door_<method>.yaml``: our agents with the
gridworld or transformer PPO settings, SB3 with the gridworld PPO settings) at one shared budget,
3 seeds each, 1 torch thread per cell:

    memo-rl sweep experiments/dark_key_to_door_compare.py --max-parallel 2       # CPU: 2 cells at a time
    memo-rl sweep experiments/dark_key_to_door_compare.py --launcher slurm --partition gpu --gpus 1 --time 600
    memo-rl report runs/sweeps/dark_key_to_door_compare

Cost at 3M steps on one CPU core (measured on the 2-core machine, cells sharing it): about 2 min
for none, 7-9 min for gru, 3-5 min for lstm, 1.5 min for SB3 PPO, 10 min for SB3 RecurrentPPO and
55-75 min for each transformer core, so about 16 hours of core time for the 30 cells. Cells run
cheapest first, so an interrupted sweep has whole methods done; re-running it resumes the
unfinished cells from their checkpoints.
"""

from memo_rl.sweep import Sweep

METHODS = ["none", "gru", "lstm", "sb3_ppo", "sb3_recurrent_ppo", "trxl", "rmt", "hcam", "fct", "memo"]

SWEEP = Sweep(
    grid={"preset": [f"dark_key_to_door_{m}" for m in METHODS]},
    seeds=[0, 1, 2],
    overrides=["train.total_steps=3000000", "train.threads=1", "run.checkpoint_interval=20"],
)

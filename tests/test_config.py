"""Config schema, presets, overrides and their one-line errors."""

import pytest

from memo_rl.config import ConfigError, available_presets, build_config, config_from_dict, config_to_dict


def test_defaults_and_derived_properties():
    cfg = build_config(None, ["env.num_envs=8", "ppo.rollout_length=32", "train.total_steps=1000"])
    assert cfg.batch_size == 256
    assert cfg.num_updates == 4  # ceil(1000 / 256)
    assert cfg.sequence_length == 32
    assert cfg.memory.core == "gru"


def test_preset_defaults_chain_and_override_order():
    cfg = build_config("dark_key_to_door_gru", ["ppo.lr=1e-3", "env.kwargs.trial_length=2000"])
    assert cfg.preset == "dark_key_to_door_gru"
    assert cfg.env.id == "memo_rl/DarkKeyToDoor-v0"  # from env/dark_key_to_door
    assert cfg.memory.core == "gru"  # from agent/gru
    assert cfg.ppo.rollout_length == 250  # from ppo_gridworld
    assert cfg.ppo.lr == 1e-3  # override wins
    assert cfg.env.kwargs == {"size": 9, "episode_length": 50, "trial_length": 2000}


def test_every_shipped_preset_builds():
    presets = available_presets()
    assert "quickstart" in presets and "env/dark_room" in presets
    for name in presets:
        build_config(name)


EMBODIED_TASKS = ["minigrid_memory_s7", "minigrid_memory_s13random", "minigrid_memory_s17random",
                  "nav3d_extobjnav", "nav3d_multion", "habitat_extobjnav", "habitat_multion"]


@pytest.mark.parametrize("task", EMBODIED_TASKS)
@pytest.mark.parametrize("core", ["gru", "memo"])
def test_every_embodied_task_has_a_preset_for_the_gru_and_memo_agents(task, core):
    """``{task}_{core}`` trains the task's env (``env/{task}``) with the core's agent preset: the
    same env settings, and the agent sizes of ``agent/{core}``."""
    cfg, env_only, agent_only = build_config(f"{task}_{core}"), build_config(f"env/{task}"), build_config(f"agent/{core}")
    assert cfg.env == env_only.env
    assert cfg.memory == agent_only.memory and cfg.agent == agent_only.agent
    assert cfg.memory.core == core


def test_round_trip_through_dict():
    cfg = build_config("quickstart", ["train.seed=3"])
    assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["ppo.lrr=1"], "unknown config key 'ppo.lrr' in overrides; did you mean 'ppo.lr'?"),
        (["trian.seed=1"], "unknown config key 'trian' in overrides; did you mean 'train'?"),
        (["ppo.lr=fast"], "bad value 'fast' for 'ppo.lr' in overrides: expected float"),
        (["env.num_envs=1.5"], "for 'env.num_envs'"),
        (["memory.core=gur"], "bad value 'gur' for 'memory.core'; did you mean 'gru'?"),
        (["ppo.lr_schedule=step"], "choose from: constant, linear, cosine"),
        (["env.num_envs=0"], "'env.num_envs': must be >= 1"),
        (["ppo.gamma=1.5"], "'ppo.gamma': must be in [0.0, 1.0]"),
        (["ppo.sequence_length=7"], "must divide ppo.rollout_length=128"),
        (["env.num_envs=6", "ppo.num_minibatches=4"], "'ppo.num_minibatches'"),
        (["train.device=gpu"], "'train.device'"),
        (["agent.head_activation=gelu"], "bad value 'gelu' for 'agent.head_activation'; did you mean 'relu'? (choose from: tanh, relu)"),
        (["agent.head_trunk=-1"], "'agent.head_trunk': must be >= 0"),
        (["agent.policy_gain=0"], "'agent.policy_gain': must be > 0"),
        (["ppo.weight_decay=-0.01"], "bad value -0.01 for 'ppo.weight_decay': must be >= 0.0"),
        (["lr"], "is not of the form section.key=value"),
    ],
)
def test_bad_input_is_one_clear_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        build_config(None, overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_preset_suggests_nearest():
    with pytest.raises(ConfigError, match="unknown preset 'quickstrat'; did you mean 'quickstart'"):
        build_config("quickstrat")


def test_bad_key_inside_a_preset_names_the_preset(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "broken.yaml").write_text("ppo: {learning_rate: 0.1}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="unknown config key 'ppo.learning_rate' in preset 'broken'"):
        build_config("broken")

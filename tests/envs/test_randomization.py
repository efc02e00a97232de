"""Domain randomization: sampled per episode, applied to the model, recorded in info and privileged obs, seeded;
latency and noise do what they say; the curriculum widens by hand-computed steps; config errors name the key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.arm import N_ARM, ArmEnv
from envs.gym_vec import make_gym_vec_env
from envs.randomization import (
    PARAM_NAMES,
    Curriculum,
    RandomizationConfig,
    sample_randomization,
    set_randomization_scale,
)

ON = {"enabled": True}


def test_disabled_is_nominal():
    env = ArmEnv(task="pick_place", privileged=True)
    _, info = env.reset(seed=0)
    r = info["randomization"]
    assert [r[k] for k in PARAM_NAMES] == [1.0, 1.0, 1.0, 1.0, 0, 8]
    assert r["obs_noise"] == 0.0 and not any(r["obs_bias"])


def test_each_episode_draws_new_parameters_and_applies_them():
    env = ArmEnv(task="pick_place", randomization=ON)
    nominal_mass = env._nominal["body_mass"][env._obj_body]
    nominal_kp = env._nominal["actuator_gainprm"][0, 0]
    draws = []
    for ep in range(5):
        _, info = env.reset(seed=ep)
        r = info["randomization"]
        draws.append(tuple(r[k] for k in PARAM_NAMES))
        assert 0.5 <= r["obj_mass_scale"] <= 2.0 and 0.8 <= r["gain_scale"] <= 1.2
        assert env.model.body_mass[env._obj_body] == pytest.approx(nominal_mass * r["obj_mass_scale"])
        assert env.model.actuator_gainprm[0, 0] == pytest.approx(nominal_kp * r["gain_scale"])
        assert env.model.actuator_biasprm[0, 1] == pytest.approx(-nominal_kp * r["gain_scale"])
        assert env.model.dof_damping[0] == pytest.approx(env._nominal["dof_damping"][0] * r["damping_scale"])
        assert r["action_latency"] in (0, 1)
    assert len(set(draws)) == 5


def test_same_seed_same_draw_and_trajectory():
    a, b = ArmEnv(task="push", randomization=ON), ArmEnv(task="push", randomization=ON)
    oa, ia = a.reset(seed=11)
    ob, ib = b.reset(seed=11)
    assert ia["randomization"] == ib["randomization"]
    np.testing.assert_array_equal(oa, ob)
    rng = np.random.default_rng(0)
    for _ in range(20):
        act = rng.uniform(-1, 1, 4).astype(np.float32)
        np.testing.assert_array_equal(a.step(act)[0], b.step(act)[0])  # noise and jitter come from the env's RNG


def test_scale_zero_is_nominal_and_scale_shrinks_ranges():
    rng = np.random.default_rng(0)
    zero = sample_randomization(RandomizationConfig(enabled=True, scale=0.0), rng, 26)
    assert zero.vector().tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0] and zero.obs_noise == 0.0
    half = [sample_randomization(RandomizationConfig(enabled=True, scale=0.5), rng, 26) for _ in range(200)]
    masses = [s.obj_mass_scale for s in half]
    assert 0.75 <= min(masses) and max(masses) <= 1.5  # (0.5, 2.0) shrunk halfway toward 1
    assert max(masses) > 1.35 and min(masses) < 0.8  # and still spread over the shrunk range


def test_latency_delays_the_action():
    env = ArmEnv(task="reach", randomization={**ON, "action_latency": 1, "control_jitter": 0, "obs_noise": 0.0,
                                               "obs_bias": 0.0})
    for seed in range(20):  # find an episode that drew latency 1
        _, info = env.reset(seed=seed)
        if info["randomization"]["action_latency"] == 1:
            break
    else:
        pytest.fail("no episode drew action_latency=1 in 20 seeds")
    home_ctrl = env.data.ctrl[:N_ARM].copy()
    env.step(np.array([1.0, 0.0, 0.0, 1.0], np.float32))  # applied one step later: now the hold action runs
    np.testing.assert_allclose(env.data.ctrl[6:8], 0.04)  # fingers still open (hold), not closed
    assert np.abs(env.data.ctrl[:N_ARM] - home_ctrl).max() < 0.05
    env.step(np.zeros(4, np.float32))  # now the first action arrives: close the gripper
    np.testing.assert_allclose(env.data.ctrl[6:8], 0.0)


def test_observation_noise_only_when_enabled():
    noisy = ArmEnv(task="reach", randomization={**ON, "obs_noise": 0.01})
    clean = ArmEnv(task="reach")
    o1, _ = noisy.reset(seed=0)
    o2, _ = clean.reset(seed=0)
    true = clean._state()
    np.testing.assert_array_equal(o2, true)
    assert 0.001 < np.abs(o1 - noisy._state_buf.astype(np.float32)).mean() < 0.05


def test_curriculum_widens_while_success_is_high():
    c = Curriculum(threshold=0.75, step=0.25, window=4, start=0.0, drop_below=0.5)
    assert c.update([True, True, True]) == 0.0  # the window is not full yet
    assert c.update([False]) == 0.25  # 3/4 >= 0.75: widen
    assert c.update([True] * 8) == 0.75  # two more full windows
    assert c.update([True] * 8) == 1.0  # capped at the full ranges
    assert c.update([False, False, False, True]) == 0.75  # 1/4 < 0.5: narrow again
    assert c.update([True, False, True, False]) == 0.75  # 2/4: between the thresholds, hold


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_set_scale_reaches_every_sub_env(vectorization):
    env = make_gym_vec_env("robopolicy/Arm-Reach-v0", num_envs=2, vectorization=vectorization,
                           kwargs={"privileged": True, "randomization": ON})
    try:
        physics = env.reset(seed=0)["observation.privileged"][:, -len(PARAM_NAMES):]
        assert not torch.equal(physics[0], physics[1])  # two different draws at full scale
        set_randomization_scale(env, 0.0)
        physics = env.reset(seed=1)["observation.privileged"][:, -len(PARAM_NAMES):]
        assert physics.tolist() == [[1.0, 1.0, 1.0, 1.0, 0.0, 8.0]] * 2  # nominal from the next reset on
    finally:
        env.close()


@pytest.mark.parametrize(
    ("cfg", "key"),
    [({"masss": (0.5, 2)}, "masss"), ({"friction": (1.2, 1.4)}, "randomization.friction"),
     ({"obs_noise": -1.0}, "randomization.obs_noise"), ({"scale": 2.0}, "randomization.scale")],
)
def test_bad_randomization_config_names_the_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        RandomizationConfig.from_any(cfg)

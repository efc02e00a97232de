"""TorchVecEnv with Dict observations (observation.state + observation.privileged + images): batched per key,
sync == async step for step, final_obs is the finished episode's last observation, dtypes kept."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

KW = {"privileged": True}
ID = "robopolicy/Arm-Push-v0"


def _rollout(env, actions, seed):
    out = {"obs": [env.reset(seed=seed)], "final": [], "done": []}
    for a in actions:
        res = env.step(a)
        out["obs"].append(res.obs)
        out["final"].append(res.final_obs)
        out["done"].append(res.terminated | res.truncated)
    return out


def test_sync_equals_async_and_final_obs(make_env):
    kw = {"id": ID, "num_envs": 2, "kwargs": KW, "max_episode_steps": 6}
    sync, asyn = make_env(vectorization="sync", **kw), make_env(vectorization="async", **kw)
    actions = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (14, 2, 1, 4)).astype(np.float32))
    a, b = _rollout(sync, actions, 5), _rollout(asyn, actions, 5)
    for t in range(len(actions) + 1):
        for k in ("observation.state", "observation.privileged"):
            assert torch.equal(a["obs"][t][k], b["obs"][t][k]), f"{k} differs between sync and async at step {t}"
    assert a["obs"][0]["observation.privileged"].shape == (2, 22) and a["obs"][0]["observation.state"].dtype == torch.float32
    # final_obs at a time limit is the last obs of that episode: replay env 1 alone.
    plain = gym.make(ID, max_episode_steps=6, **KW)
    o, _ = plain.reset(seed=6)  # env i is seeded with seed + i
    for t in range(6):
        o, *_ = plain.step(actions[t, 1, 0].numpy())
    assert bool(a["done"][5][1]) and not bool(a["done"][4][1])
    for k in o:
        np.testing.assert_array_equal(a["final"][5][k][1].numpy(), o[k])
        assert not torch.equal(a["final"][5][k][1], a["obs"][6][k][1])  # obs already the next episode's first


def test_images_are_uint8_chw(make_env):
    env = make_env(id=ID, num_envs=2, kwargs={"cameras": ["front"], "image_size": 24})
    obs = env.reset(seed=0)
    assert obs["observation.images.front"].shape == (2, 3, 24, 24)
    assert obs["observation.images.front"].dtype == torch.uint8
    res = env.step(torch.zeros(2, 1, 4))
    assert res.obs["observation.images.front"].shape == (2, 3, 24, 24)


def test_dict_without_state_is_rejected():
    from gymnasium.vector import SyncVectorEnv

    from envs.gym_vec import TorchVecEnv

    class NoState(gym.Env):
        observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (2,))})
        action_space = gym.spaces.Box(-1, 1, (1,))

    vec = SyncVectorEnv([NoState])
    with pytest.raises(ValueError, match="observation.state"):
        TorchVecEnv(vec)


def test_async_cameras_after_the_parent_rendered(make_env):
    """A worker forked after the parent made an EGL context hangs in its first render; rendering async workers
    therefore start from a forkserver. Render here first, then step async camera envs."""
    sync = make_env(id=ID, num_envs=1, kwargs={"cameras": ["front"], "image_size": 16})
    sync.reset(seed=0)
    asyn = make_env(id=ID, num_envs=2, vectorization="async", kwargs={"cameras": ["front"], "image_size": 16})
    obs = asyn.reset(seed=0)
    res = asyn.step(torch.zeros(2, 1, 4))
    assert obs["observation.images.front"].shape == res.obs["observation.images.front"].shape == (2, 3, 16, 16)

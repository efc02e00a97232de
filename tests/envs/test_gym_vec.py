"""TorchVecEnv / make_gym_vec_env: SAME_STEP auto-reset, final_obs, sync == async, episodes, errors."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from robopolicy.types import EpisodeStats


class SuccessEnv(gym.Env):
    """Terminates after 4 steps; reports info["success"], True only at step ``success_at``."""

    def __init__(self, success_at: int = 2) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.success_at = success_at

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(1, self.t, np.float32), 0.5, self.t == 4, False, {"success": self.t == self.success_at}


if "robopolicy-test/Success-v0" not in gym.registry:
    gym.register(id="robopolicy-test/Success-v0", entry_point=SuccessEnv)


@pytest.mark.parametrize(
    ("env_id", "chunk", "max_episode_steps"),
    [("InvertedPendulum-v5", 1, None), ("Hopper-v5", 3, 10), ("robopolicy/TerminalReward-v0", 2, None)],
)
def test_sync_and_async_give_identical_trajectories(make_env, random_chunks, rollout, env_id, chunk, max_episode_steps):
    kw = {"id": env_id, "num_envs": 2, "chunk": chunk, "max_episode_steps": max_episode_steps}
    sync = make_env(vectorization="sync", **kw)
    asyn = make_env(vectorization="async", **kw)
    actions = random_chunks(sync, 40, seed=3) * 3  # large actions: pendulums fall, episodes end often
    a, ep_a = rollout(sync, actions, seed=11)
    b, ep_b = rollout(asyn, actions, seed=11)
    assert (a["terminated"] | a["truncated"]).sum() >= 2, "the test needs auto-resets to mean something"
    for k in a:
        assert torch.equal(a[k], b[k]), f"{env_id}: {k} differs between sync and async"
    assert ep_a == ep_b


@pytest.mark.parametrize("vectorization", ["sync", "async"])
@pytest.mark.parametrize(
    ("env_id", "max_episode_steps", "scale"),
    [("Hopper-v5", 7, 1.0), ("InvertedPendulum-v5", None, 3.0)],
    ids=["truncate", "terminate"],
)
def test_final_obs_is_what_a_plain_env_reaches(
    make_env, random_chunks, rollout, vectorization, env_id, max_episode_steps, scale
):
    env = make_env(id=env_id, num_envs=2, vectorization=vectorization, max_episode_steps=max_episode_steps)
    actions = random_chunks(env, 25, seed=5) * scale
    out, episodes = rollout(env, actions, seed=20)
    done = out["terminated"] | out["truncated"]
    assert done.any()
    assert (out["truncated"] if max_episode_steps else out["terminated"]).any()
    for i in range(2):
        plain = gym.make(env_id, max_episode_steps=max_episode_steps)
        o, _ = plain.reset(seed=20 + i)  # env i is seeded with seed + i
        np.testing.assert_array_equal(out["obs"][0, i].numpy(), o.astype(np.float32))
        ret, length, ends = 0.0, 0, []
        for t in range(len(actions)):
            o, r, te, tr, _ = plain.step(actions[t, i, 0].numpy())
            ret, length = ret + r, length + 1
            assert (bool(out["terminated"][t, i]), bool(out["truncated"][t, i])) == (te, tr), f"env {i} step {t}"
            np.testing.assert_array_equal(out["final_obs"][t, i].numpy(), o.astype(np.float32))
            if te or tr:
                ends.append((ret, length))
                ret, length = 0.0, 0
                o, _ = plain.reset()
                # The returned obs is the next episode's first obs; final_obs kept the finished one's last.
                assert not torch.equal(out["obs"][t + 1, i], out["final_obs"][t, i])
            np.testing.assert_array_equal(out["obs"][t + 1, i].numpy(), o.astype(np.float32))
        plain.close()
        reported = [step_eps[i] for step_eps in episodes if i in step_eps]
        assert [e.length for e in reported] == [length for _, length in ends]
        assert [e.ret for e in reported] == pytest.approx([ret for ret, _ in ends], rel=1e-6)
        assert all(e.success is None for e in reported)  # MuJoCo locomotion reports no success


def test_toy_truncation_autoreset_and_episode_stats(make_env):
    env = make_env(id="robopolicy/ConstantReward-v0", num_envs=2, kwargs={"max_steps": 3})
    env.reset()
    for t in range(1, 7):
        res = env.step(torch.zeros(2, 1, 1))
        end = t % 3 == 0
        assert res.truncated.tolist() == [end, end] and not res.terminated.any()
        assert torch.equal(res.reward, torch.ones(2))
        assert torch.equal(res.final_obs["observation.state"], torch.zeros(2, 2))  # constant obs, also at the end
        assert res.episodes == ([EpisodeStats(3.0, 3, None, env_index=i) for i in range(2)] if end else [])


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_chunked_steps_lengths_and_rewards(make_env, vectorization):
    env = make_env(
        id="robopolicy/TerminalReward-v0", num_envs=2, chunk=3, vectorization=vectorization, kwargs={"max_steps": 5}
    )
    env.reset()
    first = env.step(torch.zeros(2, 3, 1))
    assert first.chunk_steps.tolist() == [3, 3] and first.reward.tolist() == [3.0, 3.0]
    second = env.step(torch.zeros(2, 3, 1))  # steps 4, 5: terminated, the chunk stops after 2
    assert second.chunk_steps.tolist() == [2, 2] and second.reward.tolist() == [2.0, 2.0]
    assert second.terminated.all() and not second.truncated.any()
    assert second.episodes == [EpisodeStats(5.0, 5, None, env_index=i) for i in range(2)]  # length counts env steps
    assert env.render_fps == 10  # one frame per policy step of 3 env steps at 30 fps


@pytest.mark.parametrize("vectorization", ["sync", "async"])
@pytest.mark.parametrize(
    ("chunk", "success_at", "want"), [(1, 2, True), (3, 2, True), (1, 4, True), (3, 4, True), (1, 9, False)]
)
def test_episode_success_is_any_success_seen(make_env, vectorization, chunk, success_at, want):
    # success_at=4 is the terminal step, whose info async SAME_STEP moves under info["final_info"].
    env = make_env(
        id="robopolicy-test/Success-v0",
        num_envs=1,
        chunk=chunk,
        vectorization=vectorization,
        kwargs={"success_at": success_at},
    )
    env.reset()
    episodes = []
    for _ in range(4):
        episodes += env.step(torch.zeros(1, chunk, 1)).episodes
    assert episodes[0] == EpisodeStats(ret=2.0, length=4, success=want, env_index=0)


def test_outputs_do_not_alias_across_steps(make_env):
    env = make_env(id="Hopper-v5", num_envs=2)
    obs = env.reset()["observation.state"]
    kept = obs.clone()
    res = env.step(torch.zeros(2, 1, 3))
    reward, kept_reward = res.reward, res.reward.clone()
    env.step(torch.ones(2, 1, 3))
    assert torch.equal(obs, kept) and torch.equal(reward, kept_reward)


def test_accepts_numpy_float64_and_grad_actions(make_env):
    env = make_env(id="Hopper-v5", num_envs=2)
    a = torch.rand(2, 1, 3) * 2 - 1
    forms = [a, a.double(), a.clone().requires_grad_(True), a.numpy().astype(np.float64)]
    outs = []
    for form in forms:
        env.reset(seed=0)
        outs.append(env.step(form).obs["observation.state"])
    assert all(torch.equal(outs[0], o) for o in outs[1:])


def test_wrong_action_shape_names_expected_and_given(make_env):
    env = make_env(id="Hopper-v5", num_envs=2, chunk=4)
    env.reset()
    with pytest.raises(ValueError, match=r"\(B, H, A\) = \(2, 4, 3\), got \(2, 3\)"):
        env.step(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(2, 4, 3\), got \(2, 1, 3\)"):
        env.step(torch.zeros(2, 1, 3))


def test_unknown_id_suggests_close_ids():
    from envs import make_gym_vec_env

    with pytest.raises(ValueError, match=r"'Hoper-v5'.*Hopper-v5"):
        make_gym_vec_env("Hoper-v5")
    with pytest.raises(ValueError, match=r"'Hopper-v9'.*Hopper-v5"):
        make_gym_vec_env("Hopper-v9")
    with pytest.raises(ValueError, match="no close id"):
        make_gym_vec_env("Qwxzrtp-v0")


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"num_envs": 0}, "env.num_envs"),
        ({"vectorization": "threads"}, "env.vectorization"),
        ({"chunk": 0}, "env.chunk"),
        ({"render_mode": "human"}, "env.render_mode"),
        ({"max_episode_steps": 0}, "env.max_episode_steps"),
        ({"kwargs": {"max_episode_steps": 3}}, "env.kwargs"),
    ],
)
def test_bad_config_values_name_the_key(kw, key):
    from envs import make_gym_vec_env

    with pytest.raises(ValueError, match=key):
        make_gym_vec_env("robopolicy/ConstantReward-v0", **kw)


def test_step_before_reset_raises(make_env):
    env = make_env(id="robopolicy/ConstantReward-v0")
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(torch.zeros(1, 1, 1))


def test_first_reset_uses_the_config_seed(make_env):
    a = make_env(id="Hopper-v5", num_envs=2, seed=3).reset()["observation.state"]
    b = make_env(id="Hopper-v5", num_envs=2).reset(seed=3)["observation.state"]
    c = make_env(id="Hopper-v5", num_envs=2, seed=4).reset()["observation.state"]
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_render_first_env(make_env, vectorization):
    env = make_env(id="robopolicy/ConstantReward-v0", num_envs=2, vectorization=vectorization, render_mode="rgb_array")
    env.reset()
    env.step(torch.zeros(2, 1, 1))
    frame = env.render()
    assert frame.shape == (16, 16, 3) and frame.dtype == np.uint8 and frame[0, 0, 0] == 40  # after one step
    assert env.render_fps == 30
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        make_env(id="robopolicy/ConstantReward-v0").render()


def test_hydra_kwargs_reach_gym_make():
    cfg = OmegaConf.create(
        {
            "_target_": "envs.gym_vec.make_gym_vec_env",
            "id": "robopolicy/ConstantReward-v0",
            "num_envs": 1,
            "kwargs": {"max_steps": 2},
        }
    )
    env = instantiate(cfg)
    try:
        env.reset()
        assert [bool(env.step(torch.zeros(1, 1, 1)).truncated) for _ in range(4)] == [False, True, False, True]
    finally:
        env.close()


def _has_gl() -> bool:
    """Whether MuJoCo can render here. Probed in a subprocess: without a GL backend the probe may
    crash the interpreter (GLFW) rather than raise."""
    probe = (
        "import gymnasium as gym; e = gym.make('Hopper-v5', render_mode='rgb_array'); e.reset(seed=0); "
        "assert e.render().shape[2] == 3"
    )
    return subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, timeout=120).returncode == 0


@pytest.mark.skipif(not _has_gl(), reason="no OpenGL backend for MuJoCo here (set MUJOCO_GL=egl or osmesa)")
def test_render_mujoco_frame(make_env):
    env = make_env(id="Hopper-v5", render_mode="rgb_array")
    env.reset()
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 and frame.any()


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_execute_runs_n_of_h_steps_per_policy_step(make_env, vectorization):
    env = make_env(id="robopolicy/TerminalReward-v0", num_envs=2, chunk=3, execute=2, vectorization=vectorization,
                   kwargs={"max_steps": 5})
    env.reset()
    assert env.single_action_space.shape == (3, 1) and env.execute == 2
    steps = [env.step(torch.zeros(2, 3, 1)) for _ in range(3)]  # 2 + 2 + 1 env steps: the episode ends in the third
    assert [s.chunk_steps.tolist() for s in steps] == [[2, 2], [2, 2], [1, 1]]
    assert steps[2].terminated.all() and steps[2].episodes[0].length == 5
    assert env.render_fps == 15  # one frame per policy step of 2 env steps at 30 fps

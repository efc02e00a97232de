"""Meta-World: every task has an id, an expert and an instruction; MT10 names its task; camera images."""

from __future__ import annotations

import gymnasium as gym
import metaworld.policies
import mujoco
import numpy as np
import torch

import envs.metaworld as mw
from envs.gym_vec import make_gym_vec_env


def test_every_task_has_an_id_an_expert_and_an_instruction():
    assert len(mw.TASKS) == 50 and len(mw.MT10_TASKS) == 10
    for task, (policy, text) in mw.TASKS.items():
        assert mw.task_env_id(task) in gym.registry
        assert hasattr(metaworld.policies, policy), f"{task}: no {policy} in metaworld.policies"
        assert text and text == text.strip() and "-v3" not in text
    assert mw.instruction("door-open-v3") == "open the door"


def test_mt10_names_its_task_in_words_and_one_hot():
    env = make_gym_vec_env("envs.metaworld:robopolicy/MetaWorld-MT10-v3", num_envs=1, max_episode_steps=2)
    try:
        obs = env.reset(seed=0)
        task = env.call("current_task")[0]
        assert obs["task"] == [mw.instruction(task)]
        state = obs["observation.state"]
        assert state.shape == (1, 49)
        assert torch.equal(state[0, 39:], torch.nn.functional.one_hot(torch.tensor(mw.MT10_TASKS.index(task)), 10).float())
        res = env.step(torch.zeros(1, 1, 4))
        assert res.obs["task"] == obs["task"]
    finally:
        env.close()


def test_mt10_reset_can_pick_the_task():
    env = gym.make("robopolicy/MetaWorld-MT10-v3")
    obs, _ = env.reset(seed=0, options={"task": "drawer-close-v3"})
    assert obs["task"] == "close the drawer"
    env.close()


def test_camera_images_and_corner_turned_upright():
    env = gym.make("robopolicy/MetaWorld-reach-v3", cameras=["corner", "topview"], image_size=48)
    obs, _ = env.reset(seed=0)
    for cam in ("corner", "topview"):
        img = obs[f"observation.images.{cam}"]
        assert img.shape == (3, 48, 48) and img.dtype == np.uint8 and img.std() > 5
    u = env.unwrapped
    with mujoco.Renderer(u.model, 48, 48) as r:  # Meta-World's own corner frame comes upside down
        r.update_scene(u.data, camera="corner")
        raw = r.render()
    np.testing.assert_array_equal(obs["observation.images.corner"].transpose(1, 2, 0), raw[::-1, ::-1])
    env.close()


def test_success_bonus_is_added_on_successful_steps_only():
    expert = mw.scripted_expert("reach-v3")
    rewards = {}
    for bonus in (0.0, 5.0):
        env = gym.make("robopolicy/MetaWorld-reach-v3", success_bonus=bonus)
        obs, _ = env.reset(seed=3)
        rewards[bonus], successes = [], []
        for _ in range(60):
            obs, reward, _, _, info = env.step(expert.get_action(obs))
            rewards[bonus].append(reward)
            successes.append(info["success"])
        env.close()
    assert 0 < sum(successes) < 60  # the expert reaches the goal within the 60 steps, not at once
    np.testing.assert_allclose(np.array(rewards[5.0]) - np.array(rewards[0.0]), 5.0 * np.array(successes, float))

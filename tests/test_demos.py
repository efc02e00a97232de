"""Demonstrations: Meta-World scripted experts through our adapter, recording as LeRobotDataset v3, loading, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from envs.demos import record_demos
from envs.metaworld import make_metaworld_env, scripted_expert
from robopolicy.data import load_demos

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "MUJOCO_GL": "egl", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
STEPS = 60


@pytest.fixture(scope="module")
def reach3(tmp_path_factory) -> Path:
    """3 clean expert episodes of reach-v3, at most 60 steps each (the expert succeeds in ~40)."""
    return record_demos("reach-v3", 3, tmp_path_factory.mktemp("demos") / "reach3", seed=0,
                        max_episode_steps=STEPS, progress=False)


def test_scripted_expert_succeeds_through_adapter():
    expert = scripted_expert("reach-v3")
    env = make_metaworld_env("reach-v3", max_episode_steps=STEPS, seed=3)
    try:
        assert env.state_dim == 39 and env.action_dim == 4
        obs, done = env.reset(), []
        while len(done) < 3:
            a = expert.get_action(obs["observation.state"][0].numpy())
            res = env.step(torch.as_tensor(a, dtype=torch.float32).view(1, 1, 4))
            obs = res.obs
            done += res.episodes
        assert all(e.success is not None for e in done)
        assert sum(e.success for e in done) >= 2, done
    finally:
        env.close()


def test_recorded_dataset_loads_with_plain_lerobot(reach3: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/reach-v3", root=reach3)
    assert ds.num_episodes == 3 and ds.fps == 80
    item = ds[0]
    assert item["observation.state"].shape == (39,) and item["action"].shape == (4,)
    assert item["task"] == "reach the goal position"
    succ = np.asarray(ds.hf_dataset.with_format("numpy")["next.success"]).reshape(-1)
    assert succ.sum() >= 2  # episodes stop at their first success


@pytest.mark.parametrize("chunk", [1, 4])
def test_load_demos_shapes_and_padding(reach3: Path, chunk: int):
    data = load_demos(reach3, chunk=chunk)
    N = len(data)
    assert data.obs["observation.state"].shape == (N, 39) and data.obs["observation.state"].dtype == torch.float32
    assert data.actions.shape == (N, chunk, 4) and data.action_is_pad.shape == (N, chunk)
    assert data.episode_index.shape == (N,) and data.num_episodes == 3 and len(data.task) == N
    assert set(data.stats) == {"observation.state", "action"} and data.stats["action"]["mean"].shape == (4,)
    # Padding only in the last chunk - 1 frames of each episode: (chunk - 1) * chunk / 2 pad slots per episode.
    assert int(data.action_is_pad.sum()) == 3 * (chunk - 1) * chunk // 2
    assert not data.action_is_pad[:, 0].any()
    ends = torch.nonzero(data.episode_index[1:] != data.episode_index[:-1]).flatten()
    for e in ends.tolist():  # last frame of an episode: every later slot is padding, filled with its action
        assert data.action_is_pad[e, 1:].all()
        assert torch.equal(data.actions[e], data.actions[e, :1].expand(chunk, 4))


def test_load_demos_matches_lerobot_delta_timestamps(reach3: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    H = 4
    data = load_demos(reach3, chunk=H)
    ds = LeRobotDataset("local/reach-v3", root=reach3, delta_timestamps={"action": [i / 80 for i in range(H)]})
    ends = torch.nonzero(data.episode_index[1:] != data.episode_index[:-1]).flatten().tolist()
    for i in [0, 1, ends[0] - 1, ends[0], ends[0] + 1, len(data) - 1]:
        item = ds[i]
        assert torch.allclose(item["action"], data.actions[i]), i
        assert torch.equal(item["action_is_pad"], data.action_is_pad[i]), i
        assert torch.allclose(item["observation.state"], data.obs["observation.state"][i]), i


def test_action_noise_changes_actions(reach3: Path, tmp_path: Path):
    noisy = record_demos("reach-v3", 1, tmp_path / "noisy", seed=0, action_noise=0.3, max_episode_steps=20,
                         progress=False, stop_on_success=False)
    clean = load_demos(reach3).actions[:20, 0]
    got = load_demos(noisy).actions[:, 0]
    assert got.shape == (20, 4)
    assert not torch.allclose(got, clean)
    assert got.abs().max() <= 1.0  # clipped to the action bounds


def _expert_labels(task: str, states: torch.Tensor) -> torch.Tensor:
    """The scripted expert's action (clipped to the bounds) on each of ``states`` (N, 39)."""
    expert = scripted_expert(task)
    return torch.tensor(np.stack([np.clip(expert.get_action(s.numpy()), -1, 1) for s in states]), dtype=torch.float32)


def test_explore_noise_moves_the_states_but_keeps_the_expert_labels(reach3: Path, tmp_path: Path):
    dart = load_demos(record_demos("reach-v3", 1, tmp_path / "dart", seed=0, explore_noise=0.5, max_episode_steps=20,
                                   progress=False, stop_on_success=False))
    clean = load_demos(reach3)
    states, actions = dart.obs["observation.state"], dart.actions[:, 0]
    assert torch.allclose(states[0], clean.obs["observation.state"][0])  # same reset
    assert not torch.allclose(states[1:20], clean.obs["observation.state"][1:20], atol=1e-3)  # noise was executed
    relabel = _expert_labels("reach-v3", states)
    assert torch.allclose(actions, relabel, atol=1e-5)  # each frame's label: the expert on that frame's state


def test_negative_explore_noise_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="explore_noise must be >= 0, got -0.1"):
        record_demos("reach-v3", 1, tmp_path / "x", explore_noise=-0.1, progress=False)


def test_driver_policy_acts_and_the_expert_labels_its_states(tmp_path: Path):
    import gymnasium as gym

    from envs.metaworld import ENV_NAME
    from robopolicy.encoders import EncoderConfig
    from robopolicy.policy import Policy, PolicyConfig

    torch.manual_seed(0)
    policy = Policy(PolicyConfig(head="gaussian", encoder=EncoderConfig([16], "tanh"), state_dim=39, action_dim=4,
                                 chunk=2)).eval()
    path = policy.save_pretrained(tmp_path / "driver")
    data = load_demos(record_demos("reach-v3", 1, tmp_path / "dagger", seed=0, driver=str(path), max_episode_steps=12,
                                   progress=False, stop_on_success=False))
    states, labels = data.obs["observation.state"], data.actions[:, 0]
    relabel = _expert_labels("reach-v3", states)
    assert torch.allclose(labels, relabel, atol=1e-5)  # the expert labels every frame
    # Replay: the policy's chunk from each chunk's first state, executed open-loop, gives the recorded states.
    env = gym.make(ENV_NAME, task="reach-v3", max_episode_steps=12, disable_env_checker=True)
    obs, _ = env.reset(seed=0)
    executed = []
    with torch.no_grad():
        for t in range(0, 10, 2):
            assert np.allclose(obs, states[t].numpy(), atol=1e-5), f"state {t} is not the replay's"
            chunk = policy.act({"observation.state": states[t][None]}, deterministic=True).actions[0].numpy()
            for action in np.clip(chunk, -1, 1).astype(np.float32):
                executed.append(action)
                obs = env.step(action)[0]
    env.close()
    assert not np.allclose(np.stack(executed), labels[:10].numpy(), atol=0.05)  # the policy, not the expert, acted


def test_driver_executes_the_horizon_its_run_trained_with(tmp_path: Path):
    from omegaconf import OmegaConf

    from envs.demos import _PolicyDriver
    from robopolicy.policy import Policy, PolicyConfig

    policy = Policy(PolicyConfig(head="gaussian", state_dim=39, action_dim=4, chunk=4))
    bare = policy.save_pretrained(tmp_path / "bare")
    run = tmp_path / "run"
    policy.save_pretrained(run / "checkpoints" / "step_000000100" / "policy")
    (run / "checkpoints" / "LATEST").write_text("step_000000100")
    OmegaConf.save(OmegaConf.create({"env": {"chunk": 4, "execute": 2}}), run / "config.yaml")
    assert _PolicyDriver(str(bare)).executor.n_action_steps == 4  # no run config: whole chunks
    assert _PolicyDriver(str(run)).executor.n_action_steps == 2


def test_missing_driver_is_refused(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="driver: no policy at /nowhere/policy"):
        record_demos("reach-v3", 1, tmp_path / "x", driver="/nowhere/policy", progress=False)


def _data_file(root: Path) -> Path:
    return next((root / "data").rglob("*.parquet"))


def test_nan_action_is_rejected_naming_episode_and_key(reach3: Path, tmp_path: Path):
    bad = tmp_path / "bad"
    shutil.copytree(reach3, bad)
    df = pd.read_parquet(_data_file(bad))
    row = int(np.flatnonzero(df["episode_index"].to_numpy() == 1)[3])
    actions = [np.asarray(a, dtype=np.float32) for a in df["action"]]
    actions[row] = actions[row].copy()
    actions[row][2] = np.nan
    df["action"] = actions
    df.to_parquet(_data_file(bad))
    with pytest.raises(ValueError, match=r"episode 1, 'action': non-finite"):
        load_demos(bad)


def test_wrong_state_shape_is_rejected_naming_episode_and_key(reach3: Path, tmp_path: Path):
    bad = tmp_path / "short"
    shutil.copytree(reach3, bad)
    df = pd.read_parquet(_data_file(bad))
    row = int(np.flatnonzero(df["episode_index"].to_numpy() == 2)[0])
    states = [np.asarray(s, dtype=np.float32) for s in df["observation.state"]]
    states[row] = states[row][:-3]  # a 36-D state where meta/info.json declares 39
    df["observation.state"] = states
    df.to_parquet(_data_file(bad))
    with pytest.raises(ValueError, match=r"episode 2, 'observation.state': shape \(36,\), expected \(39,\)"):
        load_demos(bad)


def test_missing_action_feature_is_rejected(reach3: Path, tmp_path: Path):
    bad = tmp_path / "noaction"
    shutil.copytree(reach3, bad)
    info_path = bad / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    del info["features"]["action"]
    info_path.write_text(json.dumps(info))
    df = pd.read_parquet(_data_file(bad)).drop(columns=["action"])
    df.to_parquet(_data_file(bad))
    with pytest.raises(ValueError, match=r"no 'action' feature"):
        load_demos(bad)


def test_a_list_of_folders_loads_as_lerobots_merge_of_them(reach3: Path, tmp_path: Path):
    """load_demos([a, b]) gives what loading aggregate_datasets' merged copy gives, without writing it."""
    from lerobot.datasets.aggregate import aggregate_datasets

    other = record_demos("reach-v3", 2, tmp_path / "other", seed=5, max_episode_steps=STEPS, progress=False)
    merged = tmp_path / "merged"
    aggregate_datasets(["local/reach3", "local/other"], "local/merged", roots=[reach3, other], aggr_root=merged)
    want, got = load_demos(merged, chunk=3), load_demos([reach3, other], chunk=3)
    assert got.num_episodes == 5 and len(got) == len(load_demos(reach3)) + len(load_demos(other))
    for key in want.obs:
        assert torch.equal(got.obs[key], want.obs[key]), key
    assert torch.equal(got.actions, want.actions) and torch.equal(got.action_is_pad, want.action_is_pad)
    assert torch.equal(got.episode_index, want.episode_index) and got.task == want.task
    assert torch.equal(got.reward, want.reward)
    for key in want.stats:
        for stat in want.stats[key]:
            torch.testing.assert_close(got.stats[key][stat], want.stats[key][stat], rtol=0, atol=1e-6)


def test_folders_with_different_features_are_refused_naming_the_folder(reach3: Path, tmp_path: Path):
    other = tmp_path / "other"
    shutil.copytree(reach3, other)
    info_path = other / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"]["observation.extra"] = {"dtype": "float32", "shape": [2], "names": None}
    info_path.write_text(json.dumps(info))
    df = pd.read_parquet(_data_file(other))
    df["observation.extra"] = [np.zeros(2, dtype=np.float32)] * len(df)
    df.to_parquet(_data_file(other))
    with pytest.raises(ValueError, match=rf"^{other}: features .* differ from {reach3}'s"):
        load_demos([reach3, other])


def test_a_missing_folder_in_a_dataset_list_is_named():
    from robopolicy.bc_run import check_dataset_paths
    from robopolicy.train_run import ConfigError

    with pytest.raises(ConfigError, match=r"^dataset: /no/such/rollouts does not exist$"):
        check_dataset_paths([str(REPO), "/no/such/rollouts"])
    with pytest.raises(ConfigError, match=r"^dataset: an empty list"):
        check_dataset_paths([])


def test_not_a_dataset_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not a LeRobotDataset"):
        load_demos(tmp_path)


def robopolicy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robopolicy", *args], capture_output=True, text=True, env=ENV,
                          check=False, timeout=120, cwd=REPO)


def test_cli_demos_writes_a_dataset(tmp_path: Path):
    root = tmp_path / "cli"
    out = robopolicy("demos", "env=metaworld_reach", "episodes=2", f"root={root}", "env.max_episode_steps=30",
                     "action_noise=0.1", "seed=1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "success rate" in out.stderr
    data = load_demos(root, chunk=2)
    assert data.num_episodes == 2 and data.actions.shape[1:] == (2, 4)


def test_cli_demos_wrong_key_exits_2_naming_it(tmp_path: Path):
    out = robopolicy("demos", "env=metaworld_reach", "episodez=2", f"root={tmp_path / 'x'}")
    assert out.returncode == 2 and "episodez" in out.stderr
    out = robopolicy("demos", "env=metaworld_reach", "suboptimal_frac=2", f"root={tmp_path / 'y'}")
    assert out.returncode == 2 and "suboptimal_frac" in out.stderr
    assert not (tmp_path / "y").exists()


def test_workers_record_the_frames_one_process_records(tmp_path: Path):
    """Noise per episode from its own seed: 5 noisy episodes (some suboptimal) recorded by 2 processes and merged
    equal, frame for frame, those recorded by one."""
    kwargs = {"seed": 3, "action_noise": 0.2, "suboptimal_frac": 0.5, "explore_noise": 0.1, "max_episode_steps": 15,
                  "progress": False}
    one = load_demos(record_demos("reach-v3", 5, tmp_path / "one", **kwargs), chunk=2)
    two = load_demos(record_demos("reach-v3", 5, tmp_path / "two", workers=2, **kwargs), chunk=2)
    assert two.num_episodes == 5 and len(two) == len(one) == 75
    for key in one.obs:
        assert torch.equal(two.obs[key], one.obs[key]), key
    assert torch.equal(two.actions, one.actions) and torch.equal(two.episode_index, one.episode_index)
    assert not (tmp_path / ".two.parts").exists()


def test_a_killed_worker_stops_the_recording_naming_it(tmp_path: Path):
    """SIGKILL one recording process mid-run: a RuntimeError names the worker and its exit code, and neither the
    dataset nor the partial blocks are left behind."""
    import multiprocessing
    import signal
    import threading
    import time

    def kill_one_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            children = multiprocessing.active_children()
            if children:
                time.sleep(2.0)  # let it start recording
                os.kill(children[-1].pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    with pytest.raises(RuntimeError, match=r"^demos: worker \d \(episodes from \d+\) exited with code -9; nothing"):
        record_demos("reach-v3", 40, tmp_path / "bad", workers=2, max_episode_steps=200, progress=False,
                     stop_on_success=False)
    killer.join()
    assert not (tmp_path / "bad").exists() and not (tmp_path / ".bad.parts").exists()

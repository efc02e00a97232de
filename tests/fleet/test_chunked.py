"""Fleet rollouts for any head: robots with an H = 4 diffusion (or Gaussian) head stream episodes, FleetRollouts
rebuilds the chunk-level MDP of ActionChunk exactly, per-decision log-probs give PPO a ratio of 1, and intervention
steps are masked out of the pg term where the head's trace cannot be inverted."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from fleet_helpers import H, SeededEnv, chunked_policy, run_fleet, wait_until

from envs.chunk import ActionChunk
from fleet.client import FleetClient
from fleet.robot import InferenceWorker, RobotLoop, sim_spec
from fleet.rollouts import EpisodeFeed, FleetRollouts
from robopolicy.algorithms.ppo import PPO, PPOConfig
from robopolicy.critic import CriticConfig, ValueCritic
from robopolicy.objective import ForwardCache, PPOClipTerm
from robopolicy.policy import Policy
from robopolicy.types import OBS_STATE

D, A = 3, 2
TELEOP_ACTION = np.array([0.5, -0.5], np.float32)


class LateTeleop:
    """Takes over from control step 5 (inside the second chunk: rows 4..7) to the end of the episode."""

    def reset(self) -> None:
        pass

    def action(self, obs, step: int, succeeded: bool):
        return TELEOP_ACTION if step >= 5 else None


def stream_episodes(learner, tmp_path, certs, tokens, policy: Policy, episodes: int, teleop=None,
                    execute: int | None = None) -> EpisodeFeed:
    """One robot runs ``policy`` (version 0) for ``episodes`` episodes of 10 steps (chunks of 4, 4, 2 steps, or of
    ``execute`` steps; upload chunks of 5 steps, so policy chunks straddle them); returns the learner's feed."""
    feed = EpisodeFeed()
    learner.store.on_episode = feed.put
    env = SeededEnv(max_steps=10)
    with torch.no_grad():
        probe = policy.act({OBS_STATE: torch.zeros(1, D)})
    spec = sim_spec("robot-0", env, "test task", int(probe.trace[0].numel()), 30, chunk=H,
                    num_decisions=int(probe.logp.shape[1]))
    client = FleetClient(learner.address, spec, tokens["robot-0"], tmp_path / "spool", ca=str(certs["ca"]),
                         subscribe=False).start()
    worker = InferenceWorker(copy.deepcopy(policy), 0)
    RobotLoop(env, client, worker, spec.trace_dim, chunk_steps=5, teleop=teleop, seed=0, execute=execute).run(episodes)
    wait_until(lambda: len(feed._items) == episodes, 60, what=f"{episodes} episodes stored")
    worker.close()
    client.stop()
    return feed


def test_diffusion_chunks_rebuild_the_chunk_mdp_with_ratio_one(learner, tmp_path, certs, tokens):
    policy = chunked_policy()
    S = policy.num_decisions
    feed = stream_episodes(learner, tmp_path, certs, tokens, policy, episodes=4)
    r = FleetRollouts(feed, n_steps=3, lanes=4).collect(policy)  # 10 steps = chunks of 4, 4, 2: one episode a lane
    assert r.logp.shape == (3, 4, S) and S == 4 and r.actions.shape == (3, 4, H, A)
    assert r.trace.shape == (3, 4, 5, H, A) and r.chunk_steps.tolist() == [[4] * 4, [4] * 4, [2] * 4]
    assert r.truncated.tolist() == [[False] * 4, [False] * 4, [True] * 4] and "pg" not in r.masks
    # the per-decision log-probs the robot sent are the learner's own for the same version: PPO's ratio is 1
    with torch.no_grad():
        recomputed = policy.log_prob({OBS_STATE: r.obs[OBS_STATE].reshape(12, D)}, r.trace.reshape(12, 5, H, A))
    torch.testing.assert_close(recomputed.reshape(3, 4, S), r.logp, rtol=0, atol=1e-4)
    torch.testing.assert_close((recomputed.reshape(3, 4, S) - r.logp).exp(), torch.ones(3, 4, S), rtol=0, atol=1e-4)
    # ActionChunk on the same seed and chunks gives the same observations, summed rewards and executed steps
    for b in range(4):
        seed = next(s for s in range(4) if np.allclose(SeededEnv().reset(seed=s)[0], r.obs[OBS_STATE][0, b]))
        env = ActionChunk(SeededEnv(max_steps=10), H)
        obs, _ = env.reset(seed=seed)
        for t in range(3):
            np.testing.assert_allclose(r.obs[OBS_STATE][t, b].numpy(), obs, rtol=0, atol=1e-6)
            obs, reward, _, truncated, info = env.step(r.actions[t, b].numpy())
            assert abs(float(r.reward[t, b]) - reward) < 1e-5 and info["chunk_steps"] == int(r.chunk_steps[t, b])
            if t < 2:
                np.testing.assert_array_equal(r.final_obs[OBS_STATE][t, b].numpy(), r.obs[OBS_STATE][t + 1, b].numpy())
        assert truncated
    metrics = PPO(policy, ValueCritic(D, CriticConfig(hidden_sizes=[32])), PPOConfig(n_epochs=1, batch_size=12),
                  num_envs=4).update(r)
    assert abs(metrics["pg/ratio_mean"] - 1.0) < 1e-4  # one minibatch: evaluated before the step
    assert all(np.isfinite(v) for v in metrics.values() if not np.isnan(v))


def test_a_robot_with_an_action_horizon_runs_the_first_n_actions_of_each_chunk(learner, tmp_path, certs, tokens):
    policy = chunked_policy()
    feed = stream_episodes(learner, tmp_path, certs, tokens, policy, episodes=2, execute=2)
    r = FleetRollouts(feed, n_steps=5, lanes=2).collect(policy)  # 10 steps = 5 policy steps of 2
    assert r.chunk_steps.tolist() == [[2] * 2] * 5 and r.actions.shape == (5, 2, H, A)
    assert r.truncated[:, 0].tolist() == [False] * 4 + [True]
    for b in range(2):  # ActionChunk with execute=2 on the same seed replays the same episode
        seed = next(s for s in range(2) if np.allclose(SeededEnv().reset(seed=s)[0], r.obs[OBS_STATE][0, b]))
        env = ActionChunk(SeededEnv(max_steps=10), H, execute=2)
        obs, _ = env.reset(seed=seed)
        for t in range(5):
            np.testing.assert_allclose(r.obs[OBS_STATE][t, b].numpy(), obs, rtol=0, atol=1e-6)
            obs, reward, _, _, info = env.step(r.actions[t, b].numpy())
            assert abs(float(r.reward[t, b]) - reward) < 1e-5 and info["chunk_steps"] == 2
    metrics = PPO(policy, ValueCritic(D, CriticConfig(hidden_sizes=[32])), PPOConfig(n_epochs=1, batch_size=10),
                  num_envs=2).update(r)
    assert abs(metrics["pg/ratio_mean"] - 1.0) < 1e-4


def test_a_robot_refuses_an_action_horizon_longer_than_its_chunk(learner, tmp_path, certs, tokens):
    policy = chunked_policy()
    spec = sim_spec("robot-0", SeededEnv(), "test task", 1, 30, chunk=H, num_decisions=policy.num_decisions)
    client = FleetClient(learner.address, spec, tokens["robot-0"], tmp_path / "spool", ca=str(certs["ca"]),
                         subscribe=False)
    worker = InferenceWorker(policy, 0)
    try:
        with pytest.raises(ValueError, match=r"^env.execute must be null or in 1..env.chunk \(4\), got 5$"):
            RobotLoop(SeededEnv(), client, worker, 1, execute=5)
    finally:
        worker.close()


@pytest.mark.parametrize("head", ["flow", "tokens"])
def test_flow_and_token_heads_stream_with_ratio_one(head, learner, tmp_path, certs, tokens):
    policy = chunked_policy(head)
    S = policy.num_decisions
    feed = stream_episodes(learner, tmp_path, certs, tokens, policy, episodes=2)
    r = FleetRollouts(feed, n_steps=3, lanes=2).collect(policy)
    assert r.logp.shape == (3, 2, S) and r.actions.shape == (3, 2, H, A) and S == (3 if head == "flow" else H * A)
    if head == "tokens":  # token ids travel as exact float32 and come back as int64
        assert r.trace.dtype == torch.int64 and r.trace.shape == (3, 2, S)
    with torch.no_grad():
        recomputed = policy.log_prob({OBS_STATE: r.obs[OBS_STATE].flatten(0, 1)}, r.trace.flatten(0, 1))
    torch.testing.assert_close(recomputed.reshape(3, 2, S), r.logp, rtol=0, atol=1e-4)


def test_interventions_with_a_diffusion_head_are_masked_out_of_pg(learner, tmp_path, certs, tokens):
    policy = chunked_policy()
    feed = stream_episodes(learner, tmp_path, certs, tokens, policy, episodes=2, teleop=LateTeleop())
    r = FleetRollouts(feed, n_steps=3, lanes=2).collect(policy)
    inter = [[False] * 2, [True] * 2, [True] * 2]  # chunk 1 (rows 4..7) is taken over at row 5
    assert r.masks["intervention"].tolist() == inter and r.masks["pg"].tolist() == [[not x for x in i] for i in inter]
    np.testing.assert_array_equal(r.actions[1, :, 1:].numpy(), np.broadcast_to(TELEOP_ACTION, (2, 3, A)))
    np.testing.assert_array_equal(r.actions[2, :, :2].numpy(), np.broadcast_to(TELEOP_ACTION, (2, 2, A)))
    assert not np.allclose(r.actions[1, :, 0].numpy(), TELEOP_ACTION)  # row 4 was the policy's
    ppo = PPO(policy, ValueCritic(D, CriticConfig(hidden_sizes=[32])), PPOConfig(n_epochs=2, batch_size=3),
              num_envs=2)
    batch = ppo.prepare(r)
    mask = batch.extras["pg_mask"]
    assert mask.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    term = PPOClipTerm(0.2, normalize_advantage=True)
    loss = term(ForwardCache(policy, None, batch))[0]
    kept = batch.index(torch.tensor([0, 1]))  # the pg term over the unmasked steps alone
    kept.extras = {}
    torch.testing.assert_close(term(ForwardCache(policy, None, kept))[0], loss)
    batch.advantages = torch.where(mask > 0, batch.advantages, batch.advantages + 100.0)  # masked steps: any value
    torch.testing.assert_close(term(ForwardCache(policy, None, batch))[0], loss)
    metrics = ppo.update(r)
    assert np.isfinite(metrics["loss/pg"]) and np.isfinite(metrics["loss/value"])


def test_interventions_with_a_chunked_gaussian_head_invert_the_trace(learner, tmp_path, certs, tokens):
    policy = chunked_policy("gaussian")
    feed = stream_episodes(learner, tmp_path, certs, tokens, policy, episodes=1, teleop=LateTeleop())
    ep = feed._items[0].piece
    r = FleetRollouts(feed, n_steps=3, lanes=1).collect(policy)
    assert "pg" not in r.masks and r.masks["intervention"][:, 0].tolist() == [False, True, True]
    pre = r.trace[:, 0]  # (3, H, A) pre-squash samples, clip squashing
    np.testing.assert_allclose(pre[1, 1:].numpy(), np.broadcast_to(TELEOP_ACTION, (3, A)), rtol=0, atol=1e-6)
    np.testing.assert_allclose(pre[2, :2].numpy(), np.broadcast_to(TELEOP_ACTION, (2, A)), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(pre[1, 0].numpy(), ep.trace[4].reshape(H, A)[0])  # the policy's own row stays
    with torch.no_grad():
        want = policy.log_prob({OBS_STATE: r.obs[OBS_STATE][1:, 0]}, pre[1:])
    torch.testing.assert_close(r.logp[1:, 0], want)
    np.testing.assert_array_equal(r.logp[0, 0].numpy(), ep.logp[0])  # the robot's behaviour log-prob


def test_fleet_ppo_with_a_chunked_diffusion_head_runs(tmp_path, certs, tokens):
    proc = run_fleet(tmp_path, certs, tokens, "ppo", {"n_epochs": 1, "batch_size": 6}, robots=1, lanes=2)
    lines = (tmp_path / "store" / "train" / "metrics.jsonl").read_text().splitlines()
    assert proc.publisher.latest == 2 and len(lines) == 2 and '"loss/pg"' in lines[-1]

"""FleetRollouts packs fleet episodes into (T, B) rollouts, drops stale ones, and the learner publishes updates."""

from __future__ import annotations

import numpy as np
import torch
from fleet_helpers import A, D, make_piece, wait_until

from fleet.config import FleetTrainConfig
from fleet.rollouts import EpisodeFeed, FleetRollouts
from fleet.store import StoredEpisode
from fleet.train_loop import FleetTrainer
from fleet.weights import WeightPublisher
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.types import OBS_STATE


def _policy() -> Policy:
    torch.manual_seed(0)
    return Policy(PolicyConfig(state_dim=D, action_dim=A, chunk=1, action_low=[-1.0] * A, action_high=[1.0] * A))


def _episode(T: int, seed: int, version: int = 0, intervene_from: int | None = None) -> StoredEpisode:
    piece = make_piece(T, seed=seed, version=version)
    piece.trace = piece.action.copy()  # Gaussian, clip squash: the pre-squash sample (T, H*A)
    piece.logp = np.full(T, -1.0, np.float32)
    if intervene_from is not None:
        piece.intervention[intervene_from:] = True
    return StoredEpisode("robot-0", f"ep{seed}", piece, False)


def test_packing_into_lanes():
    feed = EpisodeFeed()
    for i, T in enumerate([3, 4, 2, 5]):
        feed.put(_episode(T, seed=i))
    source = FleetRollouts(feed, n_steps=4, lanes=2)
    r = source.collect(_policy())
    assert r.actions.shape == (4, 2, 1, A) and r.obs[OBS_STATE].shape == (4, 2, D) and r.logp.shape == (4, 2, 1)
    # lane 0: ep0 (3 steps) then ep2 (2 steps, cut after 1); lane 1: ep1 (4 steps); ep3 waits in the backlog
    s0, s1, s2 = (_episode(T, seed=i).piece.state for i, T in enumerate([3, 4, 2]))
    np.testing.assert_array_equal(r.obs[OBS_STATE][:, 0].numpy(), np.concatenate([s0, s2[:1]]))
    np.testing.assert_array_equal(r.obs[OBS_STATE][:, 1].numpy(), s1)
    assert r.truncated[:, 0].tolist() == [False, False, True, False]  # ep0 ends at t=2; the cut at t=3 is not done
    assert r.truncated[:, 1].tolist() == [False, False, False, True]
    np.testing.assert_array_equal(r.final_obs[OBS_STATE][0, 0].numpy(), s0[1])  # the state each step reached
    np.testing.assert_array_equal(r.final_obs[OBS_STATE][3, 0].numpy(), s2[1])
    assert [ep.episode_id for ep, _ in source._backlog] == ["ep3"]


def test_stale_episodes_dropped_or_kept():
    for stale, expect_dropped in (("drop", 4), ("importance", 0)):
        feed = EpisodeFeed()
        feed.put(_episode(4, seed=0, version=1))  # 2 versions behind: beyond max_policy_lag=1
        feed.put(_episode(4, seed=1, version=2))
        feed.put(_episode(4, seed=2, version=3))
        source = FleetRollouts(feed, n_steps=4, lanes=1 if stale == "drop" else 2, max_policy_lag=1, stale=stale)
        source.policy_version = 3
        r = source.collect(_policy())
        assert source.dropped_transitions == expect_dropped
        assert int(r.policy_version.min()) == (2 if stale == "drop" else 1)


def test_intervention_steps_get_the_teleop_action_as_trace():
    feed = EpisodeFeed()
    feed.put(_episode(4, seed=0, intervene_from=2))
    policy = _policy()
    r = FleetRollouts(feed, n_steps=4, lanes=1).collect(policy)
    ep = _episode(4, seed=0).piece
    assert r.masks["intervention"][:, 0].tolist() == [False, False, True, True]
    np.testing.assert_allclose(r.trace[2:, 0, 0].numpy(), np.clip(ep.action[2:], -0.999, 0.999), rtol=1e-6)
    want = policy.log_prob({OBS_STATE: r.obs[OBS_STATE][2:, 0]}, r.trace[2:, 0]).detach()
    torch.testing.assert_close(r.logp[2:, 0], want)
    assert (r.logp[:2, 0] == -1.0).all()  # the robot's behaviour log-prob where the policy acted


def test_trainer_publishes_a_version_per_update(tmp_path):
    for algo, options in (("ppo", {"n_epochs": 1, "batch_size": 8}), ("hg_dagger", {"epochs": 1})):
        _policy().save_pretrained(tmp_path / "init")
        pub = WeightPublisher(tmp_path / algo / "policies")
        pub.publish(_policy())
        feed = EpisodeFeed()
        cfg = FleetTrainConfig(algo=algo, init_policy=str(tmp_path / "init"), n_steps=8, lanes=2, updates=2,
                               algo_options=options)
        trainer = FleetTrainer(cfg, feed, pub, tmp_path / algo / "train").start()
        for i in range(8):
            feed.put(_episode(8, seed=i, version=pub.latest, intervene_from=5))
        wait_until(lambda t=trainer: t.updates == 2, 120, what=f"{algo}: 2 updates")
        trainer.stop()
        assert pub.latest == 2
        lines = (tmp_path / algo / "train" / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 2 and '"version": 2' in lines[-1]


def test_autonomous_success_counts_only_what_the_policy_did_before_the_takeover():
    from fleet.rollouts import autonomous_success

    ep = _episode(8, seed=0, intervene_from=5).piece
    ep.success[:] = False
    ep.success[7] = True  # reached while the teleoperator held control
    assert not autonomous_success(ep)
    ep.success[3] = True  # reached by the policy before the takeover at step 5
    assert autonomous_success(ep)
    feed = EpisodeFeed()
    feed.put(StoredEpisode("robot-0", "a", ep, True))
    feed.put(_episode(4, seed=1))
    assert feed.received_transitions == 12 and list(feed.recent_autonomous) == [True, False]

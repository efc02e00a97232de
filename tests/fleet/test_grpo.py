"""train.algo=grpo on fleet data: the learner hands out reset seeds, groups are formed by (task, seed), and every
episode's advantage is its return relative to its group's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fleet_helpers import make_piece, run_fleet

from fleet.config import FleetTrainConfig, LearnerConfig
from fleet.groups import FleetGroupRollouts, SeedDispenser
from fleet.rollouts import EpisodeFeed, policy_steps
from fleet.run_learner import FleetConfigError, check_learner_config
from fleet.store import StoredEpisode
from robopolicy.policy import Policy, PolicyConfig

D, A = 5, 2


def _episode(eid: str, T: int, task: str, seed: int | None, ret: float, version: int = 0) -> StoredEpisode:
    piece = make_piece(T, seed=len(eid) + T, version=version)
    piece.reward[:] = ret / T
    piece.trace = piece.action.copy()
    piece.logp = np.full(T, -1.0, np.float32)
    return StoredEpisode("robot-0", eid, piece, False, task, seed)


def test_seed_dispenser_hands_each_seed_to_a_group_per_task():
    seeds = SeedDispenser(group_size=3)
    assert [seeds.next("a") for _ in range(7)] == [0, 0, 0, 1, 1, 1, 2]
    assert [seeds.next("b") for _ in range(4)] == [0, 0, 0, 1]  # tasks count on their own
    assert seeds.next("a") == 2


def test_groups_by_seed_and_advantages_sum_to_zero_per_group():
    torch.manual_seed(0)
    policy = Policy(PolicyConfig(state_dim=D, action_dim=A, chunk=1, action_low=[-1.0] * A, action_high=[1.0] * A))
    feed = EpisodeFeed()
    arrivals = [("a0", 4, "t", 0, 1.0), ("b0", 3, "t", 1, 5.0), ("a1", 6, "t", 0, 2.0), ("c0", 5, "u", 0, 9.0),
                ("b1", 2, "t", 1, 5.0), ("a2", 5, "t", 0, 6.0), ("c1", 3, "u", 0, 1.0), ("c2", 4, "u", 0, 2.0),
                ("r0", 4, "t", None, 3.0)]  # t/1 lacks a third member; r0 has no seed (a real robot)
    for eid, T, task, seed, ret in arrivals:
        feed.put(_episode(eid, T, task, seed, ret))
    source = FleetGroupRollouts(feed, lanes=6, group_size=3)
    r = source.collect(policy)
    assert source.last_groups == [("t", 0), ("u", 0)]  # complete groups in the order they completed
    assert r.advantages.shape == r.reward.shape == (6, 6) and r.masks["valid"].shape == (6, 6)  # T = longest
    assert r.masks["valid"].sum(0).tolist() == [4, 6, 5, 5, 3, 4]  # lanes = a0 a1 a2 c0 c1 c2
    adv = r.advantages[0]  # every step of an episode shares its advantage
    assert ((r.advantages == adv) | ~r.masks["valid"]).all() and (r.advantages[~r.masks["valid"]] == 0).all()
    for g, rets in enumerate(([1.0, 2.0, 6.0], [9.0, 1.0, 2.0])):
        rets = torch.tensor(rets)
        want = (rets - rets.mean()) / (rets.std(unbiased=False) + 1e-8)
        torch.testing.assert_close(adv[3 * g:3 * g + 3], want)
        assert abs(float(adv[3 * g:3 * g + 3].sum())) < 1e-5
    assert r.masks["pg"].equal(r.masks["valid"])
    # the incomplete t/1 group and the seedless episode wait for more members
    assert set(source._open) == {("t", 1), ("t", None)}


def test_fleet_grpo_groups_episodes_by_learner_seed(tmp_path, certs, tokens):
    proc = run_fleet(tmp_path, certs, tokens, "grpo", {"group_size": 2, "n_epochs": 1, "batch_size": 8}, robots=2,
                     lanes=4)
    lines = (tmp_path / "store" / "train" / "metrics.jsonl").read_text().splitlines()
    assert proc.publisher.latest == 2 and len(lines) == 2 and '"loss/pg"' in lines[-1]
    source = proc.trainer.source
    assert isinstance(source, FleetGroupRollouts) and all(seed is not None for _, seed in source.last_groups)
    # every episode was reset with a learner seed; the episodes of one seed start from the same state
    first: dict[int | None, list[np.ndarray]] = {}
    for ep in proc.episodes:
        first.setdefault(ep.reset_seed, []).append(ep.piece.state[0])
    assert None not in first and len(first) >= 4 and max(len(v) for v in first.values()) == 2
    assert all(np.array_equal(v[0], x) for v in first.values() for x in v)


def test_grpo_config_errors_name_the_key(tmp_path):
    cfg = LearnerConfig(root=str(tmp_path), tls=False, tokens_file="t.json",
                        train=FleetTrainConfig(algo="grpo", lanes=6, algo_options={"group_size": 4}))
    with pytest.raises(FleetConfigError, match=r"train.algo_options.group_size: 4 must be >= 2 and divide "
                                               r"train.lanes=6"):
        check_learner_config(cfg)
    cfg.train.algo_options = {"group_size": 3}
    check_learner_config(cfg)


def test_a_stale_member_leaves_its_group_and_the_rest_joins_a_waiting_one():
    torch.manual_seed(0)
    policy = Policy(PolicyConfig(state_dim=D, action_dim=A, chunk=1, action_low=[-1.0] * A, action_high=[1.0] * A))
    feed = EpisodeFeed()
    source = FleetGroupRollouts(feed, lanes=2, group_size=2, max_policy_lag=1)
    eps = {eid: _episode(eid, 3, "t", None, 1.0, version=v) for eid, v in (("a0", 0), ("a1", 1), ("b0", 1))}
    for ep in eps.values():  # task-only groups (no seed): (a0, a1) is ready, b0 waits for a partner
        source._add((ep, policy_steps(ep.piece, 1)))
    assert [[e.episode_id for e, _ in g] for g in source._ready] == [["a0", "a1"]]
    source.policy_version = 2  # a0 (version 0) is now too old: it is dropped, a1 joins b0
    r = source.collect(policy)
    assert source.dropped_transitions == 3
    for lane, eid in enumerate(("b0", "a1")):
        np.testing.assert_array_equal(r.obs["observation.state"][0, lane].numpy(), eps[eid].piece.state[0])

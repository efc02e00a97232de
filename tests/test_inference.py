"""Chunk execution at inference: ACT temporal ensembling (by hand and against LeRobot) and receding horizon."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from robopolicy.evaluate import evaluate
from robopolicy.inference import ChunkExecutor, TemporalEnsembler
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.types import ActionSample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_ensemble_hand_computed():
    """H = 3, A = 1, m = 0.5; chunk_t = [10t + 1, 10t + 2, 10t + 3]. Step t averages chunk_t[0],
    chunk_{t-1}[1], chunk_{t-2}[2] with weights 1, e^-0.5, e^-1 from the OLDEST prediction on."""
    ens = TemporalEnsembler(coeff=0.5)
    chunks = [torch.tensor([[[10.0 * t + 1], [10.0 * t + 2], [10.0 * t + 3]]]) for t in range(4)]
    got = [ens.update(c).item() for c in chunks]
    w1, w2 = math.exp(-0.5), math.exp(-1.0)
    expected = [
        1.0,                                           # t=0: only chunk_0[0]
        (2.0 + w1 * 11.0) / (1 + w1),                  # t=1: chunk_0[1] (oldest), chunk_1[0]
        (3.0 + w1 * 12.0 + w2 * 21.0) / (1 + w1 + w2),  # t=2: chunk_0[2], chunk_1[1], chunk_2[0]
        (13.0 + w1 * 22.0 + w2 * 31.0) / (1 + w1 + w2),  # t=3: chunk_1[2], chunk_2[1], chunk_3[0]
    ]
    assert got == pytest.approx(expected, rel=1e-6)


def test_ensemble_matches_lerobot_act_ensembler():
    from lerobot.policies.act.modeling_act import ACTTemporalEnsembler

    torch.manual_seed(0)
    ours, ref = TemporalEnsembler(coeff=0.1), ACTTemporalEnsembler(0.1, chunk_size=5)
    ref.reset()
    for _ in range(9):
        chunk = torch.randn(3, 5, 2)
        torch.testing.assert_close(ours.update(chunk), ref.update(chunk), rtol=1e-5, atol=1e-6)


def test_ensemble_reset_clears_only_finished_envs():
    ens = TemporalEnsembler(coeff=0.0)  # plain average
    ens.update(torch.zeros(2, 3, 1))
    ens.reset(torch.tensor([True, False]))
    out = ens.update(torch.ones(2, 3, 1))
    assert out.flatten().tolist() == [1.0, 0.5]  # env 0 forgot the zeros, env 1 averages 0 and 1


class CountingPolicy:
    """chunk of call c for env b: actions[b, h] = 100 c + 10 b + h."""

    def __init__(self, batch: int, chunk: int):
        self.config = SimpleNamespace(chunk=chunk)
        self.batch, self.calls = batch, 0

    def act(self, obs, deterministic: bool = True) -> ActionSample:
        h = torch.arange(self.config.chunk, dtype=torch.float32)
        b = torch.arange(self.batch, dtype=torch.float32).unsqueeze(1)
        actions = (100.0 * self.calls + 10.0 * b + h).unsqueeze(-1)  # (B, H, 1)
        self.calls += 1
        return ActionSample(actions=actions, trace=actions, logp=torch.zeros(self.batch, 1))


def test_receding_horizon_executes_n_actions_then_replans():
    policy = CountingPolicy(batch=2, chunk=4)
    ex = ChunkExecutor(policy, "receding", n_action_steps=2)
    seq = [ex.act({}).actions[:, 0, 0].tolist() for _ in range(5)]
    assert seq == [[0, 10], [1, 11], [100, 110], [101, 111], [200, 210]]
    assert policy.calls == 3
    # Env 1 finishes: it re-plans at once while env 0 goes on with its current chunk.
    ex.reset(torch.tensor([False, True]))
    assert ex.act({}).actions[:, 0, 0].tolist() == [201, 310]
    with pytest.raises(ValueError, match="n_action_steps"):
        ChunkExecutor(policy, "receding", n_action_steps=5)


@pytest.mark.parametrize(("execution", "n"), [("ensemble", None), ("receding", 2)])
def test_evaluate_runs_per_step_execution(execution, n):
    policy = Policy(PolicyConfig(state_dim=2, action_dim=1, chunk=3, action_low=[-1.0], action_high=[1.0]))
    env_cfg = {"_target_": "envs.gym_vec.make_gym_vec_env", "id": "robopolicy/ConstantReward-v0", "num_envs": 1,
               "vectorization": "sync", "chunk": 3, "max_episode_steps": None, "kwargs": {"max_steps": 5}, "seed": 0,
               "render_mode": None}
    res = evaluate(policy, env_cfg, episodes=2, execution=execution, n_action_steps=n)
    # One env step per policy call: episodes last exactly max_steps = 5 (chunks of 3 would also give 5, so the
    # lengths check the return bookkeeping, the run checks that (B, 1, A) actions fit a chunk-1 env).
    assert res.returns == [5.0, 5.0] and res.lengths == [5, 5]
    with pytest.raises(ValueError, match="execution"):
        evaluate(policy, env_cfg, episodes=1, execution="sometimes")


def test_evaluate_draws_the_policys_noise_from_its_seed_not_the_global_stream():
    # A sampling policy on a task where actions matter: the same evaluation seed gives the same returns
    # whatever the global RNG state, and the global stream is left where it was (common random numbers).
    policy = Policy(PolicyConfig(state_dim=4, action_dim=1, action_low=[-3.0], action_high=[3.0]))
    env_cfg = {"_target_": "envs.gym_vec.make_gym_vec_env", "id": "InvertedPendulum-v5", "num_envs": 1,
               "vectorization": "sync", "chunk": 1, "max_episode_steps": 200, "kwargs": {}, "seed": 0,
               "render_mode": None}
    torch.manual_seed(0)
    a = evaluate(policy, env_cfg, episodes=4, deterministic=False, seed=7)
    after_a = torch.rand(1)
    torch.manual_seed(1)
    b = evaluate(policy, env_cfg, episodes=4, deterministic=False, seed=7)
    c = evaluate(policy, env_cfg, episodes=4, deterministic=False, seed=8)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after_a)
    assert a.lengths == b.lengths and a.returns == b.returns
    assert a.lengths != c.lengths  # another seed, other noise: the returns do depend on it


def test_env_execute_is_the_receding_horizon_in_the_env():
    """``env.execute=n`` (the env runs the first n actions of each chunk, as training does) acts exactly as
    evaluate's per-step receding horizon with n_action_steps=n: same episodes, same returns."""
    torch.manual_seed(0)
    policy = Policy(PolicyConfig(state_dim=4, action_dim=1, chunk=4, action_low=[-3.0], action_high=[3.0]))
    env_cfg = {"_target_": "envs.gym_vec.make_gym_vec_env", "id": "InvertedPendulum-v5", "num_envs": 1,
               "vectorization": "sync", "chunk": 4, "max_episode_steps": 200, "kwargs": {}, "seed": 0,
               "render_mode": None}
    in_env = evaluate(policy, {**env_cfg, "execute": 2}, episodes=4, seed=3)
    per_step = evaluate(policy, env_cfg, episodes=4, seed=3, execution="receding", n_action_steps=2)
    whole = evaluate(policy, env_cfg, episodes=4, seed=3)
    assert in_env.lengths == per_step.lengths and in_env.returns == pytest.approx(per_step.returns)
    assert in_env.lengths != whole.lengths  # running 2 of 4 is not running all 4

"""``evaluate(zero_start=True)``: a diffusion or flow chain acts from its starting noise's mean, 0, so its deterministic
action is a function of the observation; it is the path a steered head at init takes; other heads and sampled acting
are refused by name."""

from __future__ import annotations

import pytest
import torch
from test_head_contract import small_options

from robopolicy.evaluate import evaluate
from robopolicy.heads import build_head
from robopolicy.policy import Policy, PolicyConfig

CHAINS = ("diffusion", "flow")
PENDULUM = {"_target_": "envs.gym_vec.make_gym_vec_env", "id": "InvertedPendulum-v5", "num_envs": 1,
            "vectorization": "sync", "chunk": 2, "max_episode_steps": 50, "kwargs": {}, "seed": 0, "render_mode": None}


@pytest.mark.parametrize("name", CHAINS)
def test_zero_start_makes_the_deterministic_chain_a_function_of_its_features(name):
    torch.manual_seed(0)
    head = build_head(name, 8, 3, 4, small_options(name))
    feat = torch.randn(5, 8)

    def under(seed: int, deterministic: bool = True):
        torch.manual_seed(seed)
        return head.sample(feat, deterministic=deterministic)

    with torch.no_grad():
        assert not torch.equal(under(1).actions, under(2).actions)  # the default draws x_K ~ N(0, I)
        head.zero_start = True
        a, b = under(1), under(2)
        assert torch.equal(a.actions, b.actions) and torch.equal(a.trace[:, 0], torch.zeros(5, 4, 3))
        assert not torch.equal(under(1, False).actions, under(2, False).actions)  # sampling still draws


def _policy(head: str, **options) -> Policy:
    return Policy(PolicyConfig(head=head, head_options={**small_options(head), **options}, state_dim=4, action_dim=1,
                               chunk=2, action_low=[-3.0], action_high=[3.0]))


@pytest.mark.parametrize("name", CHAINS)
def test_a_zero_start_evaluation_is_the_steered_head_at_init_from_its_mean(name):
    torch.manual_seed(0)
    base = _policy(name)
    steered = _policy(name, steer=True, steer_hidden_sizes=[16])  # at init: mean 0, the same chain, frozen
    missing, unexpected = steered.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("head.steering.") for k in missing)
    zero = evaluate(base, PENDULUM, episodes=3, seed=7, zero_start=True)
    assert base.head.zero_start is False  # the evaluation's choice does not stay with the policy
    from_mean = evaluate(steered, PENDULUM, episodes=3, seed=7)
    assert zero.returns == from_mean.returns and zero.lengths == from_mean.lengths


def test_zero_start_is_refused_by_name_where_there_is_no_starting_noise():
    with pytest.raises(ValueError, match="zero_start: the GaussianHead starts from no noise; only the diffusion and "
                                         "flow heads do"):
        evaluate(_policy("gaussian"), PENDULUM, episodes=1, zero_start=True)
    with pytest.raises(ValueError, match="zero_start needs deterministic acting: a sampled action draws its starting "
                                         "noise"):
        evaluate(_policy("diffusion"), PENDULUM, episodes=1, deterministic=False, zero_start=True)

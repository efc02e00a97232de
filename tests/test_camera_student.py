"""A camera student of a privileged teacher (encoder.estimate_privileged): the camera estimates privileged entries,
the teacher's layers read them, the estimate term grounds them; acting needs no privileged state."""

from __future__ import annotations

import pytest
import torch
from test_encoders import square_images

from robopolicy.algorithms.bc import BC, BCConfig
from robopolicy.algorithms.ppo import PPOConfig, objective_terms
from robopolicy.bc_run import DemoSampler, warm_start_from
from robopolicy.encoders import EncoderConfig
from robopolicy.objective import EstimateTerm, ForwardCache, MiniBatch
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.train_run import ConfigError
from robopolicy.types import OBS_PRIVILEGED, OBS_STATE

CAMERA = {"cameras": ["front"], "shape": [3, 16, 16], "random_shift": 0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def student(estimate: list[int], privileged_dim: int = 3, skip: bool = False) -> Policy:
    enc = EncoderConfig.from_dict({"hidden_sizes": [32], "image": CAMERA, "estimate_privileged": estimate,
                                   "estimator_hidden": [32], "estimator_skip": skip})
    return Policy(PolicyConfig(head="gaussian", encoder=enc, state_dim=2, privileged_dim=privileged_dim,
                               action_dim=1, chunk=1, action_low=[-1.0], action_high=[1.0]))


def square_data(n: int, gen: torch.Generator):
    """Privileged entry 1 is the square's side (what only the camera shows); entries 0, 2 are noise. The expert
    acts on the privileged side: a = 0.8 side."""
    images, side = square_images(n, gen)
    privileged = torch.randn(n, 3, generator=gen)
    privileged[:, 1] = side.float()
    obs = {OBS_STATE: torch.zeros(n, 2), "observation.images.front": images, OBS_PRIVILEGED: privileged}
    return obs, (0.8 * side.float()).view(n, 1, 1)


def test_student_learns_the_privileged_entry_from_the_camera_and_acts_without_privileged_state():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    policy = student([1])
    obs, actions = square_data(512, gen)
    policy.normalizer.update(obs)
    bc = BC(policy, BCConfig(steps=150, batch_size=64, learning_rate=3e-3, warmup_steps=10, ema_decay=0.0))
    sampler = DemoSampler(obs, actions, 64, seed=0)
    logs = [bc.update(sampler.next()) for _ in range(150)]
    assert logs[-1]["loss/estimate"] < 0.2 * logs[0]["loss/estimate"], (logs[0], logs[-1])
    test_obs, test_actions = square_data(256, gen)
    side = test_obs.pop(OBS_PRIVILEGED)[:, 1]  # a deployed robot has no privileged state
    with torch.no_grad():
        pred = policy.act(test_obs, deterministic=True).actions
        _, estimate = policy.encoder.features_and_estimate(policy.normalizer(test_obs))
    assert (pred.sign() == test_actions.sign()).float().mean() > 0.95
    assert (estimate[:, 0].sign() == side.sign()).float().mean() > 0.95  # normalized: side -1 / +1 -> -1 / +1


def test_estimator_skip_starts_as_the_mlp_alone_and_adds_a_linear_state_path(tmp_path):
    torch.manual_seed(0)
    source = student([0, 1])
    pupil = student([0, 1], skip=True)
    warm_start_from(pupil, str(source.save_pretrained(tmp_path / "source")))
    obs, _ = square_data(16, torch.Generator().manual_seed(1))
    obs[OBS_STATE] = torch.randn(16, 2)
    with torch.no_grad():
        _, before = source.encoder.features_and_estimate(obs)
        _, same = pupil.encoder.features_and_estimate(obs)
        assert torch.equal(same, before)  # zero-initialized: a warm start from a student without it is unchanged
        torch.nn.init.normal_(pupil.encoder.estimator_skip.weight)
        torch.nn.init.normal_(pupil.encoder.estimator_skip.bias)
        _, moved = pupil.encoder.features_and_estimate(obs)
    skip = pupil.encoder.estimator_skip
    assert torch.allclose(moved - before, obs[OBS_STATE] @ skip.weight.T + skip.bias, atol=1e-6)


def test_warm_start_copies_every_teacher_layer_and_leaves_the_camera_estimator_fresh(tmp_path, capsys):
    teacher = Policy(PolicyConfig(head="gaussian", state_dim=2, privileged_dim=3, action_dim=1, chunk=1,
                                  encoder=EncoderConfig(hidden_sizes=[32], privileged=True)))
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(1.0)
    pupil = student([0, 1])
    before = {k: v.clone() for k, v in pupil.state_dict().items()}
    warm_start_from(pupil, str(teacher.save_pretrained(tmp_path / "teacher")))
    after, source = pupil.state_dict(), teacher.state_dict()
    for key, value in source.items():
        torch.testing.assert_close(after[key], value)
    fresh = [k for k in after if k not in source]
    assert fresh and all(k.startswith(("encoder.estimator", "encoder.images")) for k in fresh)
    assert all(torch.equal(after[k], before[k]) for k in fresh)
    assert "fresh: ['estimator', 'images']" in capsys.readouterr().out
    unrelated = Policy(PolicyConfig(head="gaussian", state_dim=7, action_dim=5, chunk=1,
                                    encoder=EncoderConfig(hidden_sizes=[8])))
    with pytest.raises(ConfigError, match="init_policy: .*head does not fit"):
        warm_start_from(pupil, str(unrelated.save_pretrained(tmp_path / "unrelated")))


def test_estimate_term_joins_the_objective_and_names_missing_privileged_state():
    policy = student([2])
    terms = objective_terms(PPOConfig(), None, None, None, policy)
    assert "estimate" in terms and terms["estimate"][1] == 1.0
    assert "estimate" not in objective_terms(PPOConfig(estimate_coef=0.0), None, None, None, policy)
    obs, _ = square_data(4, torch.Generator().manual_seed(1))
    sample = policy.act({k: v for k, v in obs.items() if k != OBS_PRIVILEGED})
    mb = MiniBatch(obs=obs, trace=sample.trace, logp=sample.logp, advantages=torch.zeros(4),
                   returns=torch.zeros(4), value=torch.zeros(4))
    loss, _ = EstimateTerm()(ForwardCache(policy, None, mb))
    loss.backward()
    assert policy.encoder.images.backbones[0].net[0].weight.grad.abs().sum() > 0  # the camera is trained
    mb.obs = {k: v for k, v in obs.items() if k != OBS_PRIVILEGED}
    with pytest.raises(KeyError, match="estimate term needs 'observation.privileged'"):
        EstimateTerm()(ForwardCache(policy, None, mb))


def test_estimate_config_errors_name_the_key():
    with pytest.raises(ValueError, match="encoder.estimate_privileged: needs image.cameras"):
        EncoderConfig.from_dict({"estimate_privileged": [0]})
    with pytest.raises(ValueError, match=r"indices \[5\] out of range for observation.privileged of size 3"):
        student([5])
    with pytest.raises(ValueError, match="encoder.estimate_privileged: needs the policy's privileged_dim"):
        student([0], privileged_dim=0)


def test_bc_freeze_trains_only_the_estimator():
    gen = torch.Generator().manual_seed(2)
    policy = student([1])
    obs, actions = square_data(64, gen)
    kept = {k: v.clone() for k, v in policy.named_parameters() if k.startswith(("head", "encoder.net"))}
    bc = BC(policy, BCConfig(steps=3, batch_size=32, warmup_steps=0, ema_decay=0.0, freeze=["head", "encoder.net"]))
    estimator = policy.encoder.estimator[-1].weight.clone()
    for _ in range(3):
        bc.update(DemoSampler(obs, actions, 32, seed=0).next())
    assert all(torch.equal(p, kept[k]) for k, p in policy.named_parameters() if k in kept)
    assert not torch.equal(policy.encoder.estimator[-1].weight, estimator)
    with pytest.raises(ValueError, match=r"algo.freeze: no parameter name starts with any of \['decoder'\]"):
        BC(policy, BCConfig(freeze=["decoder"]))


def test_bc_imitation_coef_zero_trains_the_estimator_on_the_estimate_loss_alone():
    from robopolicy.objective.estimate import estimate_loss

    gen = torch.Generator().manual_seed(3)
    policy = student([1])
    obs, actions = square_data(64, gen)
    policy.normalizer.update(obs)
    batch = DemoSampler(obs, actions, 32, seed=0).next()
    # The estimator's gradient is exactly that of the estimate loss: no action-level term reaches it.
    norm = policy.normalizer(batch["obs"])
    _, estimate = policy.encoder.features_and_estimate(norm)
    want = torch.autograd.grad(estimate_loss(estimate, norm, policy.encoder.estimate_index),
                               policy.encoder.estimator[-1].weight)[0]
    bc = BC(policy, BCConfig(steps=1, batch_size=32, warmup_steps=0, ema_decay=0.0, imitation_coef=0.0,
                             grad_clip=1e9, freeze=["head", "encoder.net"]))
    seen = {}
    policy.encoder.estimator[-1].weight.register_hook(lambda g: seen.setdefault("grad", g.clone()))
    logs = bc.update(batch)
    torch.testing.assert_close(seen["grad"], want)
    assert logs["loss/bc"] > 0  # still measured
    with pytest.raises(ValueError, match="bc: nothing to train: algo.imitation_coef=0 needs a camera student"):
        BC(Policy(PolicyConfig(head="gaussian", state_dim=2, action_dim=1)), BCConfig(imitation_coef=0.0))
    with pytest.raises(ValueError, match="imitation_coef"):
        BCConfig(imitation_coef=-1.0)


def test_ppo_freeze_keeps_the_teacher_layers_and_trains_the_estimator():
    from robopolicy.algorithms.ppo import PPO
    from robopolicy.critic import CriticConfig, ValueCritic

    policy = student([1])
    ppo = PPO(policy, ValueCritic(2, CriticConfig(hidden_sizes=[8])), PPOConfig(freeze=["head", "encoder.net"]), 1)
    trained = {id(p) for g in ppo.optimizer.param_groups for p in g["params"]}
    for name, p in policy.named_parameters():
        assert (id(p) in trained) == (not name.startswith(("head", "encoder.net"))), name
        assert p.requires_grad == (id(p) in trained), name

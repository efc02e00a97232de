"""LeRobot interop: tiny ACT / Diffusion checkpoints made with LeRobot's own classes load through
Policy.from_pretrained and act in our envs; nothing is downloaded."""

from __future__ import annotations

import json

import pytest
import torch

from robopolicy.evaluate import evaluate
from robopolicy.interop import LeRobotPolicy
from robopolicy.policy import Policy
from robopolicy.types import OBS_STATE

pytest.importorskip("lerobot")
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.factory import make_pre_post_processors

pytestmark = pytest.mark.usefixtures("one_torch_thread")


ENV_CFG = {"_target_": "envs.gym_vec.make_gym_vec_env", "id": "robopolicy/ConstantReward-v0", "num_envs": 2,
           "vectorization": "sync", "chunk": 4, "max_episode_steps": None, "kwargs": {"max_steps": 5}, "seed": 0,
           "render_mode": None}


def features(image: bool):
    # ConstantReward-v0 observes 2 numbers: LeRobot's robot state (1) + environment state (1).
    inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(1,)),
              "observation.environment_state": PolicyFeature(type=FeatureType.ENV, shape=(1,))}
    if image:
        inputs["observation.images.front"] = PolicyFeature(type=FeatureType.VISUAL, shape=(3, 32, 32))
    return inputs, {"action": PolicyFeature(type=FeatureType.ACTION, shape=(1,))}


def stats(mean: float, std: float, shape=(1,)) -> dict:
    m, s = torch.full(shape, mean), torch.full(shape, std)
    return {"mean": m, "std": s, "min": m - 2 * s, "max": m + 2 * s}  # ACT uses mean/std, Diffusion min/max


STATS = {"observation.state": stats(0.5, 2.0), "observation.environment_state": stats(-1.0, 0.5),
         "observation.images.front": stats(0.4, 0.2, (3, 1, 1)), "action": stats(0.1, 0.3)}


def save(policy, cfg, path):
    pre, post = make_pre_post_processors(cfg, dataset_stats=STATS)
    policy.save_pretrained(path)
    pre.save_pretrained(path)
    post.save_pretrained(path)
    return pre, post


def tiny_act(path, image: bool):
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    inputs, outputs = features(image)
    cfg = ACTConfig(device="cpu", input_features=inputs, output_features=outputs, chunk_size=4, n_action_steps=4,
                    dim_model=32, n_heads=2, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1,
                    n_vae_encoder_layers=1, latent_dim=8, pretrained_backbone_weights=None)
    torch.manual_seed(0)
    policy = ACTPolicy(cfg).eval()
    return policy, cfg, save(policy, cfg, path)


def tiny_diffusion(path):
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    inputs, outputs = features(False)
    cfg = DiffusionConfig(device="cpu", input_features=inputs, output_features=outputs, n_obs_steps=2, horizon=8,
                          n_action_steps=4, down_dims=(16, 32), diffusion_step_embed_dim=16, num_train_timesteps=10,
                          num_inference_steps=3)
    torch.manual_seed(0)
    policy = DiffusionPolicy(cfg).eval()
    return policy, cfg, save(policy, cfg, path)


def test_act_checkpoint_acts_like_lerobot_itself(tmp_path):
    ref, _, (pre, post) = tiny_act(tmp_path / "act", image=True)
    # The saved config asks for ImageNet weights (as real checkpoints do); loading must not fetch them.
    cfg_file = tmp_path / "act" / "config.json"
    raw = json.loads(cfg_file.read_text())
    assert raw["type"] == "act"
    cfg_file.write_text(json.dumps(raw | {"pretrained_backbone_weights": "ResNet18_Weights.IMAGENET1K_V1"}))
    policy = Policy.from_pretrained(tmp_path / "act")
    assert isinstance(policy, LeRobotPolicy) and policy.config.chunk == 4
    g = torch.Generator().manual_seed(1)
    obs = {OBS_STATE: torch.randn(3, 2, generator=g),
           "observation.images.front": torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)}
    sample = policy.act(obs)
    assert sample.actions.shape == (3, 4, 1) and torch.isfinite(sample.actions).all() and sample.logp.shape == (3, 0)
    # Independent path: LeRobot's own policy object, its processors and select_action on the split state.
    batch = {"observation.state": obs[OBS_STATE][:, :1], "observation.environment_state": obs[OBS_STATE][:, 1:],
             "observation.images.front": obs["observation.images.front"].float() / 255, "task": [""] * 3}
    ref.reset()
    with torch.no_grad():
        first = post(ref.select_action(pre(batch)))
    torch.testing.assert_close(sample.actions[:, 0], first, rtol=1e-5, atol=1e-6)
    # The unnormalizer ran: actions are not the raw network outputs.
    with torch.no_grad():
        raw_out = ref.predict_action_chunk(pre(batch))
    assert not torch.allclose(sample.actions, raw_out)
    with pytest.raises(KeyError, match="observation.images.front"):
        policy.act({OBS_STATE: obs[OBS_STATE]})
    with pytest.raises(ValueError, match="observation.environment_state"):
        policy.act(obs | {OBS_STATE: torch.randn(3, 3)})


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_lerobot_checkpoint_runs_in_our_env(tmp_path, kind):
    if kind == "act":
        tiny_act(tmp_path / kind, image=False)
    else:
        tiny_diffusion(tmp_path / kind)
    policy = Policy.from_pretrained(tmp_path / kind)
    res = evaluate(policy, ENV_CFG, episodes=2)
    assert res.returns == [5.0, 5.0]  # chunks of H = n_action_steps = 4 through ActionChunk
    if kind == "act":  # per-step inference: every env step queries the policy
        res = evaluate(policy, ENV_CFG, episodes=2, execution="ensemble")
        assert res.lengths == [5, 5]


def test_diffusion_observation_history_restarts_after_a_reset(tmp_path):
    tiny_diffusion(tmp_path / "d")
    policy = Policy.from_pretrained(tmp_path / "d")
    assert policy.config.n_obs_steps == 2
    s1, s2 = torch.zeros(2, 2), torch.ones(2, 2)
    policy.act({OBS_STATE: s1})
    hist = policy.history["observation.state"]
    assert hist.shape == (2, 2, 1) and torch.equal(hist[:, 0], hist[:, 1])  # first step repeated
    policy.act({OBS_STATE: s2})
    assert not torch.equal(policy.history["observation.state"][:, 0], policy.history["observation.state"][:, 1])
    policy.reset(torch.tensor([True, False]))
    policy.act({OBS_STATE: 2 * s2})
    hist = policy.history["observation.state"][..., 0]  # (B, n_obs_steps) of the normalized robot state
    norm = lambda x: (x - (0.5 - 4.0)) / 8.0 * 2 - 1  # Diffusion's min/max scaling to [-1, 1]
    assert hist.tolist() == [[norm(2.0), norm(2.0)], [norm(1.0), norm(2.0)]]  # env 0 started over, env 1 went on


def test_unsupported_lerobot_type_is_named(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text(json.dumps({"type": "pi0"}))
    (tmp_path / "p" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="'pi0'"):
        Policy.from_pretrained(tmp_path / "p")

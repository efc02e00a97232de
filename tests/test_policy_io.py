"""Policy directory round trip and the errors of bad checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from robopolicy.policy import Policy, PolicyConfig
from robopolicy.types import OBS_STATE


def make_policy() -> Policy:
    cfg = PolicyConfig(state_dim=5, action_dim=2, chunk=3, action_low=[-2.0, 0.0], action_high=[2.0, 1.0],
                       head_options={"log_std_init": -0.5, "init_gain": 1.0})
    policy = Policy(cfg)
    policy.normalizer.update({OBS_STATE: torch.randn(100, 5) * 3 + 1})
    return policy


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    torch.manual_seed(0)
    policy = make_policy()
    obs = {OBS_STATE: torch.randn(4, 5)}
    path = policy.save_pretrained(tmp_path / "p")
    loaded = Policy.from_pretrained(path)
    with torch.no_grad():
        assert torch.equal(policy.act(obs, deterministic=True).actions, loaded.act(obs, deterministic=True).actions)
        torch.manual_seed(7)
        a = policy.act(obs)
        torch.manual_seed(7)
        b = loaded.act(obs)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.logp, b.logp)
    assert a.actions.shape == (4, 3, 2)
    # actions are mapped to env units: dimension 1 lives in [0, 1]
    assert a.actions[..., 1].min() >= 0.0 and a.actions[..., 1].max() <= 1.0
    assert json.loads((path / "config.json").read_text())["head"] == "gaussian"


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="policy checkpoint not found: .*nowhere"):
        Policy.from_pretrained(tmp_path / "nowhere")


def test_wrong_shape_and_nan_weights_are_rejected(tmp_path):
    path = make_policy().save_pretrained(tmp_path / "p")
    weights = load_file(str(path / "model.safetensors"))
    bad = dict(weights)
    bad["head.mean.bias"] = torch.zeros(99)
    save_file(bad, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"head.mean.bias has shape \(99,\), expected \(6,\)"):
        Policy.from_pretrained(path)
    bad["head.mean.bias"] = torch.full((6,), float("nan"))
    save_file(bad, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match="head.mean.bias contains NaN or Inf"):
        Policy.from_pretrained(path)


def test_unknown_config_key_is_named(tmp_path):
    path = make_policy().save_pretrained(tmp_path / "p")
    cfg = json.loads((path / "config.json").read_text())
    cfg["hed"] = "gaussian"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hed'\]"):
        Policy.from_pretrained(path)


def test_run_config_is_found_from_checkpoint_and_best_policy_folders(tmp_path):
    from omegaconf import OmegaConf

    from robopolicy.checkpoint import load_run_config, resolve_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    OmegaConf.save(OmegaConf.create({"env": {"id": "Hopper-v5"}}), run / "config.yaml")
    best = make_policy().save_pretrained(run / "checkpoints" / "best" / "policy")
    assert resolve_checkpoint(best) == best
    assert load_run_config(best).env.id == "Hopper-v5"
    assert load_run_config(tmp_path) is None

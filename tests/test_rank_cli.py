"""`robopolicy rank` through the CLI's entry point (robopolicy.cli.main, in-process to stay fast): a ranking of two tiny policies on the arm's reach task,
and the errors that name a wrong checkpoint path and a candidate whose action dim does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robopolicy.cli import main
from robopolicy.encoders import EncoderConfig
from robopolicy.policy import Policy, PolicyConfig

REACH = "robopolicy/Arm-Reach-v0"


def robopolicy(capsys, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr (whitespace-normalized: rich wraps long lines) of `robopolicy <args>`."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, " ".join(out.err.split())


def save_policy(path: Path, action_dim: int = 4, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    cfg = PolicyConfig(head="gaussian", encoder=EncoderConfig(hidden_sizes=[16]), state_dim=26, action_dim=action_dim,
                       chunk=1, action_low=[-1.0] * action_dim, action_high=[1.0] * action_dim)
    return Policy(cfg).save_pretrained(path)


@pytest.fixture(scope="module")
def real_reach(tmp_path_factory) -> Path:
    """Two expert episodes of reach with sensor noise: a stand-in for episodes recorded on the real robot."""
    from envs.demos import record_demos

    root = tmp_path_factory.mktemp("real") / "reach"
    return record_demos(REACH, episodes=2, root=root, max_episode_steps=40, progress=False,
                        env_kwargs={"randomization": {"enabled": True, "obs_noise": 0.004}})


def test_rank_prints_the_table_and_writes_json(tmp_path, real_reach, capsys):
    a, b = save_policy(tmp_path / "a", seed=0), save_policy(tmp_path / "b", seed=1)
    code, stdout, stderr = robopolicy(capsys, "rank", f"candidates=[{a},{b}]", f"real_data={real_reach}",
                                      "env=arm_reach", "sim_episodes=2", f"output={tmp_path / 'rank.json'}")
    assert code == 0, stderr
    assert "policy ranking" in stderr and "sim-only rank" in stderr
    written = json.loads((tmp_path / "rank.json").read_text())
    last = json.loads(stdout.strip().splitlines()[-1])
    assert [c["name"] for c in written["candidates"]] == [c["name"] for c in last["candidates"]]
    assert sorted(c["name"] for c in written["candidates"]) == ["a", "b"]
    assert sorted(c["predicted_rank"] for c in written["candidates"]) == [1.0, 2.0]
    assert written["real_episodes"] == 2 and written["ood_method"] == "behaviour"
    assert all(c["ood"] > 0 for c in written["candidates"])


def test_wrong_checkpoint_path_is_named(tmp_path, capsys):
    a = save_policy(tmp_path / "a")
    code, _, stderr = robopolicy(capsys, "rank", f"candidates=[{a},{tmp_path / 'no_such_policy'}]",
                                 f"real_data={tmp_path}")
    assert code == 2
    assert "candidates[1]" in stderr and "no_such_policy" in stderr


def test_mismatched_action_dim_is_named(tmp_path, real_reach, capsys):
    a, wide = save_policy(tmp_path / "a"), save_policy(tmp_path / "joint7", action_dim=7)
    code, _, stderr = robopolicy(capsys, "rank", f"candidates=[{a},{wide}]", f"real_data={real_reach}", "env=arm_reach")
    assert code == 2
    assert "candidates[1]" in stderr and "joint7" in stderr and "action_dim 7 (the data has 4)" in stderr


def test_unknown_ood_method_and_missing_real_data_are_named(tmp_path, capsys):
    a, b = save_policy(tmp_path / "a"), save_policy(tmp_path / "b")
    code, _, stderr = robopolicy(capsys, "rank", f"candidates=[{a},{b}]", f"real_data={tmp_path}", "ood.method=kde")
    assert code == 2 and "ood.method" in stderr and "kde" in stderr
    code, _, stderr = robopolicy(capsys, "rank", f"candidates=[{a},{b}]", f"real_data={tmp_path / 'nothing'}")
    assert code == 2 and "real_data" in stderr and "nothing" in stderr

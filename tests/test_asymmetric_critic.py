"""critic.use_privileged: the critic reads observation.privileged when the env provides it."""

from __future__ import annotations

import pytest

from robopolicy.cli import compose
from robopolicy.train_run import ConfigError, build_training


def test_privileged_critic_sees_the_envs_privileged_dims(tmp_path):
    cfg = compose("train", ["env=arm_reach", "env.kwargs.privileged=true", "critic.use_privileged=true",
                            "logger=none", f"runs_dir={tmp_path}", "name=a", "algo.n_steps=8"])
    session = build_training(cfg)
    try:
        rollout = session.source.collect(session.policy)
        priv = session.env.obs_shapes["observation.privileged"][0]
        assert session.critic.net[0].in_features == session.env.state_dim + priv
        metrics = session.algo.update(rollout)
        assert metrics["loss/value"] == metrics["loss/value"]  # finite, not NaN
    finally:
        session.close()


def test_privileged_critic_without_privileged_obs_is_named(tmp_path):
    cfg = compose("train", ["env=inverted_pendulum", "critic.use_privileged=true", "logger=none",
                            f"runs_dir={tmp_path}", "name=a"])
    with pytest.raises(ConfigError, match="critic.use_privileged: the env InvertedPendulum-v5 has no"):
        build_training(cfg)

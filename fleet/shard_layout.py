"""The LeRobotDataset layout of the fleet's shards: the features a robot's spec gives, and a stored episode's frames
in it (per frame for episodes with images, whole columns for state-only ones)."""

from __future__ import annotations

import json

import numpy as np

from fleet.codec import EpisodePiece, num_decisions
from fleet.proto import fleet_pb2 as pb


def spec_signature(spec: pb.RobotSpec) -> bytes:
    """Robots with equal signatures share a shard's LeRobotDataset: one dataset holds one feature set."""
    return json.dumps([spec.state_dim, spec.action_dim, spec.trace_dim, num_decisions(spec),
                       [(c.name, c.height, c.width) for c in spec.cameras]]).encode()


def shard_features(spec: pb.RobotSpec) -> dict:
    """LeRobot features of a robot's episodes: its state, action, trace and cameras, plus the fleet's columns."""
    feats = {
        "observation.state": {"dtype": "float32", "shape": (spec.state_dim,), "names": None},
        "action": {"dtype": "float32", "shape": (spec.action_dim,), "names": None},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
        "intervention": {"dtype": "bool", "shape": (1,), "names": None},
        "policy_version": {"dtype": "int64", "shape": (1,), "names": None},
        "robot_index": {"dtype": "int64", "shape": (1,), "names": None},
        "robot_timestamp": {"dtype": "float64", "shape": (1,), "names": None},
        "logp": {"dtype": "float32", "shape": (num_decisions(spec),), "names": None},
        "chunk_step": {"dtype": "int64", "shape": (1,), "names": None},
    }
    for c in spec.cameras:
        feats[f"observation.images.{c.name}"] = {"dtype": "image", "shape": (c.height, c.width, 3),
                                                 "names": ["height", "width", "channels"]}
    return feats


def episode_frames(p: EpisodePiece, robot_index: int, task: str):
    """One frame dict per step for ``add_frame`` (the path for episodes with images)."""
    for t in range(p.num_steps):
        frame = {
            "observation.state": p.state[t], "action": p.action[t],
            "next.reward": p.reward[t:t + 1], "next.done": p.done[t:t + 1], "next.success": p.success[t:t + 1],
            "intervention": p.intervention[t:t + 1], "policy_version": p.policy_version[t:t + 1],
            "robot_index": np.array([robot_index], np.int64), "robot_timestamp": p.timestamp[t:t + 1],
            "logp": p.logp[t].reshape(-1), "chunk_step": p.chunk_step[t:t + 1].astype(np.int64), "task": task,
        }
        for cam, imgs in p.images.items():
            frame[f"observation.images.{cam}"] = imgs[t]
        yield frame


def episode_buffer(p: EpisodePiece, robot_index: int, task: str, episode_index: int, fps: int) -> dict:
    """LeRobot's episode buffer for ``save_episode(episode_data=...)`` (state-only features), built from columns."""
    n = p.num_steps
    col = np.ascontiguousarray
    return {
        "size": n, "task": [task] * n, "episode_index": episode_index, "frame_index": np.arange(n),
        "index": None, "task_index": None,  # filled by save_episode
        "timestamp": (np.arange(n) / fps).astype(np.float32),
        "observation.state": col(p.state), "action": col(p.action), "next.reward": p.reward[:, None],
        "next.done": p.done[:, None], "next.success": p.success[:, None], "intervention": p.intervention[:, None],
        "policy_version": p.policy_version[:, None], "robot_index": np.full((n, 1), robot_index, np.int64),
        "robot_timestamp": p.timestamp[:, None], "logp": p.logp.reshape(n, -1),
        "chunk_step": p.chunk_step.astype(np.int64)[:, None],
    }

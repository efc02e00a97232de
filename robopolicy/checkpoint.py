"""Checkpoint folders of a run and how to find them.

    runs/<name>/checkpoints/step_000123456/
        policy/            config.json + model.safetensors   (Policy.from_pretrained)
        critic.safetensors
        train_state.pt     optimizer, return normalizer, counters, RNG states
        run_config.yaml    the resolved run config (env included) for eval / resume
    runs/<name>/checkpoints/LATEST   name of the newest step folder
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file

from robopolicy.critic import ValueCritic
from robopolicy.policy import CONFIG_NAME, Policy, load_state_checked

LATEST = "LATEST"


def save_checkpoint(
    run_dir: Path, step: int, policy: Policy, critic: ValueCritic | None, train_state: dict[str, Any], cfg: DictConfig
) -> Path:
    """Write checkpoints/step_<step>/ atomically; ``critic`` None for critic-free algorithms (BC)."""
    ckpt_root = run_dir / "checkpoints"
    path = ckpt_root / f"step_{step:09d}"
    tmp = ckpt_root / f".tmp_step_{step:09d}"
    tmp.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(tmp / "policy")
    if critic is not None:
        save_file({k: v.contiguous() for k, v in critic.state_dict().items()}, str(tmp / "critic.safetensors"))
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    torch.save({**train_state, "rng": rng}, tmp / "train_state.pt")
    OmegaConf.save(cfg, tmp / "run_config.yaml")
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)  # atomic: a crash mid-save never leaves a half-written step folder
    (ckpt_root / LATEST).write_text(path.name)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder, a checkpoint folder or a policy folder -> the checkpoint (or policy) folder."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if (p / "checkpoints" / LATEST).is_file():
        return p / "checkpoints" / (p / "checkpoints" / LATEST).read_text().strip()
    if (p / LATEST).is_file():
        return p / (p / LATEST).read_text().strip()
    if (p / "policy" / CONFIG_NAME).is_file() or (p / CONFIG_NAME).is_file():
        return p
    raise FileNotFoundError(
        f"no checkpoint in {p}: expected a run folder (checkpoints/{LATEST}), a checkpoint folder (policy/) "
        f"or a policy folder ({CONFIG_NAME})"
    )


def load_policy(path: str | Path, head_overrides: dict[str, Any] | None = None) -> Policy:
    ckpt = resolve_checkpoint(path)
    return Policy.from_pretrained(ckpt / "policy" if (ckpt / "policy").is_dir() else ckpt,
                                  head_overrides=head_overrides)


def load_run_config(ckpt: Path) -> DictConfig | None:
    """The run config of a checkpoint, a best-policy folder or a policy inside a run folder."""
    if (ckpt / "run_config.yaml").is_file():
        return OmegaConf.load(ckpt / "run_config.yaml")  # type: ignore[return-value]
    for parent in list(ckpt.resolve().parents)[:3]:  # runs/<name>/checkpoints/best/policy -> runs/<name>
        if (parent / "config.yaml").is_file():
            return OmegaConf.load(parent / "config.yaml")  # type: ignore[return-value]
    return None


def load_training_state(ckpt: Path, policy: Policy, critic: ValueCritic) -> dict[str, Any]:
    if not (ckpt / "train_state.pt").is_file():
        raise FileNotFoundError(f"{ckpt} has no train_state.pt: it is a policy, not a resumable checkpoint")
    fresh = Policy.from_pretrained(ckpt / "policy")
    policy.load_state_dict(fresh.state_dict())
    load_state_checked(critic, load_file(str(ckpt / "critic.safetensors")), ckpt / "critic.safetensors")
    return load_train_state(ckpt)


def load_train_state(ckpt: Path) -> dict[str, Any]:
    """train_state.pt of a checkpoint, with the torch / numpy / python RNG states restored."""
    state = torch.load(ckpt / "train_state.pt", weights_only=False)
    rng = state.pop("rng")
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    return state


def save_best(run_dir: Path, policy: Policy, step: int, eval_return: float) -> None:
    """checkpoints/best/policy and the step and return it was evaluated at."""
    best = run_dir / "checkpoints" / "best"
    policy.save_pretrained(best / "policy")
    (best / "step.txt").write_text(f"{step} {eval_return}\n")

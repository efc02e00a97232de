"""Test-session defaults: headless MuJoCo rendering through EGL, wandb never online."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small matrices on a shared 2-core box: a second torch thread only adds contention. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

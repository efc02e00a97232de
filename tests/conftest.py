"""Test-session defaults: headless MuJoCo rendering through EGL, wandb never online."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "offline")

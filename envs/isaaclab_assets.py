"""Isaac Lab assets authored here, so a task builds without NVIDIA's asset server.

Every Isaac Lab task loads its robot and ground from USD files on that server (docs/envs.md has the error a machine
without it gets). ``write_cartpole_usd`` authors the cartpole that ``Isaac-Cartpole-Direct`` expects, with the joint
names the task looks up, and ``cartpole_scene`` says how to point the task at it:

    path = write_cartpole_usd("/tmp/cartpole.usda")
    env = make_isaaclab_env("Isaac-Cartpole-Direct", num_envs=4, device="cpu", overrides=["physics=newton_mjwarp"],
                            scene=cartpole_scene(path))

The task's own code (observations, reward, resets, terminations) is then Isaac Lab's; only the asset is ours. Its
dimensions follow the classic cartpole: a 1 kg cart on a rail, a 1 m pole of 0.1 kg hinged on it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

# (size x, y, z in m, mass in kg, translation of the body frame in the articulation's frame)
_CARTPOLE_BODIES = {
    "rail": ((8.0, 0.03, 0.03), 1.0, (0.0, 0.0, 0.0)),
    "cart": ((0.2, 0.25, 0.2), 1.0, (0.0, 0.0, 0.0)),
    "pole": ((0.04, 0.04, 1.0), 0.1, (0.0, 0.0, 0.5)),  # its hinge is at its lower end, the cart's centre
}


def write_cartpole_usd(path: str | Path) -> str:
    """Author the cartpole articulation at ``path`` (.usda): a rail fixed to the world, the prismatic joint
    ``slider_to_cart`` (x, +-4 m) and the revolute joint ``cart_to_pole`` (y), as Isaac Lab's cartpole names them.
    Bodies are boxes with their mass and box inertia and no colliders (nothing in the task touches). Returns the path.
    """
    from pxr import Gf, Usd, UsdGeom, UsdPhysics  # usd-core, installed with isaaclab

    path = str(path)
    stage = Usd.Stage.CreateNew(path)
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root = UsdGeom.Xform.Define(stage, "/cartpole")
    stage.SetDefaultPrim(root.GetPrim())
    UsdPhysics.ArticulationRootAPI.Apply(root.GetPrim())
    bodies = {}
    for name, ((sx, sy, sz), mass, pos) in _CARTPOLE_BODIES.items():
        xform = UsdGeom.Xform.Define(stage, f"/cartpole/{name}")
        xform.AddTranslateOp().Set(Gf.Vec3d(*pos))
        prim = xform.GetPrim()
        UsdPhysics.RigidBodyAPI.Apply(prim)
        mass_api = UsdPhysics.MassAPI.Apply(prim)
        mass_api.CreateMassAttr(mass)
        # a solid box: I_xx = m (y^2 + z^2) / 12, and so on
        mass_api.CreateDiagonalInertiaAttr(Gf.Vec3f(mass * (sy**2 + sz**2) / 12, mass * (sx**2 + sz**2) / 12,
                                                    mass * (sx**2 + sy**2) / 12))
        mass_api.CreateCenterOfMassAttr(Gf.Vec3f(0.0, 0.0, 0.0))
        box = UsdGeom.Cube.Define(stage, f"/cartpole/{name}/visual")
        box.CreateSizeAttr(1.0)
        box.AddScaleOp().Set(Gf.Vec3f(sx, sy, sz))
        bodies[name] = prim.GetPath()
    UsdPhysics.FixedJoint.Define(stage, "/cartpole/root_joint").CreateBody1Rel().SetTargets([bodies["rail"]])
    slider = UsdPhysics.PrismaticJoint.Define(stage, "/cartpole/slider_to_cart")
    slider.CreateBody0Rel().SetTargets([bodies["rail"]])
    slider.CreateBody1Rel().SetTargets([bodies["cart"]])
    slider.CreateAxisAttr("X")
    slider.CreateLowerLimitAttr(-4.0)
    slider.CreateUpperLimitAttr(4.0)
    hinge = UsdPhysics.RevoluteJoint.Define(stage, "/cartpole/cart_to_pole")
    hinge.CreateBody0Rel().SetTargets([bodies["cart"]])
    hinge.CreateBody1Rel().SetTargets([bodies["pole"]])
    hinge.CreateAxisAttr("Y")
    hinge.CreateLocalPos0Attr(Gf.Vec3f(0.0, 0.0, 0.0))
    hinge.CreateLocalPos1Attr(Gf.Vec3f(0.0, 0.0, -_CARTPOLE_BODIES["pole"][0][2] / 2))
    stage.GetRootLayer().Save()
    return path


def cartpole_scene(usd_path: str | Path) -> dict[str, Any]:
    """``make_isaaclab_env(..., scene=...)`` edits for ``Isaac-Cartpole-Direct``: the cartpole from ``usd_path``, and
    no ground or light (both are files on the server; the cart runs on its rail and nothing is rendered)."""
    return {"cartpole.spawn.usd_path": str(usd_path), "ground": None, "light": None}


def check_local_asset(env_id: str) -> None:
    """Raise unless an asset for ``env_id`` is authored here (cheap: writes nothing, needs no Isaac Lab)."""
    if env_id != "Isaac-Cartpole-Direct":
        raise ValueError(f"isaaclab: no locally authored asset for {env_id}; there is one for Isaac-Cartpole-Direct")


def local_scene(env_id: str) -> dict[str, Any]:
    """Scene edits that give ``env_id`` an asset authored here, written to a fresh temporary folder."""
    check_local_asset(env_id)
    folder = Path(tempfile.mkdtemp(prefix="robopolicy-isaaclab-"))
    return cartpole_scene(write_cartpole_usd(folder / "cartpole.usda"))

"""Encoders: every combination builds, has the right shapes, is finite, and reloads to identical outputs;
hand-checked pieces (byte tokenizer, random shift, [0, 1] scaling); BC through a real image dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robopolicy.cli import compose
from robopolicy.encoders import EncoderConfig
from robopolicy.encoders.image import random_shift
from robopolicy.encoders.language import byte_tokenize
from robopolicy.policy import Policy, PolicyConfig
from robopolicy.train_run import ConfigError, run_training
from robopolicy.types import OBS_STATE, TASK

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TASKS = ["push the block", "open the drawer"]
IMG = [3, 24, 24]

IMAGE_OPTIONS = {"none": {}, "cnn": {"cameras": ["front", "wrist"], "shape": IMG},
                 "resnet18": {"cameras": ["front"], "shape": IMG, "backbone": "resnet18", "shared_backbone": False}}
LANGUAGE_OPTIONS = {"none": {}, "transformer": {"kind": "transformer", "dim": 32, "layers": 1},
                    "embedding": {"kind": "embedding", "dim": 16, "tasks": TASKS}}
# ResNet-18 has 11M parameters: one combination by default (FiLM on its 512-channel maps), the rest are slow.
COMBOS = [pytest.param(img, lang, fusion, marks=[pytest.mark.slow] if img == "resnet18" and
                       (lang, fusion) != ("embedding", "film") else [])
          for img in IMAGE_OPTIONS for lang in LANGUAGE_OPTIONS
          for fusion in ("concat", "film", "tokens") if not (fusion == "film" and lang == "none")]


def make_policy(img: str, lang: str, fusion: str, head: str = "gaussian") -> Policy:
    enc = EncoderConfig.from_dict({"hidden_sizes": [32], "image": IMAGE_OPTIONS[img],
                                   "language": LANGUAGE_OPTIONS[lang], "fusion": fusion, "token_dim": 32,
                                   "token_layers": 1})
    return Policy(PolicyConfig(head=head, encoder=enc, state_dim=5, action_dim=2, chunk=3,
                               action_low=[-1.0, -1.0], action_high=[1.0, 1.0]))


def make_obs(policy: Policy, batch: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    obs = {OBS_STATE: torch.randn(batch, 5, generator=g), TASK: [TASKS[i % 2] for i in range(batch)]}
    for cam in policy.config.encoder.image.cameras:
        obs[f"observation.images.{cam}"] = torch.randint(0, 256, (batch, *IMG), generator=g, dtype=torch.uint8)
    return obs


@pytest.mark.parametrize(("img", "lang", "fusion"), COMBOS)
def test_encoder_combo_shapes_finite_and_reload(tmp_path, img, lang, fusion):
    torch.manual_seed(0)
    policy = make_policy(img, lang, fusion)
    obs = make_obs(policy)
    # Perturb every parameter: FiLM starts as the identity and some layers start at zero, so a reload that
    # dropped them would otherwise still match.
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    policy.eval()
    feat = policy.features(obs)
    assert feat.shape == (4, policy.encoder.out_dim) and torch.isfinite(feat).all()
    sample = policy.act(obs, deterministic=True)
    assert sample.actions.shape == (4, 3, 2) and torch.isfinite(sample.actions).all()
    # Gradients reach the image and language parameters.
    policy.train()
    policy.head.imitation_loss(policy.features(obs), torch.zeros(4, 3, 2)).backward()
    for name in ("images", "language"):
        part = getattr(policy.encoder, name)
        if part is not None:
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), name
    policy.eval()
    loaded = Policy.from_pretrained(policy.save_pretrained(tmp_path / "p")).eval()
    assert loaded.config == policy.config
    torch.testing.assert_close(loaded.features(obs), feat, rtol=0, atol=0)
    torch.testing.assert_close(loaded.act(obs, deterministic=True).actions, sample.actions, rtol=0, atol=0)


def test_state_only_config_keeps_the_old_parameter_names():
    names = set(make_policy("none", "none", "concat").state_dict())
    assert {"encoder.net.0.weight", "encoder.net.0.bias"} <= names
    assert not any(n.startswith(("encoder.images", "encoder.language")) for n in names)


def test_byte_tokenizer_by_hand():
    ids = byte_tokenize(["ab", "é"], max_length=3)
    # CLS = 1, byte + 2, pad = 0; "é" is the two utf-8 bytes 0xC3 0xA9; "abcd" would be cut at 3 bytes.
    assert ids.tolist() == [[1, 97 + 2, 98 + 2, 0], [1, 0xC3 + 2, 0xA9 + 2, 0]]
    assert byte_tokenize(["abcd"], max_length=3).tolist() == [[1, 99, 100, 101]]


def test_random_shift_is_a_crop_of_the_padded_image():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    out = random_shift(x, 2, generator=torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    for b in range(2):
        crops = [padded[b, :, i : i + 5, j : j + 5] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], c) for c in crops)
    assert torch.equal(random_shift(x, 0), x)


def test_random_shift_only_when_asked():
    torch.manual_seed(0)
    policy = make_policy("cnn", "none", "concat")
    obs = make_obs(policy)
    ref = policy.features(obs)
    assert torch.equal(policy.features(obs), ref)  # acting and PPO log-probs: never augmented
    assert not torch.allclose(policy.features(obs, augment=True), ref)  # BC updates: shifted
    state_only = make_policy("none", "none", "concat")
    torch.testing.assert_close(state_only.features(obs, augment=True), state_only.features(obs))


def test_uint8_and_unit_float_images_give_the_same_features():
    policy = make_policy("cnn", "none", "concat").eval()
    obs = make_obs(policy)
    as_float = {k: (v.float() / 255 if k.startswith("observation.images") else v) for k, v in obs.items()}
    torch.testing.assert_close(policy.features(obs), policy.features(as_float))


def test_input_errors_name_the_key():
    policy = make_policy("cnn", "embedding", "concat").eval()
    obs = make_obs(policy)
    with pytest.raises(KeyError, match="observation.images.wrist"):
        policy.features({k: v for k, v in obs.items() if k != "observation.images.wrist"})
    with pytest.raises(ValueError, match=r"observation.images.front: shape \(4, 3, 12, 12\)"):
        policy.features(obs | {"observation.images.front": obs["observation.images.front"][..., :12, :12]})
    with pytest.raises(ValueError, match="close the door"):
        policy.features(obs | {TASK: ["close the door"] * 4})
    with pytest.raises(ValueError, match="encoder.fusion"):
        EncoderConfig(fusion="sum")
    with pytest.raises(ValueError, match="encoder.fusion=film"):
        EncoderConfig(fusion="film")


def test_resnet_weights_from_a_local_file(tmp_path):
    from torchvision.models import resnet18

    ref = resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    options = IMAGE_OPTIONS["resnet18"] | {"weights": str(tmp_path / "r18.pth")}
    enc = EncoderConfig.from_dict({"hidden_sizes": [8], "image": options})
    policy = Policy(PolicyConfig(encoder=enc, state_dim=5, action_dim=2, chunk=1))
    trunk = policy.encoder.images.backbones[0].net
    torch.testing.assert_close(trunk[0].weight, ref.conv1.weight)  # the file's weights, not a fresh init
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth"):
        Policy(PolicyConfig(encoder=EncoderConfig.from_dict({"image": options | {"weights": str(tmp_path / "bad.pth")}}),
                            state_dim=5, action_dim=2, chunk=1))


def write_image_dataset(root, episodes: int = 3, steps: int = 12) -> None:
    """A LeRobotDataset with a 2-D state, a 1-D action, one 16x16 camera and two instructions."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robopolicy.data.demos import quiet_lerobot_video_probe

    quiet_lerobot_video_probe()
    features = {"observation.state": {"dtype": "float32", "shape": (2,), "names": None},
                "observation.images.front": {"dtype": "image", "shape": (16, 16, 3),
                                             "names": ["height", "width", "channels"]},
                "action": {"dtype": "float32", "shape": (1,), "names": None}}
    ds = LeRobotDataset.create(repo_id="local/img", fps=10, features=features, root=root, use_videos=False)
    rng = np.random.default_rng(0)
    for e in range(episodes):
        for _ in range(steps):
            ds.add_frame({"observation.state": rng.normal(size=2).astype(np.float32),
                          "observation.images.front": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
                          "action": rng.uniform(-1, 1, 1).astype(np.float32), "task": TASKS[e % 2]})
        ds.save_episode()
    ds.finalize()


def test_bc_on_an_image_dataset_runs_through_run_training(tmp_path):
    write_image_dataset(tmp_path / "demos")
    cfg = compose("train", ["env=constant_reward", "env.num_envs=1", "policy=diffusion", "algo=bc",
                            f"dataset={tmp_path / 'demos'}", "policy.encoder.hidden_sizes=[16]",
                            "policy.encoder.image.cameras=[front]", "policy.encoder.language.kind=embedding",
                            "policy.encoder.fusion=film", "policy.head_options.hidden_sizes=[32]",
                            "algo.steps=4", "algo.batch_size=8", "algo.eval_every=0", "algo.log_every=2",
                            "eval_episodes=0", "logger=none", f"runs_dir={tmp_path / 'runs'}", "name=img"])
    result = run_training(cfg, show_progress=False)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss/bc" in r] == [2, 4]
    policy = Policy.from_pretrained(result.checkpoint / "policy")
    assert policy.config.encoder.image.shape == [3, 16, 16]  # filled from the dataset
    assert policy.config.encoder.language.tasks == sorted(TASKS)
    obs = {OBS_STATE: torch.zeros(2, 2), "observation.images.front": torch.zeros(2, 3, 16, 16, dtype=torch.uint8),
           TASK: TASKS}
    assert policy.act(obs).actions.shape == (2, 1, 1)
    bad = compose("train", [*cfg_overrides(tmp_path), "policy.encoder.image.cameras=[side]"])
    with pytest.raises(ConfigError, match="observation.images.side"):
        run_training(bad, show_progress=False)
    # Evaluation needs the env to observe the camera: refused before any training.
    no_camera = compose("train", [*cfg_overrides(tmp_path), "policy.encoder.image.cameras=[front]", "eval_episodes=2"])
    with pytest.raises(ConfigError, match=r"reads \['observation.images.front'\].*does not observe"):
        run_training(no_camera, show_progress=False)
    assert not (tmp_path / "runs" / "bad").exists()


def cfg_overrides(tmp_path) -> list[str]:
    return ["env=constant_reward", "env.num_envs=1", "policy=gaussian", "algo=bc", f"dataset={tmp_path / 'demos'}",
            "algo.steps=1", "eval_episodes=0", "logger=none", f"runs_dir={tmp_path / 'runs'}", "name=bad"]


def test_image_dataset_loads_with_plain_lerobot_and_matches_load_demos(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robopolicy.data.demos import load_demos

    write_image_dataset(tmp_path / "demos", episodes=2, steps=3)
    ds = LeRobotDataset("local/img", root=tmp_path / "demos")
    ours = load_demos(tmp_path / "demos", chunk=2)
    assert len(ds) == len(ours) == 6 and ours.obs["observation.images.front"].dtype == torch.uint8
    for i in (0, 4):
        frame = ds[i]
        torch.testing.assert_close(ours.obs["observation.images.front"][i].float() / 255,
                                   frame["observation.images.front"], rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.obs[OBS_STATE][i], frame[OBS_STATE])
        assert ours.task[i] == frame["task"]
    assert "observation.images.front" not in ours.stats  # images are scaled, not normalized


def test_arrow_columns_equal_the_per_row_read(tmp_path, monkeypatch):
    """load_demos reads whole Arrow columns; the per-row read (datasets' formatting, the fallback) gives the same
    tensors, images included, bit for bit."""
    import robopolicy.data.demos as demos_module

    write_image_dataset(tmp_path / "demos", episodes=2, steps=3)
    per_row = demos_module._column_rows
    with monkeypatch.context() as m:  # the fast read must not fall back to the per-row one
        m.setattr(demos_module, "_column_rows", lambda *a: pytest.fail("per-row read on a well-formed dataset"))
        fast = demos_module.load_demos(tmp_path / "demos", chunk=2)
    assert demos_module._column_rows is per_row
    monkeypatch.setattr(demos_module, "_arrow_table", lambda hf: None)
    rows = demos_module.load_demos(tmp_path / "demos", chunk=2)
    assert set(fast.obs) == set(rows.obs) and "observation.images.front" in fast.obs
    for key in fast.obs:
        assert torch.equal(fast.obs[key], rows.obs[key]), key
    assert torch.equal(fast.actions, rows.actions) and torch.equal(fast.episode_index, rows.episode_index)
    assert fast.task == rows.task
    assert all(torch.equal(fast.stats[k][s], rows.stats[k][s]) for k in fast.stats for s in fast.stats[k])


def square_images(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 16, 16) uint8 black frames with a white 4x4 square in the left or right half; side (N,) in {-1, 1}."""
    side = torch.randint(0, 2, (n,), generator=gen) * 2 - 1
    images = torch.zeros(n, 3, 16, 16, dtype=torch.uint8)
    rows = torch.randint(0, 12, (n,), generator=gen)
    cols = torch.randint(0, 4, (n,), generator=gen) + torch.where(side > 0, 10, 2)
    for i in range(n):
        images[i, :, rows[i] : rows[i] + 4, cols[i] : cols[i] + 4] = 255
    return images, side


@pytest.mark.parametrize("source", ["image", "transformer", "embedding"])
def test_bc_learns_an_action_only_the_image_or_instruction_reveals(source):
    """The state is all zeros; the target chunk is +0.8 or -0.8 depending on where a square is drawn (image)
    or on the instruction (language). An encoder that dropped that input scores ~50% on the sign."""
    from robopolicy.algorithms.bc import BC, BCConfig
    from robopolicy.bc_run import DemoSampler

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    tasks = np.array(["go to the left", "go to the right"])  # the same first 10 bytes
    image = {"cameras": ["front"], "shape": [3, 16, 16], "random_shift": 1} if source == "image" else {}
    language = {} if source == "image" else {"kind": source, "dim": 32, "layers": 1, "max_length": 16,
                                                      "tasks": list(tasks)}

    def data(n: int):
        images, side = square_images(n, gen)
        obs = {OBS_STATE: torch.zeros(n, 2), "observation.images.front": images, TASK: tasks[(side > 0).long().numpy()]}
        return obs, (0.8 * side.float()).view(n, 1, 1).expand(n, 2, 1)

    enc = EncoderConfig.from_dict({"hidden_sizes": [16], "image": image, "language": language,
                                   "fusion": "concat" if source == "image" else "film"})
    policy = Policy(PolicyConfig(head="gaussian", encoder=enc, state_dim=2, action_dim=1, chunk=2,
                                 action_low=[-1.0], action_high=[1.0]))
    obs, actions = data(512)
    bc = BC(policy, BCConfig(steps=150, batch_size=64, learning_rate=3e-3, warmup_steps=10, ema_decay=0.0))
    sampler = DemoSampler(obs, actions, 64, seed=0)
    for _ in range(150):
        bc.update(sampler.next())
    test_obs, test_actions = data(256)
    with torch.no_grad():
        pred = policy.act(test_obs, deterministic=True).actions
    accuracy = (pred.sign() == test_actions.sign()).float().mean().item()
    assert accuracy > 0.95, accuracy


def test_privileged_encoder_reads_privileged_state_and_reloads(tmp_path):
    """A teacher's encoder (encoder.privileged) depends on observation.privileged, normalizes it with its own
    statistics, survives save/load, and names the key when an observation lacks it."""
    cfg = PolicyConfig(head="gaussian", state_dim=3, privileged_dim=5, action_dim=2,
                       encoder=EncoderConfig(hidden_sizes=[16], privileged=True))
    policy = Policy(cfg)
    obs = {OBS_STATE: torch.randn(4, 3), "observation.privileged": torch.randn(4, 5)}
    moved = dict(obs, **{"observation.privileged": obs["observation.privileged"] + 1.0})
    a = policy.act(obs, deterministic=True).actions
    assert not torch.allclose(a, policy.act(moved, deterministic=True).actions)
    assert "observation__privileged" in dict(policy.normalizer.stats.named_children())
    stats = policy.normalizer.stats_for("observation.privileged")  # looked up by its LeRobot key
    assert stats is policy.normalizer.stats["observation__privileged"] and stats.mean.shape == (5,)
    assert policy.normalizer.stats_for("observation.images.corner") is None  # images are not normalized
    back = Policy.from_pretrained(policy.save_pretrained(tmp_path / "p"))
    torch.testing.assert_close(back.act(obs, deterministic=True).actions, a)
    with pytest.raises(KeyError, match="observation.privileged"):
        policy.act({OBS_STATE: obs[OBS_STATE]})
    with pytest.raises(ValueError, match="encoder.privileged: needs the policy's privileged_dim"):
        Policy(PolicyConfig(state_dim=3, action_dim=2, encoder=EncoderConfig(privileged=True)))


def test_privileged_encoder_on_an_env_without_privileged_state_names_the_key(tmp_path):
    cfg = compose("train", ["env=inverted_pendulum", "policy.encoder.privileged=true", f"runs_dir={tmp_path}",
                          "logger=none"])
    with pytest.raises(ConfigError, match="policy.encoder.privileged: the env .* has no 'observation.privileged'"):
        run_training(cfg, show_progress=False)


def test_nature_backbone_maps_84x84_to_7x7_and_learns(tmp_path):
    from robopolicy.encoders.image import NatureCNN

    assert NatureCNN(3)(torch.zeros(2, 3, 84, 84)).shape == (2, 64, 7, 7)
    enc = EncoderConfig.from_dict({"hidden_sizes": [16], "image": {"cameras": ["front"], "shape": [3, 84, 84],
                                                                   "backbone": "nature"}})
    policy = Policy(PolicyConfig(head="gaussian", encoder=enc, state_dim=2, action_dim=1))
    obs = {OBS_STATE: torch.zeros(3, 2), "observation.images.front": torch.randint(0, 256, (3, 3, 84, 84),
                                                                                  dtype=torch.uint8)}
    policy.head.imitation_loss(policy.features(obs), torch.zeros(3, 1, 1)).backward()
    assert policy.encoder.images.backbones[0].net[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="encoder.image.backbone: unknown 'vgg'"):
        EncoderConfig.from_dict({"image": {"backbone": "vgg"}})

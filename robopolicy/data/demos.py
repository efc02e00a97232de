"""Load a LeRobotDataset directory (ours from ``robopolicy demos`` or a user's) into memory as action chunks.

    data = load_demos("data/reach-50", chunk=4)
    data.obs["observation.state"]  (N, D) float32     N frames of all episodes
    data.obs["observation.images.<cam>"]  (N, C, H, W) uint8   cameras stored as images (dtype "image")
    data.actions                   (N, H, A) float32  a_t .. a_{t+H-1} of the frame's episode
    data.action_is_pad             (N, H) bool        True where t+h ran past the episode's last frame
    data.episode_index             (N,) int64
    data.task                      N instruction strings
    data.stats                     {key: {"mean", "std", "min", "max"}} over the N frames, float32

Chunks are built from the parquet columns in one vectorized pass; this is exactly what LeRobot's
``delta_timestamps={"action": [i / fps for i in range(H)]}`` returns (padding repeats the episode's last
action and sets ``action_is_pad``; a test checks the two agree) without N Python ``__getitem__`` calls.
Vector features (``observation.*`` of dtype float32/float64) and cameras of dtype ``image`` are loaded;
video-encoded cameras are skipped (decoding them needs FFmpeg, and none of our recorders writes them).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from robopolicy.types import ACTION, OBS_STATE

REWARD = "next.reward"


def quiet_lerobot_video_probe() -> None:
    """LeRobot logs a long torchcodec traceback when FFmpeg's shared libraries are missing and then
    falls back to pyav. Our datasets are state-only (no video decoding), so that noise is hidden."""
    logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)

_VECTOR_DTYPES = ("float32", "float64")


@dataclass
class DemoData:
    obs: dict[str, Tensor]             # each (N, D...) float32
    actions: Tensor                    # (N, H, A) float32
    episode_index: Tensor              # (N,) int64
    action_is_pad: Tensor              # (N, H) bool
    task: list[str]                    # (N,) instruction strings
    stats: dict[str, dict[str, Tensor]]  # per obs key and "action": mean / std / min / max, float32
    reward: Tensor | None = None       # (N,) float32 r_{t+1} of each frame (``next.reward``), when stored

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(torch.unique(self.episode_index).numel())


def dataset_roots(root: str | Path | Sequence[str | Path]) -> list[Path]:
    """One dataset folder or several (a list, e.g. ``dataset=[demos,rollouts_1]`` on the command line)."""
    return [Path(root)] if isinstance(root, str | Path) else [Path(r) for r in root]


def load_demos(root: str | Path | Sequence[str | Path], chunk: int = 1, repo_id: str | None = None) -> DemoData:
    """Load every episode of the LeRobotDataset at ``root`` with H = ``chunk`` actions per frame.

    ``root`` may be a list of folders: their episodes are concatenated in order, as LeRobot's
    ``aggregate_datasets`` would merge them, without writing the merged copy (minutes for image datasets).
    Raises FileNotFoundError if ``root`` is not a dataset folder, and ValueError naming the episode and key
    for a missing ``action`` / ``observation.*`` feature, a wrong shape or a NaN/Inf value.
    """
    roots = dataset_roots(root)
    if len(roots) != 1:
        return concat_demos([load_demos(r, chunk, repo_id) for r in roots], roots)
    root = roots[0]
    quiet_lerobot_video_probe()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if not (root / "meta" / "info.json").is_file():  # checked here: LeRobot would try the hub instead
        raise FileNotFoundError(f"root: {root} is not a LeRobotDataset folder (no meta/info.json)")
    try:
        ds = LeRobotDataset(repo_id or f"local/{root.name}", root=root)
    except Exception as err:  # LeRobot's parquet cast fails on a row of the wrong shape without naming it
        _raise_on_bad_rows(root, err)
        raise
    features = ds.meta.features
    if ACTION not in features:
        raise ValueError(f"{root}: dataset has no {ACTION!r} feature (features: {sorted(features)})")
    obs_keys = [k for k, f in features.items() if k.startswith("observation.") and f["dtype"] in _VECTOR_DTYPES]
    if not obs_keys:
        raise ValueError(f"{root}: dataset has no vector observation feature such as {OBS_STATE!r} "
                         f"(features: {sorted(features)})")

    hf = ds.hf_dataset.with_format("numpy")
    table = _arrow_table(ds.hf_dataset)
    episode = _index_column(hf, table, "episode_index")
    frame = _index_column(hf, table, "frame_index")
    columns = {k: _column(hf, k, episode, tuple(features[k]["shape"]), table) for k in [*obs_keys, ACTION]}
    image_keys = [k for k, f in features.items() if k.startswith("observation.images.") and f["dtype"] == "image"]
    images = {k: _image_column(ds.hf_dataset, k, episode, tuple(features[k]["shape"]), table) for k in image_keys}
    act = columns[ACTION]
    if act.ndim != 2:
        raise ValueError(f"{root}: {ACTION!r} must be one vector (A,) per frame, got shape {act.shape[1:]}")

    # Frames of one episode are contiguous and ordered (LeRobot writes them so); check rather than assume.
    order = np.lexsort((frame, episode))
    if not np.array_equal(order, np.arange(len(order))):
        raise ValueError(f"{root}: frames are not stored in (episode_index, frame_index) order")
    # Chunk index t+h, clamped to the episode's last frame (LeRobot's padding): last[i] = last row of i's episode.
    starts = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])
    ends = np.r_[starts[1:], len(episode)] - 1
    last = np.repeat(ends, np.diff(np.r_[starts, len(episode)]))
    idx = np.arange(len(episode))[:, None] + np.arange(chunk)[None, :]  # (N, H)
    pad = idx > last[:, None]
    idx = np.minimum(idx, last[:, None])

    tasks = ds.meta.tasks  # DataFrame indexed by instruction, column task_index
    by_index = {int(i): str(t) for t, i in zip(tasks.index, tasks["task_index"], strict=True)}
    task = [by_index[int(i)] for i in _index_column(hf, table, "task_index")]

    obs = {k: torch.from_numpy(columns[k].astype(np.float32)) for k in obs_keys} | images
    actions = torch.from_numpy(act.astype(np.float32)[idx])
    # Images get no statistics: the encoder scales them to [0, 1] instead of normalizing them.
    stats = {k: _stats(v) for k, v in obs.items() if k not in images} | {ACTION: _stats(torch.from_numpy(act.astype(np.float32)))}
    reward = None
    if REWARD in features:  # offline critic pretraining needs it; BC does not
        reward = _column(hf, REWARD, episode, tuple(features[REWARD]["shape"]), table)
        reward = torch.from_numpy(reward.astype(np.float32)).reshape(len(episode))
    return DemoData(obs=obs, actions=actions, episode_index=torch.from_numpy(episode),
                    action_is_pad=torch.from_numpy(pad), task=task, stats=stats, reward=reward)


def concat_demos(parts: list[DemoData], roots: list[Path]) -> DemoData:
    """The frames of ``parts`` (consumed: their observations move into the result) one after another; episode
    indices are offset so that episodes stay distinct, and the statistics are those of the concatenation. Every
    part must hold the same observation keys and shapes."""
    if not parts:
        raise ValueError("dataset: an empty list of folders")
    first = parts[0]
    for part, root in zip(parts[1:], roots[1:], strict=True):
        shapes = {k: tuple(v.shape[1:]) for k, v in part.obs.items()} | {ACTION: tuple(part.actions.shape[1:])}
        want = {k: tuple(v.shape[1:]) for k, v in first.obs.items()} | {ACTION: tuple(first.actions.shape[1:])}
        if shapes != want:
            raise ValueError(f"{root}: features {shapes} differ from {roots[0]}'s {want}; folders loaded together "
                             "must hold the same observation keys and shapes")
    offsets = np.cumsum([0] + [int(p.episode_index.max()) + 1 if len(p) else 0 for p in parts[:-1]])
    images = {k for k in first.obs if k not in first.stats}
    # Key by key, each part's tensor released once copied: the peak is the result plus one key of the parts.
    obs = {k: torch.cat([p.obs.pop(k) for p in parts]) for k in list(first.obs)}
    actions = torch.cat([p.actions for p in parts])
    stats = {k: _stats(v) for k, v in obs.items() if k not in images} | {ACTION: _stats(actions[:, 0])}
    rewards = [p.reward for p in parts]
    return DemoData(obs=obs, actions=actions,
                    episode_index=torch.cat([p.episode_index + int(o) for p, o in zip(parts, offsets, strict=True)]),
                    action_is_pad=torch.cat([p.action_is_pad for p in parts]),
                    task=[t for p in parts for t in p.task], stats=stats,
                    reward=torch.cat(rewards) if all(r is not None for r in rewards) else None)


def _raise_on_bad_rows(root: Path, err: Exception) -> None:
    """Find the first frame whose vector feature has a shape other than meta/info.json declares and raise a
    ValueError naming its episode and key (read with pandas, as LeRobot's loader stops before telling)."""
    import json

    import pandas as pd

    features = json.loads((root / "meta" / "info.json").read_text()).get("features", {})
    vectors = {k: tuple(f["shape"]) for k, f in features.items() if f.get("dtype") in _VECTOR_DTYPES}
    for path in sorted((root / "data").rglob("*.parquet")):
        df = pd.read_parquet(path)
        for key, shape in vectors.items():
            if key not in df.columns:
                continue
            for row, value in enumerate(df[key]):
                got = np.shape(value) if np.ndim(value) else (1,)
                if got != shape:
                    ep = int(df["episode_index"].iloc[row]) if "episode_index" in df.columns else -1
                    raise ValueError(f"episode {ep}, {key!r}: shape {got}, expected {shape} (meta/info.json) "
                                     f"in {path.relative_to(root)} row {row}") from err


def _arrow_table(hf):
    """The Arrow table behind a whole (unselected) HF dataset, or None: columns are then read in one vectorized
    pass each. Iterating ``hf[key]`` formats every row in Python, ~0.4 ms per row and column: minutes for the
    200k-frame datasets of the teacher-student benchmark, against well under a second from Arrow."""
    return hf.data.table if getattr(hf, "_indices", None) is None else None


def _index_column(hf, table, key: str) -> np.ndarray:
    if table is not None and key in table.column_names:
        return table.column(key).to_numpy().astype(np.int64).reshape(-1)
    return np.asarray(hf[key], dtype=np.int64).reshape(-1)


def _arrow_vectors(table, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """Column ``key`` as (N, *shape) float64 straight from Arrow, or None when it is not a null-free (nested) list
    of numbers with every row of the declared shape: the per-row path then finds and names the bad row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def is_list(t) -> bool:
        return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)

    if table is None or key not in table.column_names:
        return None
    arr = table.column(key).combine_chunks()
    n = len(arr)
    dims = () if shape == (1,) and not is_list(arr.type) else shape  # a (1,) feature may be one scalar per row
    for dim in dims:
        if arr.null_count or not is_list(arr.type):
            return None
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        if (lengths != dim).any():
            return None
        arr = arr.flatten()
    if arr.null_count or not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
        return None
    return arr.to_numpy(zero_copy_only=False).astype(np.float64).reshape(n, *shape)


def _column(hf, key: str, episode: np.ndarray, shape: tuple[int, ...], table=None) -> np.ndarray:
    """Column ``key`` as (N, *shape) float64, checked against the declared shape and for NaN/Inf."""
    values = _arrow_vectors(table, key, shape)
    if values is None:
        values = _column_rows(hf, key, episode, shape)
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"episode {int(episode[row])}, {key!r}: non-finite value (NaN/Inf) at dataset row {row}")
    return values


def _column_rows(hf, key: str, episode: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The per-row read of ``_column``, which names the first row of the wrong shape."""
    try:
        rows = [np.asarray(v, dtype=np.float64) for v in hf[key]]
    except KeyError as err:
        raise ValueError(f"{key!r}: declared in meta/info.json but missing from the data files") from err
    if shape == (1,):  # a (1,) feature comes back from parquet as one scalar per row
        rows = [r.reshape(1) if r.ndim == 0 else r for r in rows]
    wrong = next((i for i, r in enumerate(rows) if r.shape != shape), None)
    if wrong is not None:
        raise ValueError(f"episode {int(episode[wrong])}, {key!r}: shape {rows[wrong].shape}, expected {shape} "
                         f"(meta/info.json) at dataset row {wrong}")
    return np.stack(rows) if rows else np.zeros((0, *shape))


def _image_column(hf, key: str, episode: np.ndarray, shape: tuple[int, ...], table=None) -> Tensor:
    """Camera ``key`` (stored as PNG per frame) as (N, C, H, W) uint8; ``shape`` is declared (H, W, C) or (C, H, W).
    The PNG bytes are decoded here once with PIL (as the datasets library does, without its per-row formatting),
    each frame straight into its row of the output: a 265k-frame camera is 5.6 GB of uint8, held once."""
    pngs = _image_bytes(table, key)
    if pngs is None:
        frames = hf.with_format(None)[key]
    else:
        from PIL import Image

        frames = (Image.open(io.BytesIO(b)) for b in pngs)
    out = None
    for i, frame in enumerate(frames):
        x = np.asarray(frame)
        x = x[..., None] if x.ndim == 2 else x  # grayscale (H, W)
        if out is None:
            hwc = x.shape
            if shape not in (hwc, (hwc[2], hwc[0], hwc[1])):
                raise ValueError(f"episode {int(episode[0])}, {key!r}: images of shape {hwc} (H, W, C), "
                                 f"expected {shape} (meta/info.json)")
            out = np.empty((len(episode), hwc[2], hwc[0], hwc[1]), dtype=np.uint8)
        if x.shape != hwc:
            raise ValueError(f"episode {int(episode[i])}, {key!r}: image of shape {x.shape} at dataset row {i}, "
                             f"expected {hwc}")
        out[i] = x.transpose(2, 0, 1)
    if out is None:
        c, h, w = shape if shape[0] <= 4 else (shape[2], shape[0], shape[1])
        out = np.empty((0, c, h, w), dtype=np.uint8)
    return torch.from_numpy(out)


def _image_bytes(table, key: str) -> list[bytes] | None:
    """The encoded bytes of every frame of an image column, or None when some frame is stored as a path."""
    if table is None or key not in table.column_names:
        return None
    import pyarrow as pa

    arr = table.column(key).combine_chunks()
    if not pa.types.is_struct(arr.type) or arr.type.get_field_index("bytes") < 0:
        return None
    pngs = arr.field("bytes").to_pylist()
    return None if any(b is None for b in pngs) else pngs


def _stats(x: Tensor) -> dict[str, Tensor]:
    return {"mean": x.mean(0), "std": x.std(0, unbiased=False), "min": x.amin(0), "max": x.amax(0)}

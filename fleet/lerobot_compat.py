"""One targeted speed-up of LeRobot 0.6.1's dataset writer, used by the fleet store.

``DatasetWriter._save_episode_data`` calls ``io_utils.embed_images``, which runs ``datasets.Dataset.map`` with
``batched=False`` over every frame -- about 5 ms per frame here, even for a state-only episode with no image column,
so writing shards capped the store at ~400 frames/s, far below what the learner ingests. The replacement does the
same thing (``embed_table_storage`` is a table-level function) in batches, and skips the map when no column needs
embedding. Output files are identical in content.
"""

from __future__ import annotations

_installed = False


def install_fast_embed_images() -> None:
    global _installed
    if _installed:
        return
    import datasets
    from datasets.table import embed_table_storage
    from lerobot.datasets import dataset_writer

    def embed_images(dataset: datasets.Dataset) -> datasets.Dataset:
        needs = any(isinstance(f, (datasets.Image, datasets.Sequence)) and _has_image(f)
                    for f in dataset.features.values())
        if not needs:
            return dataset
        fmt = dataset.format
        dataset = dataset.with_format("arrow").map(embed_table_storage, batched=True, batch_size=1000)
        return dataset.with_format(**fmt)

    dataset_writer.embed_images = embed_images
    _installed = True


def _has_image(feature) -> bool:
    import datasets

    if isinstance(feature, datasets.Image):
        return True
    inner = getattr(feature, "feature", None)
    return inner is not None and _has_image(inner)

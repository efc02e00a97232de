"""Instruction encoders for the ``task`` key: (B,) strings -> tokens (B, L, E) + pooled feature (B, E).

    transformer:  utf-8 bytes -> ids (byte + 2; 0 = pad, 1 = CLS first) -> embedding + position
                  -> pre-norm transformer encoder (padding masked) -> tokens; pooled = the CLS token
    embedding:    one learned vector per known task string (the vocabulary is saved in config.json)

A byte-level tokenizer ships with nothing and needs no vocabulary file, so any instruction can be
encoded, in any language, and a saved policy is self-contained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from robopolicy.encoders.config import LanguageEncoderConfig

PAD, CLS, BYTE_OFFSET = 0, 1, 2
VOCAB = 256 + BYTE_OFFSET


def as_strings(task: object, batch: int | None = None) -> list[str]:
    """The ``task`` entry of an observation as a list of B strings (a list, tuple, numpy array or one string)."""
    if isinstance(task, str):
        out = [task] * (batch or 1)
    elif isinstance(task, np.ndarray | Sequence):
        out = [str(t) for t in task]
    else:
        raise TypeError(f"task: expected (B,) instruction strings, got {type(task).__name__}")
    if batch is not None and len(out) != batch:
        raise ValueError(f"task: {len(out)} instructions for a batch of {batch}")
    return out


def byte_tokenize(texts: list[str], max_length: int, device: torch.device | str = "cpu") -> Tensor:
    """(B,) strings -> (B, max_length + 1) int64 ids: CLS, then utf-8 bytes + 2, right-padded with 0."""
    ids = torch.zeros(len(texts), max_length + 1, dtype=torch.long)
    ids[:, 0] = CLS
    for i, text in enumerate(texts):
        data = list(text.encode("utf-8")[:max_length])
        ids[i, 1 : 1 + len(data)] = torch.tensor(data, dtype=torch.long) + BYTE_OFFSET
    return ids.to(device)


class TextTransformer(nn.Module):
    """Byte tokens -> (tokens (B, L+1, E), pad mask (B, L+1) True at padding, pooled CLS (B, E))."""

    def __init__(self, config: LanguageEncoderConfig):
        super().__init__()
        self.max_length, self.out_dim = config.max_length, config.dim
        self.embed = nn.Embedding(VOCAB, config.dim, padding_idx=PAD)
        self.pos = nn.Parameter(torch.randn(1, config.max_length + 1, config.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(config.dim, config.heads, 4 * config.dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, task: object, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        device = self.pos.device
        if isinstance(task, Tensor):  # already tokenized by byte_tokenize
            ids = task.to(device)
            if ids.dim() != 2 or ids.shape[0] != batch or ids.shape[1] > self.max_length + 1:
                raise ValueError(f"task: token ids {tuple(ids.shape)}, expected (B={batch}, <= {self.max_length + 1})")
        else:
            ids = byte_tokenize(as_strings(task, batch), self.max_length, device)
        pad = ids == PAD
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]
        tokens = self.norm(self.encoder(x, src_key_padding_mask=pad))
        return tokens, pad, tokens[:, 0]


class TaskEmbedding(nn.Module):
    """A learned vector per task string of ``config.tasks``: (B,) strings or ids -> (B, 1, E) token, pooled (B, E)."""

    def __init__(self, config: LanguageEncoderConfig):
        super().__init__()
        if not config.tasks:
            raise ValueError("encoder.language.tasks: the embedding kind needs the list of task strings "
                             "(BC fills it from the dataset)")
        self.tasks, self.out_dim = list(config.tasks), config.dim
        self.index = {t: i for i, t in enumerate(self.tasks)}
        self.embed = nn.Embedding(len(self.tasks), config.dim)

    def forward(self, task: object, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        device = self.embed.weight.device
        if isinstance(task, Tensor):
            ids = task.to(device).long().view(-1)
        else:
            names = as_strings(task, batch)
            unknown = sorted({t for t in names if t not in self.index})
            if unknown:
                raise ValueError(f"task: unknown instruction(s) {unknown[:3]} for the learned task embedding; "
                                 f"known: {self.tasks[:10]}")
            ids = torch.tensor([self.index[t] for t in names], dtype=torch.long, device=device)
        pooled = self.embed(ids)
        return pooled.unsqueeze(1), torch.zeros(batch, 1, dtype=torch.bool, device=device), pooled


def make_language_encoder(config: LanguageEncoderConfig) -> nn.Module | None:
    if config.kind == "none":
        return None
    return TextTransformer(config) if config.kind == "transformer" else TaskEmbedding(config)

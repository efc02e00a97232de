"""``forward`` without ``nn.Module.__call__`` where no hook could tell the difference.

On a 2-core CPU each ``__call__`` costs a few microseconds of Python (hook dispatch), as much as a
batch-1 layer's kernel, and one policy step goes through ~6 of them. Modules with hooks of their own,
or any global module hook, still go through ``__call__`` so hooks keep firing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.modules import module as _module


def global_hooks() -> bool:
    """True while any global nn.Module hook is registered (then every module goes through __call__)."""
    g = _module
    return bool(g._global_forward_hooks or g._global_forward_pre_hooks or g._global_backward_hooks
                or g._global_backward_pre_hooks)


def has_hooks(m: nn.Module) -> bool:
    """Hooks of its own, or a compiled / traced call, which only __call__ honours."""
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                or m._compiled_call_impl is not None or torch._C._get_tracing_state())


def call(m: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``m(*args, **kwargs)``, skipping __call__'s hook machinery when there are no hooks to run."""
    if has_hooks(m) or global_hooks():
        return m(*args, **kwargs)
    return m.forward(*args, **kwargs)


def linear(m: nn.Linear, x: Tensor) -> Tensor:
    """``m(x)`` for an nn.Linear, as one F.linear call when nothing hooks it."""
    if type(m) is not nn.Linear or has_hooks(m) or global_hooks():
        return m(x)
    p = m._parameters
    return F.linear(x, p["weight"], p["bias"])

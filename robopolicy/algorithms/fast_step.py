"""The per-minibatch gradient clip and Adam step with less Python around the same kernels.

With PPO's small minibatches (32 rows) on CPU, ``clip_grad_norm_`` and ``Adam.step`` spend about as
long in Python bookkeeping (device/dtype grouping, per-tensor ``.to``, state look-ups, hooks) as in
their kernels. These helpers call the very same kernels (``_foreach_norm`` / ``_foreach_mul_``,
``_foreach_add_`` / ``_fused_adam_``) with the same arguments, and fall back to the torch functions
whenever the setting is not the plain one they reproduce.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import optimizer as _optim


def clip_grad_norm_fn(params: list[Tensor], max_norm: float) -> Callable[[], Tensor]:
    """``lambda: torch.nn.utils.clip_grad_norm_(params, max_norm)`` (2-norm; returns the norm before clipping).
    For parameters on one device and dtype it skips torch's per-call grouping (a ``.device`` / ``.dtype``
    look-up and a ``.to`` per gradient)."""
    if len({(p.device, p.dtype) for p in params}) != 1:
        return lambda: torch.nn.utils.clip_grad_norm_(params, max_norm)
    max_norm = float(max_norm)

    def clip() -> Tensor:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
        return total

    return clip


def adam_step_fn(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """``optimizer.step`` or, for a plain fused CPU Adam (no hooks, AMSGrad, maximize, decoupled weight
    decay, gradient scaling), an equivalent call of its kernels. Build one per update: it caches
    the optimizer's state tensors."""
    if not _plain_fused_adam(optimizer):
        return optimizer.step
    cache: dict[tuple[int, tuple[int, ...]], tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]] = {}
    state = optimizer.state

    def step() -> None:
        if _optim._global_optimizer_pre_hooks or _optim._global_optimizer_post_hooks:
            optimizer.step()
            return
        # Groups with the same hyperparameters (actor and critic at one lr) share one kernel call.
        calls: dict[tuple, tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]] = {}
        for gi, group in enumerate(optimizer.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            key = (gi, tuple(map(id, params)))
            lists = cache.get(key)
            if lists is None:
                if any(len(state.get(p, ())) == 0 for p in params):  # first step: Adam creates the state
                    optimizer.step()
                    return
                sts = [state[p] for p in params]
                lists = params, [s["exp_avg"] for s in sts], [s["exp_avg_sq"] for s in sts], [s["step"] for s in sts]
                cache[key] = lists
            hyper = (group["lr"], *group["betas"], group["weight_decay"], group["eps"])
            if hyper in calls:
                calls[hyper] = tuple(a + b for a, b in zip(calls[hyper], lists))  # type: ignore[assignment]
            else:
                calls[hyper] = lists
        with torch.no_grad():
            for (lr, beta1, beta2, wd, eps), (params, exp_avgs, exp_avg_sqs, steps) in calls.items():
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [], steps,
                                   amsgrad=False, lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd, eps=eps,
                                   maximize=False, grad_scale=None, found_inf=None)

    return step


def zero_grad_fn(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """``optimizer.zero_grad(set_to_none=True)``; for a plain fused Adam, the same loop without its profiler
    context and per-group checks."""
    if not _plain_fused_adam(optimizer):
        return lambda: optimizer.zero_grad(set_to_none=True)
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def zero_grad() -> None:
        for p in params:
            p.grad = None

    return zero_grad


def _plain_fused_adam(optimizer: torch.optim.Optimizer) -> bool:
    if type(optimizer) is not torch.optim.Adam or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
        return False
    if getattr(optimizer, "grad_scale", None) is not None or getattr(optimizer, "found_inf", None) is not None:
        return False
    kinds = set()
    for g in optimizer.param_groups:
        if not g.get("fused") or g["amsgrad"] or g["maximize"] or g["capturable"] or g["differentiable"]:
            return False
        if g.get("decoupled_weight_decay") or isinstance(g["lr"], Tensor) or any(isinstance(b, Tensor) for b in g["betas"]):
            return False
        kinds |= {(p.device.type, p.dtype) for p in g["params"]}
    return kinds <= {("cpu", torch.float32), ("cpu", torch.float64)} and len(kinds) <= 1

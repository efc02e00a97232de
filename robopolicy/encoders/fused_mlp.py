"""An MLP that runs as ONE autograd node: same modules and parameter names as nn.Sequential.

At the batch sizes of on-policy RL (32-64 rows) a 256x256 layer's matmul costs ~50-70 us on one CPU core,
but every torch op adds 3-8 us of dispatch and every autograd node 10-15 us more. A 3-layer MLP through
nn.Sequential records ~8 nodes (addmm, transpose, relu per layer); ``FusedMLP`` records one, whose backward
is written out by hand with the very kernels autograd would call (mm, sum, threshold_backward /
tanh_backward), so outputs and gradients are the same computation.

The layers stay ordinary ``nn.Linear`` / activation modules inside an ``nn.Sequential`` subclass, so
checkpoints (``net.0.weight`` ...) load unchanged and ``net[-1]`` still indexes the last layer. Any other
layout (other activations, hooks, layers without bias, replaced modules) runs nn.Sequential's forward.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

_ACTS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.Tanh: "tanh"}


def _act_(h: Tensor, act: str) -> Tensor:
    return h.relu_() if act == "relu" else h.tanh_()


class _MLPFunction(torch.autograd.Function):
    """Forward of Linear (-> act) ... ; the last layer has no activation when ``final_linear``."""

    @staticmethod
    def forward(ctx, x: Tensor, act: str, final_linear: bool, *wb: Tensor) -> Tensor:  # type: ignore[override]
        n = len(wb) // 2
        hs = [x]
        h = x
        for i in range(n):
            h = F.linear(h, wb[2 * i], wb[2 * i + 1])
            if i < n - 1 or not final_linear:
                h = _act_(h, act)  # in place: the pre-activation is not needed, the output gives the derivative
            hs.append(h)
        # Saved: the input, each layer's output (post-activation) except the last when it is linear, weights.
        ctx.act, ctx.final_linear, ctx.n = act, final_linear, n
        ctx.save_for_backward(*hs[: n if final_linear else n + 1], *wb[0::2])
        return h

    @staticmethod
    @once_differentiable  # double backward raises a clear error instead of a wrong result
    def backward(ctx, g: Tensor):  # type: ignore[override]
        n, act = ctx.n, ctx.act
        saved = ctx.saved_tensors
        hs, ws = saved[: len(saved) - n], saved[len(saved) - n :]
        need = ctx.needs_input_grad  # (x, act, final_linear, W0, b0, W1, b1, ...)
        grads: list[Tensor | None] = [None] * (2 * n)
        gx = None
        for i in reversed(range(n)):
            if i < n - 1 or not ctx.final_linear:
                out = hs[i + 1]
                g = torch.ops.aten.threshold_backward(g, out, 0) if act == "relu" else torch.ops.aten.tanh_backward(g, out)
            if need[3 + 2 * i]:
                a = hs[i]
                # (out, in) like the weight. MKL is ~3x slower for a narrow (256, 11) product than for its
                # transpose, so a narrow input layer computes (in, out) and transposes (AccumulateGrad copies).
                grads[2 * i] = a.t().mm(g).t() if a.shape[1] < g.shape[1] else g.t().mm(a)
            if need[4 + 2 * i]:
                grads[2 * i + 1] = g.sum(0)
            if i > 0:
                g = g.mm(ws[i])
            elif need[0]:
                gx = g.mm(ws[0])
        return (gx, None, None, *grads)


class FusedMLP(nn.Sequential):
    """``Linear, act, Linear, act, ... [, Linear]`` with act ReLU or Tanh, evaluated in one autograd node
    (or, without autograd, as in-place matmul + activation). Anything else falls back to nn.Sequential."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        plan = self._plan()
        if plan is None or x.dim() < 1:
            return super().forward(x)
        act, final_linear, wb = plan
        lead = x.shape[:-1]
        if x.dim() != 2:
            x = x.reshape(-1, x.shape[-1])
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in wb)):
            out = _MLPFunction.apply(x, act, final_linear, *wb)
        else:  # no graph to record: the same ops with in-place activations
            out, n = x, len(wb) // 2
            for i in range(n):
                out = F.linear(out, wb[2 * i], wb[2 * i + 1])
                if i < n - 1 or not final_linear:
                    out = _act_(out, act)
        return out if len(lead) == 1 else out.reshape(*lead, out.shape[-1])

    def _plan(self) -> tuple[str, bool, list[Tensor]] | None:
        """(activation, ends with a linear layer, [W0, b0, W1, b1, ...]) or None when not fusable."""
        mods = list(self._modules.values())
        if not mods:
            return None
        final_linear = len(mods) % 2 == 1
        act: str | None = None
        wb: list[Tensor] = []
        for i, m in enumerate(mods):
            if m._forward_hooks or m._forward_pre_hooks:
                return None
            if i % 2 == 0:
                if type(m) is not nn.Linear or m.bias is None:
                    return None
                wb += [m.weight, m.bias]
            else:
                a = _ACTS.get(type(m))
                if a is None or (act is not None and a != act):
                    return None
                act = a
        return (act or "relu"), final_linear, wb


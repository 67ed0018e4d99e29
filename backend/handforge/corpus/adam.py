"""Adam for the resolver's few hundred steps, without ``torch.optim``.

torch 2.13's ``torch.optim.Optimizer`` imports ``torch._dynamo`` on construction and on every
``step()`` (its ``_disable_dynamo`` wrappers), which costs over a second on first use: the demo and the
corpus paid it for an optimisation that takes less. This is the same update as ``torch.optim.Adam``'s
single-tensor path with its defaults (Kingma & Ba, https://arxiv.org/abs/1412.6980; no weight decay,
no amsgrad); a test checks that both give the same parameters step by step.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


class Adam:
    """``Adam([{"params": [...], "lr": ...}, ...])``: ``zero_grad()``, then ``step()`` after ``backward()``."""

    def __init__(self, groups: Iterable[dict[str, Any]], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.groups = [{"params": list(g["params"]), "lr": float(g["lr"])} for g in groups]
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.state: dict[torch.Tensor, tuple[torch.Tensor, torch.Tensor, list[int]]] = {}

    def zero_grad(self) -> None:
        for group in self.groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.beta1, self.beta2
        for group in self.groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p not in self.state:
                    self.state[p] = (torch.zeros_like(p), torch.zeros_like(p), [0])
                exp_avg, exp_avg_sq, count = self.state[p]
                count[0] += 1
                exp_avg.lerp_(grad, 1 - b1)
                exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                step_size = group["lr"] / (1 - b1 ** count[0])
                denom = (exp_avg_sq.sqrt() / (1 - b2 ** count[0]) ** 0.5).add_(self.eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)


__all__ = ["Adam"]

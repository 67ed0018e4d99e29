"""The resolver's Adam gives torch.optim.Adam's updates, without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import torch

from handforge.corpus.adam import Adam


def _run(make_optimizer, steps=25):
    torch.manual_seed(0)
    params = [torch.randn(4, 3, dtype=torch.float32, requires_grad=True) for _ in range(3)]
    opt = make_optimizer(params)
    target = torch.randn(4, 3)
    history = []
    for step in range(steps):
        opt.zero_grad()
        loss = sum(((p - target) ** 2 * (i + 1)).sum() for i, p in enumerate(params[:2] if step % 5 == 4 else params))
        loss.backward()  # every fifth step leaves the last parameter without a gradient
        opt.step()
        history.append([p.detach().clone() for p in params])
    return history


def test_matches_torch_optim_adam_step_by_step():
    def groups(params):
        return [{"params": params[:2], "lr": 0.05}, {"params": params[2:], "lr": 0.2}]

    ours = _run(lambda params: Adam(groups(params)))
    reference = _run(lambda params: torch.optim.Adam(groups(params)))
    for mine, theirs in zip(ours, reference):
        for a, b in zip(mine, theirs):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_does_not_import_torch_dynamo():
    code = ("import sys, torch\n"
            "from handforge.corpus.adam import Adam\n"
            "x = torch.zeros(3, requires_grad=True)\n"
            "opt = Adam([{'params': [x], 'lr': 0.1}])\n"
            "x.sum().backward(); opt.step()\n"
            "print('torch._dynamo' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"

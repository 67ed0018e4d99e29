"""A job cancelled between its denoising steps: the image engines' jobs (``image.generate``, ``image.transfer``)
report ``step k/n`` progress, and a cancel after the second must end the job before its last step."""

from __future__ import annotations

from handforge_shared.client import Cancelled, Progress, Result


def cancel_after_two_steps(client, kind: str, params: dict, arrays: dict, steps: int) -> None:
    """Submit ``kind`` with ``steps`` denoising steps, cancel it at its second step's progress, and assert that it
    ended cancelled after 2 to ``steps - 1`` steps."""
    job = client.submit(kind, params, arrays, timeout=600)
    seen = 0
    while True:
        for event in client.poll(timeout=30):
            if isinstance(event, Progress) and event.message.startswith("step"):
                seen += 1
                if seen == 2:
                    job.cancel()
            if isinstance(event, (Cancelled, Result)):
                assert isinstance(event, Cancelled) and 2 <= seen < steps
                return

"""Streaming models the streaming tests share: a talker whose generator's ``finally`` is
visible from outside the sandbox (``predict_single`` reports it, and it prints), and a model
that steps concurrent streams as one batch."""

from __future__ import annotations

import textwrap

__all__ = ["BATCH_SOURCE", "TALKER_SOURCE"]

TALKER_SOURCE = textwrap.dedent(
    """
    import time

    import torch
    from torch import nn


    class Talker(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))
            self.steps = 0
            self.closed = 0

        def predict_single(self, x):
            return {"steps": self.steps, "closed": self.closed}

        def predict_stream(self, x):
            if x == "forever":
                try:
                    while True:
                        self.steps += 1
                        time.sleep(0.02)
                        yield "tick"
                finally:
                    self.closed += 1
                    print(f"stream closed after {self.steps} chunks", flush=True)
            elif x == "boom":
                yield "a"
                raise ValueError("boom after one chunk")
            elif x == "stuck":
                yield "a"
                time.sleep(60)
            elif x == "slow":
                for i in range(100):
                    time.sleep(0.3)
                    yield i
            elif isinstance(x, str) and x.startswith("slowly:"):
                for ch in x[len("slowly:"):]:
                    time.sleep(0.15)
                    yield ch
            elif isinstance(x, dict):
                yield from ({"n": i, "t": torch.tensor([i])} for i in range(x["n"]))
            else:
                yield from str(x)
    """
)

BATCH_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Echoes(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def predict_single(self, x):
            return x

        def predict_stream_batch(self, inputs):
            for step in range(max(len(x) for x in inputs)):
                yield [
                    {"c": x[step], "batch": len(inputs)} if step < len(x) else None
                    for x in inputs
                ]
    """
)

"""How serving a model fails, in terms every backend raises and the HTTP layer maps to answers."""

from __future__ import annotations

import signal
from typing import Any

__all__ = [
    "StreamTimeout",
    "StreamUnsupported",
    "WorkerBusy",
    "WorkerCrashed",
    "WorkerError",
    "WorkerInputError",
    "WorkerLoadError",
    "WorkerMemoryLimit",
    "WorkerModelError",
    "WorkerOutputTooLarge",
    "WorkerRestarted",
    "WorkerTimeout",
]


class WorkerError(Exception):
    pass


class WorkerLoadError(WorkerError):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "the model failed to load")))
        self.error = error


class WorkerCrashed(WorkerError):
    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode
        if returncode is not None and returncode < 0:
            name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else ""
            how = f"was killed by signal {-returncode} {name}".rstrip()
            if name == "SIGXCPU":
                how += ": it used up its CPU time limit (--worker-cpu-seconds)"
        else:
            how = f"exited with code {returncode}"
        super().__init__(f"the model's worker process {how}")

    def detail(self) -> dict[str, Any]:
        rc = self.returncode
        return {
            "exit_code": rc if rc is not None and rc >= 0 else None,
            "signal": -rc if rc is not None and rc < 0 else None,
        }


class WorkerMemoryLimit(WorkerCrashed):
    """The memory watchdog killed the worker: say so, with the figures, not just 'signal 9'."""

    def __init__(self, returncode: int | None, used_mb: float, limit_mb: float) -> None:
        super().__init__(returncode)
        self.used_mb = used_mb
        self.limit_mb = limit_mb
        self.args = (
            f"the model's worker used {used_mb:.0f} MB of memory, over the {limit_mb:g} MB "
            "limit (--worker-memory-mb); it was stopped and will be replaced",
        )

    def detail(self) -> dict[str, Any]:
        return {
            **super().detail(),
            "reason": "memory",
            "used_mb": round(self.used_mb, 1),
            "limit_mb": self.limit_mb,
        }


class WorkerOutputTooLarge(WorkerCrashed):
    """The worker sent a frame over ``--worker-max-output-mb``: its own code never does, so
    model code wrote to the socket itself. The frame was refused unread and the worker stopped."""

    def __init__(self, returncode: int | None, size: int, limit: int) -> None:
        super().__init__(returncode)
        self.size_mb = size / (1 << 20)
        self.limit_mb = limit / (1 << 20)
        self.args = (
            f"the model's worker sent an answer of {self.size_mb:.0f} MB, over the "
            f"{self.limit_mb:g} MB limit (--worker-max-output-mb); it was not read, and the "
            "worker was stopped and will be replaced",
        )

    def detail(self) -> dict[str, Any]:
        return {
            **super().detail(),
            "reason": "output_too_large",
            "size_mb": round(self.size_mb, 1),
            "limit_mb": self.limit_mb,
        }


class WorkerTimeout(WorkerError):
    pass


class WorkerRestarted(WorkerError):
    """The worker went away while this request waited behind another one."""


class WorkerBusy(WorkerError):
    pass


class WorkerInputError(WorkerError):
    """Input the frame format cannot carry (nested too deep, for one)."""


class WorkerModelError(WorkerError):
    """The model's own code failed during a stream; ``error`` is its code, message, detail."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "the model failed")))
        self.error = error


class StreamTimeout(WorkerError):
    """A stream ran past the total stream timeout; the worker stopped it and lives on."""


class StreamUnsupported(WorkerError):
    """A stream was asked of a model without ``predict_stream``."""

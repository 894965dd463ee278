"""One time budget shared by every phase of a run, on the monotonic clock.

A probe makes one :class:`Deadline` from its ``timeout`` and hands it down: each request
asks :meth:`Deadline.left` for what it may still wait, so the run as a whole never
overruns. Kafka requests keep a floor (a request given 0 s cannot even fail cleanly) and a
grace when waiting for a future; HTTP phases turn an expired budget into their own error.
"""

from __future__ import annotations

import time


class DeadlineExceeded(Exception):
    """The run's budget is spent; a probe's run ends as ``error`` with this message."""


class Deadline:
    def __init__(self, timeout: float, *, floor: float = 0.0, grace: float = 0.0,
                 start: float | None = None) -> None:
        self.timeout = timeout
        self.floor = floor
        """The least :meth:`left` gives, even past the end."""
        self.grace = grace
        """What :meth:`wait_s` adds: waiting for a request that has its own timeout."""
        self.start = time.monotonic() if start is None else start

    @property
    def end(self) -> float:
        return self.start + self.timeout

    def remaining(self) -> float:
        """Seconds until the end; zero or less once it has passed."""
        return self.end - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def left(self) -> float:
        """Seconds to give the next call: what remains, at least ``floor``."""
        return max(self.floor, self.remaining())

    def budget(self, minimum: float = 0.0) -> float:
        """Seconds to give the next call, at least ``minimum``; raises
        :class:`DeadlineExceeded` once the budget is spent, so a run stops instead of
        starting a call it cannot wait for."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded(f"timed out after {self.timeout:g}s")
        return max(left, minimum)

    def wait_s(self) -> float:
        """Seconds to wait for a future: what remains plus the grace, never negative, so
        waiting on many futures after the end costs nothing more."""
        return max(0.0, self.remaining() + self.grace)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired_message(self, phase: str) -> str:
        return f"timed out after {self.timeout:g}s {phase}"

"""File-object adapters for the backup pipe: counting, hashing, progress."""

from __future__ import annotations

import hashlib
import io
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from controlplane.backups.blob import BlobWriter

ProgressFn = Callable[[str, int], None]
"""Called with (phase, cumulative bytes) as data flows; may raise to abort the run."""


class CountingReader(io.RawIOBase):
    """Reads from a pipe, counting bytes and reporting progress."""

    def __init__(self, raw: IO[bytes], phase: str, progress: ProgressFn | None) -> None:
        self.raw = raw
        self.phase = phase
        self.progress = progress
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        if self.progress is not None and n:
            self.progress(self.phase, self.count)
        return n


class HashingBlobWriter(io.RawIOBase):
    """sha256 + byte count of everything written, forwarded to a blob upload."""

    def __init__(self, target: BlobWriter) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.count = 0
        self.error: BaseException | None = None

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        try:
            self.target.write(data)
        except BaseException as exc:
            # Kept so the caller reports the storage error, not pyrage's generic one.
            self.error = exc
            raise
        self.sha.update(data)
        self.count += len(data)
        return len(data)


class HashingReader(io.RawIOBase):
    """Reads from another file object, hashing and counting what passes."""

    def __init__(self, raw: io.RawIOBase, phase: str, progress: ProgressFn | None) -> None:
        self.raw = raw
        self.phase = phase
        self.progress = progress
        self.sha = hashlib.sha256()
        self.count = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            n = self.raw.readinto(b) or 0
        except BaseException as exc:
            self.error = exc
            raise
        self.sha.update(bytes(b[:n]))
        self.count += n
        if self.progress is not None and n:
            self.progress(self.phase, self.count)
        return n


class SinkWriter(io.RawIOBase):
    """Writes to a pipe (or nowhere), counting bytes; remembers a broken pipe."""

    def __init__(self, target: IO[bytes] | None) -> None:
        self.target = target
        self.count = 0
        self.error: BaseException | None = None

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n = len(b)
        if self.target is not None:
            try:
                self.target.write(bytes(b))
            except BaseException as exc:
                self.error = exc
                raise
        self.count += n
        return n


class StderrProgress:
    """`phase  123.4 MiB  45.6 MiB/s` on stderr, at most twice a second (CLI only)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.last = 0.0
        self.phase = ""
        self.count = 0

    def __call__(self, phase: str, count: int) -> None:
        now = time.monotonic()
        if phase != self.phase:
            self.done()
            self.phase, self.t0 = phase, now
        self.count = count
        if now - self.last >= 0.5:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        rate = self.count / max(now - self.t0, 1e-6)
        self.stream.write(f"\r{self.phase:<10} {human_bytes(self.count):>10}  "
                          f"{human_bytes(int(rate))}/s   ")
        self.stream.flush()

    def done(self) -> None:
        if self.phase:
            self._line(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
            self.phase = ""


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"

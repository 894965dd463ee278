"""The check loop: each check on its own interval, started on a tick grid by a pool of
worker threads that run the probe themselves.

Why not APScheduler for check runs (it still runs the features' cron jobs, see
:mod:`controlplane.scheduler`): at fleet scale the fixed cost of a run is what the process
spends its CPU on. APScheduler woke up for every single run, handed it to a pool thread,
which started one more thread for the probe; and runs spread evenly over time each met cold
CPU caches. Here the runs due within one tick (0.5 s by default, at most a tenth of the
check's interval, and short enough that about :data:`BURST` runs fall due in one) start
together, and a worker runs the probe on its own thread. The TLS
fleet benchmark in ``bench/RESULTS.md`` has the figures.

A hung probe keeps its worker; the watchdog (the dispatcher thread, at least every
:data:`WATCH_S`) has it recorded as an error and adds a worker in its place, so the other
checks go on at the configured concurrency.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

WATCH_S = 0.25
"""How often the dispatcher looks for hung runs while it has nothing to start."""

BURST = 8
"""Runs per tick the grid aims at: the CPU saved by starting runs together levels off at a
few runs, while a long burst only makes its last runs start late."""

GROW_AFTER_S = 0.05
"""A run that waited this long for a slot widens the active limit (see :class:`CheckLoop`)."""


@dataclass(frozen=True)
class Schedule:
    """When one check runs: every ``interval_s``, each run up to ``jitter_s`` late on
    purpose (so checks on one interval do not march in step with their targets' cron)."""

    check_id: str
    interval_s: float
    jitter_s: float


@dataclass(order=True)
class _Due:
    at: float  # time.monotonic() of the run, on the tick grid
    seq: int
    check_id: str = field(compare=False)
    base: float = field(compare=False)  # the un-jittered time of this run


RunFn = Callable[[str, float], None]
"""Runs one check on a worker: (check id, the monotonic time it was due)."""


class CheckLoop:
    """One dispatcher thread and up to ``workers`` worker threads (started as needed).

    How many runs are active at once adapts between a floor (twice the CPUs) and
    ``workers``: a run that waits more than :data:`GROW_AFTER_S` for a slot widens the
    limit, and the limit narrows again, one slot per wake-up, while nothing waits. Quick
    probes (a TLS handshake on a near target) then share a few threads instead of dozens
    handing the GIL around at every C call, which cost about a fifth of the CPU per run
    (bench/RESULTS.md, tls_fleet); slow ones (a server taking seconds to answer) still get
    the full pool within 50 ms.
    """

    def __init__(self, schedules: list[Schedule], run: RunFn, in_time: Callable[[str], bool],
                 watchdog: Callable[[], list[str]], workers: int, tick_s: float,
                 spread_s: float) -> None:
        """``in_time(check_id)``: a run of the check is in flight within its time (a hung
        one is not: the next run is started and records that it was skipped). ``watchdog()``:
        records runs past their time, returns the ids of the checks newly hung."""
        self._schedules = {s.check_id: s for s in schedules}
        self._run, self._in_time, self._watchdog = run, in_time, watchdog
        self._capacity, self._tick_s, self._spread_s = workers, tick_s, spread_s
        rate = sum(1 / s.interval_s for s in schedules)  # runs per second, all checks
        self._burst_s = BURST / rate if rate else tick_s
        self._heap: list[_Due] = []
        self._seq = 0
        self._queue: queue.SimpleQueue[tuple[str, float] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued: set[str] = set()  # dispatched, not yet picked up by a worker
        self._held: set[str] = set()  # picked up, the worker waits for a slot
        self._total = self._idle = 0
        self._running: dict[str, int] = {}  # check id -> the worker running it
        self._floor = min(workers, 2 * (os.cpu_count() or 1))
        self._limit = self._floor  # runs active at once, adapted to waiting (class doc)
        self._active = 0
        self._waiting: dict[int, float] = {}  # worker -> since when it waits for a slot
        self._slot_free = threading.Condition(self._lock)
        self._replaced: set[int] = set()  # workers held by a hung run, replaced already
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        now = time.monotonic()
        for s in self._schedules.values():
            # First runs spread evenly over one whole interval (at most spread_s), so N
            # checks on one interval keep an even rate instead of firing in bursts forever.
            self._push(s, now + random.uniform(0, min(s.interval_s, self._spread_s)))
        self._thread = threading.Thread(target=self._main, name="check-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Start nothing more; workers finish the run in hand and exit."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            total = self._total
            self._slot_free.notify_all()
        for _ in range(total):
            self._queue.put(None)

    def grid_s(self, check_id: str) -> float:
        """The grid a check's runs start on: the tick, at most a tenth of its interval and
        at most the time in which all checks together fall due :data:`BURST` times."""
        return min(self._tick_s, self._schedules[check_id].interval_s / 10, self._burst_s)

    def _push(self, s: Schedule, base: float) -> None:
        grid = self.grid_s(s.check_id)
        at = base + (random.uniform(0, s.jitter_s) if s.jitter_s else 0.0)
        if grid > 0:
            at = math.ceil(at / grid) * grid
        self._seq += 1
        heapq.heappush(self._heap, _Due(at, self._seq, s.check_id, base))

    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                self._replace_hung(self._watchdog())
                self._dispatch_due(time.monotonic())
                waiting = self._adapt_limit(time.monotonic())
            except Exception:  # the loop must outlive any one bad run
                log.exception("check loop iteration failed")
                waiting = False
            wait = WATCH_S if not self._heap else min(
                WATCH_S, self._heap[0].at - time.monotonic())
            self._stop.wait(max(0.0, min(wait, GROW_AFTER_S) if waiting else wait))

    def _adapt_limit(self, now: float) -> bool:
        """Widen the active limit by the runs waiting too long for a slot, or narrow it by
        one while none waits; True if any run waits (look again soon)."""
        with self._lock:
            late = sum(now - since > GROW_AFTER_S for since in self._waiting.values())
            if late and self._limit < self._capacity:
                self._limit = min(self._capacity, self._limit + late)
                self._slot_free.notify(late)
            elif not self._waiting and self._limit > self._floor_now():
                self._limit -= 1
            return bool(self._waiting)

    def _floor_now(self) -> int:
        """The floor plus one slot per hung run still holding one (lock held)."""
        return self._floor + len(self._replaced)

    def _dispatch_due(self, now: float) -> None:
        while self._heap and self._heap[0].at <= now:
            due = heapq.heappop(self._heap)
            s = self._schedules[due.check_id]
            base = due.base + s.interval_s
            if base < now - s.interval_s:  # far behind (suspended, overloaded): catch up once
                skipped = math.floor((now - base) / s.interval_s)
                log.warning("check runs missed check=%s missed=%d", s.check_id, skipped)
                base += skipped * s.interval_s
            self._push(s, base)
            self._submit(due.check_id, due.at)

    def _submit(self, check_id: str, at: float) -> None:
        with self._lock:
            # Never two runs of one check at once: one waiting for a worker or one in
            # flight (within its time) takes this run's place, as APScheduler's coalesce did.
            if check_id in self._queued or check_id in self._held or self._in_time(check_id):
                log.debug("check run coalesced check=%s: the previous one is in flight",
                          check_id)
                return
            self._queued.add(check_id)
            spawn = len(self._queued) > self._idle and self._total < self._capacity
            if spawn:
                self._total += 1
                self._idle += 1
        self._queue.put((check_id, at))
        if spawn:
            self._spawn()

    def _replace_hung(self, hung: list[str]) -> None:
        """Each newly hung run holds its worker: start one in its place now (runs may be
        waiting for it); the held worker retires when its probe returns, so the pool
        returns to its size."""
        with self._lock:
            held = [self._running[c] for c in hung if c in self._running]
            self._replaced.update(held)
            self._capacity += len(held)
            self._limit += len(held)
            self._slot_free.notify(len(held))
            self._total += len(held)
            self._idle += len(held)
        for _ in held:
            self._spawn()

    def _spawn(self) -> None:
        """One more worker (counted by the caller, under the lock)."""
        threading.Thread(target=self._work, name="check-worker", daemon=True).start()

    def _work(self) -> None:
        me = threading.get_ident()
        while True:
            item = self._queue.get()
            if item is None:
                with self._lock:
                    self._total -= 1
                    self._idle -= 1
                return
            check_id, at = item
            if not self._take_slot(check_id, me):
                return
            try:
                self._run(check_id, at)
            except Exception:
                log.exception("check run failed check=%s", check_id)
            if not self._give_slot(check_id, me):
                return

    def _take_slot(self, check_id: str, me: int) -> bool:
        """Wait for an active slot; False if the loop stopped meanwhile (run dropped)."""
        with self._lock:
            self._queued.discard(check_id)
            self._held.add(check_id)
            self._idle -= 1
            self._waiting[me] = time.monotonic()
            while self._active >= self._limit and not self._stop.is_set():
                self._slot_free.wait()
            del self._waiting[me]
            self._held.discard(check_id)
            if self._stop.is_set():
                self._total -= 1
                return False
            self._active += 1
            # A run of a hung check (it records that it was skipped) must not take the hung
            # worker's place here: the watchdog finds that worker by check id.
            self._running.setdefault(check_id, me)
            return True

    def _give_slot(self, check_id: str, me: int) -> bool:
        """Free the slot; False if this worker retires (one took its place when its run
        hung)."""
        with self._lock:
            self._active -= 1
            self._slot_free.notify()
            if self._running.get(check_id) == me:
                del self._running[check_id]
            if me in self._replaced:
                self._replaced.discard(me)
                self._capacity -= 1
                self._limit = max(self._floor_now(), self._limit - 1)
                self._total -= 1
                return False
            self._idle += 1
            return True

"""A Kafka client that lives in a long-lived child process, one per check.

Why: librdkafka aborts the whole process (``rd_kafka_enq_once_del_source_return: Assertion
`eonce->refcnt > 0' failed``) when a broker drops certain requests in flight,
confluentinc/librdkafka#4605, unfixed in librdkafka 2.16. Brokers dropping requests is the
very thing these checks exist to see, and an abort in the control plane would take the
scheduler and every other check down with it. So each kafka_* check's client runs in a
child forked from a clean fork server; the parent sends it (method, args, timeout) and gets
the answer back over a local pipe. If the child dies, that run fails saying so and the next
run starts a new child.

What lives in the child is built by a module-level *factory* (picklable by name) from the
check's config, e.g. the lag reader or the in-process probe itself.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

from controlplane.kafka.client import (
    KafkaCheckConfig,
    KafkaUnavailable,
    gc_paused,
    unreachable_message,
)
from controlplane.probes.base import Outcome, ProbeError
from controlplane.results import Status

log = logging.getLogger(__name__)

Factory = Callable[[KafkaCheckConfig], Any]
"""Builds, in the child, the object whose methods the parent calls."""

# Imported once by the fork server, so a new child starts in milliseconds.
PRELOAD = ["controlplane.kafka.fetch", "controlplane.probes.kafka_cluster",
           "controlplane.probes.kafka_canary"]
_CONTEXT: ForkServerContext | None = None


def _context() -> ForkServerContext:
    global _CONTEXT
    if _CONTEXT is None:
        ctx = mp.get_context("forkserver")
        assert isinstance(ctx, ForkServerContext)
        ctx.set_forkserver_preload(PRELOAD)
        # Started now, when the checks are built, so the seconds a cold fork server takes
        # never count against a check's run.
        forkserver.ensure_running()
        _CONTEXT = ctx
    return _CONTEXT


class ClientDied(Exception):
    """The child process ended while it held a request."""


def _child_main(conn: Connection, factory: Factory, cfg_json: str, kind: str,
                env: dict[str, str], log_level: str | None) -> None:
    """The child: build the object, then answer (method, args) requests until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    os.environ.update(env)
    if log_level is not None:  # the parent's set-up: same format, level and redaction
        from controlplane.logs import setup_logging

        setup_logging(log_level)
    from controlplane.probes import probe_class

    cfg = probe_class(kind).config_model.model_validate_json(cfg_json)
    assert isinstance(cfg, KafkaCheckConfig)
    try:
        target = factory(cfg)
    except ProbeError as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ready",))
    # This process only ever runs one request at a time, so its garbage is collected
    # between requests, after the answer has gone, rather than in the middle of one.
    gc.disable()
    while True:
        gc.collect()
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away without saying goodbye
        if request is None:
            return
        method, args, timeout = request
        try:
            conn.send(("ok", getattr(target, method)(*args, timeout=timeout)))
        except KafkaUnavailable as exc:
            conn.send(("unavailable", str(exc), getattr(exc, "client_error", None)))
        except ProbeError as exc:
            conn.send(("error", str(exc)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class ChildClient:
    """The parent's handle on one check's child; started on first use, restarted after a
    death, stopped by :meth:`close`. Every call, start-up included, fits in its timeout."""

    START_TIMEOUT_S = 30.0
    # The child honours the call's timeout itself (plus 0.5 s grace); the margin covers
    # pickling 10,000 rows and stays inside the scheduler's 1 s hard-timeout margin.
    ANSWER_MARGIN_S = 0.8
    MIN_CALL_S = 0.5

    def __init__(self, cfg: KafkaCheckConfig, factory: Factory) -> None:
        self.cfg = cfg
        self.factory = factory
        _context()
        self.proc: BaseProcess | None = None
        self.conn: Connection | None = None
        self.ready = False
        self.started_at = 0.0

    def _start(self) -> None:
        ctx = _context()
        parent, child = ctx.Pipe()
        # The fork server's environment is the one it started with; the password variable
        # is read from ours now (over the local pipe, never logged).
        name = self.cfg.sasl_password_env
        env = {name: os.environ[name]} if name and name in os.environ else {}
        proc = ctx.Process(target=_child_main, name=f"kafka-client-{self.cfg.id}",
                           args=(child, self.factory, self.cfg.model_dump_json(),
                                 self.cfg.kind, env, _log_level()),
                           daemon=True)
        proc.start()
        child.close()
        self.proc, self.conn, self.ready = proc, parent, False
        self.started_at = time.monotonic()

    def _ready_conn(self, deadline: float) -> Connection:
        """The child's pipe once it is ready; a child still starting when the call's time
        is up keeps starting for the next run (a cold fork server takes seconds)."""
        if self.proc is not None and not self.proc.is_alive():
            log.warning("kafka client process had died check=%s exitcode=%s; restarting",
                        self.cfg.id, self.proc.exitcode)
            self.close()
        if self.conn is None:
            self._start()
        conn = self.conn
        assert conn is not None
        if self.ready:
            return conn
        give_up = self.started_at + self.START_TIMEOUT_S
        if not conn.poll(max(0.0, min(deadline, give_up) - time.monotonic())):
            if time.monotonic() >= give_up:
                self.close()
                raise ProbeError("the Kafka client process did not start within "
                                 f"{self.START_TIMEOUT_S:g}s")
            raise KafkaUnavailable("the Kafka client process was still starting when the "
                                   "check's timeout ran out; it goes on for the next run")
        answer = self._recv(conn)
        if answer[0] == "error":
            self.close()
            raise ProbeError(answer[1])
        self.ready = True
        log.info("kafka client process started check=%s pid=%s",
                 self.cfg.id, self.proc.pid if self.proc else None)
        return conn

    def call(self, method: str, args: tuple[Any, ...], timeout: float) -> Any:
        """``target.method(*args, timeout=left)`` in the child, ``left`` being what start-up
        left of ``timeout``. KafkaUnavailable when no answer comes in time (the child is
        then killed), ClientDied when it dies."""
        deadline = time.monotonic() + timeout
        conn = self._ready_conn(deadline)
        left = deadline - time.monotonic()
        if left < self.MIN_CALL_S:  # too little to do anything useful, or to fit the margin
            raise KafkaUnavailable("the Kafka client process took the check's timeout to "
                                   "start; it is ready for the next run")
        try:
            conn.send((method, args, left))
        except OSError:  # it died between runs, after the liveness check
            raise ClientDied(self._reap()) from None
        if not conn.poll(left + self.ANSWER_MARGIN_S):
            self.kill()
            raise KafkaUnavailable("no answer within the check's timeout (the client "
                                   "process was stopped and restarts on the next run)")
        with gc_paused():  # unpickling 10,000 rows would trigger collections that find nothing
            answer = self._recv(conn)
        if answer[0] == "ok":
            return answer[1]
        if answer[0] == "unavailable":
            exc = KafkaUnavailable(answer[1])
            exc.client_error = answer[2]  # type: ignore[attr-defined]
            raise exc
        raise ProbeError(answer[1])

    def _recv(self, conn: Connection) -> Any:
        try:
            return conn.recv()
        except (EOFError, OSError):
            raise ClientDied(self._reap()) from None

    def _reap(self) -> str:
        """The dead child's exit, in words; forgets it."""
        code = None
        if self.proc is not None:
            self.proc.join(5)
            code = self.proc.exitcode
        self.close()
        return exit_text(code)

    def kill(self) -> None:
        """Stop the child at once (it is stuck: asking it nicely would cost time)."""
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
        self.close()

    def close(self) -> None:
        conn, proc = self.conn, self.proc
        self.conn = self.proc = None
        self.ready = False
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        if proc is not None:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def _log_level() -> str | None:
    """The root logger's level name when this process has set up logging, else None."""
    root = logging.getLogger()
    return logging.getLevelName(root.level) if root.handlers else None


def exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def died_message(what: str, bootstrap: str, exc: ClientDied) -> str:
    """The one message every kafka_* check gives when its client process died."""
    return (f"the Kafka client process died ({exc}) while {what} {bootstrap}; librdkafka "
            "aborts when a broker drops a request mid-flight "
            "(confluentinc/librdkafka#4605); a new one starts on the next run")


class HostedProbe:
    """In the child: the check's own probe, its client in the child's process."""

    def __init__(self, cfg: KafkaCheckConfig) -> None:
        from controlplane.probes import probe_class

        self.probe = probe_class(cfg.kind)(cfg.model_copy(update={"isolate_client": False}))

    def check(self, state: Any, *, timeout: float) -> tuple[Outcome, Any]:
        """One run within ``timeout`` (what start-up left), from the parent's copy of what
        the probe keeps between runs; returns the outcome and that state, updated."""
        probe = self.probe
        probe.config = probe.config.model_copy(update={"timeout": timeout})
        stateful = hasattr(probe, "get_state")
        if stateful and state is not None:
            probe.set_state(state)  # type: ignore[attr-defined]
        outcome = probe.check()
        return outcome, probe.get_state() if stateful else None  # type: ignore[attr-defined]


class ProbeInChild(ChildClient):
    """A whole probe in the child: ``check()`` runs there and its Outcome comes back. What
    the probe keeps between runs (``get_state``/``set_state``: brokers seen, DLQ offsets)
    is copied back here after each run and handed to a new child, so nothing is lost."""

    def __init__(self, cfg: KafkaCheckConfig, doing: str) -> None:
        super().__init__(cfg, HostedProbe)
        self.doing = doing
        """What the check was doing, for the message when the child dies."""
        self.state: Any = None

    def check(self) -> Outcome:
        try:
            outcome, self.state = self.call("check", (self.state,), self.cfg.timeout)
        except KafkaUnavailable as exc:
            return Outcome(Status.FAILING, unreachable_message(
                self.cfg.bootstrap, str(exc), getattr(exc, "client_error", None)))
        except ClientDied as exc:
            return Outcome(Status.FAILING, died_message(self.doing, self.cfg.bootstrap, exc))
        assert isinstance(outcome, Outcome)
        return outcome

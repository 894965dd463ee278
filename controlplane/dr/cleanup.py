"""What a killed drill leaves behind: a ``running`` row and a scratch database.

A drill that outlived its timeout cannot still be running (its own watchdog would have
stopped it), so its row is marked failed ("interrupted"); scratch databases of this
component that no running drill owns are dropped. Run at start-up and before each drill.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from sqlalchemy import select

from controlplane.backups import catalog, postgres
from controlplane.backups.catalog import DrillRow
from controlplane.backups.config import BackupComponentConfig
from controlplane.results import utcnow
from controlplane.store import Store

log = logging.getLogger(__name__)


def scratch_prefix(component: str) -> str:
    return f"cp_drill_{component.replace('-', '_')}_"


def scratch_name_re(component: str) -> re.Pattern[str]:
    """Exactly this component's scratch names (``app`` never matches ``app-v2``'s)."""
    return re.compile(re.escape(scratch_prefix(component)) + r"\d{14}_\d+")


def admin_dsn(cfg: BackupComponentConfig) -> str:
    return (cfg.drill.server_dsn.get_secret_value() if cfg.drill.server_dsn
            else cfg.source_dsn())


def fail_stale_drills(store: Store, component: str, timeout: float) -> list[int]:
    """Mark ``running`` drills started more than ``timeout`` ago failed; return their ids."""
    now = utcnow()
    cutoff = now - timedelta(seconds=timeout)
    with store.session() as s:
        rows = list(s.scalars(select(DrillRow).where(
            DrillRow.component == component, DrillRow.status == catalog.RUNNING)))
        stale = [r for r in rows if catalog.aware(r.started_at) < cutoff]
        for row in stale:
            row.status, row.failed_step, row.finished_at = catalog.FAILED, "interrupted", now
            row.message = (f"interrupted: still marked running {timeout:g}s (backups."
                           f"components.{component}.drill.timeout) after it started, so the "
                           "process running it stopped or crashed; its scratch database is "
                           "dropped")
            log.warning("stale drill marked failed component=%s drill_id=%d started_at=%s "
                        "scratch_db=%s", component, row.id, catalog.aware(row.started_at)
                        .isoformat(), row.scratch_db)
        return [r.id for r in stale]


def drop_leftover_scratch(store: Store, component: str, dsn: str) -> list[str]:
    """Drop this component's scratch databases that no running drill owns; return them."""
    with store.session() as s:
        owned = set(s.scalars(select(DrillRow.scratch_db).where(
            DrillRow.component == component, DrillRow.status == catalog.RUNNING)))
    pattern = scratch_name_re(component)
    leftovers = [name for name in postgres.database_names(dsn, scratch_prefix(component))
                 if pattern.fullmatch(name) and name not in owned]
    for name in leftovers:
        postgres.drop_database(dsn, name)
        log.warning("dropped leftover scratch database component=%s db=%s", component, name)
    return leftovers


def try_drop_leftover_scratch(store: Store, component: str, dsn: str) -> None:
    """:func:`drop_leftover_scratch`, a failure logged (the next drill tries again)."""
    try:
        drop_leftover_scratch(store, component, dsn)
    except Exception as exc:
        log.warning("could not look for leftover scratch databases component=%s error=%s; "
                    "drop databases named %s* by hand if any remain", component,
                    _first_line(exc), scratch_prefix(component))


def clean_up(store: Store, component: str, cfg: BackupComponentConfig) -> None:
    """Both clean-ups (at start-up); failures are logged, never raised."""
    try:
        fail_stale_drills(store, component, cfg.drill.timeout)
    except Exception:
        log.exception("could not check for stale drills component=%s", component)
    try_drop_leftover_scratch(store, component, admin_dsn(cfg))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

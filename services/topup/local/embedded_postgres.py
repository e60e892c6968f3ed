"""An embedded PostgreSQL server (the `pgserver` wheel) in the data folder.

pgserver stops its server only from an atexit handler, and only when no other process it has seen
still holds it, so a process killed by a signal leaves Postgres running. We take over the
life-cycle: whoever starts the server stops it (`pg_ctl stop -m fast`) in a `finally`, and
callers turn SIGTERM into a normal exit so that `finally` runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psutil

from topup.settings import Settings

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A running embedded server: its connection URL, and whether this process started it."""

    def __init__(self, pgdata: Path) -> None:
        from pgserver import get_server
        from pgserver.utils import PostmasterInfo

        pgdata = pgdata.expanduser().resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._owner_file = pgdata.parent / "postgres.owner"
        running = PostmasterInfo.read_from_pgdata(pgdata)
        # Ours to stop if nothing runs, or if what runs was started by a process that died
        # without stopping it (killed with SIGKILL): adopt it.
        self.owned = running is None or not running.is_running() or self._orphaned()
        self._server = get_server(pgdata, cleanup_mode=None)
        if self.owned:
            # pgserver may hand back its handle from earlier in this process, which knows
            # nothing of the server having stopped since; this (re)reads postmaster.pid and
            # starts the server when it is not running.
            self._server.ensure_postgres_running()
            self._owner_file.write_text(str(os.getpid()))
        self.pgdata = pgdata
        self.url = self._server.get_uri()

    def _orphaned(self) -> bool:
        try:
            owner = int(self._owner_file.read_text())
        except (OSError, ValueError):
            return False
        return owner != os.getpid() and not psutil.pid_exists(owner)

    def stop(self) -> None:
        """Stop the server if this process started it; a server another process started stays."""
        if not self.owned:
            return
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        info = self._server.get_postmaster_info()
        if info.process is None or not info.process.is_running():
            return
        log.info("stopping embedded postgres in %s", self.pgdata)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user)
        self._owner_file.unlink(missing_ok=True)
        self.owned = False


@contextlib.contextmanager
def embedded_postgres(pgdata: Path) -> Iterator[EmbeddedPostgres]:
    """Start (or join) the embedded server for the block; stop it after if this block started it."""
    server = EmbeddedPostgres(pgdata)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """Settings whose `database_url` is set: the configured one, or an embedded server's."""
    if settings.database_url is not None:
        yield settings
        return
    with embedded_postgres(Path(settings.data_dir) / "postgres") as server:
        yield msgspec.structs.replace(settings, database_url=server.url)

"""PostgreSQL/PostGIS backend of the alert store (``postgresql://...``), same behaviour as SQLite.

* Geometry in a PostGIS ``geometry(Geometry, 4326)`` column with a GiST index; bbox queries use
  ``&&`` (index) and ``ST_Intersects`` (exact), the same semantics as the SQLite backend.
* Write transactions run in READ COMMITTED and first lock the ``seq`` counter row
  (``SELECT ... FOR UPDATE``), held to commit: concurrent writers queue there, so ``seq`` values
  become visible in increasing order and the feed never skips a late-committing row (see
  :mod:`rsmon.alerts.store`). Migrations take a transaction-level advisory lock.
* Read requests run in ``REPEATABLE READ READ ONLY`` so count, page and feed position share one
  snapshot. Connections come from a psycopg pool (``pip install rsmon[postgis]``).
"""

from __future__ import annotations

import contextlib
import logging
import re

from rsmon.alerts.errors import StoreError
from rsmon.alerts.store import AlertQuery, AlertStore, _bbox_parts, _Tx

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x72736D6F6E  # "rsmon": advisory lock key for migrations


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


class PostgresStore(AlertStore):
    dialect = "postgres"
    placeholder = "%s"
    geom_column = "geom"
    geom_value = "ST_GeomFromWKB(?, 4326)"

    def __init__(self, url: str, *, pool_size: int = 8):
        super().__init__(_redact(url))
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise StoreError("PostgreSQL alert store needs psycopg: pip install 'rsmon[postgis]'") from None
        self._psycopg = psycopg
        conninfo = url.replace("postgres://", "postgresql://", 1)
        try:  # one direct connection first: fails fast with the server's own message
            psycopg.connect(conninfo, connect_timeout=10).close()
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: cannot connect ({' '.join(str(exc).split())})") from None
        try:
            self._pool = ConnectionPool(conninfo, min_size=1, max_size=pool_size, open=True, timeout=30,
                                        kwargs={"autocommit": False})
            self._pool.wait(timeout=15)
        except Exception as exc:  # psycopg_pool.PoolTimeout, OperationalError
            with contextlib.suppress(Exception):
                self._pool.close()
            raise StoreError(f"{self.url}: cannot connect ({exc})") from None
        try:
            self._migrate()
        except psycopg.Error as exc:
            self.close()
            hint = " (is the PostGIS extension installed on the server?)" if "postgis" in str(exc).lower() else ""
            raise StoreError(f"{self.url}: cannot migrate the alert store ({exc}){hint}") from None

    @contextlib.contextmanager
    def _transaction(self, first: str | None):
        psycopg = self._psycopg
        try:
            with self._pool.connection() as conn:
                if first:
                    conn.execute(first)
                yield _Tx(conn, "%s")
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.url}: {exc}") from None

    def _read(self):
        return self._transaction("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def _write(self, *, sequenced: bool = True):
        return self._transaction("SELECT value FROM rsmon_counters WHERE name = 'seq' FOR UPDATE"
                                 if sequenced else None)

    def _migration_lock(self, tx: _Tx) -> None:
        tx.execute(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")

    def _migrate(self) -> None:
        # the counter row does not exist before migration 1, so migrate unsequenced
        super()._migrate()

    def _spatial(self, q: AlertQuery, attributes: bool):
        clauses, params = [], []
        if q.bbox is not None:
            boxes = []
            for minx, miny, maxx, maxy in _bbox_parts(q.bbox):
                # ``@``: the alert's (outward-rounded) bounding box lies inside the query box, so it
                # intersects without a geometry test; only alerts across an edge get ST_Intersects
                boxes.append("(a.geom && ST_MakeEnvelope(?, ?, ?, ?, 4326) AND "
                             "(a.geom @ ST_MakeEnvelope(?, ?, ?, ?, 4326) OR "
                             "ST_Intersects(a.geom, ST_MakeEnvelope(?, ?, ?, ?, 4326))))")
                params += [minx, miny, maxx, maxy] * 3
            clauses.append("(" + " OR ".join(boxes) + ")")
        if q.days is not None:
            first, last = q.days
            if last is not None:
                clauses.append("a.first_day <= ?")
                params.append(last)
            if first is not None:
                clauses.append("a.last_day >= ?")
                params.append(first)
        return "alerts a", clauses, params

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pool.close()

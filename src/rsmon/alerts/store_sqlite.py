"""SQLite backend of the alert store: one file, WAL, R*Tree over lon, lat and detection days.

* WAL journal: readers never block the writer or each other, and a killed process (SIGKILL, power
  cut with ``synchronous=FULL``) leaves the last committed state; uncommitted work is rolled back.
* One connection per thread (uvicorn runs handlers in a thread pool); every request is one
  transaction (``BEGIN`` for reads, ``BEGIN IMMEDIATE`` for writes, which takes SQLite's single
  writer lock up front, so ``seq`` values commit in order).
* Spatial queries go through a 3-D R*Tree (lon, lat, days) whose float32 boxes are rounded outwards;
  the exact test then uses the alert's double bounds, and only alerts whose bounds are not inside
  the query box are tested geometrically (shapely, registered as a SQL function).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

import shapely

from rsmon.alerts.errors import StoreError
from rsmon.alerts.store import AlertQuery, AlertStore, _bbox_parts, _Tx

log = logging.getLogger(__name__)

#: Day bounds for open datetime intervals in the R*Tree (float32-exact integers).
_MIN_DAY, _MAX_DAY = -1_000_000, 1_000_000


def _intersects(wkb, minx, miny, maxx, maxy) -> int:
    """SQL function ``rsmon_intersects(wkb, box)``: exact geometry/box intersection (1 or 0)."""
    geom = shapely.from_wkb(wkb)
    return int(shapely.intersects(geom, shapely.box(minx, miny, maxx, maxy)))


class SQLiteStore(AlertStore):
    dialect = "sqlite"
    geom_column = "wkb"
    blob_columns = ("wkb", "feature")

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0):
        super().__init__(url)
        self.path = Path(url[len("sqlite:///"):])
        if not str(self.path) or str(self.path) == ".":
            raise StoreError(f"{url}: no file path after sqlite:///")
        if not self.path.parent.is_dir():
            raise StoreError(f"{url}: folder {self.path.parent} does not exist")
        self._busy_ms = int(busy_timeout_s * 1000)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(f"{url}: cannot open as an alert store ({exc})") from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"{self.url}: store is closed")
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=self._busy_ms / 1000)
                conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(f"{self.url}: cannot switch to WAL journal mode (got {mode})")
                # FULL: a committed decision survives a power cut, not only a killed process
                conn.execute("PRAGMA synchronous = FULL")
                # reads through the OS page cache without copies; a modest private cache per thread
                conn.execute("PRAGMA mmap_size = 1073741824")
                conn.execute("PRAGMA cache_size = -16000")
                conn.create_function("rsmon_intersects", 5, _intersects, deterministic=True)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.url}: cannot open ({exc})") from None
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def _transaction(self, begin: str):
        conn = self._conn()
        try:
            conn.execute(begin)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.url}: {exc}") from None
        try:
            yield _Tx(conn, "?")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise StoreError(f"{self.url}: commit failed ({exc})") from None

    def _read(self):
        return self._transaction("BEGIN")

    def _write(self, *, sequenced: bool = True):
        return self._transaction("BEGIN IMMEDIATE")

    def _after_insert(self, tx: _Tx, pk: int, row: dict) -> None:
        tx.execute("INSERT INTO alerts_rtree (pk, minx, maxx, miny, maxy, min_day, max_day) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (pk, row["minx"], row["maxx"], row["miny"], row["maxy"], row["first_day"], row["last_day"]))

    def _after_update(self, tx: _Tx, pk: int, row: dict) -> None:
        tx.execute("UPDATE alerts_rtree SET minx = ?, maxx = ?, miny = ?, maxy = ?, min_day = ?, max_day = ? "
                   "WHERE pk = ?", (row["minx"], row["maxx"], row["miny"], row["maxy"], row["first_day"],
                                    row["last_day"], pk))

    def _spatial(self, q: AlertQuery, attributes: bool):
        if q.bbox is None and q.days is None:
            return "alerts a", [], []
        # Without attribute filters the R*Tree answers alone: it is then named ``a`` (its ``pk``
        # column is the alerts' key); otherwise it drives a join to the alerts (CROSS JOIN keeps
        # that order).
        r = "r" if attributes else "a"
        clauses, params = [], []
        if q.bbox is not None:
            parts = _bbox_parts(q.bbox)
            if len(parts) == 1:
                minx, _, maxx, _ = parts[0]
                clauses.append(f"{r}.minx <= ? AND {r}.maxx >= ?")
                params += [maxx, minx]
            clauses.append(f"{r}.miny <= ? AND {r}.maxy >= ?")
            params += [q.bbox[3], q.bbox[1]]
            # The R*Tree's float32 boxes contain the true bounds (rounded outwards): a box inside
            # the query box intersects it; the few that straddle an edge get the exact test.
            exact = []
            for minx, miny, maxx, maxy in parts:
                exact.append(f"({r}.maxx >= ? AND {r}.minx <= ? AND {r}.maxy >= ? AND {r}.miny <= ? AND "
                             f"({r}.minx >= ? AND {r}.maxx <= ? AND {r}.miny >= ? AND {r}.maxy <= ? "
                             f"OR rsmon_intersects((SELECT wkb FROM alert_features WHERE pk = {r}.pk), ?, ?, ?, ?)))")
                params += [minx, maxx, miny, maxy, minx, maxx, miny, maxy, minx, miny, maxx, maxy]
            clauses.append("(" + " OR ".join(exact) + ")")
        if q.days is not None:
            first, last = q.days
            clauses.append(f"{r}.min_day <= ? AND {r}.max_day >= ?")
            params += [_MAX_DAY if last is None else last, _MIN_DAY if first is None else first]
        if not attributes:
            return "alerts_rtree a", clauses, params
        return "alerts_rtree r CROSS JOIN alerts a", ["a.pk = r.pk", *clauses], params

    def _analyze(self) -> None:
        # without statistics SQLite may scan by status (every alert is "new") instead of redline
        with self._write(sequenced=False) as tx:
            tx.execute("ANALYZE")

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result (``ok`` when sound)."""
        conn = self._conn()
        return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()

"""The alert store: one interface, two backends (SQLite + R*Tree by default, PostgreSQL/PostGIS by URL).

:func:`open_store` picks the backend from the URL (``sqlite:///PATH`` or ``postgresql://...``),
creates the store if needed and applies pending migrations (:mod:`rsmon.alerts.migrations`).
Everything else, including the SQL of every query, is shared here; the backends supply
transactions, the spatial part of a query and how geometry is stored.

Change sequence
---------------
Every write of an alert (insert, re-detection, status change) gives it the next value of a
per-store counter, ``seq``, in the same transaction. The incremental feed (``updated_since``) is
ordered by ``seq``, not by a timestamp: clocks collide and transactions commit out of order. For a
feed that never skips a row, a row with a larger ``seq`` must never become visible before one with
a smaller ``seq``. Every write transaction therefore takes the writers' lock *first* and holds it to
commit: SQLite has a single writer (``BEGIN IMMEDIATE``, WAL); on PostgreSQL the counter row is read
``FOR UPDATE`` at the start of the transaction, so concurrent writers queue on that row lock and
commit in ``seq`` order. Alert writes are rare (imports, interpreters' decisions), so serialising
them costs nothing measurable, and unlike a "serve only rows below the oldest running transaction"
horizon it needs no knowledge of other sessions. Readers take one snapshot per request (a SQLite
read transaction, PostgreSQL ``REPEATABLE READ``), so ``numberMatched``, the page and the feed
cursor agree.

The feed has "changes feed" semantics (CouchDB ``_changes``): an alert appears once per pass at its
latest version; a version superseded before the reader reached it is not served separately, and
the reader still ends with every alert's latest version, each version at most once.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import math
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import shapely

from rsmon.alerts.accounts import KeyStore, Webhook, WebhookStore
from rsmon.alerts.errors import NotFoundError, PreconditionFailedError, StoreError
from rsmon.alerts.lifecycle import Status, check_transition
from rsmon.alerts.migrations import LATEST, MIGRATIONS
from rsmon.alerts.schema import (
    DETECTION_FIELDS,
    STATUS_FIELDS,
    Alert,
    AlertInput,
    day_number,
    feature_json,
    geometry_json,
    utc_now,
)
from rsmon.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["AlertQuery", "AlertPage", "AlertStore", "AuditEntry", "UpsertResult", "Webhook", "open_store"]

_DETECTION = tuple(DETECTION_FIELDS)
#: Up to this many matches, one query yields both numberMatched and the page.
_FEW = 5000
_QA = ", ".join(f'a."{n}"' for n in _DETECTION)


@dataclass(frozen=True)
class AlertQuery:
    """Filters and position of one page of alerts.

    ``bbox`` is ``(minx, miny, maxx, maxy)`` in degrees (``minx > maxx`` crosses the antimeridian);
    ``days`` an inclusive ``(first, last)`` range of day numbers (:func:`~rsmon.alerts.schema.day_number`,
    None = open) that the detection period ``first_detected..last_detected`` must overlap.
    ``after`` is the position: the last row key for pages, the last ``seq`` for the feed.
    """

    bbox: tuple[float, float, float, float] | None = None
    days: tuple[int | None, int | None] | None = None
    redline_ids: frozenset[str] | None = None
    classes: frozenset[str] | None = None
    statuses: frozenset[str] | None = None
    min_confidence: int | None = None
    limit: int = 10
    after: int = 0
    feed: bool = False


@dataclass(frozen=True)
class PageRow:
    """One alert of a page: row key, change sequence numbers (feed pages only, else 0), feature text."""

    pk: int
    seq: int
    created_seq: int
    feature: str


@dataclass(frozen=True)
class AlertPage:
    """A page: rows, the count of all matches, whether more follow, and (feed) the resume position."""

    rows: list[PageRow]
    number_matched: int
    more: bool
    next_after: int | None
    feed_position: int | None = None


@dataclass
class UpsertResult:
    """What an upsert did: ids inserted, updated (re-detections), unchanged, stale (older than stored)."""

    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.inserted)} new, {len(self.updated)} updated, {len(self.unchanged)} unchanged"
                + (f", {len(self.stale)} older than stored (kept stored)" if self.stale else ""))


@dataclass(frozen=True)
class AuditEntry:
    alert_id: str
    version: int
    action: str
    actor: str
    at: str
    reason: str | None
    changes: dict | None

    def to_dict(self) -> dict:
        return {"alert_id": self.alert_id, "version": self.version, "action": self.action, "actor": self.actor,
                "at": self.at, "reason": self.reason, "changes": self.changes}


class _Tx:
    """A transaction's cursor with ``?`` placeholders on every backend."""

    def __init__(self, conn, placeholder: str):
        self._conn = conn
        self._ph = placeholder

    def execute(self, sql: str, params: Sequence[Any] = ()):
        if self._ph != "?":
            sql = sql.replace("?", self._ph)
        return self._conn.execute(sql, tuple(params))

    def one(self, sql: str, params: Sequence[Any] = ()):
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()):
        return self.execute(sql, params).fetchall()


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _geometry_text(feature: str) -> str:
    """The geometry member of a cached feature (built by :func:`feature_json`, so found by position)."""
    start = feature.index(',"geometry":') + len(',"geometry":')
    return feature[start:feature.index(',"properties":', start)]


class _Sequence:
    """Hands out ``seq`` values inside a write transaction (which holds the writers' lock)."""

    def __init__(self, tx: _Tx):
        self._tx = tx
        self.start = self.last = tx.one("SELECT value FROM rsmon_counters WHERE name = 'seq'")[0]

    def next(self) -> int:
        self.last += 1
        return self.last

    def save(self) -> None:
        if self.last != self.start:
            self._tx.execute("UPDATE rsmon_counters SET value = ? WHERE name = 'seq'", (self.last,))


def _differs(old, new) -> bool:
    """A detection value changed; reals within 1e-9 relative are equal (0.30000000000000004 in a
    GeoPackage is 0.3 in GeoJSON: one detection run, two files)."""
    if isinstance(old, float) and isinstance(new, (int, float)) and old is not None:
        return not math.isclose(old, new, rel_tol=1e-9, abs_tol=1e-12)
    return old != new


def _geometry_differs(old: str, new: str) -> bool:
    """Geometries differ beyond rounding (reprojected by GDAL or by pyproj, the 7th decimal may
    differ by one: 1.5e-7 degrees, about 2 cm)."""
    if old == new:
        return False
    a = shapely.from_geojson(old)
    b = shapely.from_geojson(new)
    if a.geom_type != b.geom_type or shapely.get_num_coordinates(a) != shapely.get_num_coordinates(b):
        return True
    ca, cb = shapely.get_coordinates(a), shapely.get_coordinates(b)
    return bool(np.abs(ca - cb).max() > 1.5e-7)


def _bbox_parts(bbox) -> list[tuple[float, float, float, float]]:
    minx, miny, maxx, maxy = bbox
    if minx <= maxx:
        return [(minx, miny, maxx, maxy)]
    return [(minx, miny, 180.0, maxy), (-180.0, miny, maxx, maxy)]  # crosses the antimeridian


class AlertStore(KeyStore, WebhookStore, ABC):
    """Alert store interface; :func:`open_store` returns one of its backends."""

    dialect: str = ""
    placeholder: str = "?"
    #: the geometry column written by ``_row`` and its placeholder; columns of ``alert_features``
    geom_column: str = ""
    geom_value: str = "?"
    blob_columns: tuple[str, ...] = ("feature",)

    def __init__(self, url: str):
        self.url = url
        self.store_id = ""
        self._counts: dict[tuple, int] = {}

    # ---- backend hooks -------------------------------------------------------------------
    @abstractmethod
    def _read(self) -> contextlib.AbstractContextManager[_Tx]:
        """A read-only transaction on one consistent snapshot."""

    @abstractmethod
    def _write(self, *, sequenced: bool = True) -> contextlib.AbstractContextManager[_Tx]:
        """A write transaction; ``sequenced`` takes the writers' lock that orders ``seq`` first."""

    @abstractmethod
    def _spatial(self, q: AlertQuery, attributes: bool) -> tuple[str, list[str], list[Any]]:
        """FROM clause, WHERE clauses and parameters for the bbox and datetime of ``q``.

        The FROM clause names the alerts ``a``; ``attributes`` says whether other clauses use
        columns of ``alerts`` beyond ``a.pk`` (else a backend may answer from its index alone).
        """

    def _after_insert(self, tx: _Tx, pk: int, row: dict) -> None:
        """Maintain side indexes after inserting ``row`` (SQLite: the R*Tree)."""

    def _after_update(self, tx: _Tx, pk: int, row: dict) -> None:
        """Maintain side indexes after updating row ``pk``."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- migrations ------------------------------------------------------------------------
    def _migration_lock(self, tx: _Tx) -> None:
        """Serialise concurrent migrators (PostgreSQL advisory lock; SQLite's write lock suffices)."""

    def _migrate(self) -> None:
        with self._write(sequenced=False) as tx:
            self._migration_lock(tx)
            tx.execute("CREATE TABLE IF NOT EXISTS rsmon_schema (version INTEGER PRIMARY KEY, "
                       "description TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = tx.one("SELECT max(version) FROM rsmon_schema")[0] or 0
            if current > LATEST:
                raise StoreError(f"{self.url}: alert store schema version {current} is newer than this rsmon "
                                 f"knows ({LATEST}); upgrade rsmon")
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.statements(self.dialect):
                    tx.execute(statement)
                tx.execute("INSERT INTO rsmon_schema (version, description, applied_at) VALUES (?, ?, ?)",
                           (migration.version, migration.description, utc_now()))
                log.info("alert store %s: applied migration %d (%s)", self.url, migration.version,
                         migration.description)
            tx.execute("INSERT INTO rsmon_meta (key, value) VALUES ('store_id', ?) ON CONFLICT DO NOTHING",
                       (secrets.token_hex(16),))
            self.store_id = tx.one("SELECT value FROM rsmon_meta WHERE key = 'store_id'")[0]

    def schema_version(self) -> int:
        with self._read() as tx:
            return tx.one("SELECT max(version) FROM rsmon_schema")[0]

    # ---- alerts: writes --------------------------------------------------------------------
    def upsert(self, alerts: Iterable[AlertInput], *, actor: str, batch_size: int = 500) -> UpsertResult:
        """Insert new alerts and apply re-detections, idempotently, by stable id.

        * An alert whose detection properties and geometry equal the stored ones is left alone
          (no new version, no ``seq``, no audit entry): importing a file twice changes nothing.
        * A re-detection updates the detection properties and geometry (``first_detected`` keeps
          the earlier date), bumps ``version`` and ``seq`` and writes an audit entry with the changes.
        * A record whose ``last_detected`` is older than the stored one is skipped (``stale``), so
          importing runs out of order never rolls an alert back.
        * Status, who/when/why, ``created_at`` are never changed by an upsert.

        Each batch of ``batch_size`` alerts is one transaction.
        """
        result = UpsertResult()
        batch: list[AlertInput] = []
        for alert in alerts:
            batch.append(alert)
            if len(batch) >= batch_size:
                self._upsert_batch(batch, actor, result)
                batch = []
        if batch:
            self._upsert_batch(batch, actor, result)
        if len(result.inserted) >= 1000:
            self._analyze()
        return result

    def _analyze(self) -> None:
        """Refresh the query planner's statistics after a large import (PostgreSQL: autovacuum does it)."""

    def _upsert_batch(self, batch: list[AlertInput], actor: str, result: UpsertResult) -> None:
        now = utc_now()
        with self._write() as tx:
            ids = list(dict.fromkeys(a.id for a in batch))
            existing: dict[str, dict] = {}
            for chunk_start in range(0, len(ids), 500):
                chunk = ids[chunk_start:chunk_start + 500]
                for row in tx.all(f"SELECT a.pk, a.id, a.version, a.created_seq, f.feature, {_QA} FROM alerts a "
                                  f"JOIN alert_features f ON f.pk = a.pk WHERE a.id IN ({_marks(len(chunk))})", chunk):
                    existing[row[1]] = {"pk": row[0], "version": row[2], "created_seq": row[3], "feature": row[4],
                                        **dict(zip(_DETECTION, row[5:]))}
            seqs = _Sequence(tx)
            for alert in batch:
                geometry = geometry_json(alert.geometry)
                old = existing.get(alert.id)
                if old is None:
                    seq = seqs.next()
                    props = {**alert.properties, "status": Status.new.value, "status_by": None, "status_at": None,
                             "status_reason": None, "created_at": now, "updated_at": now, "version": 1}
                    row = self._row(alert.id, props, alert.geometry, geometry, seq=seq, created_seq=seq)
                    main, blobs = self._split(row)
                    pk = tx.all(f"INSERT INTO alerts ({', '.join(main)}) VALUES "
                                f"({', '.join(self.geom_value if c == self.geom_column else '?' for c in main)}) "
                                "RETURNING pk", list(main.values()))[0][0]
                    tx.execute(f"INSERT INTO alert_features (pk, {', '.join(blobs)}) VALUES ({_marks(len(blobs) + 1)})",
                               [pk, *blobs.values()])
                    self._after_insert(tx, pk, row)
                    self._audit(tx, alert.id, seq, 1, "create", actor, now, None, None)
                    existing[alert.id] = {"pk": pk, "version": 1, "created_seq": seq, "feature": row["feature"],
                                          **alert.properties}
                    result.inserted.append(alert.id)
                    continue
                incoming = dict(alert.properties)
                if incoming["last_detected"] < old["last_detected"]:
                    result.stale.append(alert.id)
                    continue
                incoming["first_detected"] = min(incoming["first_detected"], old["first_detected"])
                changes = {n: [old[n], incoming[n]] for n in _DETECTION if _differs(old[n], incoming[n])}
                if _geometry_differs(_geometry_text(old["feature"]), geometry):
                    changes["geometry"] = "changed"
                if not changes:
                    result.unchanged.append(alert.id)
                    continue
                seq, version = seqs.next(), old["version"] + 1
                stored = json.loads(old["feature"])["properties"]
                props = {**stored, **incoming, "updated_at": now, "version": version}
                row = self._row(alert.id, props, alert.geometry, geometry, seq=seq, created_seq=old["created_seq"])
                del row["id"], row["created_seq"]
                for name in (*STATUS_FIELDS, "created_at"):
                    row.pop(name, None)
                main, blobs = self._split(row)
                sets = ", ".join(f"{c} = {self.geom_value if c == self.geom_column else '?'}" for c in main)
                tx.execute(f"UPDATE alerts SET {sets} WHERE pk = ?", [*main.values(), old["pk"]])
                tx.execute(f"UPDATE alert_features SET {', '.join(f'{c} = ?' for c in blobs)} WHERE pk = ?",
                           [*blobs.values(), old["pk"]])
                self._after_update(tx, old["pk"], row)
                self._audit(tx, alert.id, seq, version, "update", actor, now, None, changes)
                existing[alert.id] = {**old, "version": version, "feature": row["feature"], **incoming}
                result.updated.append(alert.id)
            seqs.save()

    def _row(self, alert_id: str, props: dict, geom, geometry: str, *, seq: int, created_seq: int) -> dict:
        minx, miny, maxx, maxy = geom.bounds
        row = {"id": alert_id, "seq": seq, "created_seq": created_seq, "version": props["version"]}
        row.update({f'"{n}"': props[n] for n in _DETECTION})
        row.update({"first_day": day_number(props["first_detected"]), "last_day": day_number(props["last_detected"])})
        row.update({n: props[n] for n in (*STATUS_FIELDS, "created_at", "updated_at")})
        row.update({"minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy})
        row[self.geom_column] = geom.wkb
        row["feature"] = feature_json(alert_id, props, geometry)
        return row

    def _split(self, row: dict) -> tuple[dict, dict]:
        """Columns of ``alerts`` and of ``alert_features``."""
        return ({k: v for k, v in row.items() if k not in self.blob_columns},
                {k: v for k, v in row.items() if k in self.blob_columns})

    def _audit(self, tx: _Tx, alert_id, seq, version, action, actor, at, reason, changes) -> None:
        tx.execute("INSERT INTO alert_audit (alert_id, seq, version, action, actor, at, reason, changes) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (alert_id, seq, version, action, actor, at, reason,
                    None if changes is None else json.dumps(changes, default=str)))

    def set_status(self, alert_id: str, status: Status | str, *, actor: str, reason: str | None = None,
                   if_version: int | None = None, redlines: frozenset[str] | None = None) -> Alert:
        """Move an alert along the lifecycle, recording who, when and why.

        Raises
        ------
        NotFoundError
            No such alert, or not in ``redlines``.
        PreconditionFailedError
            ``if_version`` is given and is not the current version.
        ConflictError
            The transition is not allowed (:data:`rsmon.alerts.lifecycle.TRANSITIONS`).
        InputError
            The transition needs a reason.
        """
        new = Status(status)
        now = utc_now()
        with self._write() as tx:
            where, params = self._restrict(redlines)
            row = tx.one(f"SELECT a.pk, a.version, a.status, f.feature FROM alerts a JOIN alert_features f "
                         f"ON f.pk = a.pk WHERE a.id = ?{where}", [alert_id, *params])
            if row is None:
                raise NotFoundError(f"alert {alert_id}: not found")
            pk, version, old, feature = row
            if if_version is not None and if_version != version:
                raise PreconditionFailedError(f"alert {alert_id}: version is {version}, not {if_version} "
                                              "(changed by someone else; fetch it again)")
            check_transition(alert_id, Status(old), new, reason)
            seqs = _Sequence(tx)
            seq = seqs.next()
            props = json.loads(feature)["properties"]
            props.update(status=new.value, status_by=actor, status_at=now, status_reason=reason or None,
                         updated_at=now, version=version + 1)
            text = feature_json(alert_id, props, _geometry_text(feature))
            tx.execute("UPDATE alerts SET status = ?, status_by = ?, status_at = ?, status_reason = ?, updated_at = ?, "
                       "version = ?, seq = ? WHERE pk = ?",
                       (new.value, actor, now, reason or None, now, version + 1, seq, pk))
            tx.execute("UPDATE alert_features SET feature = ? WHERE pk = ?", (text, pk))
            self._audit(tx, alert_id, seq, version + 1, "status", actor, now, reason or None,
                        {"status": [old, new.value]})
            seqs.save()
        return Alert(alert_id, version + 1, seq, text)

    # ---- alerts: reads ---------------------------------------------------------------------
    @staticmethod
    def _restrict(redlines: frozenset[str] | None, alias: str = "a") -> tuple[str, list]:
        if redlines is None:
            return "", []
        return f" AND {alias}.redline_id IN ({_marks(len(redlines))})", sorted(redlines)

    def get(self, alert_id: str, *, redlines: frozenset[str] | None = None) -> Alert:
        """The alert ``alert_id``.

        Raises
        ------
        NotFoundError
            No such alert, or one outside ``redlines`` (indistinguishable on purpose).
        """
        where, params = self._restrict(redlines)
        with self._read() as tx:
            row = tx.one(f"SELECT a.version, a.seq, f.feature FROM alerts a JOIN alert_features f ON f.pk = a.pk "
                         f"WHERE a.id = ?{where}", [alert_id, *params])
        if row is None:
            raise NotFoundError(f"alert {alert_id}: not found")
        return Alert(alert_id, row[0], row[1], row[2])

    def _where(self, q: AlertQuery, redlines: frozenset[str] | None) -> tuple[str, list[str], list[Any]]:
        clauses, params = [], []
        for column, values in (("redline_id", q.redline_ids), ("status", q.statuses), ('"class"', q.classes)):
            if values is not None:
                clauses.append(f"a.{column} IN ({_marks(len(values))})")
                params.extend(sorted(values))
        if redlines is not None:
            clauses.append(f"a.redline_id IN ({_marks(len(redlines))})")
            params.extend(sorted(redlines))
        if q.min_confidence is not None:
            clauses.append("a.confidence_code >= ?")
            params.append(q.min_confidence)
        # the feed orders by a.seq, so it needs the alerts table even without attribute filters
        source, spatial, spatial_params = self._spatial(q, attributes=bool(clauses) or q.feed)
        return source, spatial + clauses, spatial_params + params

    def query(self, q: AlertQuery, *, redlines: frozenset[str] | None = None) -> AlertPage:
        """One page of alerts matching ``q`` (and inside ``redlines``), with ``numberMatched``.

        Pages are ordered by the internal row key (insertion order; keyset paging, so alerts
        inserted while a client pages appear at the end and none is repeated or skipped). The feed
        (``q.feed``) is ordered by ``seq``; its ``feed_position`` is where the next poll resumes.
        """
        source, clauses, params = self._where(q, redlines)
        key = "a.seq" if q.feed else "a.pk"
        where = " AND ".join(clauses) or "1 = 1"
        if q.feed:  # the feed counts what is left after the position
            where, params = where + " AND a.seq > ?", [*params, q.after]
        with self._read() as tx:
            top = tx.one("SELECT value FROM rsmon_counters WHERE name = 'seq'")[0]
            found = None
            if source != "alerts a":
                # index-driven (bbox/datetime): one pass over the matches gives both the count and
                # the page when they are few, as for typical queries; beyond _FEW, as below
                found = tx.all(f"SELECT {key}, a.pk FROM {source} WHERE {where} ORDER BY {key} LIMIT ?",
                               [*params, _FEW + 1])
            if found is not None and len(found) <= _FEW:
                matched = len(found)
                first = 0 if q.feed else bisect.bisect_right([f[0] for f in found], q.after)
                chosen = found[first:first + q.limit + 1]
            else:
                matched = self._count(tx, source, where, params, top)
                chosen = tx.all(f"SELECT {key}, a.pk FROM {source} WHERE {where} AND {key} > ? ORDER BY {key} "
                                "LIMIT ?", [*params, q.after, q.limit + 1])
            # rows by key afterwards: sorting keys is much cheaper than sorting feature texts
            pks = [c[1] for c in chosen]
            rows = []
            for start in range(0, len(pks), 500):
                chunk = pks[start:start + 500]
                if q.feed:
                    rows += tx.all(f"SELECT a.pk, a.seq, a.created_seq, f.feature FROM alerts a JOIN alert_features f "
                                   f"ON f.pk = a.pk WHERE a.pk IN ({_marks(len(chunk))})", chunk)
                else:  # pages need only the features (seq values are the feed's business)
                    rows += [(r[0], 0, 0, r[1]) for r in tx.all(
                        f"SELECT pk, feature FROM alert_features WHERE pk IN ({_marks(len(chunk))})", chunk)]
            rows.sort(key=(lambda r: r[1]) if q.feed else (lambda r: r[0]))
        more = len(rows) > q.limit
        page = [PageRow(*r) for r in rows[:q.limit]]
        next_after = (page[-1].seq if q.feed else page[-1].pk) if more else None
        feed_position = None
        if q.feed:
            # nothing more matches up to the snapshot's last seq: resume after it
            feed_position = page[-1].seq if more else max(top, q.after)
        return AlertPage(page, matched, more, next_after, feed_position)

    def _count(self, tx: _Tx, source: str, where: str, params: list, top: int) -> int:
        """count(*) of a query, cached until the next write (``top`` = the change counter): clients
        paging a large unfiltered layer ask for the same count on every page."""
        key = (source, where, tuple(params), top)
        hit = self._counts.get(key)
        if hit is None:
            hit = tx.one(f"SELECT count(*) FROM {source} WHERE {where}", params)[0]
            if len(self._counts) > 512:
                self._counts.clear()
            self._counts[key] = hit
        return hit

    def iter_features(self, *, redlines: frozenset[str] | None = None, statuses: frozenset[str] | None = None,
                      batch: int = 2000) -> Iterator[str]:
        """Every alert's GeoJSON Feature text, in row order (for exports)."""
        after = 0
        while True:
            page = self.query(AlertQuery(statuses=statuses, limit=batch, after=after), redlines=redlines)
            for row in page.rows:
                yield row.feature
            if not page.more:
                return
            after = page.next_after

    def extent(self, *, redlines: frozenset[str] | None = None) -> tuple[tuple | None, tuple | None, int]:
        """``(bbox, (first date, last date), count)`` of the alerts (None parts when empty)."""
        where, params = self._restrict(redlines)
        with self._read() as tx:
            row = tx.one("SELECT min(minx), min(miny), max(maxx), max(maxy), min(first_detected), max(last_detected), "
                         f"count(*) FROM alerts a WHERE 1 = 1{where}", params)
        if not row[6]:
            return None, None, 0
        return tuple(row[:4]), (row[4], row[5]), row[6]

    def last_seq(self) -> int:
        with self._read() as tx:
            return tx.one("SELECT value FROM rsmon_counters WHERE name = 'seq'")[0]

    def history(self, alert_id: str, *, redlines: frozenset[str] | None = None) -> list[AuditEntry]:
        """The audit entries of one alert, oldest first.

        Raises
        ------
        NotFoundError
            No such alert, or one outside ``redlines``.
        """
        self.get(alert_id, redlines=redlines)
        with self._read() as tx:
            rows = tx.all("SELECT alert_id, version, action, actor, at, reason, changes FROM alert_audit "
                          "WHERE alert_id = ? ORDER BY entry", (alert_id,))
        return [AuditEntry(*r[:6], json.loads(r[6]) if r[6] else None) for r in rows]

    def audit_count(self) -> int:
        with self._read() as tx:
            return tx.one("SELECT count(*) FROM alert_audit")[0]


def open_store(url: str, *, pool_size: int = 8) -> AlertStore:
    """Open (create, migrate) the alert store at ``url``.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
    ``postgresql://user:password@host:port/database`` (needs ``pip install rsmon[postgis]`` and the
    PostGIS extension on the server).

    Raises
    ------
    InputError
        The URL is neither.
    StoreError
        The store cannot be opened, created or migrated.
    """
    if not isinstance(url, str):
        url = str(url)
    if url.startswith("sqlite:///"):
        from rsmon.alerts.store_sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from rsmon.alerts.store_postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size)
    raise InputError(f"store URL {url!r}: expected sqlite:///PATH or postgresql://...")

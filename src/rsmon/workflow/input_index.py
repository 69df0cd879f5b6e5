"""The index of an inputs catalog: every file -> its Item, and Items by collection, bbox and time.

``<catalog>/.rsmon-index.sqlite`` (SQLite, WAL) is written by :func:`rsmon.workflow.ingest.ingest`
and read by the runner to select a job's inputs without opening thousands of Item JSON files. It
is a cache of the Items: when it is missing, :class:`InputIndex` rebuilds it from the Item files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from rsmon.provenance import parse_datetime
from rsmon.workflow.ledger import open_sqlite

log = logging.getLogger(__name__)

__all__ = ["INDEX_NAME", "InputIndex", "InputItem", "read_index_items"]

INDEX_NAME = ".rsmon-index.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT,
    item_key TEXT, state TEXT NOT NULL, reason TEXT, updated REAL);
CREATE INDEX IF NOT EXISTS files_item ON files(item_key);
CREATE TABLE IF NOT EXISTS items (
    item_key TEXT PRIMARY KEY, collection TEXT NOT NULL, item_id TEXT NOT NULL, files TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER, start REAL NOT NULL, "end" REAL NOT NULL,
    west REAL, south REAL, east REAL, north REAL, footprint TEXT, platform TEXT, instrument TEXT,
    product TEXT, reader TEXT, item_file TEXT, updated REAL);
CREATE INDEX IF NOT EXISTS items_query ON items(collection, start);
CREATE UNIQUE INDEX IF NOT EXISTS items_id ON items(collection, item_id);
"""



@dataclass(frozen=True)
class InputItem:
    """One catalogued input: a granule or scene, possibly of several files.

    Attributes
    ----------
    path : str
        What to give a reader (the granule file, the ENVI data file, a band folder).
    files : tuple of str
        Every file of the scene (the main file first), absolute.
    sha256 : str
        Checksum of the scene: the file's SHA-256 (one file), else SHA-256 over the sorted
        (file name, file SHA-256) pairs.
    start, end : datetime
        Time range (UTC).
    bbox : (west, south, east, north) or None
        Degrees; west > east crosses the antimeridian.
    """

    collection: str
    item_id: str
    path: str
    files: tuple[str, ...]
    sha256: str
    size: int
    start: datetime
    end: datetime
    bbox: tuple[float, float, float, float] | None
    footprint: dict | None
    platform: str | None
    instrument: str | None
    product: str | None
    reader: str
    item_file: str | None = None

    @property
    def companions(self) -> tuple[str, ...]:
        return tuple(f for f in self.files if f != self.path)

    def file_named(self, suffix_pattern: str) -> str | None:
        """The first file whose name matches the regular expression (e.g. ``"03IMG"``)."""
        rx = re.compile(suffix_pattern)
        return next((f for f in self.files if rx.search(Path(f).name)), None)


class InputIndex:
    """The SQLite index of an inputs catalog: files -> items, items by collection, bbox and time."""

    def __init__(self, catalog_dir: str | os.PathLike):
        from rsmon.io.atomic import check_output_dir

        self.catalog = check_output_dir(catalog_dir)
        self.path = self.catalog / INDEX_NAME
        fresh = not self.path.exists()
        self._db = open_sqlite(self.path, setup=(_SCHEMA,))
        if fresh:
            self._rebuild_from_items()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "InputIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- writing ------------------------------------------------------------------------------
    def _rebuild_from_items(self) -> None:
        """Index the Item JSON files already in the catalog (an index lost or never made)."""
        n = 0
        for item_file in sorted(self.catalog.glob("*/*/*.json")):
            try:
                data = json.loads(item_file.read_text(encoding="utf-8"))
                props = data["properties"]
                if data.get("type") != "Feature" or "rsmon:path" not in props:
                    continue
                files = [a["href"] for a in data["assets"].values()]
                item = InputItem(
                    collection=data["collection"], item_id=data["id"], path=props["rsmon:path"],
                    files=tuple(files), sha256=props["rsmon:sha256"],
                    size=sum(int(a.get("file:size", 0)) for a in data["assets"].values()),
                    start=parse_datetime(props["start_datetime"]), end=parse_datetime(props["end_datetime"]),
                    bbox=tuple(data["bbox"]), footprint=data.get("geometry"), platform=props.get("platform"),
                    instrument=(props.get("instruments") or [None])[0], product=props.get("rsmon:product_type"),
                    reader=props.get("rsmon:reader") or "", item_file=str(item_file))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            digests = {a["href"]: str(a.get("file:checksum", ""))[4:] for a in data["assets"].values()}
            self.store(item, {f: (None, None, digests.get(f)) for f in files})
            n += 1
        if n:
            log.info("index %s rebuilt from %d item(s); file times are re-checked on the next ingest", self.path, n)

    def store(self, item: InputItem, stats: dict[str, tuple[int | None, int | None, str | None]]) -> None:
        bbox = item.bbox or (None, None, None, None)
        now = time.time()
        with _transaction(self._db):
            self._db.execute("DELETE FROM items WHERE item_key = ?", (item.path,))
            self._db.execute(
                'INSERT INTO items (item_key, collection, item_id, files, sha256, size, start, "end", west, south, '
                "east, north, footprint, platform, instrument, product, reader, item_file, updated) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (item.path, item.collection, item.item_id, json.dumps(list(item.files)), item.sha256, item.size,
                 item.start.timestamp(), item.end.timestamp(), *bbox,
                 json.dumps(item.footprint) if item.footprint else None, item.platform, item.instrument,
                 item.product, item.reader, item.item_file, now))
            for f, (size, mtime, sha) in stats.items():
                state = "item" if f == item.path else "companion"
                self._db.execute(
                    "INSERT OR REPLACE INTO files (path, size, mtime_ns, sha256, item_key, state, reason, updated) "
                    "VALUES (?,?,?,?,?,?,NULL,?)", (f, size, mtime, sha, item.path, state, now))

    def store_problem(self, path: str, kind: str, reason: str, size: int, mtime_ns: int) -> None:
        """Remember a file that is not catalogued (unreadable, unusable, unrecognised) and why."""
        with _transaction(self._db):
            self._db.execute(
                "INSERT OR REPLACE INTO files (path, size, mtime_ns, sha256, item_key, state, reason, updated) "
                "VALUES (?,?,?,NULL,NULL,?,?,?)", (path, size, mtime_ns, kind, reason, time.time()))

    def forget(self, paths: Iterable[str]) -> None:
        """Drop files (and the Items they belong to) from the index."""
        with _transaction(self._db):
            for p in paths:
                row = self._db.execute("SELECT item_key FROM files WHERE path = ?", (p,)).fetchone()
                self._db.execute("DELETE FROM files WHERE path = ?", (p,))
                if row and row[0]:
                    self._db.execute("DELETE FROM items WHERE item_key = ?", (row[0],))

    # ---- reading ------------------------------------------------------------------------------
    def file_row(self, path: str) -> tuple | None:
        return self._db.execute(
            "SELECT size, mtime_ns, sha256, item_key, state, reason FROM files WHERE path = ?", (path,)).fetchone()

    def files_under(self, root: str) -> list[str]:
        prefix = root.rstrip("/") + "/"
        return [r[0] for r in self._db.execute(
            "SELECT path FROM files WHERE substr(path, 1, ?) = ? OR path = ?", (len(prefix), prefix, root))]

    def file_digests(self, item: InputItem) -> list[tuple[str, str | None, int | None]]:
        """(path, SHA-256, size) of each file of ``item``, main file first."""
        rows = {r[0]: (r[1], r[2]) for r in self._db.execute(
            "SELECT path, sha256, size FROM files WHERE item_key = ?", (item.path,))}
        return [(f, *rows.get(f, (None, None))) for f in item.files]

    def item(self, key: str) -> InputItem | None:
        row = self._db.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_key = ?", (key,)).fetchone()
        return _row_item(row) if row else None

    def item_id_owner(self, collection: str, item_id: str) -> str | None:
        row = self._db.execute("SELECT item_key FROM items WHERE collection = ? AND item_id = ?",
                               (collection, item_id)).fetchone()
        return row[0] if row else None

    def collections(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT collection FROM items ORDER BY collection")]

    def query(self, collection: str, *, bbox: Sequence[float] | None = None, start: datetime | None = None,
              end: datetime | None = None, platform: str | None = None, product: str | None = None) -> list[InputItem]:
        """Items of ``collection`` whose time range overlaps [start, end) and whose footprint meets ``bbox``.

        ``platform`` and ``product`` are case-insensitive regular expressions matched anywhere in
        the Item's platform and product type. Results are ordered by start time, then path.
        """
        sql = f"SELECT {_ITEM_COLUMNS} FROM items WHERE collection = ?"
        args: list[Any] = [collection]
        if start is not None:
            sql += ' AND "end" >= ?'
            args.append(start.timestamp())
        if end is not None:
            sql += " AND start < ?"
            args.append(end.timestamp())
        items = [_row_item(r) for r in self._db.execute(sql + " ORDER BY start, item_key", args)]
        if platform:
            rx = re.compile(platform, re.IGNORECASE)
            items = [i for i in items if i.platform and rx.search(i.platform)]
        if product:
            rx = re.compile(product, re.IGNORECASE)
            items = [i for i in items if i.product and rx.search(i.product)]
        if bbox is not None:
            items = [i for i in items if _meets(i, bbox)]
        return items


_ITEM_COLUMNS = ('collection, item_id, item_key, files, sha256, size, start, "end", west, south, east, north, '
                 "footprint, platform, instrument, product, reader, item_file")


def _row_item(r) -> InputItem:
    as_dt = lambda t: datetime.fromtimestamp(t, tz=timezone.utc)  # noqa: E731
    bbox = None if r[8] is None else (r[8], r[9], r[10], r[11])
    return InputItem(collection=r[0], item_id=r[1], path=r[2], files=tuple(json.loads(r[3])), sha256=r[4],
                     size=r[5] or 0, start=as_dt(r[6]), end=as_dt(r[7]), bbox=bbox,
                     footprint=json.loads(r[12]) if r[12] else None, platform=r[13], instrument=r[14],
                     product=r[15], reader=r[16] or "", item_file=r[17])


def _boxes(bbox) -> list[tuple[float, float, float, float]]:
    w, s, e, n = (float(v) for v in bbox)
    if w > e:  # across the antimeridian
        return [(w, s, 180.0, n), (-180.0, s, e, n)]
    return [(w, s, e, n)]


def _meets(item: InputItem, bbox) -> bool:
    if item.bbox is None:
        return False
    if not any(not (a[2] < b[0] or a[0] > b[2] or a[3] < b[1] or a[1] > b[3])
               for a in _boxes(item.bbox) for b in _boxes(bbox)):
        return False
    if not item.footprint:
        return True
    from shapely.geometry import box, shape

    try:
        geom = shape(item.footprint)
    except (ValueError, TypeError, AttributeError):
        return True
    return any(geom.intersects(box(*b)) for b in _boxes(bbox))


class _transaction:
    """``BEGIN IMMEDIATE`` .. ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, *rest):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def read_index_items(catalog_dir: str | os.PathLike) -> list[InputItem]:
    """Every Item of an inputs catalog (for reports and tests)."""
    with closing(InputIndex(catalog_dir)) as index:
        return [i for c in index.collections() for i in index.query(c)]

"""Versioned schema migrations of the alert store, one list for SQLite and PostgreSQL/PostGIS.

Each :class:`Migration` is applied once, in its own transaction, and recorded in
``rsmon_schema``; opening a store applies the pending ones (several server workers starting at once
serialise on the write lock: SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock). A store whose
schema is newer than this rsmon is refused rather than guessed at. Never edit a released
migration: add a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from rsmon.alerts.schema import DETECTION_FIELDS

_SQL_TYPES = {
    "sqlite": {"text": "TEXT", "int": "INTEGER", "real": "REAL", "date": "TEXT"},
    "postgres": {"text": "text", "int": "integer", "real": "double precision", "date": "text"},
}


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgres


def _detection_columns(dialect: str) -> str:
    types = _SQL_TYPES[dialect]
    return ",\n  ".join(f'"{name}" {types[kind]}' for name, kind in DETECTION_FIELDS.items())


def _alerts_table(dialect: str) -> str:
    big = "INTEGER" if dialect == "sqlite" else "bigint"
    pk = "pk INTEGER PRIMARY KEY" if dialect == "sqlite" else "pk bigserial PRIMARY KEY"
    geom = ",\n  geom geometry(Geometry, 4326) NOT NULL" if dialect == "postgres" else ""
    real = _SQL_TYPES[dialect]["real"]
    return f"""CREATE TABLE alerts (
  {pk},
  id TEXT NOT NULL UNIQUE,
  seq {big} NOT NULL UNIQUE,
  created_seq {big} NOT NULL,
  version INTEGER NOT NULL,
  {_detection_columns(dialect)},
  first_day INTEGER NOT NULL,
  last_day INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'new',
  status_by TEXT,
  status_at TEXT,
  status_reason TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  minx {real} NOT NULL, miny {real} NOT NULL, maxx {real} NOT NULL, maxy {real} NOT NULL{geom}
)"""


def _features_table(dialect: str) -> str:
    # The large values live beside the alerts, keyed by pk: index scans and joins over ``alerts``
    # then read small rows (2x faster bbox queries on 100,000 alerts than with the texts inline).
    if dialect == "sqlite":
        return "CREATE TABLE alert_features (pk INTEGER PRIMARY KEY, wkb BLOB NOT NULL, feature TEXT NOT NULL)"
    return "CREATE TABLE alert_features (pk bigint PRIMARY KEY, feature text NOT NULL)"


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "alerts with spatial index, their features, store id, change sequence counter",
        sqlite=(
            "CREATE TABLE rsmon_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE rsmon_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            "INSERT INTO rsmon_counters (name, value) VALUES ('seq', 0)",
            _alerts_table("sqlite"),
            _features_table("sqlite"),
            # 3-D R*Tree: lon, lat and detection days (first_day..last_day), so bbox + datetime
            # queries are answered by the index alone
            "CREATE VIRTUAL TABLE alerts_rtree USING rtree(pk, minx, maxx, miny, maxy, min_day, max_day)",
            "CREATE INDEX alerts_redline ON alerts (redline_id)",
            "CREATE INDEX alerts_status ON alerts (status)",
        ),
        postgres=(
            "CREATE EXTENSION IF NOT EXISTS postgis",
            "CREATE TABLE rsmon_meta (key text PRIMARY KEY, value text NOT NULL)",
            "CREATE TABLE rsmon_counters (name text PRIMARY KEY, value bigint NOT NULL)",
            "INSERT INTO rsmon_counters (name, value) VALUES ('seq', 0)",
            _alerts_table("postgres"),
            _features_table("postgres"),
            "CREATE INDEX alerts_geom ON alerts USING gist (geom)",
            "CREATE INDEX alerts_days ON alerts (first_day, last_day)",
            "CREATE INDEX alerts_redline ON alerts (redline_id)",
            "CREATE INDEX alerts_status ON alerts (status)",
        ),
    ),
    Migration(
        2, "audit log of every change",
        sqlite=(
            """CREATE TABLE alert_audit (
  entry INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, seq INTEGER, version INTEGER NOT NULL,
  action TEXT NOT NULL, actor TEXT NOT NULL, at TEXT NOT NULL, reason TEXT, changes TEXT)""",
            "CREATE INDEX alert_audit_alert ON alert_audit (alert_id, entry)",
        ),
        postgres=(
            """CREATE TABLE alert_audit (
  entry bigserial PRIMARY KEY, alert_id text NOT NULL, seq bigint, version integer NOT NULL,
  action text NOT NULL, actor text NOT NULL, at text NOT NULL, reason text, changes text)""",
            "CREATE INDEX alert_audit_alert ON alert_audit (alert_id, entry)",
        ),
    ),
    Migration(
        3, "API keys (hashes only)",
        sqlite=("""CREATE TABLE api_keys (
  key_id TEXT PRIMARY KEY, name TEXT, token_hash TEXT NOT NULL UNIQUE, scope TEXT NOT NULL,
  redlines TEXT, created_at TEXT NOT NULL, revoked_at TEXT)""",),
        postgres=("""CREATE TABLE api_keys (
  key_id text PRIMARY KEY, name text, token_hash text NOT NULL UNIQUE, scope text NOT NULL,
  redlines text, created_at text NOT NULL, revoked_at text)""",),
    ),
    Migration(
        4, "webhooks with delivery cursor, backoff state and lease",
        sqlite=("""CREATE TABLE webhooks (
  id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, events TEXT NOT NULL,
  redlines TEXT, cursor INTEGER NOT NULL, created_at TEXT NOT NULL, created_by TEXT,
  failures INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0, last_error TEXT,
  last_delivery_at TEXT, delivered INTEGER NOT NULL DEFAULT 0,
  lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0)""",),
        postgres=("""CREATE TABLE webhooks (
  id text PRIMARY KEY, url text NOT NULL, secret text NOT NULL, events text NOT NULL,
  redlines text, cursor bigint NOT NULL, created_at text NOT NULL, created_by text,
  failures integer NOT NULL DEFAULT 0, next_attempt double precision NOT NULL DEFAULT 0, last_error text,
  last_delivery_at text, delivered bigint NOT NULL DEFAULT 0,
  lease_owner text, lease_until double precision NOT NULL DEFAULT 0)""",),
    ),
)

#: Schema version this rsmon writes.
LATEST = MIGRATIONS[-1].version

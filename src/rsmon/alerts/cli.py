"""What the ``rsmon serve``, ``rsmon alerts`` and ``rsmon keys`` commands do (rsmon.cli parses and prints).

The store URL comes from ``--store`` or, when that is absent, the ``RSMON_ALERT_STORE``
environment variable (so a key never has to be typed next to a password in a URL on the command line).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Iterable

from rsmon.alerts.exporter import export_alerts
from rsmon.alerts.importer import import_alerts
from rsmon.alerts.security import KeyInfo, parse_redlines, parse_scope
from rsmon.alerts.store import UpsertResult, open_store
from rsmon.alerts.web import ENV_CONFIG, ServiceSettings
from rsmon.errors import InputError

log = logging.getLogger(__name__)

ENV_STORE = "RSMON_ALERT_STORE"


def store_url(value: str | None) -> str:
    """``--store`` or ``$RSMON_ALERT_STORE``.

    Raises
    ------
    InputError
        Neither is set.
    """
    url = value or os.environ.get(ENV_STORE)
    if not url:
        raise InputError(f"--store URL is required (sqlite:///PATH or postgresql://...), or set {ENV_STORE}")
    return url


def serve(url: str, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          settings: ServiceSettings | None = None, log_level: str = "info",
          forwarded_allow_ips: str | None = None) -> None:
    """Open (create, migrate) the store, then run the API with uvicorn until interrupted.

    Each worker process opens the store itself (``RSMON_ALERTS_CONFIG`` carries URL and settings).

    Raises
    ------
    InputError, StoreError
        Bad URL or unreachable store (before anything listens).
    """
    import uvicorn

    settings = settings or ServiceSettings()
    if workers < 1:
        raise InputError(f"--workers: expected at least 1, got {workers}")
    if not 0 <= port <= 65535:
        raise InputError(f"--port: expected 0-65535, got {port}")
    with open_store(url) as store:  # fail fast; migrations run once here
        where = store.url
    os.environ[ENV_CONFIG] = settings.to_env(url)
    print(f"rsmon alerts: serving {where} on http://{host}:{port} ({workers} worker(s))", file=sys.stderr, flush=True)
    uvicorn.run("rsmon.alerts.api:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, proxy_headers=forwarded_allow_ips is not None,
                forwarded_allow_ips=forwarded_allow_ips, server_header=False, timeout_keep_alive=30)


@dataclass(frozen=True)
class ImportReport:
    path: str
    result: UpsertResult

    def summary(self) -> str:
        return f"{self.path}: {self.result.summary()}"


def import_files(url: str, paths: Iterable[str], *, actor: str | None = None) -> list[ImportReport]:
    """Import alert files in order (each file's batches are transactions; see :func:`import_alerts`)."""
    with open_store(url) as store:
        return [ImportReport(str(p), import_alerts(store, p, actor=actor)) for p in paths]


def export(url: str, fmt: str, output: str | None = None, *, redlines: str | None = None,
           statuses: str | None = None) -> int:
    """Export alerts; returns how many. GeoJSON/CSV go to standard output without ``output``."""
    from rsmon.alerts.params import parse_statuses

    with open_store(url) as store:
        try:
            return export_alerts(store, fmt, output, redlines=parse_redlines(redlines, "--redlines"),
                                 statuses=parse_statuses(statuses) if statuses else None)
        except BrokenPipeError:  # ``| head``: the reader has enough; no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0


def create_key(url: str, scope: str, *, redlines: str | None = None, name: str | None = None) -> tuple[str, KeyInfo]:
    """A new key ``(token, info)``; the token exists nowhere else, show it once."""
    parsed_scope = parse_scope(scope)
    limited = parse_redlines(redlines, "--redlines")
    with open_store(url) as store:
        return store.create_key(parsed_scope, name=name, redlines=limited)


def revoke_key(url: str, key_id: str) -> KeyInfo:
    with open_store(url) as store:
        return store.revoke_key(key_id)


def list_keys(url: str) -> list[KeyInfo]:
    with open_store(url) as store:
        return store.list_keys()


def describe_key(info: KeyInfo) -> str:
    """One line per key: id, scope, redlines, name, created, revoked (never the token)."""
    redlines = ",".join(sorted(info.redlines)) if info.redlines is not None else "*"
    state = f"revoked {info.revoked_at}" if info.revoked_at else "active"
    return f"{info.key_id}  {info.scope.value:<5}  redlines={redlines}  name={info.name or '-'}  " \
           f"created {info.created_at}  {state}"

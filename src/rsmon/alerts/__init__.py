"""Alert service for the redline supervision platform (issue 6).

Store (:mod:`~rsmon.alerts.store`: SQLite + R*Tree by default, PostgreSQL/PostGIS by URL), status
lifecycle, API keys, OGC API - Features over FastAPI (:mod:`~rsmon.alerts.api`), webhooks,
import of ``rsmon redline detect`` patches and export. See ``docs/alerts.md``.
"""

from rsmon.alerts.lifecycle import Status
from rsmon.alerts.schema import Alert, AlertInput, make_input
from rsmon.alerts.store import AlertQuery, AlertStore, open_store

__all__ = ["Alert", "AlertInput", "AlertQuery", "AlertStore", "Status", "make_input", "open_store"]

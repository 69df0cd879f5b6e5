"""Helpers for tests, benchmarks and demos of the alert service (like ``numpy.testing``).

* :func:`synthetic_alerts`: reproducible alerts with pixel-staircase polygons (the shape of
  ``rsmon redline detect`` patches), spread over a box, a date range and redlines.
* :func:`serve_in_thread`: run an app with uvicorn on a free loopback port, for real HTTP clients.
* :func:`free_port`, :func:`wait_for_http`.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from typing import Iterator

import numpy as np
import shapely

from rsmon.alerts.schema import CLASSES, CONFIDENCE_CODES, AlertInput, make_input
from rsmon.alerts.store import AlertStore

_CONFIDENCES = tuple(CONFIDENCE_CODES)


def synthetic_alerts(n: int, *, seed: int = 0, bbox: tuple[float, float, float, float] = (115.0, 28.0, 122.0, 34.0),
                     start: str = "2023-01-01", days: int = 730, redlines: int = 20, id_prefix: str = "syn",
                     pixel_deg: float = 0.00027, sensor: str = "Sentinel-2") -> list[AlertInput]:
    """``n`` alerts with ids ``<id_prefix>-<i>``: random position in ``bbox``, first detection in
    ``start`` + [0, ``days``), detected again up to 60 days later, staircase polygons of 2-6
    pixel blocks (10-30 vertices), redline ``RL-<k>`` by longitude band (``redlines`` bands)."""
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = bbox
    x0 = rng.uniform(minx, maxx, n)
    y0 = rng.uniform(miny, maxy, n)
    first = rng.integers(0, days, n)
    span = rng.integers(0, 61, n)
    classes = rng.integers(0, len(CLASSES), n)
    confidences = rng.integers(0, 3, n)
    blocks = rng.integers(2, 7, n)
    indices = rng.uniform(-0.5, 0.8, (n, 8)).round(4)
    origin = date.fromisoformat(start)
    band = (maxx - minx) / redlines
    out = []
    for i in range(n):
        k = int(blocks[i])
        cells = rng.integers(0, 4, (k, 2))
        sizes = rng.integers(1, 4, (k, 2))
        boxes = [shapely.box(x0[i] + cx * pixel_deg, y0[i] + cy * pixel_deg,
                             x0[i] + (cx + sx) * pixel_deg, y0[i] + (cy + sy) * pixel_deg)
                 for (cx, cy), (sx, sy) in zip(cells, sizes)]
        geom = shapely.union_all(boxes)
        lat = math.radians(y0[i])
        area = geom.area * (111_320.0 ** 2) * math.cos(lat)
        red = min(int((x0[i] - minx) / band), redlines - 1) + 1
        first_day = origin + timedelta(days=int(first[i]))
        props = {
            "class": CLASSES[classes[i]], "confidence": _CONFIDENCES[confidences[i]],
            "area_m2": round(area, 2), "n_pixels": int(round(geom.area / pixel_deg ** 2)),
            "centroid_lon": round(geom.centroid.x, 7), "centroid_lat": round(geom.centroid.y, 7),
            "redline_id": f"RL-{red}", "redline_name": f"Redline {red}",
            "redline_zone": "core" if red % 3 else "general",
            "first_detected": first_day.isoformat(),
            "last_detected": (first_day + timedelta(days=int(span[i]))).isoformat(),
            "before_date": (first_day - timedelta(days=30)).isoformat(), "after_date": first_day.isoformat(),
            "sensor": sensor, "before_source": "synthetic", "after_source": "synthetic",
            **dict(zip(("ndvi_before", "ndvi_after", "ndbi_before", "ndbi_after", "mndwi_before", "mndwi_after",
                        "bsi_before", "bsi_after"), map(float, indices[i]))),
        }
        out.append(make_input(f"{id_prefix}-{i}", geom, props))
    return out


def patch_table(n: int = 6, crs: str = "EPSG:32650", x0: float = 500_000.0, y0: float = 3_500_000.0):
    """A patch table as ``rsmon redline detect`` writes it: ids ``chg-<16 hex>``, UTM 50N polygons, all
    :data:`~rsmon.products.patches.PATCH_COLUMNS` (write it with :func:`rsmon.io.vectors.write_patches`)."""
    import geopandas as gpd
    import pandas as pd

    from rsmon.products.patches import PATCH_COLUMNS

    rows, geoms = [], []
    for i in range(n):
        x, y = x0 + i * 300.0, y0 + (i % 3) * 300.0
        geoms.append(shapely.MultiPolygon([shapely.box(x, y, x + 90, y + 60)]))
        rows.append({"patch_id": f"chg-{i:016x}", "change_class": ["construction", "mining_quarrying", "other"][i % 3],
                     "class_code": [1, 2, 6][i % 3], "confidence": ["low", "high", "highest"][i % 3],
                     "confidence_code": i % 3 + 1, "area_m2": 5400.0 + i, "n_pixels": 6, "centroid_lon": 117.0,
                     "centroid_lat": 31.6, "redline_id": f"RL-{i % 2 + 1}", "redline_name": f"Redline {i % 2 + 1}",
                     "redline_zone": "core", "before_date": "2023-05-01", "after_date": "2024-05-01",
                     "first_detected": "2024-05-01", "last_detected": "2024-05-01", "sensor": "Sentinel-2",
                     "before_source": "S2A_before.SAFE", "after_source": "S2B_after.SAFE",
                     **{name: 0.1 * i for name in PATCH_COLUMNS if name.endswith(("_before", "_after"))
                        and not name.endswith("source")}})
    frame = pd.DataFrame(rows, columns=list(PATCH_COLUMNS))
    return gpd.GeoDataFrame(frame, geometry=geoms, crs=crs)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout_s: float = 20.0) -> None:
    """Poll ``url`` until it answers (any HTTP status); raise TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: no answer within {timeout_s} s") from None
            time.sleep(0.05)


@contextlib.contextmanager
def serve_in_thread(app, *, port: int | None = None, log_level: str = "warning") -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread on 127.0.0.1; yields the base URL (no slash)."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


#: Environment variable with a PostgreSQL/PostGIS URL for the backend tests. The tests DROP and
#: recreate the alert tables in that database: never point it at a production store.
ENV_TEST_POSTGRES = "RSMON_TEST_POSTGRES_URL"
_TABLES = ("alerts", "alert_features", "alert_audit", "api_keys", "webhooks", "rsmon_meta", "rsmon_counters",
           "rsmon_schema")


def reset_postgres(url: str) -> None:
    """Drop the alert store's tables in the test database ``url`` (a clean store for the next open)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS " + ", ".join(_TABLES) + " CASCADE")


def open_test_store(backend: str, folder) -> AlertStore:
    """A fresh, empty store: ``sqlite`` in ``folder``, or ``postgis`` at ``$RSMON_TEST_POSTGRES_URL``."""
    import os

    from rsmon.alerts.store import open_store

    if backend == "sqlite":
        return open_store(f"sqlite:///{folder}/alerts.db")
    url = os.environ[ENV_TEST_POSTGRES]
    reset_postgres(url)
    return open_store(url)

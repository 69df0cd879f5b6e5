"""Crash safety (issue 6, item 6): SIGKILL the server and an importer in the middle of writes.

A client PATCHes statuses through ``rsmon serve`` while another process imports batches; both
are killed with SIGKILL. Afterwards the SQLite file must pass ``PRAGMA integrity_check``, every
acknowledged write (PATCH answered 200, batch reported committed) must be there, no batch may be
half there, and the indexes, audit log and change counter must agree with the alerts.
"""

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from rsmon.alerts.store import AlertQuery, open_store
from rsmon.alerts.testing import free_port, synthetic_alerts, wait_for_http

IMPORTER = """
import sys
from rsmon.alerts.store import open_store
from rsmon.alerts.testing import synthetic_alerts
store = open_store(sys.argv[1])
i = 0
while True:
    store.upsert(synthetic_alerts(40, seed=i, id_prefix=f"b{i}"), actor="importer")
    print(i, flush=True)
    i += 1
"""
BATCH = 40


def test_sigkill_during_writes_loses_and_corrupts_nothing(tmp_path):
    db = tmp_path / "alerts.db"
    url = f"sqlite:///{db}"
    with open_store(url) as store:
        store.upsert(synthetic_alerts(300, seed=1), actor="seed")
        token = store.create_key("write")[0]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "rsmon.cli", "serve", "--store", url, "--port", str(port),
                               "--no-webhooks", "--rate-limit", "0", "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    importer = subprocess.Popen([sys.executable, "-c", IMPORTER, url], stdout=subprocess.PIPE, text=True)
    acknowledged, stop = [], threading.Event()

    def patch_loop():
        for i in range(300):
            if stop.is_set():
                return
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/collections/alerts/items/syn-{i}", method="PATCH",
                data=json.dumps({"status": "under_review"}).encode(),
                headers={"X-API-Key": token, "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        acknowledged.append(f"syn-{i}")
            except (urllib.error.URLError, OSError):
                return  # server killed

    try:
        wait_for_http(f"http://127.0.0.1:{port}/conformance")
        client = threading.Thread(target=patch_loop)
        client.start()
        time.sleep(1.5)
        server.send_signal(signal.SIGKILL)
        importer.send_signal(signal.SIGKILL)
        stop.set()
        client.join(10)
    finally:
        for proc in (server, importer):
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    committed = [int(line) for line in importer.stdout.read().split()]
    importer.stdout.close()
    assert len(acknowledged) > 10 and len(committed) > 3, (len(acknowledged), len(committed))

    with sqlite3.connect(db) as conn:  # a fresh connection recovers from the WAL
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n_alerts = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM alerts_rtree").fetchone()[0] == n_alerts
        assert conn.execute("SELECT count(*) FROM alert_audit WHERE action = 'create'").fetchone()[0] == n_alerts
        max_seq, n_seq = conn.execute("SELECT max(seq), count(DISTINCT seq) FROM alerts").fetchone()
        assert conn.execute("SELECT value FROM rsmon_counters WHERE name = 'seq'").fetchone()[0] == \
            conn.execute("SELECT max(seq) FROM alert_audit").fetchone()[0] >= max_seq
        assert n_seq == n_alerts
        batches = dict(conn.execute("SELECT substr(id, 1, instr(id, '-') - 1), count(*) FROM alerts "
                                    "WHERE id LIKE 'b%' GROUP BY 1").fetchall())
        reviewed = {r[0] for r in conn.execute("SELECT id FROM alerts WHERE status = 'under_review'")}
        audited = {r[0] for r in conn.execute("SELECT alert_id FROM alert_audit WHERE action = 'status'")}
    assert all(count == BATCH for count in batches.values()), "a batch is partly there"
    assert {f"b{i}" for i in committed} <= set(batches), "a committed batch was lost"
    assert set(acknowledged) <= reviewed and reviewed == audited, "an acknowledged status change was lost"
    assert n_alerts == 300 + BATCH * len(batches)

    with open_store(url) as store:  # and the store keeps working
        page = store.query(AlertQuery(feed=True, limit=100000))
        assert page.number_matched == n_alerts and not page.more
        store.upsert(synthetic_alerts(1, seed=99, id_prefix="after"), actor="t")
        assert store.get("after-0").version == 1

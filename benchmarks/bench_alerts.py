"""Alert service benchmark (issue 6): bbox + datetime queries returning 100 alerts, while a writer inserts.

    .venv/bin/python benchmarks/bench_alerts.py                       # SQLite, 100,000 alerts
    .venv/bin/python benchmarks/bench_alerts.py --postgres postgresql://rsmon@127.0.0.1:55432/rsmon_bench

1. Builds the store once (``benchmarks/data/alerts-bench-100000.db``; for PostGIS the given
   database, alerts ``bench-*`` added only if missing) with :func:`rsmon.alerts.testing.synthetic_alerts`:
   staircase polygons of 10-30 vertices over 115-122E 28-34N, detections over two years, 20 redlines.
2. Starts ``rsmon serve`` (access log off, rate limit off) on a loopback port.
3. Starts a writer process inserting ``--writer-rate`` alerts/s (batches every 0.2 s) through the store.
4. Load generator on loopback: ``wrk`` (Debian package ``wrk``: C, one thread, keep-alive
   connections, a Lua script cycling through 500 pre-computed queries) or, without wrk, a small
   asyncio HTTP/1.1 keep-alive client in this process (``--loadgen asyncio``). Each query is a
   0.5 x 0.5 degree bbox and a 180-day ``datetime`` interval with ``limit=100``; all of them
   match at least 100 alerts (checked before the run).
5. Prints requests/s and p50/p99 latency as a Markdown table row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

from rsmon.alerts.store import AlertQuery, open_store
from rsmon.alerts.testing import free_port, synthetic_alerts, wait_for_http

HERE = Path(__file__).resolve().parent
BBOX = (115.0, 28.0, 122.0, 34.0)
START, DAYS = "2023-01-01", 730

WRITER = """
import sys, time
from rsmon.alerts.store import open_store
from rsmon.alerts.testing import synthetic_alerts
store = open_store(sys.argv[1])
rate, stop_at, n = float(sys.argv[2]), time.monotonic() + float(sys.argv[3]), 0
batch = max(1, int(rate * 0.2))
tag = sys.argv[4]
while time.monotonic() < stop_at:
    t0 = time.monotonic()
    store.upsert(synthetic_alerts(batch, seed=n + 7, id_prefix=f"{tag}-{n}", bbox=(115.0, 28.0, 122.0, 34.0)),
                 actor="bench-writer")
    n += 1
    time.sleep(max(0.0, 0.2 - (time.monotonic() - t0)))
print(n * batch, flush=True)
"""

LUA = """
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i], {["X-API-Key"] = "%(token)s"})
end
"""


def build_store(url: str, n: int, say) -> None:
    with open_store(url) as store:
        have = store.query(AlertQuery(limit=1)).number_matched
        if have >= n:
            say(f"store has {have} alerts: reusing it")
            return
        say(f"inserting {n - have} alerts into {store.url} ...")
        t0 = time.perf_counter()
        step = 5000
        for start in range(have, n, step):
            batch = synthetic_alerts(min(step, n - start), seed=start, bbox=BBOX, start=START, days=DAYS,
                                     id_prefix=f"bench{start}")
            store.upsert(batch, actor="bench", batch_size=step)
        say(f"  done in {time.perf_counter() - t0:.0f} s")


def make_queries(url: str, count: int, seed: int = 0) -> list[str]:
    """``count`` bbox + datetime query paths, each matching >= 100 alerts."""
    rng = random.Random(seed)
    origin = date.fromisoformat(START)
    out = []
    with open_store(url) as store:
        from rsmon.alerts.params import parse_datetime

        while len(out) < count:
            x = rng.uniform(BBOX[0], BBOX[2] - 0.5)
            y = rng.uniform(BBOX[1], BBOX[3] - 0.5)
            d0 = origin + timedelta(days=rng.randrange(0, DAYS - 180))
            interval = f"{d0.isoformat()}/{(d0 + timedelta(days=180)).isoformat()}"
            bbox = (round(x, 3), round(y, 3), round(x + 0.5, 3), round(y + 0.5, 3))
            matched = store.query(AlertQuery(bbox=bbox, days=parse_datetime(interval), limit=1)).number_matched
            if matched >= 100:
                out.append(f"/collections/alerts/items?bbox={','.join(map(str, bbox))}&datetime={interval}&limit=100")
    return out


def run_wrk(base: str, paths_file: Path, token: str, duration: float, connections: int, threads: int) -> dict:
    script = paths_file.with_suffix(".lua")
    script.write_text(LUA % {"paths": paths_file, "token": token})
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(duration)}s", "--latency",
                          "-s", str(script), base], capture_output=True, text=True, check=True).stdout

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, flags=re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": ms("50"), "p99": ms("99"), "errors": int(non2xx.group(1)) if non2xx else 0, "raw": out}


async def _client(host, port, paths, token, stop_at, latencies, errors, offset):
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while time.perf_counter() < stop_at:
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {token}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head[:40])
    finally:
        writer.close()


def run_asyncio(base: str, paths: list[str], token: str, duration: float, connections: int) -> dict:
    host, port = base.split("//")[1].split(":")
    latencies, errors = [], []
    stop_at = time.perf_counter() + duration

    async def main():
        await asyncio.gather(*(_client(host, int(port), paths, token, stop_at, latencies, errors, k * 37)
                               for k in range(connections)))

    t0 = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "requests": len(latencies), "p50": q[49] * 1000, "p99": q[98] * 1000,
            "errors": len(errors), "raw": ""}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children that are still running (Linux /proc)."""
    total = 0.0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def bench(url: str, label: str, args, say) -> dict:
    build_store(url, args.alerts, say)
    paths = make_queries(url, 500)
    with open_store(url) as store:
        token = store.create_key("read", name="bench")[0]
    work = Path(tempfile.mkdtemp(prefix="rsmon-bench-"))
    paths_file = work / "paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "rsmon.cli", "serve", "--store", url, "--port", str(port),
                               "--workers", str(args.workers), "--rate-limit", "0", "--no-webhooks",
                               "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    writer = None
    try:
        wait_for_http(base + "/conformance", timeout_s=60)
        sample = urllib.request.Request(base + paths[0], headers={"X-API-Key": token})
        with urllib.request.urlopen(sample) as response:
            body = response.read()
        assert b'"numberReturned":100' in body, body[:200]
        use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk"))
        loadgen = "wrk" if use_wrk else "asyncio"
        say(f"{label}: warm-up, then {args.duration:.0f} s of load ({loadgen}, {args.connections} connections) "
            f"with a writer at {args.writer_rate:g} alerts/s")
        warm = run_wrk if use_wrk else None
        if warm:
            run_wrk(base, paths_file, token, 3, args.connections, 1)
        else:
            run_asyncio(base, paths, token, 3, args.connections)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, url, str(args.writer_rate),
                                   str(args.duration + 2), f"w{int(time.time())}"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        cpu0, load0 = _cpu_seconds(server.pid), os.getloadavg()[0]
        if use_wrk:
            result = run_wrk(base, paths_file, token, args.duration, args.connections, 1)
        else:
            result = run_asyncio(base, paths, token, args.duration, args.connections)
        cpu = _cpu_seconds(server.pid) - cpu0
        written = int((writer.communicate(timeout=60)[0] or "0").split()[-1])
        result.update(label=label, loadgen=loadgen, written=written, cpu_ms=1000 * cpu / max(result["requests"], 1),
                      load=max(load0, os.getloadavg()[0]))
        return result
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--alerts", type=int, default=100_000)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of measured load (default 20)")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="rsmon serve --workers (default 2 = cores)")
    p.add_argument("--writer-rate", type=float, default=50.0, help="alerts inserted per second during the run")
    p.add_argument("--loadgen", choices=["auto", "wrk", "asyncio"], default="auto")
    p.add_argument("--db", default=None, help="SQLite file (default benchmarks/data/alerts-bench-N.db)")
    p.add_argument("--postgres", default=os.environ.get("RSMON_BENCH_POSTGRES_URL"),
                   help="also run against this PostGIS database (alerts bench* are added to it)")
    p.add_argument("--no-sqlite", action="store_true")
    args = p.parse_args(argv)

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    results = []
    if not args.no_sqlite:
        db = Path(args.db) if args.db else HERE / "data" / f"alerts-bench-{args.alerts}.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        results.append(bench(f"sqlite:///{db}", "SQLite", args, say))
    if args.postgres:
        results.append(bench(args.postgres, "PostGIS", args, say))
    print("\n| store | alerts | server workers | load generator | connections | requests | req/s | p50 ms | p99 ms "
          "| non-2xx | alerts written during run | server CPU ms/request | load average |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['label']} | {args.alerts:,} | {args.workers} | {r['loadgen']} | {args.connections} | "
              f"{r['requests']:,} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} | {r['written']} "
              f"| {r['cpu_ms']:.2f} | {r['load']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

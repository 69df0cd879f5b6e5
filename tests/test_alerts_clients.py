"""Real clients against ``rsmon serve`` (issue 6, item 5): GDAL's OAPIF driver (ogrinfo, as QGIS
uses it) and pyogrio/geopandas, listing and paging through the whole ``alerts`` layer."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from rsmon.alerts.store import open_store
from rsmon.alerts.testing import free_port, synthetic_alerts, wait_for_http

N = 263


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clients")
    url = f"sqlite:///{folder}/alerts.db"
    with open_store(url) as store:
        store.upsert(synthetic_alerts(N, seed=11, bbox=(118.0, 31.0, 119.0, 32.0)), actor="test")
        token = store.create_key("read", name="gdal")[0]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rsmon.cli", "serve", "--store", url, "--port", str(port),
                             "--no-webhooks", "--log-level", "warning", "--rate-limit", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/conformance")
        yield base, token, folder
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()


def _ogrinfo(args, token=None, **env):
    full = {**os.environ, "GDAL_HTTP_HEADERS": f"X-API-Key: {token}" if token else "", **env}
    return subprocess.run(["ogrinfo", "-ro", *args], capture_output=True, text=True, env=full, timeout=120)


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="ogrinfo absent (Debian gdal-bin; .ci/run installs it)")
def test_ogrinfo_lists_and_pages_through_the_layer(server):
    base, token, _ = server
    listing = _ogrinfo([f"OAPIF:{base}"], token)
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"1: alerts .*\(Multi Polygon\)", listing.stdout)
    summary = _ogrinfo(["-so", f"OAPIF:{base}", "alerts"], token)
    assert f"Feature Count: {N}" in summary.stdout and "confidence_code: Integer" in summary.stdout
    full = _ogrinfo(["-al", "-q", "-oo", "PAGE_SIZE=50", f"OAPIF:{base}", "alerts"], token)
    assert full.returncode == 0, full.stderr
    ids = re.findall(r"^\s+id \(String\) = (\S+)$", full.stdout, flags=re.M)
    assert len(full.stdout.split("OGRFeature(alerts)")) - 1 == N
    assert sorted(ids) == sorted(f"syn-{i}" for i in range(N))
    box = _ogrinfo(["-al", "-q", "-spat", "118.2", "31.2", "118.5", "31.6", f"OAPIF:{base}", "alerts"], token)
    in_box = len(box.stdout.split("OGRFeature(alerts)")) - 1
    assert 0 < in_box < N
    denied = _ogrinfo([f"OAPIF:{base}"], None)
    assert denied.returncode != 0 and "401" in denied.stdout + denied.stderr


def test_pyogrio_and_geopandas_read_the_layer(server):
    pyogrio = pytest.importorskip("pyogrio")
    if "OAPIF" not in pyogrio.list_drivers():
        pytest.skip("the GDAL inside pyogrio's wheel has no OAPIF driver")
    import geopandas as gpd

    base, token, folder = server
    # GDAL_HTTP_HEADER_FILE: GDAL 3.10-3.12 let the OAPIF driver's own Accept header replace
    # GDAL_HTTP_HEADERS (OSGeo/gdal#11385); a header file is added by every version
    header_file = folder / "headers.txt"
    header_file.write_text(f"X-API-Key: {token}\n")
    pyogrio.set_gdal_config_options({"GDAL_HTTP_HEADER_FILE": str(header_file)})
    try:
        df = pyogrio.read_dataframe(f"OAPIF:{base}", layer="alerts")
        assert len(df) == N and df.crs.to_epsg() == 4326
        assert sorted(df["id"]) == sorted(f"syn-{i}" for i in range(N))
        assert set(df["status"]) == {"new"} and df.geometry.is_valid.all()
        gdf = gpd.read_file(f"OAPIF:{base}", layer="alerts", bbox=(118.2, 31.2, 118.5, 31.6))
        assert 0 < len(gdf) < N
    finally:
        pyogrio.set_gdal_config_options({"GDAL_HTTP_HEADER_FILE": None})

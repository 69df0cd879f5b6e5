"""``rsmon keys``, ``rsmon alerts import|export`` and ``rsmon serve`` errors (issue 6, item 4)."""

import csv
import io
import json

import geopandas as gpd
import pytest

from rsmon.alerts.store import open_store
from rsmon.alerts.testing import patch_table
from rsmon.cli import main
from rsmon.io.vectors import write_patches


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/alerts.db"


@pytest.fixture
def patches(tmp_path):
    gdf = patch_table(n=8)
    write_patches(gdf, tmp_path / "patches.gpkg", tmp_path / "patches.geojson")
    return gdf, tmp_path / "patches.gpkg", tmp_path / "patches.geojson"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_create_prints_key_last_list_never_does(capsys, url):
    code, out, err = run(capsys, "keys", "create", "--store", url, "--scope", "write", "--redlines", "RL-1,RL-2",
                         "--name", "provincial platform")
    assert code == 0
    lines = out.strip().splitlines()
    token = lines[-1]
    assert token.startswith("rsk_") and "write" in lines[0] and "RL-1,RL-2" in lines[0]
    with open_store(url) as store:
        info = store.find_key(token)
    assert info.scope.value == "write" and info.redlines == {"RL-1", "RL-2"} and info.name == "provincial platform"
    code, out, _ = run(capsys, "keys", "list", "--store", url)
    secret = token.split("_", 2)[2]  # the secret itself may contain "_" (URL-safe base64)
    assert secret and code == 0 and info.key_id in out and token not in out and secret not in out
    code, out, _ = run(capsys, "keys", "revoke", "--store", url, info.key_id)
    assert code == 0 and "revoked" in out
    with open_store(url) as store:
        assert store.find_key(token) is None
    code, _, err = run(capsys, "keys", "revoke", "--store", url, info.key_id)
    assert code == 2 and err.startswith("rsmon: error:") and "already revoked" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["keys", "create", "--store", "alerts.db", "--scope", "read"], "sqlite:///PATH"),
    (["keys", "create", "--store", "sqlite:///x.db", "--scope", "root"], "invalid choice"),
    (["keys", "create", "--store", "sqlite:///x.db", "--scope", "read", "--redlines", "RL 1"], "--redlines"),
    (["keys", "list"], "--store URL is required"),
    (["alerts", "export", "--store", "sqlite:///x.db", "--format", "gpkg"], "needs an output file"),
    (["alerts", "import", "--store", "sqlite:///x.db", "missing.gpkg"], "missing.gpkg"),
    (["serve", "--store", "sqlite:////nonexistent/dir/a.db"], "does not exist"),
    (["serve", "--store", "postgresql://nobody@127.0.0.1:1/none"], "cannot connect"),
])
def test_errors_are_one_line_exit_2(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RSMON_ALERT_STORE", raising=False)
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_store_from_environment(capsys, url, monkeypatch):
    monkeypatch.setenv("RSMON_ALERT_STORE", url)
    code, out, _ = run(capsys, "keys", "create", "--scope", "read")
    assert code == 0 and out.strip().splitlines()[-1].startswith("rsk_")


def test_import_twice_then_export_all_formats(capsys, url, patches, tmp_path):
    gdf, gpkg, geojson = patches
    code, out, _ = run(capsys, "alerts", "import", "--store", url, str(gpkg))
    assert code == 0 and out.strip() == f"{gpkg}: 8 new, 0 updated, 0 unchanged"
    code, out, _ = run(capsys, "alerts", "import", "--store", url, str(geojson), str(gpkg))
    assert out.strip().splitlines() == [f"{geojson}: 0 new, 0 updated, 8 unchanged",
                                        f"{gpkg}: 0 new, 0 updated, 8 unchanged"]
    with open_store(url) as store:
        store.set_status("chg-0000000000000002", "under_review", actor="li")

    code, out, _ = run(capsys, "alerts", "export", "--store", url, "--format", "geojson")
    fc = json.loads(out)
    assert code == 0 and len(fc["features"]) == 8
    by_id = {f["id"]: f for f in fc["features"]}
    assert by_id["chg-0000000000000002"]["properties"]["status"] == "under_review"

    code, out, _ = run(capsys, "alerts", "export", "--store", url, "--format", "csv", "--status", "under_review")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == ["chg-0000000000000002"] and rows[0]["WKT"].startswith("MULTIPOLYGON")

    out_gpkg = tmp_path / "export" / "alerts.gpkg"
    code, out, _ = run(capsys, "alerts", "export", "--store", url, "--format", "gpkg", "-o", str(out_gpkg),
                       "--redlines", "RL-1")
    back = gpd.read_file(out_gpkg, layer="alerts")
    assert code == 0 and "4 alert(s)" in out and len(back) == 4 and set(back["redline_id"]) == {"RL-1"}
    assert back.crs.to_epsg() == 4326 and "status_by" in back.columns

    # an export re-imports into another store as the same alerts
    out_json = tmp_path / "alerts.geojson"
    run(capsys, "alerts", "export", "--store", url, "--format", "geojson", "-o", str(out_json))
    other = f"sqlite:///{tmp_path}/other.db"
    code, out, _ = run(capsys, "alerts", "import", "--store", other, str(out_json))
    assert out.strip().endswith("8 new, 0 updated, 0 unchanged")
    code, out, _ = run(capsys, "alerts", "import", "--store", other, str(gpkg))
    assert out.strip().endswith("0 new, 0 updated, 8 unchanged")

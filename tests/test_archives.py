"""Sentinel-2 ``.SAFE.zip`` and Landsat ``.tar`` products read in place (rsmon.io.archive): the same
values, dates and outputs as the unpacked folders, on simulated and real products; the tile reader's
fast path inside stored members; ingest; one acquisition used once in a workflow; bad archives named."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from rsmon.cli import main
from rsmon.errors import FormatError, InputError, UnsupportedFormatError
from rsmon.io.archive import archive_root, file_stat, member_location, open_archive
from rsmon.io.optical import open_optical, read_metadata, sniff_optical
from rsmon.io.tiff_tiles import tiled_tiff
from rsmon.sim.s2 import simulate_s2_l2a_pair
from tests.paths import ROOT, SHARED_DATA

T29UNU = SHARED_DATA / "sentinel2-l2a-T29UNU-60m"
LANDSAT8 = SHARED_DATA / "landsat8-c2l2-decimated"
T29UNU_SAFE = "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
LANDSAT8_ID = "LC08_L2SP_001070_20190114_20200830_02_T2"


def safe_name(stamp: str, tile: str = "T50SMF") -> str:
    return f"S2A_MSIL2A_{stamp}_N0509_R075_{tile}_{stamp[:8]}T061234.SAFE"


def zip_folder(folder: Path, dest: Path, inner: str, stored: bool = True) -> Path:
    """``folder``'s files under ``inner/`` in a zip (stored like Copernicus Data Space's JP2 members,
    or deflated)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{inner}/", "")
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.name != "SOURCE.txt":
                zf.write(f, f"{inner}/{f.name}")
    return dest


def assert_same_dataset(a, b):
    assert list(a.data_vars) == list(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert a.rio.transform() == b.rio.transform() and a.rio.crs == b.rio.crs
    for key in ("datetime", "datetime_source", "sensor", "product", "tile", "processing_baseline"):
        assert a.attrs.get(key) == b.attrs.get(key), key


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return simulate_s2_l2a_pair(tmp_path_factory.mktemp("arch") / "pair", size=512, seed=3, n_changes=12)


@pytest.fixture(scope="module")
def zipped(pair, tmp_path_factory):
    folder = tmp_path_factory.mktemp("zips")
    names = {"before": safe_name("20230501T030551"), "after": safe_name("20230601T030551")}
    return {role: zip_folder(getattr(pair, role), folder / f"{names[role]}.zip", names[role]) for role in names}


def test_safe_zip_reads_as_its_folder_and_tiles_are_read_in_place(pair, zipped, tmp_path):
    folder = open_optical(pair.before)
    ds = open_optical(zipped["before"])
    assert_same_dataset(folder, ds)
    assert ds.attrs["source"] == str(zipped["before"]) and ds.attrs["source_files"] == [str(zipped["before"])]
    assert ds.attrs["archive_member"] == safe_name("20230501T030551")
    assert ds.attrs["datetime_source"] == "MTD XML"
    # the band files are GDAL /vsizip/ paths; stored members are decoded by the direct tile reader at their offset
    root = archive_root(zipped["before"])
    red = next(root.glob("*/*_B04_10m.tif"))
    archive, offset, size = member_location(red)
    assert archive == str(zipped["before"]) and size == (pair.before / red.name).stat().st_size
    with open(archive, "rb") as fh:
        fh.seek(offset)
        assert fh.read(size) == (pair.before / red.name).read_bytes()
    direct = tiled_tiff(red)
    assert direct is not None
    with rasterio.open(pair.before / red.name) as src:
        np.testing.assert_array_equal(direct.read(100, 37, 300, 450), src.read(1, window=((100, 400), (37, 487))))
    assert file_stat(red).st_mtime_ns == zipped["before"].stat().st_mtime_ns
    # deflated members: GDAL's /vsizip/ reads them, same values
    deflated = zip_folder(pair.before, tmp_path / "deflated.zip", safe_name("20230501T030551"), stored=False)
    assert tiled_tiff(next(archive_root(deflated).glob("*/*_B04_10m.tif"))) is None
    assert_same_dataset(folder, open_optical(deflated))
    # GDAL's own path to the product folder inside, in both spellings
    inner = f"{zipped['before']}/{safe_name('20230501T030551')}"
    assert_same_dataset(folder, open_optical(f"/vsizip/{inner}"))
    assert_same_dataset(folder, open_optical(f"/vsizip/{{{zipped['before']}}}/{safe_name('20230501T030551')}"))


def test_redline_detect_on_archives_equals_the_folders(pair, zipped, tmp_path, capsys):
    runs = {}
    for label, before, after in (("folders", pair.before, pair.after), ("zips", zipped["before"], zipped["after"])):
        out = tmp_path / label
        assert main(["redline", "detect", "--before", str(before), "--after", str(after), "--no-quicklooks",
                     "-o", str(out)]) == 0, capsys.readouterr().err
        runs[label] = out
    for name in ("change.tif", "change_class.tif", "confidence.tif"):
        with rasterio.open(runs["folders"] / name) as a, rasterio.open(runs["zips"] / name) as b:
            np.testing.assert_array_equal(a.read(), b.read())
    import geopandas as gpd

    a, b = gpd.read_file(runs["folders"] / "patches.gpkg"), gpd.read_file(runs["zips"] / "patches.gpkg")
    assert len(a) > 5 and list(a.patch_id) == list(b.patch_id) and list(a.change_class) == list(b.change_class)
    assert set(b.before_source) == {str(zipped["before"])} and set(b.after_source) == {str(zipped["after"])}
    # provenance: the archives themselves, with their checksums
    with rasterio.open(runs["zips"] / "change.tif") as src:
        inputs = json.loads(src.tags()["rsmon_provenance"])["inputs"]
    assert [Path(i["path"]) for i in inputs] == [zipped["before"].resolve(), zipped["after"].resolve()]
    assert all(len(i["sha256"]) == 64 for i in inputs)


@pytest.mark.skipif(not T29UNU.is_dir(), reason=f"sample folder {T29UNU} is absent")
def test_real_l2a_in_a_safe_zip_with_granule_folders(tmp_path):
    """The real T29UNU L2A bands (JPEG 2000) in the SAFE layout Copernicus Data Space zips."""
    granule = f"{T29UNU_SAFE}/GRANULE/L2A_T29UNU_A038043_20221005T115407"
    dest = tmp_path / f"{T29UNU_SAFE}.zip"
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        zf.write(T29UNU / "MTD_MSIL2A.xml", f"{T29UNU_SAFE}/MTD_MSIL2A.xml")
        zf.write(T29UNU / "MTD_TL.xml", f"{granule}/MTD_TL.xml")
        for jp2 in sorted(T29UNU.glob("*.jp2")):
            zf.write(jp2, f"{granule}/IMG_DATA/R60m/{jp2.name}")
        # the rest of a SAFE, whose band-like names must not be taken for bands
        zf.write(T29UNU / "T29UNU_20221005T115411_SCL_60m.jp2", f"{granule}/QI_DATA/MSK_DETFOO_B04.jp2")
        zf.write(T29UNU / "T29UNU_20221005T115411_SCL_60m.jp2", f"{granule}/QI_DATA/MSK_CLDPRB_60m.jp2")
        zf.writestr(f"{T29UNU_SAFE}/manifest.safe", "<xfdu:XFDU/>")
        zf.writestr(f"{T29UNU_SAFE}/DATASTRIP/DS_2APS_20221005T164454_S20221005T115407/MTD_DS.xml", "<a/>")
        zf.writestr(f"{T29UNU_SAFE}/HTML/UserProduct_index.html", "<html/>")
        zf.writestr(f"{T29UNU_SAFE}/rep_info/S2_User_Product_Level-2A_Metadata.xsd", "<xs/>")
    folder, ds = open_optical(T29UNU), open_optical(dest)
    assert_same_dataset(folder, ds)
    assert ds.attrs["datetime"] == "2022-10-05T11:54:11.024Z" and ds.red.attrs["add_offset_dn"] == -1000
    assert ds.attrs["nir_band"] == "B8A" and ds.attrs["tile"] == "29UNU"
    assert sniff_optical(dest) and read_metadata(dest)["files"] == [str(dest)]


@pytest.mark.skipif(not LANDSAT8.is_dir(), reason=f"sample folder {LANDSAT8} is absent")
@pytest.mark.parametrize("inner", ["", LANDSAT8_ID])
def test_real_landsat_tar_flat_or_with_a_folder(tmp_path, inner):
    """USGS's bundle: the product's files at the top of a plain tar (or under one folder)."""
    dest = tmp_path / f"{LANDSAT8_ID}.tar"
    with tarfile.open(dest, "w") as tf:
        for f in sorted(LANDSAT8.glob("LC08*")):
            tf.add(f, f"{inner}/{f.name}" if inner else f.name)
        # the rest of a USGS bundle (thermal band, aerosol QA, JSON/XML metadata, angles): not bands
        qa = LANDSAT8 / f"{LANDSAT8_ID}_QA_PIXEL.TIF"
        for suffix in ("ST_B10.TIF", "SR_QA_AEROSOL.TIF", "QA_RADSAT.TIF", "MTL.json", "MTL.xml", "ANG.txt"):
            tf.add(qa, f"{inner}/{LANDSAT8_ID}_{suffix}" if inner else f"{LANDSAT8_ID}_{suffix}")
    folder, ds = open_optical(LANDSAT8), open_optical(dest)
    assert_same_dataset(folder, ds)
    assert ds.attrs["scene_id"] == LANDSAT8_ID and ds.attrs["source"] == str(dest)
    red = next(archive_root(dest).glob(f"{inner}/*_SR_B4.TIF" if inner else "*_SR_B4.TIF"))
    assert member_location(red) is not None  # tar members are stored: read in place
    assert sniff_optical(dest)
    # unpacked, the bundle is a Landsat folder too (its ST_B10.TIF once made it pass for a Sentinel-2 B10)
    with tarfile.open(dest) as tf:
        tf.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked" / inner
    assert (unpacked / f"{LANDSAT8_ID}_ST_B10.TIF").is_file()
    assert_same_dataset(folder, open_optical(unpacked))
    assert open_optical(unpacked / f"{LANDSAT8_ID}_ST_B10.TIF").attrs["product"] == "Landsat C2 L2"


def test_bad_archives_are_named(pair, zipped, tmp_path):
    truncated = tmp_path / f"{safe_name('20230601T030551')}.zip"
    truncated.write_bytes(zipped["after"].read_bytes()[:200_000])
    with pytest.raises(FormatError, match=f"{truncated.name}: not a readable zip archive"):
        open_optical(truncated)
    assert sniff_optical(truncated)  # a product's archive by its name: unreadable, not foreign
    gz = tmp_path / f"{LANDSAT8_ID}.tar.gz"
    with tarfile.open(gz, "w:gz") as tf:
        tf.add(pair.before / "MTD_MSIL2A.xml", "MTD_MSIL2A.xml")
    with pytest.raises(FormatError, match="compressed tar cannot be read in place"):
        open_optical(gz)
    disguised = tmp_path / "disguised.tar"  # a gzip named .tar
    disguised.write_bytes(gz.read_bytes())
    with pytest.raises(FormatError, match="disguised.tar: a compressed tar"):
        open_optical(disguised)
    notes = tmp_path / "notes.zip"
    with zipfile.ZipFile(notes, "w") as zf:
        zf.writestr("docs/readme.txt", "hello")
    with pytest.raises(UnsupportedFormatError, match="notes.zip: no optical product inside"):
        open_optical(notes)
    assert not sniff_optical(notes)
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        for role, stamp in (("before", "20230501T030551"), ("after", "20230601T030551")):
            for f in sorted(getattr(pair, role).iterdir()):
                zf.write(f, f"{safe_name(stamp)}/{f.name}")
    with pytest.raises(InputError, match="two.zip.*holds 2 products"):
        open_optical(two)
    assert sniff_optical(two)  # recognised: ingest lists it as unreadable, with that reason
    assert_same_dataset(open_optical(pair.after), open_optical(f"/vsizip/{two}/{safe_name('20230601T030551')}"))
    with pytest.raises(FormatError, match="no such member"):
        open_optical(f"/vsizip/{two}/S2A_nothing.SAFE")
    with pytest.raises(UnsupportedFormatError, match="not one of its files"):
        open_optical(f"/vsizip/{two}/{safe_name('20230601T030551')}/MTD_MSIL2A.xml")
    # a corrupt tile inside a stored member: the member is named when its pixels are read
    corrupt = tmp_path / "corrupt.zip"
    data = bytearray(zipped["after"].read_bytes())
    red = next(archive_root(zipped["after"]).glob("*/*_B04_10m.tif"))
    _, offset, size = member_location(red)
    data[offset + size // 2: offset + size // 2 + 4000] = b"\x00" * 4000
    corrupt.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"corrupt\.zip\}.*_B04_10m\.tif"):
        open_optical(corrupt).red.values


def test_cli_refuses_a_bad_archive_in_one_line_and_writes_nothing(pair, zipped, tmp_path, capsys):
    truncated = tmp_path / f"{safe_name('20230601T030551')}.zip"
    truncated.write_bytes(zipped["after"].read_bytes()[:200_000])
    out = tmp_path / "out"
    rc = main(["redline", "detect", "--before", str(zipped["before"]), "--after", str(truncated), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and truncated.name in err[0] and "not a readable zip archive" in err[0]
    assert not out.exists() or not any(out.iterdir())


def test_ingest_catalogues_archives_and_names_the_unreadable(pair, zipped, tmp_path, capsys):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(zipped["before"], inbox)
    broken = inbox / zipped["after"].name
    broken.write_bytes(zipped["after"].read_bytes()[:100_000])
    (inbox / "notes.zip").write_bytes(b"not a zip")
    catalog = tmp_path / "catalog"
    assert main(["ingest", str(inbox), "--catalog", str(catalog), "--json"]) == 3  # 3: unreadable files found
    report = json.loads(capsys.readouterr().out)
    text = json.dumps(report)
    assert zipped["before"].name in text and "optical-sentinel-2" in text
    assert "not a readable zip archive" in text and "notes.zip" in text
    items = list(catalog.glob("optical-sentinel-2/*/*.json"))
    assert len(items) == 1
    item = json.loads(items[0].read_text())
    assert item["properties"]["start_datetime"].startswith("2023-05-01T03:05:51")
    assert item["properties"]["rsmon:path"] == str(inbox / zipped["before"].name)


def test_a_zip_beside_its_unpacked_folder_is_one_observation(tmp_path):
    """An inbox holding the downloaded .SAFE.zip and the folder unpacked from it: the monthly job uses
    the acquisition once, so it cannot confirm its own changes (confidence stays low)."""
    from rsmon.workflow.ledger import Ledger, ledger_url
    from rsmon.workflow.runner import run_workflow

    sims = tmp_path / "incoming"
    assert main(["sim", "s2", "--small", "--seed", "4", "--changes", "12", "--dates", "2023-05-20,2023-06-05",
                 "-o", str(sims / "a")]) == 0
    name = safe_name("20230605T030551")
    zip_folder(sims / "a" / "after", sims / f"{name}.zip", name)
    spec = yaml.safe_load((ROOT / "workflows" / "redline-monthly.yaml").read_text())
    spec["sources"] = [str(sims)]
    for role in ("before", "after"):
        del spec["jobs"][0]["inputs"][role]["bbox"]
    spec["jobs"][0]["parameters"] = {"quicklooks": False}
    spec["jobs"][0]["alerts"] = {"store": "nosuchscheme://x"}
    wf = tmp_path / "monthly.yaml"
    wf.write_text(yaml.safe_dump(spec))
    home = tmp_path / "home"
    [report] = run_workflow(wf, date(2023, 6, 1), home=home)
    assert report.jobs[0].status in ("success", "partial"), report.summary()
    with Ledger(ledger_url(home)) as led:
        inputs = led.run(report.run_id)["jobs"][0]["inputs"]
    after = {Path(i["path"]).name for i in inputs if i["role"].startswith("after")}
    assert f"{name}.zip" not in after or len(after) == 1, after  # the folder's files, or the archive, not both
    import geopandas as gpd

    patches = gpd.read_file(home / "products" / "redline" / "v1" / "2023-06" / "patches.gpkg")
    assert len(patches) >= 6 and set(patches["confidence"]) == {"low"}


def test_archive_listing_and_paths(tmp_path):
    dest = tmp_path / "x.zip"
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr("A.SAFE/GRANULE/g1/IMG_DATA/R10m/b.jp2", b"1")
        zf.writestr("A.SAFE/.hidden/c.txt", b"22")
        zf.writestr("A.SAFE/MTD_MSIL2A.xml", b"<a/>")
    root = archive_root(dest)
    assert root.name == "x.zip" and root.parent == tmp_path and root.is_dir() and not root.is_file()
    safe = root / "A.SAFE"
    assert [p.name for p in safe.iterdir()] == [".hidden", "GRANULE", "MTD_MSIL2A.xml"]
    assert [p.inner for p in safe.glob("GRANULE/*/IMG_DATA/R*m/*")] == ["A.SAFE/GRANULE/g1/IMG_DATA/R10m/b.jp2"]
    hidden = safe / ".hidden" / "c.txt"
    assert hidden.parent.name == ".hidden" and hidden.read_text() == "22" and hidden.suffix == ".txt"
    assert hidden.parents[-1] == Path("/") and tmp_path in hidden.parents
    assert (safe / "MTD_MSIL2A.xml").read_bytes() == b"<a/>" and not (safe / "nothing").exists()
    assert str(safe) == f"/vsizip/{{{dest}}}/A.SAFE"
    assert open_archive(dest) is open_archive(dest)  # listed once per file version
    assert archive_root(tmp_path / "y.txt") is None and member_location("/data/x.tif") is None


def test_direct_reads_stay_inside_the_member(tmp_path):
    """A stored TIFF member is decoded at its offset; one whose tiles point past the member's end
    (cut short when packed) is left to GDAL, never read from the next member's bytes."""
    import tifffile

    values = np.random.default_rng(0).integers(0, 5000, (256, 256)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "t.tif", values, tile=(64, 64), compression="zlib")
    data = (tmp_path / "t.tif").read_bytes()
    for name, body in (("whole", data), ("cut", data[:-3000])):
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as zf:
            zf.writestr("x/t.tif", body)
            zf.writestr("x/y.tif", data)  # the bytes after the member
    whole = tiled_tiff(archive_root(tmp_path / "whole.zip") / "x" / "t.tif")
    np.testing.assert_array_equal(whole.read(0, 0, 256, 256), values)
    np.testing.assert_array_equal(whole.read(70, 10, 100, 200), values[70:170, 10:210])
    assert tiled_tiff(archive_root(tmp_path / "cut.zip") / "x" / "t.tif") is None


def test_tile_of_an_archive_saved_under_another_name(zipped, tmp_path):
    from rsmon.workflow.redline_tiles import tile_key

    renamed = tmp_path / "download (1).zip"
    shutil.copy(zipped["before"], renamed)
    assert tile_key(renamed) == "T50SMF" and tile_key(zipped["after"]) == "T50SMF"
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really")
    assert tile_key(broken) is None


def test_repeats_of_one_acquisition_use_the_newest_processing():
    """Known answers from real-format names: the reprocessing over the offline orbit, the newer
    Sentinel-2 baseline, the later Landsat processing date, a named product over its unpacked flat
    folder; other acquisitions and items without a time are all kept, in their order."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from rsmon.workflow.repeats import drop_repeated_scenes, processing_rank

    t0, t1 = (datetime(2023, 6, d, 3, tzinfo=timezone.utc) for d in (1, 11))

    def item(path, start=t0, bbox=(116.0, 36.0, 117.0, 37.0), platform="P", product="X"):
        return SimpleNamespace(path=path, item_id=Path(path).name, files=(path,), start=start, bbox=bbox,
                               platform=platform, product=product)

    offl = item("/in/S5P_OFFL_L2__NO2____20230601T030000_20230601T044000_29155_03_020500_20230603T000000.nc")
    rpro = item("/in/S5P_RPRO_L2__NO2____20230601T030000_20230601T044000_29155_03_020400_20240101T000000.nc")
    other = item("/in/S5P_OFFL_L2__NO2____20230611T030000_20230611T044000_29297_03_020500_20230613T000000.nc",
                 start=t1)
    assert processing_rank(rpro) > processing_rank(offl)
    assert drop_repeated_scenes([offl, other, rpro], "after") == [rpro, other]
    old = item("/in/S2A_MSIL2A_20230601T030551_N0400_R075_T50SMF_20230601T061234.SAFE")
    new = item("/in/S2A_MSIL2A_20230601T030551_N0511_R075_T50SMF_20240301T101010.SAFE.zip")
    flat = item("/in/T50SMF_20230601T030551")  # a flat folder: its names carry no processing
    assert drop_repeated_scenes([new, old], "after") == [new] and drop_repeated_scenes([old, new], "x") == [new]
    assert drop_repeated_scenes([flat, old], "after") == [old]
    zipped, unpacked = item(str(new.path)), item(str(new.path).removesuffix(".zip"))
    assert drop_repeated_scenes([unpacked, zipped], "after") == [unpacked]  # the same data: the first
    ls_old = item("/in/LC08_L2SP_120038_20230601_20230610_02_T1.tar")
    ls_new = item("/in/LC08_L2SP_120038_20230601_20230720_02_T1")
    assert drop_repeated_scenes([ls_new, ls_old], "before") == [ls_new]
    elsewhere = item(str(old.path), bbox=(117.0, 36.0, 118.0, 37.0))  # another footprint: kept
    untimed = [item("/in/a.hdr", start=None), item("/in/a.hdr", start=None)]
    assert drop_repeated_scenes([old, elsewhere, *untimed], "x") == [old, elsewhere, *untimed]

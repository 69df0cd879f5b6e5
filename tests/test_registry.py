"""Reader registry (sniffing, open_any) and ``rsmon info`` text."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))
from s5pfixtures import truncate, write_plain_netcdf, write_s5p_l2  # noqa: E402

from rsmon.errors import FormatError, NoDataError, UnsupportedFormatError  # noqa: E402
from rsmon.io import registry  # noqa: E402
from rsmon.io.info import describe  # noqa: E402
from rsmon.io.registry import (  # noqa: E402
    ReaderSpec,
    available_readers,
    find_reader,
    get_reader,
    open_any,
    read_metadata_any,
)

from paths import SHARED_DATA as DATA  # noqa: E402
CH4_DIR = DATA / "s5p-ch4-subset"
CH4_SUB = CH4_DIR / "S5P_OFFL_L2__CH4____20190311T101655_20190311T115825_07293_01_010202_20190317T121015.SUB.nc4"
NO2_META = (DATA / "s5p-no2-metadata-only" /
            "S5P_OFFL_L2__NO2____20200303T013547_20200303T031717_12367_01_010302_20200306T053815.nc")

needs_ch4 = pytest.mark.skipif(not CH4_DIR.is_dir(), reason=f"sample folder {CH4_DIR} is absent")
needs_no2_meta = pytest.mark.skipif(not NO2_META.parent.is_dir(), reason=f"sample folder {NO2_META.parent} is absent")


def test_s5p_is_registered():
    names = [spec.name for spec in available_readers()]
    assert "s5p" in names
    spec = get_reader("s5p")
    assert callable(spec.sniff) and callable(spec.open) and callable(spec.metadata)
    with pytest.raises(UnsupportedFormatError, match="s5p"):
        get_reader("no-such-reader")


@needs_ch4
def test_find_reader_real_ch4():
    assert find_reader(CH4_SUB).name == "s5p"
    ds = open_any(CH4_SUB)
    assert ds.attrs["product"] == "CH4" and ds.sizes["scanline"] == 293
    assert read_metadata_any(CH4_SUB)["reader"] == "s5p"


def test_find_reader_by_content(tmp_path):
    path = write_s5p_l2(tmp_path, "NO2", name="some_granule.nc4")
    assert find_reader(path).name == "s5p"
    ds = open_any(path, chunks={"scanline": 4})
    assert ds["tropospheric_no2_column"].data.chunks[0] == (4, 4, 4)


@pytest.mark.parametrize("content, name", [
    ("station,lat,lon,no2\nA,39.9,116.4,35.1\n", "stations.csv"),
    ("just some text\n", "notes.txt"),
])
def test_find_reader_rejects_text(tmp_path, content, name):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UnsupportedFormatError) as info:
        find_reader(path)
    message = str(info.value)
    assert str(path) in message and "s5p" in message  # names the file and lists known readers


def test_find_reader_rejects_plain_netcdf(tmp_path):
    path = write_plain_netcdf(tmp_path / "grid.nc")
    with pytest.raises(UnsupportedFormatError, match="known readers"):
        open_any(path)


def test_find_reader_missing_file(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        find_reader(tmp_path / "nothing.nc")


def test_broken_s5p_file_gets_the_readers_error(tmp_path):
    # an S5P name is claimed by the s5p reader, whose error then says what is wrong with the file
    path = truncate(write_s5p_l2(tmp_path))
    assert find_reader(path).name == "s5p"
    with pytest.raises(FormatError, match="truncated"):
        open_any(path)


def test_register_new_reader(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    path = tmp_path / "grid.xyz"
    path.write_text("1 2 3\n")
    spec = ReaderSpec(
        name="xyz", description="test reader", sniff=lambda p: Path(p).suffix == ".xyz",
        open=lambda p, **kw: xr.Dataset(attrs={"opened": str(p)}),
        metadata=lambda p: {"product": "xyz"},
    )
    registry.register(spec)
    assert find_reader(path) is spec
    assert open_any(path).attrs["opened"] == str(path)
    assert read_metadata_any(path) == {"product": "xyz", "reader": "xyz"}


def test_sniffer_exception_does_not_hide_other_readers(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_LOADED", True)

    def boom(path):
        raise RuntimeError("bug in a sniffer")

    registry.register(ReaderSpec("bad", "raises", boom, lambda p, **k: None, lambda p: {}))
    good = registry.register(ReaderSpec("good", "accepts", lambda p: True, lambda p, **k: None, lambda p: {}))
    path = tmp_path / "f.bin"
    path.write_bytes(b"\0")
    assert find_reader(path) is good


@needs_ch4
def test_describe_real_ch4():
    text = describe(CH4_SUB)
    assert "reader: s5p" in text
    assert "product: CH4" in text
    assert "orbit: 7293" in text
    assert "processor: 1.2.2 (010202)" in text
    assert "time: 2019-03-11T11:12:39.323Z .. 2019-03-11T11:17:54.676Z" in text
    assert "scanline=293, ground_pixel=25" in text
    assert "xch4" in text and "[ppb]" in text
    assert "footprint bbox: lon 13." in text


@needs_no2_meta
def test_describe_metadata_only_no2():
    text = describe(NO2_META)
    assert "product: NO2" in text and "orbit: 12367" in text and "mode: OFFL" in text
    assert "2020-03-03T01:57:22" in text and "2020-03-03T02:55:45" in text
    assert "metadata only" in text
    with pytest.raises(NoDataError):
        open_any(NO2_META)


def test_describe_fixture(tmp_path):
    path = write_s5p_l2(tmp_path, "AER_AI")
    text = describe(path)
    assert "product: AER_AI" in text and "orbit: 9355" in text
    assert "time: 2019-08-10T04:30:00.000Z .. 2019-08-10T04:30:09.240Z" in text
    assert "aerosol_index_354_388" in text


def test_describe_unsupported(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b\n")
    with pytest.raises(UnsupportedFormatError, match="table.csv"):
        describe(path)

"""Optical readers (rsmon.io.optical): known answers on real samples and on small files written here
in the real layouts, resampling and alignment, laziness, dates of every source, and bad input."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
from affine import Affine
from dask.callbacks import Callback
from pyproj import Transformer

from rsmon.errors import FormatError, InputError, UnsupportedFormatError
from rsmon.io.optical import BANDS, align_pair, open_optical, read_metadata, sniff_optical
from rsmon.io.optical_landsat import QA_CLEAR_MASK, parse_landsat_id
from rsmon.io.optical_raster import SceneBlocks
from rsmon.io.optical_s2 import SCL_CLEAR, estimate_s2a_sensing_date
from tests.paths import SEEDS, SHARED_DATA

OSCD = SEEDS / "oscd"
ENVI = SEEDS / "landsat-cd-taizhou-nanjing"
T29UNU = SHARED_DATA / "sentinel2-l2a-T29UNU-60m"
LANDSAT8 = SHARED_DATA / "landsat8-c2l2-decimated"
HONGKONG = SHARED_DATA / "oscd" / "hongkong"

needs = {name: pytest.mark.skipif(not path.is_dir(), reason=f"sample folder {path} is absent")
         for name, path in (("oscd", OSCD), ("envi", ENVI), ("t29unu", T29UNU), ("landsat8", LANDSAT8),
                            ("hongkong", HONGKONG))}
UTM50 = "EPSG:32650"
X0, Y0 = 399960.0, 4100040.0


class ComputeCounter(Callback):
    """Counts dask computes (satpy's assert_maximum_dask_computes idea)."""

    def __init__(self) -> None:
        super().__init__()
        self.computes = 0

    def _start(self, dsk) -> None:
        self.computes += 1


def dn_at(path: Path, row: int, col: int, band: int = 1) -> int:
    with rasterio.open(path) as src:
        return int(src.read(band, window=((row, row + 1), (col, col + 1)))[0, 0])


def write_tif(path: Path, data: np.ndarray, transform: Affine, crs: str | None = UTM50, nodata=None) -> Path:
    data = data[None] if data.ndim == 2 else data
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data)
    return path


def l2a_folder(folder: Path, n: int = 64, *, xml: str | None = "04.00", stamp: str = "20230601T030551",
               bands10=("B02", "B03", "B04", "B08"), bands20=("B11", "B12"), scl: np.ndarray | None = None,
               b20: np.ndarray | None = None) -> Path:
    """A flat per-band L2A product: n x n at 10 m, n/2 x n/2 at 20 m, DN = 2000 + 100 * band number."""
    folder.mkdir(parents=True, exist_ok=True)
    t10, t20 = Affine(10, 0, X0, 0, -10, Y0), Affine(20, 0, X0, 0, -20, Y0)
    for band in bands10:
        write_tif(folder / f"T50SMF_{stamp}_{band}_10m.tif", np.full((n, n), 2000 + 100 * int(band[1:]), np.uint16), t10)
    for band in bands20:
        values = b20 if b20 is not None else np.full((n // 2, n // 2), 2000 + 100 * int(band[1:]), np.uint16)
        write_tif(folder / f"T50SMF_{stamp}_{band}_20m.tif", values, t20)
    if scl is not None:
        write_tif(folder / f"T50SMF_{stamp}_SCL_20m.tif", scl.astype(np.uint8), t20)
    if xml is not None:
        offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13)) \
            if float(xml) >= 4 else ""
        (folder / "MTD_MSIL2A.xml").write_text(
            '<?xml version="1.0"?><n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/'
            'User_Product_Level-2A.xsd"><n1:General_Info><Product_Info>'
            f"<PRODUCT_START_TIME>{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T03:05:51.024Z</PRODUCT_START_TIME>"
            f"<PROCESSING_BASELINE>{xml}</PROCESSING_BASELINE><Datatake><SPACECRAFT_NAME>Sentinel-2B"
            "</SPACECRAFT_NAME></Datatake></Product_Info><Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST>"
            '<BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>'
            f"<BOA_ADD_OFFSET_VALUES_LIST>{offsets}</BOA_ADD_OFFSET_VALUES_LIST>"
            "</Product_Image_Characteristics></n1:General_Info></n1:Level-2A_User_Product>")
    return folder


LANDSAT_ID = "LE07_L2SP_119038_20000317_20200917_02_T1"


def landsat_folder(folder: Path, qa: np.ndarray, *, mtl: bool = True, product_id: str = LANDSAT_ID) -> Path:
    """A Landsat 7 C2 L2 folder (TM/ETM+ band numbers): SR_Bn DN = 10000 + 1000 n, column 0 fill."""
    folder.mkdir(parents=True, exist_ok=True)
    t = Affine(30, 0, 200000, 0, -30, 3600000)
    for n in (1, 2, 3, 4, 5, 7):
        values = np.full(qa.shape, 10000 + 1000 * n, np.uint16)
        values[:, 0] = 0
        write_tif(folder / f"{product_id}_SR_B{n}.TIF", values, t, "EPSG:32651", nodata=0)
    write_tif(folder / f"{product_id}_QA_PIXEL.TIF", qa.astype(np.uint16), t, "EPSG:32651")
    if mtl:
        lines = ["GROUP = LANDSAT_METADATA_FILE", f'  LANDSAT_PRODUCT_ID = "{product_id}"', "  DATE_ACQUIRED = 2000-03-17",
                 '  SCENE_CENTER_TIME = "02:20:15.1234567Z"', '  SPACECRAFT_ID = "LANDSAT_7"']
        lines += [f"  REFLECTANCE_MULT_BAND_{n} = 2.75e-05\n  REFLECTANCE_ADD_BAND_{n} = -0.2" for n in (1, 2, 3, 4, 5, 7)]
        (folder / f"{product_id}_MTL.txt").write_text("\n".join(lines + ["END_GROUP = LANDSAT_METADATA_FILE", "END"]))
    return folder


# --------------------------------------------------------------------------------------------------
# Sentinel-2 L1C (OSCD)
# --------------------------------------------------------------------------------------------------

@needs["oscd"]
def test_oscd_known_values_grid_and_date():
    folder = OSCD / "beihai" / "imgs_1"
    ds = open_optical(folder)
    assert tuple(ds.data_vars) == BANDS and "clear" not in ds
    assert ds.attrs["product"] == "S2 L1C" and ds.attrs["radiometry"] == "reflectance"
    assert ds.attrs["datetime"].startswith("2016-12-09") and ds.sizes == {"y": 902, "x": 772}
    b04 = next(folder.glob("*_B04.tif"))
    with rasterio.open(b04) as src:
        assert ds.rio.crs == src.crs and ds.rio.transform() == src.transform
        x, y = src.transform @ (10.5, 20.5)
    assert ds.x.values[10] == pytest.approx(x) and ds.y.values[20] == pytest.approx(y)
    for row, col in ((0, 0), (20, 10), (901, 771), (450, 300)):
        assert float(ds.red[row, col]) == pytest.approx(dn_at(b04, row, col) / 10000.0, abs=1e-7)
    assert ds.red.dtype == np.float32 and ds.red.attrs["units"] == "1" and ds.red.attrs["wavelength"] == pytest.approx(0.6646)
    assert ds.red.data.chunks[0] == (512, 390) and ds.red.data.chunks[1] == (512, 260)
    # 20 m SWIR on the 10 m grid: matches GDAL's bilinear resampling of the file onto that grid
    b11 = next(folder.glob("*_B11.tif"))
    with rasterio.open(b11) as src:
        expected = np.empty(ds.swir1.shape, np.float32)
        rasterio.warp.reproject(src.read(1).astype(np.float32) / 10000, expected, src_transform=src.transform,
                                src_crs=src.crs, dst_transform=ds.rio.transform(), dst_crs=src.crs,
                                resampling=rasterio.enums.Resampling.bilinear)
    np.testing.assert_allclose(ds.swir1.values[2:-2, 2:-2], expected[2:-2, 2:-2], atol=2e-6)


@needs["oscd"]
def test_oscd_date_from_dates_txt_name_and_orbit(tmp_path, caplog):
    assert open_optical(OSCD / "rennes" / "imgs_2").attrs["datetime"] == "2017-06-21T11:06:51Z"
    ds = open_optical(OSCD / "rennes" / "imgs_1")  # OPER name: its date is the generation date
    assert ds.attrs["datetime"] == "2015-08-21" and ds.attrs["sensor"] == "Sentinel-2A MSI"
    copy = shutil.copytree(OSCD / "rennes" / "imgs_1", tmp_path / "imgs_1")  # no dates.txt beside it
    with caplog.at_level(logging.WARNING):
        assert open_optical(copy).attrs["datetime"] == "2015-08-21"
    assert "absolute orbit" in caplog.text
    assert estimate_s2a_sensing_date(6607).isoformat() == "2016-09-27"  # hongkong date_1
    assert estimate_s2a_sensing_date(2290).isoformat() == "2015-11-30"  # mumbai date_1


@needs["hongkong"]
def test_oscd_hongkong_pair_aligns():
    before, after = open_optical(HONGKONG / "imgs_1"), open_optical(HONGKONG / "imgs_2")
    assert before.sizes == {"y": 695, "x": 540} and after.sizes == {"y": 693, "x": 538}
    aligned, same = align_pair(before, after)
    assert same is after and aligned.sizes == after.sizes and aligned.rio.transform() == after.rio.transform()
    b04 = next((HONGKONG / "imgs_1").glob("*_B04.tif"))
    with rasterio.open(b04) as src:
        expected = np.empty(aligned.red.shape, np.float32)
        rasterio.warp.reproject(src.read(1).astype(np.float32) / 10000, expected, src_transform=src.transform,
                                src_crs=src.crs, dst_transform=after.rio.transform(), dst_crs=src.crs,
                                resampling=rasterio.enums.Resampling.bilinear)
    np.testing.assert_allclose(aligned.red.values, expected, atol=2e-6)
    assert np.isfinite(aligned.swir2.values).all()


# --------------------------------------------------------------------------------------------------
# Sentinel-2 L2A
# --------------------------------------------------------------------------------------------------

@needs["t29unu"]
def test_l2a_real_60m_offset_scl_and_b8a():
    ds = open_optical(T29UNU)
    assert set(ds.data_vars) == {"red", "nir", "scl", "clear", "water"}
    assert ds.attrs["nir_band"] == "B8A" and ds.attrs["product"] == "S2 L2A"
    assert ds.attrs["datetime"] == "2022-10-05T11:54:11.024Z" and ds.attrs["sensor"] == "Sentinel-2A MSI"
    assert ds.rio.crs.to_epsg() == 32629 and ds.scl.dtype == np.uint8
    red, scl = next(T29UNU.glob("*_B04_60m.jp2")), next(T29UNU.glob("*_SCL_60m.jp2"))
    with rasterio.open(red) as src:
        dn = src.read(1, window=((900, 1000), (900, 1000)))
    values = ds.red[900:1000, 900:1000].values
    good = (dn > 0) & (ds.scl[900:1000, 900:1000].values > 1)
    np.testing.assert_allclose(values[good], (dn[good].astype(np.float64) - 1000) / 10000, atol=1e-7)
    assert np.isnan(values[dn == 0]).all()
    codes = ds.scl.values
    np.testing.assert_array_equal(ds.clear.values, np.isin(codes, SCL_CLEAR))
    np.testing.assert_array_equal(ds.water.values, codes == 6)
    assert dn_at(scl, 1000, 1000) == codes[1000, 1000]


def test_l2a_offset_by_xml_safe_name_or_none(tmp_path, caplog):
    ds = open_optical(l2a_folder(tmp_path / "xml"))
    assert float(ds.red[5, 5]) == pytest.approx((2400 - 1000) / 10000) and ds.attrs["sensor"] == "Sentinel-2B MSI"
    assert ds.red.attrs["add_offset_dn"] == -1000 and ds.attrs["processing_baseline"] == 4.0
    old = open_optical(l2a_folder(tmp_path / "old", xml="03.01"))
    assert float(old.red[5, 5]) == pytest.approx(0.24)
    safe = l2a_folder(tmp_path / "S2A_MSIL2A_20230601T030551_N0509_R075_T50SMF_20230601T061234.SAFE", xml=None)
    ds = open_optical(safe)
    assert float(ds.nir[0, 0]) == pytest.approx((2800 - 1000) / 10000) and ds.attrs["datetime_source"] == "SAFE name"
    with caplog.at_level(logging.WARNING):
        ds = open_optical(l2a_folder(tmp_path / "bare", xml=None))
    assert float(ds.red[0, 0]) == pytest.approx(0.24) and "assuming add-offset 0" in caplog.text
    assert ds.attrs["datetime"] == "2023-06-01T03:05:51Z"


def test_l2a_20m_resampled_at_the_right_coordinates(tmp_path):
    n = 64
    r, c = np.mgrid[0:n // 2, 0:n // 2]
    b20 = (2000 + 4 * c + 2 * r).astype(np.uint16)  # linear in the 20 m pixel-centre coordinates
    scl = (r * 7 + c) % 12
    ds = open_optical(l2a_folder(tmp_path / "p", n, b20=b20, scl=scl), chunks=16)
    assert ds.swir1.shape == (n, n) and ds.swir1.data.chunks[0] == (16,) * 4
    i, j = np.mgrid[0:n, 0:n]
    expected = (2000 + 2 * j - 1 + i - 0.5 - 1000) / 10000  # the same plane at the 10 m centres
    good = ~np.isin(scl[i // 2, j // 2], (0, 1))  # SCL no data / defective -> NaN
    np.testing.assert_allclose(ds.swir1.values[1:-1, 1:-1][good[1:-1, 1:-1]], expected[1:-1, 1:-1][good[1:-1, 1:-1]],
                               atol=1e-6)
    np.testing.assert_array_equal(ds.scl.values, scl[i // 2, j // 2])
    np.testing.assert_array_equal(ds.clear.values, np.isin(scl[i // 2, j // 2], (2, 4, 5, 6, 7)))
    defective = np.isin(ds.scl.values, (0, 1))
    assert np.isnan(ds.red.values[defective]).all() and np.isfinite(ds.red.values[~defective]).all()


def test_scene_blocks_equal_the_lazy_arrays_and_refuse_modified_ones(tmp_path):
    n = 64
    r, c = np.mgrid[0:n // 2, 0:n // 2]
    b20 = (2000 + 4 * c + 2 * r).astype(np.uint16)
    scl = (r * 7 + c) % 12  # SCL 0/1 (no data, defective) scattered: NaN bands
    ds = open_optical(l2a_folder(tmp_path / "p", n, b20=b20, scl=scl), chunks=16)
    chunks = ds.red.data.chunks
    blocks = SceneBlocks.of(ds, [*BANDS, "clear", "water"], chunks)
    assert blocks is not None
    for rows, cols in ((slice(16, 32), slice(48, 64)), (slice(0, 16), slice(0, 16))):
        values = blocks.read(rows, cols)
        for name in [*BANDS, "clear", "water", "scl"]:
            expected = ds[name].values[rows, cols]
            np.testing.assert_array_equal(values[name], expected, err_msg=name)  # bit-identical, NaN included
            assert values[name].dtype == expected.dtype
    moved = ds.assign_coords(x=ds.x + 0.0)  # coordinates only: still the reader's arrays
    assert SceneBlocks.of(moved, BANDS, chunks) is not None
    changed = ds.assign(red=ds.red * 2)  # a modified band must never be read from the file again
    assert SceneBlocks.of(changed, BANDS, chunks) is None
    assert SceneBlocks.of(changed, ["nir"], chunks) is not None
    assert SceneBlocks.of(ds.chunk(32), BANDS, ds.chunk(32).red.data.chunks) is None


def test_scl_clear_mapping(tmp_path):
    scl = np.tile(np.arange(12), (12, 1))[:, :12].astype(np.uint8)
    ds = open_optical(l2a_folder(tmp_path / "p", 24, scl=scl))
    row = ds.isel(y=0)
    assert [c for c in range(12) if bool(row.clear.values[2 * c])] == [2, 4, 5, 6, 7]
    assert [c for c in range(12) if bool(row.water.values[2 * c])] == [6]
    assert ds.scl.attrs["_FillValue"] == 0


# --------------------------------------------------------------------------------------------------
# Landsat Collection 2 L2
# --------------------------------------------------------------------------------------------------

@needs["landsat8"]
def test_landsat8_real_scale_offset_and_qa():
    ds = open_optical(LANDSAT8)
    assert set(ds.data_vars) == {"red", "nir", "qa_pixel", "clear", "water"}
    assert ds.attrs["sensor"] == "Landsat 8 OLI" and ds.attrs["datetime"] == "2019-01-14T14:34:30.439074Z"
    red = next(LANDSAT8.glob("*_SR_B4.TIF"))
    with rasterio.open(red) as src:
        dn = src.read(1)
    values = ds.red.values
    good = dn > 0
    np.testing.assert_allclose(values[good], dn[good] * 2.75e-05 - 0.2, atol=1e-6)
    assert np.isnan(values[~good]).all()
    qa = ds.qa_pixel.values
    assert qa.dtype == np.uint16
    np.testing.assert_array_equal(ds.clear.values, (qa & 0b111111) == 0)
    # same file through the registry and its band-file path
    assert sniff_optical(red) and open_optical(red).attrs["source"] == str(LANDSAT8)


def test_landsat_qa_bits_and_tm_band_numbers(tmp_path):
    qa = np.array([[0, 1, 2, 4, 8, 16, 32, 64, 128, 129, 64 | 128, 1 << 8]], np.uint16).repeat(3, axis=0)
    ds = open_optical(landsat_folder(tmp_path / "l7", qa))
    np.testing.assert_array_equal(ds.clear.values[0], [True, False, False, False, False, False, False, True, True,
                                                       False, True, True])
    np.testing.assert_array_equal(ds.water.values[0], [False] * 8 + [True, False, True, False])
    assert (qa[0] & QA_CLEAR_MASK == 0).tolist() == ds.clear.values[0].tolist()
    assert float(ds.red[1, 3]) == pytest.approx(13000 * 2.75e-05 - 0.2)  # B3 is red on ETM+
    assert float(ds.swir2[1, 3]) == pytest.approx(17000 * 2.75e-05 - 0.2)  # B7
    assert np.isnan(ds.nir.values[:, 0]).all()
    assert ds.attrs["sensor"] == "Landsat 7 ETM+" and ds.attrs["datetime"] == "2000-03-17T02:20:15.123456Z"
    assert ds.qa_pixel.attrs["_FillValue"] == 1
    no_mtl = open_optical(landsat_folder(tmp_path / "nomtl", qa, mtl=False))
    assert no_mtl.attrs["datetime"] == "2000-03-17" and float(no_mtl.red[1, 3]) == pytest.approx(13000 * 2.75e-05 - 0.2)


def test_landsat_identifiers():
    assert parse_landsat_id("LC09_L2SP_123032_20220101_20220103_02_T1_SR_B4.TIF").sensor == "Landsat 9 OLI-2"
    scene = parse_landsat_id("LT51200382000124BJC00_Nanjing")
    assert (scene.sensor, scene.date.isoformat(), scene.path, scene.row) == ("Landsat 5 TM", "2000-05-03", 120, 38)
    old = parse_landsat_id("Resize (ETM+ Meta (Band 1):L71119038_03820030206_MTL.txt)")
    assert (old.sensor, old.date.isoformat(), old.path) == ("Landsat 7 ETM+", "2003-02-06", 119)
    assert parse_landsat_id("no identifier here") is None


# --------------------------------------------------------------------------------------------------
# ENVI and generic stacks
# --------------------------------------------------------------------------------------------------

@needs["envi"]
def test_envi_uppercase_hdr_dn_and_dates():
    path = ENVI / "Taizhou" / "2003TM"
    ds = open_optical(path)
    assert tuple(ds.data_vars) == BANDS and ds.attrs["radiometry"] == "dn" and ds.attrs["product"] == "ENVI stack"
    assert ds.attrs["datetime"] == "2003-02-06" and ds.attrs["sensor"] == "Landsat 7 ETM+"
    assert ds.rio.crs.to_epsg() == 32651 and ds.rio.transform() == Affine(30, 0, 203325, 0, -30, 3604935)
    for name, band in (("blue", 1), ("red", 3), ("nir", 4), ("swir2", 6)):
        assert float(ds[name][123, 45]) == dn_at(path, 123, 45, band)
    assert ds.swir2.attrs["wavelength"] == pytest.approx(2.22)
    nanjing = open_optical(ENVI / "Nanjing" / "LT51200382000124BJC00_Nanjing.hdr")  # the header path works too
    assert nanjing.attrs["datetime"] == "2000-05-03" and nanjing.attrs["sensor"] == "Landsat 5 TM"
    assert nanjing.sizes == {"y": 800, "x": 800} and sniff_optical(ENVI / "Nanjing" / "LT51200382000124BJC00_Nanjing")


def test_generic_stack_needs_band_map(tmp_path):
    data = np.arange(4 * 20 * 30, dtype=np.uint16).reshape(4, 20, 30)
    path = write_tif(tmp_path / "LC08_L1TP_119038_20200115_20200128_02_T1_stack.tif", data,
                     Affine(30, 0, 500000, 0, -30, 4000000), nodata=0)
    with pytest.raises(InputError, match="band_map is needed"):
        open_optical(path)
    ds = open_optical(path, band_map={"red": 3, "nir": 4})
    assert set(ds.data_vars) == {"red", "nir"} and ds.attrs["radiometry"] == "dn"
    assert float(ds.red[2, 5]) == data[2, 2, 5] and ds.attrs["datetime"] == "2020-01-15"
    assert np.isnan(ds.red.values).sum() == 0 and np.isnan(open_optical(path, band_map={"red": 1, "nir": 2}).red[0, 0])
    with pytest.raises(FormatError, match="nir=7"):
        open_optical(path, band_map={"red": 3, "nir": 7})
    with pytest.raises(InputError, match="unknown band"):
        open_optical(path, band_map={"red": 3, "nir": 4, "pan": 1})
    with pytest.raises(FormatError, match="missing band.*nir"):
        open_optical(path, band_map={"red": 3})


# --------------------------------------------------------------------------------------------------
# align_pair
# --------------------------------------------------------------------------------------------------

def _plane(x, y):
    return 0.1 + 1e-5 * (x - 500000) + 2e-5 * (4000000 - y)


def test_align_pair_reprojects_a_known_point(tmp_path):
    t_utm = Affine(30, 0, 500000, 0, -30, 4000000)
    r, c = np.mgrid[0:200, 0:200]
    x, y = t_utm @ (c + 0.5, r + 0.5)
    plane = _plane(x, y).astype(np.float32)
    before = open_optical(write_tif(tmp_path / "utm.tif", np.stack([plane, plane + 1]), t_utm),
                          band_map={"red": 1, "nir": 2})
    to_ll = Transformer.from_crs(UTM50, "EPSG:4326", always_xy=True)
    lon0, lat0 = to_ll.transform(501000, 3999000)
    t_ll = Affine(2e-4, 0, lon0, 0, -2e-4, lat0)
    after = open_optical(write_tif(tmp_path / "ll.tif", np.zeros((2, 40, 50), np.float32), t_ll, "EPSG:4326"),
                         band_map={"red": 1, "nir": 2})
    with ComputeCounter() as counter:
        aligned, _ = align_pair(before, after)
    assert counter.computes == 0 and aligned.attrs["alignment"] == "resampled"
    assert aligned.rio.crs.to_epsg() == 4326 and aligned.sizes == {"y": 40, "x": 50}
    to_utm = Transformer.from_crs("EPSG:4326", UTM50, always_xy=True)
    for row, col in ((0, 0), (17, 23), (39, 49)):
        lon, lat = t_ll @ (col + 0.5, row + 0.5)
        assert float(aligned.red[row, col]) == pytest.approx(_plane(*to_utm.transform(lon, lat)), abs=2e-5)


def test_align_pair_same_grid_shift_and_outside(tmp_path):
    t = Affine(10, 0, X0, 0, -10, Y0)
    scl = np.full((16, 16), 4, np.uint8)
    before = open_optical(l2a_folder(tmp_path / "b", 32, scl=scl))
    again = open_optical(l2a_folder(tmp_path / "b", 32, scl=scl))
    same, _ = align_pair(before, again)
    assert same is before
    shifted = l2a_folder(tmp_path / "a", 32, scl=scl)
    for path in shifted.glob("*.tif"):  # move the after scene 6 pixels east and 4 south
        with rasterio.open(path, "r+") as dst:
            dst.transform = dst.transform @ Affine.translation(6 / (dst.transform.a / 10), 4 / (dst.transform.a / 10))
    after = open_optical(shifted)
    aligned, _ = align_pair(before, after)
    assert aligned.attrs["alignment"] == "shift" and aligned.rio.transform() == t @ Affine.translation(6, 4)
    assert float(aligned.red[0, 0]) == float(before.red[4, 6])
    assert np.isnan(aligned.red.values[:, 26:]).all() and np.isnan(aligned.red.values[28:]).all()
    assert not aligned.clear.values[:, 26:].any() and (aligned.scl.values[28:] == 0).all()
    assert aligned.clear.values[:28, :26].all()


def test_align_pair_no_overlap(tmp_path):
    before = open_optical(l2a_folder(tmp_path / "b", 32))
    far = l2a_folder(tmp_path / "far", 32)
    for path in far.glob("*.tif"):
        with rasterio.open(path, "r+") as dst:
            dst.transform = Affine.translation(50000, 0) @ dst.transform
    with pytest.raises(InputError, match=r"scenes do not overlap: before .*/b .* after .*/far"):
        align_pair(before, open_optical(far))


# --------------------------------------------------------------------------------------------------
# Laziness, pickling, metadata
# --------------------------------------------------------------------------------------------------

def test_open_is_lazy_and_picklable(tmp_path):
    folder = l2a_folder(tmp_path / "p", 64, scl=np.full((32, 32), 5))
    with ComputeCounter() as counter:
        ds = open_optical(folder, chunks=(16, 32))
        ndvi = (ds.nir - ds.red) / (ds.nir + ds.red)
    assert counter.computes == 0 and ndvi.data.chunks == ((16,) * 4, (32, 32))
    with ComputeCounter() as counter:
        value = float(ndvi.mean())
    assert counter.computes == 1 and value == pytest.approx((0.18 - 0.14) / (0.18 + 0.14), rel=1e-5)
    restored = pickle.loads(pickle.dumps(ds.swir1.data))
    np.testing.assert_array_equal(dask.compute(restored, scheduler="sync")[0], ds.swir1.values)


def test_read_metadata_and_sniff(tmp_path):
    folder = l2a_folder(tmp_path / "p", 64, scl=np.full((32, 32), 5))
    meta = read_metadata(folder)
    assert meta["reader"] == "optical" and meta["product"] == "S2 L2A" and meta["dims"] == {"y": 64, "x": 64}
    west, south, east, north = meta["bbox"]
    assert 115.8 < west < east < 116.0 and 36.9 < south < north < 37.1
    assert "clear" in meta["variables"] and sniff_optical(folder) and not sniff_optical(tmp_path)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------

def test_missing_band_is_named(tmp_path):
    with pytest.raises(FormatError, match=r"missing band\(s\) nir"):
        open_optical(l2a_folder(tmp_path / "p", 16, bands10=("B02", "B03", "B04")))


def test_truncated_files_are_named(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for band in ("B04", "B08"):
        with rasterio.open(folder / f"T50SMF_20230601T030551_{band}_10m.tif", "w", driver="GTiff", width=1024,
                           height=1024, count=1, dtype="uint16", crs=UTM50, transform=Affine(10, 0, X0, 0, -10, Y0),
                           tiled=True, compress="deflate") as dst:
            dst.write(rng.integers(1, 9000, (1, 1024, 1024), dtype=np.uint16))
    b08 = folder / "T50SMF_20230601T030551_B08_10m.tif"
    os.truncate(b08, b08.stat().st_size // 2)
    with pytest.raises(FormatError, match="B08_10m.tif"):
        open_optical(folder)
    envi = tmp_path / "envi"
    envi.mkdir()
    (envi / "2000TM.HDR").write_text("ENVI\nsamples = 40\nlines = 40\nbands = 2\nheader offset = 0\n"
                                     "file type = ENVI Standard\ndata type = 1\ninterleave = bsq\nbyte order = 0\n"
                                     "wavelength = {0.66, 0.83}\n"
                                     "map info = {UTM, 1, 1, 203325, 3604935, 30, 30, 51, North, WGS-84}\n")
    (envi / "2000TM").write_bytes(bytes(1000))
    with pytest.raises(FormatError, match="2000TM: truncated ENVI"):
        open_optical(envi / "2000TM")


def test_unknown_formats(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="notes.txt"):
        open_optical(text)
    with pytest.raises(UnsupportedFormatError, match="not an optical product folder"):
        open_optical(tmp_path)
    bad_tif = tmp_path / "broken.tif"
    bad_tif.write_bytes(b"II*\x00garbage")
    with pytest.raises(FormatError, match="broken.tif"):
        open_optical(bad_tif)
    with pytest.raises(FormatError, match="does not exist"):
        open_optical(tmp_path / "missing")
    with pytest.raises(InputError, match="chunks"):
        open_optical(l2a_folder(tmp_path / "p", 16), chunks=0)


def test_two_scenes_in_one_folder(tmp_path):
    folder = l2a_folder(tmp_path / "p", 16)
    l2a_folder(folder, 16, stamp="20230611T030551", xml=None)
    with pytest.raises(InputError, match="2 scenes"):
        open_optical(folder)


def test_safe_folder_picks_finest_files(tmp_path):
    safe = tmp_path / "S2B_MSIL2A_20230601T030551_N0509_R075_T50SMF_20230601T061234.SAFE"
    img = safe / "GRANULE" / "L2A_T50SMF_A032000_20230601T031000" / "IMG_DATA"
    l2a_folder(img / "R10m", 32, bands20=(), xml=None)
    l2a_folder(img / "R20m", 32, bands10=(), scl=np.full((16, 16), 6), xml=None)
    l2a_folder(img / "R60m", 30, bands10=(), bands20=("B04", "B11"), xml=None)  # coarser copies: ignored
    for folder in (img / "R20m", img / "R60m"):
        for path in folder.glob("*_20m.tif"):
            if folder.name == "R60m":
                path.rename(path.with_name(path.name.replace("_20m", "_60m")))
    l2a_folder(tmp_path / "xml", 4, bands10=(), bands20=())
    shutil.copy(tmp_path / "xml" / "MTD_MSIL2A.xml", safe / "MTD_MSIL2A.xml")
    band_file = next((img / "R10m").glob("*_B04_10m.tif"))
    ds = open_optical(band_file)  # a band file opens its whole product
    assert ds.attrs["source"] == str(safe) and ds.sizes == {"y": 32, "x": 32}
    assert ds.red.attrs["source_resolution"] == 10 and ds.swir1.attrs["source_resolution"] == 20
    assert float(ds.swir1[3, 3]) == pytest.approx((3100 - 1000) / 10000) and ds.water.values.all()
    assert sniff_optical(safe) and sniff_optical(safe / "MTD_MSIL2A.xml")

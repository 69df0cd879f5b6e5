"""Co-registration of two dates (rsmon.products.coregister): known shifts of real scenes found and
undone, the real OSCD Beihai pair's misregistration measured and corrected (F1 against the expert
map rises), and the cases where the scene is left alone; the CLI's summary and switch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from rsmon.cli import main
from rsmon.errors import InputError
from rsmon.io.optical import open_optical
from rsmon.io.optical_align import align_pair, dataset_grid, shifted_georeference
from rsmon.products.change import ChangeParams, detect_change
from rsmon.products.coregister import CoregParams, align_coregistered, estimate_shift
from rsmon.validate.change import change_scores, read_reference_mask
from paths import SEEDS

BEIHAI, RENNES = SEEDS / "oscd" / "beihai", SEEDS / "oscd" / "rennes"


@pytest.fixture(scope="module")
def rennes():
    return open_optical(RENNES / "imgs_2")


def moved(scene: xr.Dataset, dy: float, dx: float) -> xr.Dataset:
    """``scene`` with its content put ``dy`` rows down and ``dx`` columns right of the truth."""
    return shifted_georeference(scene, dy, dx, dataset_grid(scene))


def test_a_whole_pixel_shift_is_found_and_undone_exactly(rennes):
    off = moved(rennes, 2, -1)
    found = estimate_shift(align_pair(off, rennes)[0], rennes)
    assert (found.dy, found.dx) == pytest.approx((-2.0, 1.0), abs=0.05)
    assert found.applied and found.agreeing == len(found.estimates) >= 2
    fixed, shift = align_coregistered(off, rennes)
    assert shift.applied
    for band in ("red", "nir", "swir1"):  # a whole number of pixels: sliced, values identical
        got, want = fixed[band].values, rennes[band].values
        both = np.isfinite(got)
        assert both.mean() > 0.98 and np.array_equal(got[both], want[both]), band


def test_a_sub_pixel_shift_is_found_to_a_tenth_of_a_pixel(rennes):
    off = moved(rennes, 0.6, -0.4)
    found = estimate_shift(align_pair(off, rennes)[0], rennes)
    assert (found.dy, found.dx) == pytest.approx((-0.6, 0.4), abs=0.1) and found.applied
    fixed, _ = align_coregistered(off, rennes)
    again = estimate_shift(fixed, rennes)
    assert again.shift_px < 0.1 and not again.applied and "below" in again.reason
    # and in another CRS than the grid's: the move is converted at the grid's centre
    utm = off.rio.reproject("EPSG:32630")
    found = estimate_shift(align_pair(utm, rennes)[0], rennes)
    assert (found.dy, found.dx) == pytest.approx((-0.6, 0.4), abs=0.15)


def test_real_beihai_pair_is_misregistered_and_correcting_it_raises_f1():
    """OSCD Beihai (Sentinel-2 L1C, 2016 -> 2018, before the Global Reference Image): every window
    in both bands finds the after scene about 0.8 pixel off on both axes (the same, to 0.05 px,
    as skimage's phase correlation of the whole scenes; benchmarks/validate_change_sites.py), and
    the change map against the expert labels improves when it is corrected."""
    before, after = open_optical(BEIHAI / "imgs_1"), open_optical(BEIHAI / "imgs_2")
    reference = read_reference_mask(BEIHAI / "cm" / "beihai-cm.tif")
    plain = align_pair(after, before)[0]
    shift = estimate_shift(plain, before)
    assert shift.applied and shift.agreeing == len(shift.estimates) >= 8
    assert -0.95 < shift.dy < -0.6 and -0.95 < shift.dx < -0.6
    assert 5 < shift.as_dict()["shift_m"] < 15  # a 10 m grid in lon/lat: metres at its latitude
    fixed, _ = align_coregistered(after, before)
    f1 = [change_scores(detect_change(before, a, ChangeParams())["change"].values, reference).f1
          for a in (plain, fixed)]
    assert f1[1] > f1[0] + 0.01, f1


def test_scenes_without_a_common_pattern_are_left_alone(rennes):
    rng = np.random.default_rng(3)
    noise = rennes.copy()
    for band in ("red", "nir"):
        noise[band] = (("y", "x"), rng.random(rennes[band].shape, dtype=np.float32))
    shift = estimate_shift(noise, rennes)
    assert not shift.applied and "disagree" in shift.reason
    cloudy = rennes.copy()
    for band in ("red", "nir"):
        cloudy[band] = rennes[band].where(False)  # nothing valid
    shift = estimate_shift(cloudy, rennes)
    assert not shift.applied and "0 of" in shift.reason and shift.estimates == []
    assert "no band" in estimate_shift(rennes[["blue"]], rennes[["blue"]]).reason
    far = estimate_shift(align_pair(moved(rennes, 0, 12), rennes)[0], rennes, CoregParams(max_shift_px=5))
    assert not far.applied and "check the scenes' georeference" in far.reason and far.dx == pytest.approx(-12, abs=0.1)
    with pytest.raises(InputError, match="min_agree"):
        CoregParams(min_agree=0)


def test_cli_reports_the_shift_and_can_leave_it(tmp_path, capsys):
    args = ["redline", "detect", "--before", str(BEIHAI / "imgs_1"), "--after", str(BEIHAI / "imgs_2"),
            "--no-quicklooks", "--no-checksums"]
    assert main([*args, "-o", str(tmp_path / "on")]) == 0
    assert main([*args, "--no-coregister", "-o", str(tmp_path / "off")]) == 0
    capsys.readouterr()
    on = json.loads((tmp_path / "on" / "summary.json").read_text())
    off = json.loads((tmp_path / "off" / "summary.json").read_text())
    [reg] = on["coregistration"]
    assert reg["role"] == "before" and reg["scene"] == str(BEIHAI / "imgs_1") and reg["applied"]
    assert 0.6 < reg["dy"] < 0.95 and 0.6 < reg["dx"] < 0.95  # the before scene moves the other way
    assert off["coregistration"] == "off" and on["n_change_pixels"] != off["n_change_pixels"]


def test_workflow_parameters(tmp_path):
    """A redline job may turn co-registration off or set its thresholds; a misspelt field is refused."""
    from rsmon.workflow.spec import SpecError, load_workflow

    def job(parameters: str):
        path = tmp_path / "wf.yaml"
        path.write_text("name: r\nsources: [/in]\njobs:\n  - id: r\n    product: redline\n    inputs:\n"
                        "      before: {collection: s2-l2a}\n      after: {collection: s2-l2a}\n"
                        f"    parameters: {parameters}\n", encoding="utf-8")
        return load_workflow(path).jobs[0].parameters

    assert job("{coregister: false}") == {"coregister": False}
    assert job("{coreg: {min_shift_px: 0.5, window_px: 256}}")["coreg"] == {"min_shift_px": 0.5, "window_px": 256}
    with pytest.raises(SpecError, match="shift_px_min"):
        job("{coreg: {shift_px_min: 0.5}}")


def test_pixels_the_qa_layer_calls_cloudy_are_not_matched(rennes):
    """With the readers' ``clear`` layer on both dates, windows mostly under cloud are left out."""
    off = align_pair(moved(rennes, 0.6, -0.4), rennes)[0]
    whole = estimate_shift(off, rennes)
    clear = xr.DataArray(np.ones(rennes["red"].shape, bool), dims=("y", "x"))
    clear[:, :150] = False  # cloud over the left 150 columns on the after date: a fifth of the left window
    cloudy = estimate_shift(off.assign(clear=xr.ones_like(clear)), rennes.assign(clear=clear))
    assert len(whole.estimates) == 4  # two windows (columns 102-358 and 204-460), two bands
    assert len(cloudy.estimates) == 2  # the left window dropped, in both bands
    assert (cloudy.dy, cloudy.dx) == pytest.approx((-0.6, 0.4), abs=0.1) and cloudy.applied

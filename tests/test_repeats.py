"""One observation used once: Sentinel-5P near-real-time granules left out once newer processings
of their orbit part have arrived (known answers from real-format names), and a daily NO2 job on an
inbox holding both (the job's inputs and its L3 counts)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import xarray as xr

from rsmon.io.s5p_layout import parse_s5p_filename
from rsmon.sim.s5p import orbits_of_day, scanlines_crossing, simulate_orbit
from rsmon.workflow.ledger import Ledger, ledger_url
from rsmon.workflow.repeats import (drop_covered_granules, drop_repeated_scenes, remeasured_scanlines,
                                    without_remeasured)
from rsmon.workflow.runner import run_workflow
from workflow_scenes import BBOX, DAY, write_workflow


def granule(name: str):
    s5p = parse_s5p_filename(name)
    return SimpleNamespace(path=f"/in/{name}", item_id=name, files=(f"/in/{name}",), start=s5p.start,
                           bbox=None, platform="Sentinel-5P", product=f"L2__{s5p.product}")


# Orbit 31880 of 2023-12-15 (offline: 03:55:12 -> 05:36:42) and the next, as named by the ground segment
OFFL = "S5P_OFFL_L2__NO2____20231215T035512_20231215T053642_31880_03_020600_20231217T195103.nc"
OFFL_NEXT = "S5P_OFFL_L2__NO2____20231215T053642_20231215T071812_31881_03_020600_20231217T213035.nc"
NRTI = "S5P_NRTI_L2__NO2____20231215T{}_20231215T{}_31880_03_020600_20231215T{}.nc"
INSIDE = NRTI.format("045812", "050312", "052025")        # five minutes inside the orbit
OTHER_INSIDE = NRTI.format("050312", "050812", "052541")
ACROSS_END = NRTI.format("053312", "053812", "055504")    # runs 70 s past the orbit's end
CH4_INSIDE = "S5P_NRTI_L2__CH4____20231215T045812_20231215T050312_31880_03_020600_20231215T052025.nc"


def names(items):
    return [Path(i.path).name for i in items]


def test_near_real_time_granules_covered_by_offline_orbits_are_left_out():
    offl, inside, other, across, ch4 = map(granule, (OFFL, INSIDE, OTHER_INSIDE, ACROSS_END, CH4_INSIDE))
    # the offline orbit covers the two granules inside it, not the one running past its end, nor another product
    assert names(drop_covered_granules([inside, offl, other, across, ch4], "l2")) == [OFFL, ACROSS_END, CH4_INSIDE]
    # the next offline orbit covers the rest: two newer copies together cover a granule
    nxt = granule(OFFL_NEXT)
    assert names(drop_covered_granules([across, offl, nxt], "l2")) == [OFFL, OFFL_NEXT]
    # before the offline orbits arrive, the near-real-time granules are all used (side by side: no overlap)
    assert names(drop_covered_granules([inside, other, across], "l2")) == [INSIDE, OTHER_INSIDE, ACROSS_END]
    # a gap between the newer copies: not covered, kept
    gap = granule("S5P_OFFL_L2__NO2____20231215T053700_20231215T071812_31881_03_020600_20231217T213035.nc")
    assert names(drop_covered_granules([across, offl, gap], "l2")) == [ACROSS_END, OFFL, gap.item_id]
    # the offline orbit once its reprocessing is there; an older processor once a newer one is
    rpro = granule(OFFL.replace("OFFL", "RPRO").replace("20231217T195103", "20240501T101010"))
    newer = granule(OFFL.replace("020600", "020700"))
    assert names(drop_covered_granules([offl, rpro, inside], "l2")) == [rpro.item_id]
    assert names(drop_covered_granules([offl, newer], "l2")) == [newer.item_id]
    # drop_repeated_scenes applies it after the acquisition pass; items without S5P names pass untouched
    scene = SimpleNamespace(path="/in/a.hdr", item_id="a", files=("/in/a.hdr",), start=None, bbox=None,
                            platform=None, product=None)
    assert names(drop_repeated_scenes([inside, scene, offl], "l2")) == ["a.hdr", OFFL]


def test_simulated_near_real_time_granule_is_named_by_its_own_times(tmp_path):
    orbit = orbits_of_day(DAY)[0]
    offl = parse_s5p_filename(simulate_orbit(tmp_path, orbit, n_scanlines=400, scanline_range=(100, 140)))
    nrti = parse_s5p_filename(simulate_orbit(tmp_path, orbit, n_scanlines=400, scanline_range=(100, 140),
                                             mode="NRTI"))
    assert nrti.mode == "NRTI" and nrti.orbit == offl.orbit == orbit
    assert offl.start < nrti.start < nrti.end < offl.end  # a granule inside its orbit
    assert 0 < (nrti.production - nrti.end).total_seconds() < 3 * 3600  # delivered within three hours
    with xr.open_dataset(next(tmp_path.glob("S5P_NRTI_*.nc"))) as ds:  # the name's times hold the data's
        first, last = (datetime.fromisoformat(ds.attrs[k].replace("Z", "+00:00"))
                       for k in ("time_coverage_start", "time_coverage_end"))
    assert nrti.start <= first and last <= nrti.end


def test_daily_no2_job_uses_each_measurement_once(tmp_path):
    """An inbox with the day's offline orbits over the box and near-real-time granules: those of
    the first orbit are covered by its offline orbit and left out; the second orbit has only its
    near-real-time granule, which is used. The L3 equals the run on the used files alone."""
    first, second = [o for o in orbits_of_day(DAY) if scanlines_crossing(o, BBOX)][:2]
    rows_1, rows_2 = scanlines_crossing(first, BBOX), scanlines_crossing(second, BBOX)
    inbox, alone = tmp_path / "inbox", tmp_path / "alone"
    offl_1 = simulate_orbit(inbox, first, seed=1, scanline_range=rows_1)
    middle = (rows_1[0] + rows_1[1]) // 2
    nrti_1 = [simulate_orbit(inbox, first, seed=1, scanline_range=r, mode="NRTI")
              for r in ((rows_1[0], middle), (middle, rows_1[1]))]
    nrti_2 = simulate_orbit(inbox, second, seed=1, scanline_range=rows_2, mode="NRTI")
    simulate_orbit(alone, first, seed=1, scanline_range=rows_1)  # the same two files, alone
    simulate_orbit(alone, second, seed=1, scanline_range=rows_2, mode="NRTI")

    results = {}
    for name, folder in (("inbox", inbox), ("alone", alone)):
        wf = write_workflow(tmp_path / f"{name}.yaml", [folder], jobs=("no2",))
        home = tmp_path / f"home-{name}"
        [report] = run_workflow(wf, DAY, home=home)
        assert report.status == "success", report.summary()
        with Ledger(ledger_url(home)) as led:
            [job] = led.run(report.run_id)["jobs"]
        results[name] = (sorted(Path(i["path"]).name for i in job["inputs"]),
                         next((home / "products" / "no2-l3").rglob("*.nc")))
    used, l3 = results["inbox"]
    assert used == sorted([offl_1.name, nrti_2.name]) and not {p.name for p in nrti_1} & set(used)
    assert used == results["alone"][0]
    with xr.open_dataset(l3) as got, xr.open_dataset(results["alone"][1]) as want:
        counted = [v for v in got.data_vars if "count" in v or v.startswith("n_")]
        assert counted, list(got.data_vars)
        for var in got.data_vars:
            np.testing.assert_array_equal(got[var].values, want[var].values, err_msg=var)


def _swath(times_s, mode="NRTI", processor="020600", product="NO2"):
    base = np.datetime64("2023-12-15T05:30:00.000", "ms")
    times = base + (np.asarray(times_s) * 1000).astype("timedelta64[ms]")
    return xr.Dataset(coords={"time_utc": ("scanline", times)},
                      attrs={"product": product, "mode": mode, "processor": processor, "platform": "Sentinel-5P"})


def test_scanlines_held_again_by_a_newer_processing_by_hand():
    """Times in seconds after 05:30; scanlines 0.84 s apart. The offline orbit ends at 12.6 s; the
    near-real-time granule runs from 8.4 s to 16.8 s: its first six scanlines (8.4-12.6 s) are
    in the orbit, to a few milliseconds."""
    step = 0.84
    offl = _swath(np.arange(16) * step, mode="OFFL")                    # 0 .. 12.6 s
    nrti = _swath(10 * step + np.arange(11) * step + 0.003, mode="NRTI")  # 8.403 .. 16.803 s
    ch4 = _swath(np.arange(16) * step, mode="NRTI", product="CH4")      # another product: apart
    again = remeasured_scanlines({"offl.nc": offl, "nrti.nc": nrti, "ch4.nc": ch4})
    assert list(again) == ["nrti.nc"]
    np.testing.assert_array_equal(again["nrti.nc"], [True] * 6 + [False] * 5)
    # scanlines half a scanline apart are different measurements
    shifted = _swath(10 * step + np.arange(11) * step + step / 2, mode="NRTI")
    assert remeasured_scanlines({"offl.nc": offl, "nrti.nc": shifted}) == {}
    # a reprocessing holds the offline orbit again (all of it); a newer processor version wins too
    rpro = _swath(np.arange(16) * step, mode="RPRO")
    got = remeasured_scanlines({"offl.nc": offl, "rpro.nc": rpro, "nrti.nc": nrti})
    assert got["offl.nc"].all() and got["nrti.nc"].sum() == 6 and "rpro.nc" not in got
    newer = _swath(np.arange(16) * step, mode="OFFL", processor="020700")
    assert remeasured_scanlines({"a.nc": offl, "b.nc": newer})["a.nc"].all()
    # two equal copies: the one whose name sorts last keeps the scanlines (counted once)
    got = remeasured_scanlines({"copy-2.nc": offl, "copy-1.nc": offl.copy()})
    assert list(got) == ["copy-1.nc"] and got["copy-1.nc"].all()
    # scanlines without a time (NaT) are never taken for one another
    gaps = _swath(np.arange(16) * step, mode="OFFL")
    gaps["time_utc"].values[3:5] = np.datetime64("NaT")
    holes = _swath(np.arange(16) * step, mode="NRTI")
    holes["time_utc"].values[[4, 9]] = np.datetime64("NaT")
    np.testing.assert_array_equal(remeasured_scanlines({"o": gaps, "n": holes})["n"],
                                  [k not in (3, 4, 9) for k in range(16)])
    # a granule is left out whole, or cut
    assert without_remeasured(offl, got["copy-1.nc"]) is None
    assert without_remeasured(nrti, None) is nrti
    cut = without_remeasured(nrti, remeasured_scanlines({"o": offl, "n": nrti})["n"])
    assert cut.sizes["scanline"] == 5 and cut["time_utc"].values[0] == nrti["time_utc"].values[6]


def test_l3_counts_an_orbit_part_held_by_two_processings_once(tmp_path):
    """The offline orbit part over the box ends mid-box; a near-real-time granule runs on from 40
    scanlines before that end. The L3 of the two equals the L3 of the offline part and the
    near-real-time granule cut at the orbit part's end (the simulator writes the same values for a
    scanline in any granule of its orbit); without the cut, the overlap counted twice."""
    from rsmon.grid import LonLatGrid
    from rsmon.workflow.l3 import run_l3

    orbit = next(o for o in orbits_of_day(DAY) if scanlines_crossing(o, BBOX))
    a, b = scanlines_crossing(orbit, BBOX)
    end = (a + b) // 2
    both, cut = tmp_path / "both", tmp_path / "cut"
    for folder, nrti_from in ((both, end - 40), (cut, end)):
        simulate_orbit(folder, orbit, seed=1, scanline_range=(a, end))
        simulate_orbit(folder, orbit, seed=1, scanline_range=(nrti_from, b), mode="NRTI")
    # (rsmon l3 takes the files as given; the planner would drop this granule by its name, as the
    # simulator names a subset by its whole orbit: a granule past the orbit's end stays in a job)
    grid = LonLatGrid(west=BBOX[0], south=BBOX[1], res=0.1, width=60, height=60)
    outputs = {}
    for folder in (both, cut):
        result = run_l3([folder], grid, tmp_path / f"out-{folder.name}", fmt="nc", checksums=False)
        [outputs[folder.name]] = result.outputs
    with xr.open_dataset(outputs["both"]) as got, xr.open_dataset(outputs["cut"]) as want:
        counts = [v for v in got.data_vars if "count" in v or v.startswith("n_")]
        assert counts and float(got[counts[0]].sum()) > 0
        for var in got.data_vars:
            np.testing.assert_array_equal(got[var].values, want[var].values, err_msg=var)
        prov = json.loads(got.attrs["rsmon_provenance"])
    [(name, n)] = prov["parameters"]["scanlines_held_by_newer_processing"].items()
    assert name.startswith("S5P_NRTI_") and n == 40

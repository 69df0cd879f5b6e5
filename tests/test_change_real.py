"""Real data: the Landsat Taizhou pair (ETM+ 2000/2003, 8-bit DN) with its expert reference masks.

Target of the issue: F1 >= 0.6 and above the plain CVA + Otsu baseline, with the default (single)
parameter set. The scenes are read as the validation script reads them
(benchmarks/validate_change_sites.py): with ``rsmon.io.optical.open_optical`` when it is installed,
else with the script's private loader that builds the same structure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tests.paths import SHARED_DATA  # noqa: E402

TAIZHOU = SHARED_DATA / "landsat-cd-taizhou-nanjing" / "Taizhou"

pytestmark = pytest.mark.skipif(not (TAIZHOU / "2000TM").exists(),
                                reason=f"Taizhou Landsat pair not found under {TAIZHOU}")


def test_taizhou_beats_baseline_and_reaches_f1_06():
    from validate_change_sites import _loader

    from rsmon.products.change import cva_otsu_baseline, detect_change
    from rsmon.validate.change import change_scores

    before, after, reference, _, _ = _loader("auto")("taizhou", 128)
    assert before.attrs["radiometry"] == "dn"
    ours = change_scores(detect_change(before, after)["change"].values, reference)
    base = change_scores(cva_otsu_baseline(before, after).values, reference)
    assert ours.n_scored == 4227 + 17163          # every labelled pixel is scored
    assert ours.f1 >= 0.6
    assert ours.f1 > base.f1
    assert ours.kappa > base.kappa

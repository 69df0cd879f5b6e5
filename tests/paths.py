"""Where tests find the project's seeds and the real sample data in ``shared/data``.

``shared/`` lies beside the project folder (for developers and CI alike); ``RSMON_SHARED_DATA``
overrides it. Tests that need a data set skip with a reason when it is absent.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"


def _shared_data() -> Path:
    env = os.environ.get("RSMON_SHARED_DATA")
    if env:
        return Path(env)
    for candidate in (ROOT.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return ROOT.parent / "shared" / "data"


SHARED_DATA = _shared_data()

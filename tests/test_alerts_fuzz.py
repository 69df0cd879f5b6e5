"""Property-based fuzzing of the alert API from its own OpenAPI document (issue 6, item 6): no 500s.

Schemathesis generates valid and invalid requests for every operation (bounded number of
examples so the module runs in well under a minute), sending an admin key so the handlers behind
authentication are reached. The webhook dispatcher is off: generated webhook URLs are never called.
"""

import shutil
import tempfile
import warnings

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

from rsmon.alerts.api import create_app  # noqa: E402
from rsmon.alerts.store import open_store  # noqa: E402
from rsmon.alerts.testing import synthetic_alerts  # noqa: E402
from rsmon.alerts.web import ServiceSettings  # noqa: E402

# The schema is loaded when the module is collected (schemathesis parametrizes at collection):
# a small store in a temporary folder, removed when the module's tests are done.
_FOLDER = tempfile.mkdtemp(prefix="rsmon-fuzz-")
_STORE = open_store(f"sqlite:///{_FOLDER}/alerts.db")
_STORE.upsert(synthetic_alerts(40, seed=5, bbox=(116.0, 30.0, 118.0, 32.0)), actor="fuzz")
_TOKEN = _STORE.create_key("admin")[0]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    schema = schemathesis.openapi.from_asgi("/api", create_app(_STORE, ServiceSettings(webhooks=False, rate_limit=0)))


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    _STORE.close()
    shutil.rmtree(_FOLDER, ignore_errors=True)


#: The API's operations by label ("GET /collections/alerts/items", ...). One pytest test each,
#: with its own node id (schemathesis' own parametrize gives them all one id, and pytest-xdist,
#: which schedules by id, then ran only one of them).
OPERATIONS = {op.label: op for op in (result.ok() for result in schema.get_all_operations())}


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_server_errors(label):
    """Valid and invalid requests (both generation modes, as schemathesis' default) to one operation."""
    operation = OPERATIONS[label]
    requests = st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode))

    @settings(max_examples=50, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=requests)
    def no_500(case):
        case.call_and_validate(headers={"X-API-Key": _TOKEN}, checks=[not_a_server_error])

    no_500()

"""Alert service units: query-parameter parsing, cursors, lifecycle table, rate limits, OpenAPI 3.0."""

import pytest

from rsmon.alerts.cursor import decode_cursor, encode_cursor
from rsmon.alerts.errors import ConflictError, RateLimitError
from rsmon.alerts.lifecycle import TRANSITIONS, Status, check_transition
from rsmon.alerts.params import parse_bbox, parse_classes, parse_datetime, parse_min_confidence, parse_statuses
from rsmon.alerts.schema import day_number
from rsmon.alerts.security import Scope, TokenBucket, parse_redlines
from rsmon.alerts.web import STATUS_CODES, status_for, to_openapi30
from rsmon.errors import InputError, RsmonError


@pytest.mark.parametrize("text, expected", [
    ("116,30,118,32", (116, 30, 118, 32)),
    ("116.5, 30.25 ,118,32", (116.5, 30.25, 118, 32)),
    ("116,30,-100,118,32,5000", (116, 30, 118, 32)),
    ("170,-10,-170,10", (170, -10, -170, 10)),
    ("-180,-90,180,90", (-180, -90, 180, 90)),
    ("1e2,3E1,1.1e2,3.2e1", (100, 30, 110, 32)),
])
def test_bbox_valid(text, expected):
    assert parse_bbox(text) == expected


@pytest.mark.parametrize("text, message", [
    ("116,30,118", "4 or 6"), ("116,30,118,32,1", "4 or 6"), ("a,b,c,d", "4 or 6"), ("", "4 or 6"),
    ("nan,30,118,32", "4 or 6"), ("inf,30,118,32", "4 or 6"), ("0x10,30,118,32", "4 or 6"),
    ("116,30,190,32", "longitudes"), ("116,-95,118,32", "latitudes"), ("116,32,118,30", "miny"),
    ("116,30,5,118,32,1", "minz"),
])
def test_bbox_invalid(text, message):
    with pytest.raises(InputError, match=message):
        parse_bbox(text)


def test_datetime_forms():
    d = day_number
    assert parse_datetime("2024-05-01") == (d("2024-05-01"), d("2024-05-01"))
    assert parse_datetime("2024-05-01T23:30:00Z") == (d("2024-05-01"),) * 2
    assert parse_datetime("2024-05-02T01:00:00+08:00") == (d("2024-05-01"),) * 2  # UTC day
    assert parse_datetime("2024-05-01/2024-05-31") == (d("2024-05-01"), d("2024-05-31"))
    assert parse_datetime("../2024-05-31") == (None, d("2024-05-31"))
    assert parse_datetime("2024-05-01/..") == (d("2024-05-01"), None)
    assert parse_datetime("2024-05-01/") == (d("2024-05-01"), None)
    assert parse_datetime("2024-05-01T00:00:00.5Z/2024-06-01t00:00:00z") == (d("2024-05-01"), d("2024-06-01"))


@pytest.mark.parametrize("text, message", [
    ("yesterday", "RFC 3339"), ("2024-05-01T08:00:00", "RFC 3339"), ("2024-02-30", "RFC 3339"),
    ("2024-05-01/2024-04-01", "ends before"), ("../..", "at least one bound"), ("/", "at least one bound"),
    ("2024-01-01/2024-02-01/2024-03-01", "START/END"), ("20240501", "RFC 3339"),
])
def test_datetime_invalid(text, message):
    with pytest.raises(InputError, match=message):
        parse_datetime(text)


def test_lists_and_confidence():
    assert parse_classes("construction,other") == {"construction", "other"}
    assert parse_statuses("new") == {"new"}
    assert parse_min_confidence("high") == 2 and parse_min_confidence("3") == 3
    for call, text in ((parse_classes, "parking"), (parse_classes, "a,,b"), (parse_statuses, "done"),
                       (parse_min_confidence, "4"), (parse_classes, ",".join(["other"] * 101))):
        with pytest.raises(InputError):
            call(text)
    assert parse_redlines(None) is None and parse_redlines("RL-1, RL-2") == {"RL-1", "RL-2"}
    with pytest.raises(InputError):
        parse_redlines("RL 1")


def test_cursors_are_opaque_and_checked():
    token = encode_cursor("feed", "a" * 32, 12345)
    assert "12345" not in token and decode_cursor(token, "feed", "a" * 32, "updated_since") == 12345
    assert decode_cursor("0", "feed", "a" * 32, "updated_since") == 0
    with pytest.raises(InputError, match="another alert store"):
        decode_cursor(token, "feed", "b" * 32, "updated_since")
    with pytest.raises(InputError, match="not a page cursor"):
        decode_cursor(token, "page", "a" * 32, "cursor")
    for bad in ("", "!!!", "x" * 101, "2024-05-01T00:00:00Z", encode_cursor("page", "a" * 32, 1)[:-2]):
        with pytest.raises(InputError, match="updated_since"):
            decode_cursor(bad, "feed", "a" * 32, "updated_since")


def test_lifecycle_graph():
    assert TRANSITIONS[Status.new] == {Status.under_review}
    assert TRANSITIONS[Status.under_review] == {Status.confirmed, Status.dismissed}
    check_transition("a", Status.under_review, Status.confirmed, None)
    with pytest.raises(ConflictError, match="allowed from new: under_review"):
        check_transition("a", Status.new, Status.dismissed, "x")


def test_token_bucket():
    bucket = TokenBucket(rate=2, burst=3)
    for _ in range(3):
        bucket.take("k", now=100.0)
    with pytest.raises(RateLimitError) as info:
        bucket.take("k", now=100.0)
    assert info.value.retry_after == pytest.approx(0.5)
    bucket.take("other", now=100.0)  # buckets are per key
    bucket.take("k", now=100.5)  # one token back after 1/rate s
    TokenBucket(rate=0, burst=1).take("k")  # disabled
    assert Scope.admin.allows(Scope.write) and not Scope.read.allows(Scope.write)


def test_one_status_table():
    assert status_for(InputError("x")) == 400
    assert status_for(RsmonError("x")) == 500
    from rsmon.alerts.errors import PreconditionFailedError

    assert status_for(PreconditionFailedError("x")) == 412 and status_for(ConflictError("x")) == 409
    assert all(issubclass(cls, RsmonError) for cls in STATUS_CODES)


def test_openapi30_rewrite():
    doc = {"openapi": "3.1.0", "paths": {"/x": {"get": {"parameters": [
        {"name": "bbox", "schema": {"anyOf": [{"type": "string", "maxLength": 4}, {"type": "null"}], "title": "B"}},
        {"name": "e", "schema": {"const": "a"}},
        {"name": "n", "schema": {"type": "integer", "exclusiveMinimum": 0, "examples": [3]}}]}}}}
    out = to_openapi30(doc)
    p = out["paths"]["/x"]["get"]["parameters"]
    assert out["openapi"] == "3.0.3"
    assert p[0]["schema"] == {"type": "string", "maxLength": 4, "title": "B", "nullable": True}
    assert p[1]["schema"] == {"enum": ["a"]}
    assert p[2]["schema"] == {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "example": 3}
    assert doc["openapi"] == "3.1.0"  # input untouched

"""Provenance of an output: which inputs, which parameters, which software, when.

Every writer stores a :class:`Provenance` as JSON in its output (GeoTIFF tag, NetCDF global
attribute) and the catalog turns it into ``derived_from`` links and ``rsmon:parameters``
(ARCHITECTURE.md: "every STAC item names its inputs and parameters").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import PurePath
from typing import Any

import rsmon
from rsmon.errors import FormatError, InputError

__all__ = ["InputRef", "Provenance", "sha256_file", "parse_datetime", "format_datetime"]


def parse_datetime(value: str | datetime | None, name: str = "datetime") -> datetime | None:
    """Parse an ISO 8601 time into an aware UTC :class:`~datetime.datetime`.

    A trailing ``Z`` is accepted; a naive time is taken to be UTC (all rsmon times are UTC).

    Raises
    ------
    InputError
        ``value`` is not an ISO 8601 time; the message names ``name``.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise InputError(f"{name}: expected an ISO 8601 UTC time, got {value!r}") from None
    else:
        raise InputError(f"{name}: expected an ISO 8601 UTC time, got {value!r}")
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def format_datetime(value: datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z`` suffix (``2019-06-12T00:00:00Z``); naive times are taken as UTC."""
    if value is None:
        return None
    value = parse_datetime(value)
    assert value is not None
    text = value.replace(tzinfo=None).isoformat()
    return text + "Z"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in ``chunk``-byte pieces.

    Raises
    ------
    FormatError
        The file cannot be read (message names the path).
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read file to checksum it ({exc.strerror or exc})") from None
    return digest.hexdigest()


def _json_default(obj: Any) -> Any:
    """JSON fallback for the non-builtin values parameters commonly hold."""
    if isinstance(obj, datetime):
        return format_datetime(obj)
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    # numpy scalars and 0-d arrays without importing numpy here
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "ndim", 1) == 0:
        return item()
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _nan_to_none(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` so the JSON is strict (no NaN tokens)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


@dataclass
class InputRef:
    """One input file of an output.

    Attributes
    ----------
    path : str
        Path or URL of the input as it was read.
    sha256 : str or None
        Hex SHA-256 digest of the file, when computed.
    id : str
        Identifier of the input; defaults to the file stem (``S5P_OFFL_L2__NO2____2019...``).
    start, end : datetime or None
        Time coverage of the input (UTC).
    """

    path: str
    sha256: str | None = None
    id: str = ""
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        self.path = os.fspath(self.path)
        if not self.id:
            self.id = PurePath(self.path).stem
        self.start = parse_datetime(self.start, f"input {self.path}: start")
        self.end = parse_datetime(self.end, f"input {self.path}: end")

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike,
        checksum: bool = True,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
    ) -> "InputRef":
        """Reference a local file, computing its SHA-256 when ``checksum`` is true."""
        return cls(
            path=os.fspath(path),
            sha256=sha256_file(path) if checksum else None,
            start=start,  # type: ignore[arg-type]
            end=end,  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "id": self.id,
            "start": format_datetime(self.start),
            "end": format_datetime(self.end),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InputRef":
        try:
            return cls(
                path=data["path"],
                sha256=data.get("sha256"),
                id=data.get("id") or "",
                start=data.get("start"),
                end=data.get("end"),
            )
        except (KeyError, TypeError):
            raise FormatError(f"provenance input: expected an object with 'path', got {data!r}") from None


@dataclass
class Provenance:
    """What an output was made from and how.

    Attributes
    ----------
    inputs : list of InputRef
        The input files, in processing order.
    parameters : dict
        JSON-serialisable product parameters (QA thresholds, grid, period, ...), as applied.
    software : str
        Name and version of the producing software, default ``"rsmon <version>"``.
    created : datetime
        When the output was produced (UTC).
    """

    inputs: list[InputRef] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    software: str = field(default_factory=lambda: f"rsmon {rsmon.__version__}")
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        self.inputs = [i if isinstance(i, InputRef) else InputRef(os.fspath(i)) for i in self.inputs]
        created = parse_datetime(self.created, "provenance: created")
        assert created is not None
        self.created = created
        for key, value in self.parameters.items():
            try:
                json.dumps(value, default=_json_default)
            except (TypeError, ValueError) as exc:
                raise InputError(f"provenance parameter {key!r}: not JSON-serialisable ({exc})") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (times as ISO 8601 ``Z`` strings, parameters normalised through JSON)."""
        params = json.loads(json.dumps(_nan_to_none(self.parameters), default=_json_default))
        return {
            "software": self.software,
            "created": format_datetime(self.created),
            "parameters": _nan_to_none(params),
            "inputs": [i.to_dict() for i in self.inputs],
        }

    def to_json(self, indent: int | None = None) -> str:
        """Serialise to JSON (sorted keys, strict: NaN parameters become ``null``)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Provenance":
        if not isinstance(data, dict):
            raise FormatError(f"provenance: expected a JSON object, got {type(data).__name__}")
        return cls(
            inputs=[InputRef.from_dict(d) for d in data.get("inputs") or []],
            parameters=dict(data.get("parameters") or {}),
            software=data.get("software") or f"rsmon {rsmon.__version__}",
            created=data.get("created") or datetime.now(timezone.utc),  # type: ignore[arg-type]
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "Provenance":
        """Parse :meth:`to_json` output.

        Raises
        ------
        FormatError
            The text is not provenance JSON.
        """
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise FormatError(f"provenance: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @property
    def software_version(self) -> str:
        """The version part of :attr:`software` (``"0.1.0"`` from ``"rsmon 0.1.0"``)."""
        parts = self.software.split()
        return parts[-1] if len(parts) > 1 else rsmon.__version__



def dataset_coverage(attrs: dict, where: str, inputs: list[InputRef] | None = None) -> tuple[datetime, datetime]:
    """``(start, end)`` from ``time_coverage_start``/``time_coverage_end`` attributes (ISO 8601 UTC).

    Missing values fall back to the earliest start / latest end of ``inputs`` when given.

    Raises
    ------
    InputError
        Coverage missing (and no input times), unparseable, or ending before it starts; the message
        starts with ``where``.
    """
    start = parse_datetime(attrs.get("time_coverage_start"), f"{where}: time_coverage_start")
    end = parse_datetime(attrs.get("time_coverage_end"), f"{where}: time_coverage_end")
    if inputs:
        if start is None:
            starts = [i.start for i in inputs if i.start is not None]
            start = min(starts) if starts else None
        if end is None:
            ends = [i.end for i in inputs if i.end is not None]
            end = max(ends) if ends else None
    if start is None or end is None:
        raise InputError(
            f"{where}: attributes time_coverage_start and time_coverage_end (ISO 8601 UTC) are required"
            + (" and the inputs carry no times" if inputs is not None else "")
        )
    if end < start:
        raise InputError(f"{where}: time_coverage_end {end} is before time_coverage_start {start}")
    return start, end

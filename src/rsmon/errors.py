"""The rsmon error hierarchy.

One root, :class:`RsmonError`; each subclass also inherits the builtin it resembles
(rasterio's habit), so callers may catch ``ValueError``/``OSError`` or everything of ours.
Every message names the file, variable or parameter at fault and what was expected.
"""

from __future__ import annotations


class RsmonError(Exception):
    """Root of every error rsmon raises on purpose (the CLI prints it on one line, exit 2)."""


class InputError(RsmonError, ValueError):
    """A parameter is invalid (bbox, resolution, qa threshold, period, ...)."""


class FormatError(RsmonError, OSError):
    """A file cannot be read as the format it claims (truncated, missing group or variable)."""


class UnsupportedFormatError(FormatError):
    """No registered reader recognises the file."""


class NoDataError(RsmonError, ValueError):
    """The input holds no usable data (metadata-only file, all-fill swath, nothing in the bbox)."""


class OutputError(RsmonError, OSError):
    """An output cannot be written (folder missing or not writable, disk full)."""

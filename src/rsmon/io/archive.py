"""Optical products read in place from their delivery archives (no unpacking).

Copernicus Data Space delivers Sentinel-2 products as ``S2B_MSIL2A_..._T50SMF_....SAFE.zip`` (the
``.SAFE`` folder zipped; the JPEG 2000 band files stored, not deflated), USGS delivers Landsat
Collection 2 Level-2 scenes as ``LC09_L2SP_120038_..._02_T1.tar`` (the band files at the top of an
uncompressed tar). Unpacking a 1 GB product doubles its disk space and costs time on every scene a
daily job touches; GDAL reads inside both containers (``/vsizip/``, ``/vsitar/``), so the readers
take the archive itself.

:class:`ArchivePath` is the part of :class:`pathlib.Path` the optical readers use (``name``,
``suffix``, ``parent``, ``/``, ``is_dir``, ``iterdir``, ``glob``, ``read_text``...) over an
archive's member list; its :func:`os.fspath` is GDAL's virtual path of the member, so rasterio opens
band files as usual. :func:`member_location` gives the byte range of a member stored uncompressed
(every member of a tar, stored zip members), so the direct tile reader
(:mod:`rsmon.io.tiff_tiles`) reads a GeoTIFF inside the archive as fast as on disk.

Refused with a :class:`~rsmon.errors.FormatError` naming the file: a corrupt or truncated archive,
a compressed tar (``.tar.gz``: no random access to its members, unpack it first), an encrypted
member.
"""

from __future__ import annotations

import fnmatch
import os
import re
import struct
import tarfile
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rsmon.errors import FormatError

__all__ = ["ARCHIVE_SUFFIXES", "Archive", "ArchivePath", "archive_root", "file_stat", "is_archive_name",
           "member_location", "open_archive"]

#: Archive endings read in place (case-insensitive): zip (Sentinel-2 SAFE.zip) and plain tar (Landsat).
ARCHIVE_SUFFIXES = (".zip", ".tar")
#: Compressed tars: readable only from the start, so refused with a hint to unpack them.
COMPRESSED_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst")
_VSI = (re.compile(r"^/vsi(?P<kind>zip|tar)/\{(?P<archive>[^}]*)\}/?(?P<inner>.*)$"),
        re.compile(r"^/vsi(?P<kind>zip|tar)/(?P<archive>.+?\.(?:zip|tar))(?:/(?P<inner>.*))?$", re.IGNORECASE))
#: First bytes of gzip, bzip2, xz and zstd streams (a compressed tar however it is named).
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")
_COMPRESSED_TAR = ("a compressed tar cannot be read in place (its members have no random access); unpack it, or "
                   "repack it as a plain .tar")
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # zip local file header, 30 bytes (APPNOTE 4.3.7)
_LOCAL_MAGIC = 0x04034B50
_KEPT = 16


def _vsi_match(text: str):
    """The ``kind``/``archive``/``inner`` groups of GDAL's /vsizip/ or /vsitar/ path, else None."""
    for regex in _VSI:
        match = regex.match(text)
        if match is not None:
            return match
    return None


def is_archive_name(path: str | os.PathLike) -> bool:
    """True when the file name ends in an archive suffix rsmon reads or refuses (zip, tar, tar.gz...)."""
    name = os.fspath(path).lower()
    return name.endswith(ARCHIVE_SUFFIXES + COMPRESSED_TAR_SUFFIXES)


@dataclass(frozen=True)
class _Member:
    #: The member's name as the archive spells it.
    name: str
    size: int
    #: Byte offset of the member's bytes in the archive file when stored uncompressed, else None.
    data_offset: int | None


class Archive:
    """The member list of one zip or tar file (read once; see :func:`open_archive`)."""

    def __init__(self, path: Path):
        self.path = path
        self.kind = "zip" if path.name.lower().endswith(".zip") else "tar"
        self.files: dict[str, _Member] = {}
        self.children: dict[str, list[str]] = {"": []}
        try:
            if self.kind == "zip":
                self._list_zip()
            else:
                self._list_tar()
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, struct.error) as exc:
            raise FormatError(f"{path}: not a readable {self.kind} archive (truncated or corrupt?): {exc}") from None
        for children in self.children.values():
            children.sort()

    def _add(self, inner: str, member: _Member | None) -> None:
        parts = PurePosixPath(inner).parts
        for depth in range(len(parts)):
            parent, child = "/".join(parts[:depth]), "/".join(parts[:depth + 1])
            if child not in self.children and child not in self.files:
                self.children[parent].append(child)
                if depth < len(parts) - 1 or member is None:
                    self.children[child] = []
        if member is not None:
            self.files[inner] = member

    def _list_zip(self) -> None:
        with zipfile.ZipFile(self.path) as zf, open(self.path, "rb") as fh:
            for info in zf.infolist():
                inner = info.filename.strip("/")
                if not inner or ".." in PurePosixPath(inner).parts:
                    continue
                if info.is_dir():
                    self._add(inner, None)
                    continue
                offset = None
                if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
                    fh.seek(info.header_offset)
                    header = fh.read(_LOCAL_HEADER.size)
                    fields = _LOCAL_HEADER.unpack(header)
                    if fields[0] != _LOCAL_MAGIC:
                        raise zipfile.BadZipFile(f"member {inner}: bad local header")
                    offset = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]
                self._add(inner, _Member(info.filename, info.file_size, offset))

    def _list_tar(self) -> None:
        with open(self.path, "rb") as fh:
            magic = fh.read(6)
        if magic.startswith(_COMPRESSED_MAGIC):
            raise FormatError(f"{self.path}: {_COMPRESSED_TAR}")
        with tarfile.open(self.path, "r:") as tf:
            for info in tf.getmembers():
                inner = info.name.strip("/").removeprefix("./")
                if not inner or inner == "." or ".." in PurePosixPath(inner).parts:
                    continue
                if info.isdir():
                    self._add(inner, None)
                elif info.isfile():
                    self._add(inner, _Member(info.name, info.size, None if info.issparse() else info.offset_data))

    def read_bytes(self, inner: str) -> bytes:
        """The member's bytes (decompressed)."""
        member = self.files.get(inner)
        if member is None:
            raise FormatError(f"{self.path}: no member {inner!r}")
        try:
            if self.kind == "zip":
                with zipfile.ZipFile(self.path) as zf:
                    return zf.read(member.name)
            if member.data_offset is not None:
                with open(self.path, "rb") as fh:
                    data = os.pread(fh.fileno(), member.size, member.data_offset)
                if len(data) != member.size:
                    raise EOFError(f"{len(data)} of {member.size} bytes")
                return data
            with tarfile.open(self.path, "r:") as tf:
                extracted = tf.extractfile(member.name)
                return extracted.read() if extracted is not None else b""
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError) as exc:
            raise FormatError(f"{self.path}: member {inner} cannot be read (truncated, corrupt or encrypted?): "
                              f"{exc}") from None

    def vsi(self, inner: str) -> str:
        """GDAL's virtual path of a member (the braces let GDAL find the archive whatever its name)."""
        return f"/vsi{self.kind}/{{{self.path}}}/{inner}" if inner else f"/vsi{self.kind}/{{{self.path}}}"


_ARCHIVES: OrderedDict = OrderedDict()
_ARCHIVES_LOCK = threading.Lock()


def open_archive(path: str | os.PathLike) -> Archive:
    """The member list of the archive ``path``, cached per file version (path, modification time, size).

    Raises
    ------
    FormatError
        Missing, corrupt or truncated archive, or a compressed tar (named).
    """
    p = Path(path).expanduser().absolute()
    if p.name.lower().endswith(COMPRESSED_TAR_SUFFIXES):
        raise FormatError(f"{p}: {_COMPRESSED_TAR}")
    try:
        st = p.stat()
    except OSError as exc:
        raise FormatError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    key = (str(p), st.st_mtime_ns, st.st_size)
    with _ARCHIVES_LOCK:
        if key in _ARCHIVES:
            _ARCHIVES.move_to_end(key)
            return _ARCHIVES[key]
    archive = Archive(p)
    with _ARCHIVES_LOCK:
        _ARCHIVES[key] = archive
        while len(_ARCHIVES) > _KEPT:
            _ARCHIVES.popitem(last=False)
    return archive


class ArchivePath:
    """A file or folder inside an archive, with the :class:`pathlib.Path` methods the readers use.

    ``str()`` and ``os.fspath()`` give GDAL's virtual path (``/vsizip/{/data/x.SAFE.zip}/x.SAFE/...``),
    which rasterio opens and error messages show. The archive's root is named after the archive file
    and its parents are the archive file's folders on disk.
    """

    __slots__ = ("archive", "inner")

    def __init__(self, archive: Archive, inner: str = ""):
        self.archive = archive
        self.inner = inner.strip("/")

    # names -------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return PurePosixPath(self.inner).name if self.inner else self.archive.path.name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def parent(self):
        if not self.inner:
            return self.archive.path.parent
        parent = str(PurePosixPath(self.inner).parent)
        return ArchivePath(self.archive, "" if parent == "." else parent)

    @property
    def parents(self) -> list:
        out, node = [], self
        while isinstance(node, ArchivePath):
            node = node.parent
            out.append(node)
        return out + list(node.parents)

    def __truediv__(self, other) -> "ArchivePath":
        return ArchivePath(self.archive, f"{self.inner}/{other}" if self.inner else str(other))

    def joinpath(self, *others) -> "ArchivePath":
        node = self
        for other in others:
            node = node / other
        return node

    # what is there -----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.is_dir() or self.is_file()

    def is_dir(self) -> bool:
        return self.inner in self.archive.children

    def is_file(self) -> bool:
        return self.inner in self.archive.files

    def iterdir(self):
        if not self.is_dir():
            raise NotADirectoryError(str(self))
        return (ArchivePath(self.archive, child) for child in self.archive.children[self.inner])

    def glob(self, pattern: str):
        """Members matching ``pattern`` (``*``, ``?``, ``[...]`` within one path segment; no ``**``)."""
        nodes = [self]
        for part in PurePosixPath(pattern).parts:
            nodes = [child for node in nodes if node.is_dir() for child in node.iterdir()
                     if fnmatch.fnmatchcase(child.name, part)]
        return iter(nodes)

    def read_bytes(self) -> bytes:
        return self.archive.read_bytes(self.inner)

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    def expanduser(self) -> "ArchivePath":
        return self

    def resolve(self) -> "ArchivePath":
        return self

    def absolute(self) -> "ArchivePath":
        return self

    # identity ----------------------------------------------------------------------------------
    def __fspath__(self) -> str:
        return self.archive.vsi(self.inner)

    def __str__(self) -> str:
        return self.archive.vsi(self.inner)

    def __repr__(self) -> str:
        return f"ArchivePath({str(self.archive.path)!r}, {self.inner!r})"

    def _key(self) -> tuple[str, str]:
        return str(self.archive.path), self.inner

    def __eq__(self, other) -> bool:
        return isinstance(other, ArchivePath) and self._key() == other._key()

    def __lt__(self, other) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def archive_root(path: str | os.PathLike) -> ArchivePath | None:
    """The root of the archive ``path`` (a ``.zip``/``.tar`` file, or GDAL's ``/vsizip/{...}/inner``
    path of a folder inside one); None when ``path`` is neither.

    Raises
    ------
    FormatError
        A corrupt, truncated or compressed archive (named), or a virtual path to a missing member.
    """
    text = os.fspath(path)
    match = _vsi_match(text)
    if match is not None:
        node = ArchivePath(open_archive(match["archive"]), match["inner"] or "")
        if not node.exists():
            raise FormatError(f"{text}: no such member in {match['archive']}")
        return node
    if not is_archive_name(text) or not os.path.isfile(text):
        return None
    return ArchivePath(open_archive(text))


def member_location(path: str | os.PathLike) -> tuple[str, int, int] | None:
    """``(archive file, byte offset, size)`` of an archive member stored uncompressed, given its GDAL
    virtual path; None for any other path (or a compressed member)."""
    match = _vsi_match(os.fspath(path))
    if match is None:
        return None
    try:
        archive = open_archive(match["archive"])
    except FormatError:
        return None
    member = archive.files.get((match["inner"] or "").strip("/"))
    if member is None or member.data_offset is None:
        return None
    return str(archive.path), member.data_offset, member.size


def file_stat(path: str | os.PathLike) -> os.stat_result:
    """:func:`os.stat` of a file, or of the archive holding it for GDAL's ``/vsizip/{...}`` paths (a
    member changes only when its archive does): the key of the readers' per-file caches."""
    text = os.fspath(path)
    match = _vsi_match(text)
    return os.stat(match["archive"] if match is not None else text)

"""Where a recording lives: a local folder, or a folder of an object store (``s3://bucket/prefix``).

A local folder stays a ``pathlib.Path`` and every module keeps its own os calls on it (temp file, fsync,
rename, ``os.scandir``): nothing here runs for local recordings but an ``isinstance`` check per file written or
opened. A URL becomes a ``RemotePath``: a file or folder of a pyarrow filesystem (``pyarrow.fs``, built into
the pyarrow wheel Helios already needs), with the few ``pathlib.Path`` methods the recording modules use
(``/``, ``name``, ``parent``, ``is_dir``, ``iterdir``, ``stat``, ``read_text``, ``unlink``, ``glob``), so a
reader walking a recording works on either.

Writes to an object store are whole-object PUTs: the file is built in memory, then uploaded; an object store
makes an object visible under its name only once the upload completed (a multipart upload too), so a reader
never sees half a file, as with the temp-file-and-rename of a local folder. What an object store lacks: an
atomic "create only if the name is free" (a name is checked, then written: one writer per recording) and
``flock`` (``helios compact`` needs a local folder; retention works, see retention.py).

The endpoint and credentials come from where the AWS tools take them: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``~/.aws/credentials``, an instance role; the endpoint of an
S3-compatible store (MinIO, Ceph, R2, moto) from the URL's ``?endpoint_override=...``, else the
``recording.endpoint_url`` setting, else ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` (docs/recording.md).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from helios_orderflow.core.errors import HeliosError

T = TypeVar("T")
#: Objects up to this size are read with one request (``RemotePath.open_parquet``).
WHOLE_READ_BYTES = 32 * 1024 * 1024
#: Reads of an object replaced between pyarrow's size request and its GET are tried this often (``open_parquet``).
_TORN_READ_ATTEMPTS = 4
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(text: object) -> bool:
    """``text`` names an object store (``s3://...``, any scheme pyarrow knows) rather than a local path
    (``file://`` counts as local)."""
    return isinstance(text, str) and bool(_URL.match(text)) and not text.lower().startswith("file://")


class StatResult(NamedTuple):
    """What ``RemotePath.stat`` knows (the two fields the readers use from ``os.stat_result``)."""

    st_size: int
    st_mtime_ns: int


class RemotePath:
    """A file or folder in a pyarrow filesystem: ``fs`` and the path inside it (``bucket/prefix/...``).

    ``info``: the object's ``FileInfo`` when a listing returned it, so ``stat`` and opening it cost no request.
    ``str()`` is the URL (``s3://bucket/prefix/...``), for messages."""

    __slots__ = ("fs", "info", "path", "scheme")

    def __init__(self, fs: pafs.FileSystem, path: str, scheme: str, info: pafs.FileInfo | None = None) -> None:
        self.fs = fs
        self.path = path.rstrip("/")
        self.scheme = scheme
        self.info = info

    # ---- names (pathlib's) -----------------------------------------------------------------------------

    def __truediv__(self, name: str) -> RemotePath:
        return RemotePath(self.fs, f"{self.path}/{name}", self.scheme)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> RemotePath:
        return RemotePath(self.fs, self.path.rsplit("/", 1)[0], self.scheme)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    def with_name(self, name: str) -> RemotePath:
        return self.parent / name

    def relative_to(self, other: RemotePath) -> PurePosixPath:
        return PurePosixPath(self.path).relative_to(other.path)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}"

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and (self.scheme, self.path) == (other.scheme, other.path)

    def __hash__(self) -> int:
        return hash((self.scheme, self.path))

    def __lt__(self, other: RemotePath) -> bool:
        return self.path < other.path

    def __reduce__(self) -> tuple[type[RemotePath], tuple[pafs.FileSystem, str, str]]:
        # pyarrow filesystems pickle (hyperopt sends the backtest's recordings to its workers); FileInfo does not.
        return RemotePath, (self.fs, self.path, self.scheme)

    # ---- I/O -------------------------------------------------------------------------------------------

    def _info(self) -> pafs.FileInfo:
        if self.info is None:
            self.info = self._call("look up", lambda: self.fs.get_file_info(self.path))
        return self.info

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def stat(self) -> StatResult:
        info = self._info()
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{self} does not exist")
        return StatResult(info.size or 0, info.mtime_ns or 0)

    def iterdir(self) -> Iterator[RemotePath]:
        """The folder's entries (one listing request; none when the folder does not exist)."""
        return iter(self._list(recursive=False))

    def walk_files(self) -> list[RemotePath]:
        """Every file under this folder, sorted by path: one listing (S3: 1,000 keys per request)."""
        return sorted(p for p in self._list(recursive=True) if p.info is not None
                      and p.info.type == pafs.FileType.File)

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """Entries of this folder whose name matches ``pattern`` (no ``/``, no ``**``)."""
        return (p for p in self._list(recursive=False) if fnmatch.fnmatchcase(p.name, pattern))

    def _list(self, *, recursive: bool) -> list[RemotePath]:
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=recursive)
        infos = self._call("list", lambda: self.fs.get_file_info(selector))
        return [RemotePath(self.fs, i.path, self.scheme, i) for i in infos]

    def read_bytes(self) -> bytes:
        def read() -> bytes:
            with self.fs.open_input_stream(self.path) as f:
                return bytes(f.read())
        return self._call("read", read)

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes | pa.Buffer) -> int:
        """Upload ``data`` as this object, whole: it is visible under its name only once complete (replacing
        the object of that name, if any, in one step). One ``write`` of all the bytes, then ``close``: a stream
        closed part way would publish what it had."""
        def put() -> None:
            out = self.fs.open_output_stream(self.path)
            out.write(data)
            out.close()
        self._call("write", put)
        self.info = None
        return len(data)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self._call("delete", lambda: self.fs.delete_file(self.path))
        except FileNotFoundError:
            if not missing_ok:
                raise
        self.info = None

    def delete_tree(self) -> None:
        """Delete this folder and everything under it."""
        self._call("delete", lambda: self.fs.delete_dir(self.path))
        self.info = None

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: an object store has no folders, a key's prefix is one (``make_dir`` writes a marker)."""

    def make_dir(self) -> None:
        """Write the folder's marker object (``prefix/``), so that an empty recording is one; also the first
        request a writer makes, where a wrong endpoint, credential or bucket shows."""
        self._call("write", lambda: self.fs.create_dir(self.path, recursive=True))
        self.info = None

    def open_parquet(self) -> pq.ParquetFile:
        """The Parquet file. The whole object at once when a listing said it is at most ``WHOLE_READ_BYTES``
        (a writer's segment: every request is a round trip, and a footer, then row groups, would be three or
        more; read again when torn, see below); a larger one (a compacted day, uploaded) with ranged requests:
        the footer, then each row group's column chunks coalesced (``pre_buffer``), so memory stays bounded by a
        row group."""
        def open_() -> pq.ParquetFile:
            if self.info is None or self.info.size is None or self.info.size > WHOLE_READ_BYTES:
                return pq.ParquetFile(self.fs.open_input_file(self.path), pre_buffer=True)
            for attempt in range(_TORN_READ_ATTEMPTS):
                # pyarrow asks the object's size (HEAD), then GETs that many bytes: when the writer uploaded a
                # new version of a live segment in between, the bytes are the new version's first ones, no
                # Parquet footer at the end. Ask again: the object itself is always whole.
                with self.fs.open_input_stream(self.path) as f:
                    data = f.read()
                try:
                    return pq.ParquetFile(pa.BufferReader(data))
                except pa.ArrowInvalid:
                    if attempt == _TORN_READ_ATTEMPTS - 1:
                        raise
            raise AssertionError("unreachable")
        return self._call("read", open_)

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except FileNotFoundError:
            raise
        except OSError as exc:
            # A vanished object is FileNotFoundError, as on a disk: the readers' retry after a compaction or
            # retention pass depends on it. S3 says NoSuchKey in text only.
            if action in ("read", "delete") and _gone(self):
                raise FileNotFoundError(f"{self} does not exist") from exc
            raise HeliosError(store_problem(self, action, exc)) from exc


def _gone(path: RemotePath) -> bool:
    try:
        return path.fs.get_file_info(path.path).type == pafs.FileType.NotFound
    except OSError:
        return False


def store_problem(where: RemotePath, action: str, exc: BaseException) -> str:
    """What went wrong talking to the store, and what to check."""
    text = str(exc).strip().replace("\n", " ")
    hint = ("check the endpoint (the URL's ?endpoint_override=, helios.recording.endpoint_url, AWS_ENDPOINT_URL) "
            "and that the store is up")
    lower = text.lower()
    if "no_such_bucket" in lower or "nosuchbucket" in lower or (
            "bucket" in lower and ("not found" in lower or "does not exist" in lower)):
        hint = f"create the bucket '{where.path.split('/', 1)[0]}' or fix the URL"
    elif any(s in text for s in ("ACCESS_DENIED", "AccessDenied", "INVALID_ACCESS_KEY", "SIGNATURE_DOES_NOT_MATCH",
                                 "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "403")):
        hint = ("check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or the "
                "instance role) and that they may read and write this bucket")
    return f"cannot {action} {where}: {text}; {hint}"


def local_cache_dir(root: RemotePath) -> Path:
    """A local folder for what Helios derives from a recording on an object store (the feature cache): the
    store is the shared source, each machine keeps its own cache, as it keeps no write access to the store
    (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``helios/<scheme>/<bucket>/<prefix>``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "helios" / root.scheme / root.path


# ---- opening a location --------------------------------------------------------------------------------

Location = Path | RemotePath


def location(root: str | os.PathLike[str] | RemotePath, *, endpoint_url: str = "") -> Location:
    """A recording's place: ``root`` as it is when it is a ``RemotePath``, a ``RemotePath`` when it is a URL
    (``endpoint_url``: the S3 endpoint when the URL names none), else a local ``Path``."""
    if isinstance(root, (RemotePath, Path)):
        return root
    text = os.fspath(root)
    if not is_url(text):
        return Path(text)
    return open_url(text, endpoint_url=endpoint_url)


def open_url(url: str, *, endpoint_url: str = "") -> RemotePath:
    """The folder ``url`` names (``s3://bucket/prefix``, optionally ``?endpoint_override=...&region=...``,
    pyarrow's ``S3FileSystem`` options) as a ``RemotePath``. Makes no request."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query))
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3", "")
    if scheme == "s3" and endpoint and "endpoint_override" not in query:
        query["endpoint_override"] = endpoint
    full = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    try:
        fs, path = pafs.FileSystem.from_uri(full)
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise HeliosError(
            f"cannot open '{url}' as a recording store: {exc}; write s3://bucket/prefix (with "
            "?endpoint_override=host:port for an S3-compatible server, or set helios.recording.endpoint_url)"
        ) from exc
    if not path.strip("/"):
        raise HeliosError(f"'{url}' names no bucket; write s3://bucket/prefix")
    return RemotePath(fs, path, scheme)

__all__ = ["Location", "RemotePath", "StatResult", "is_url", "local_cache_dir", "location", "open_url",
           "store_problem"]

"""Zips read where they live: `http(s)://`, `s3://` and `gs://` URLs as read-only, seekable files of range requests.

`ZipStore` opens a `RemoteFile` for a URL where it opens a file for a path, so the zip is read the same way,
never downloaded whole: one request for the end records (the last 64 KiB), one for the rest of the central
directory, then one per entry read (`RemoteFile.prefetch`: the entry's local header, name and data, as far as the
next entry's header). Fetched ranges stay in a least-recently-used cache of `CACHE_MB` MiB per zip and process
(a bg shared by several samples is fetched once); a range over a quarter of it is not kept. Each DataLoader worker
opens its own connection.

HTTP(S) needs nothing beyond the standard library (`http.client`, one kept-alive connection per host, redirects
followed); `s3://` and `gs://` go through fsspec (`pip install 'mdeas[s3]'` or `'mdeas[gs]'`). A connection that
fails, is reset or times out, a response cut short, and HTTP 408, 429, 500, 502, 503 and 504 are retried `RETRIES`
times, after 0.2, 0.4, 0.8 s; a missing file, a refused permission, or a server that answers a range request with
the whole file are reported at once. Every failure is a `RemoteError`; after retries its message ends with the
number of attempts. `file://` URLs are plain local paths (`zip_location`).
"""

from __future__ import annotations

import http.client
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Protocol, TypeVar
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

from mdeas.data.errors import DataError

HTTP_SCHEMES = ("http", "https")
EXTRAS = {"s3": "s3", "gs": "gs"}  # fsspec scheme → the mdeas extra that installs its filesystem
RETRIES = 3  # further attempts after a failed one
BACKOFF_S = 0.2  # seconds before the first retry, doubled before each next one
TIMEOUT_S = 60.0  # seconds a connection may wait for the server
CACHE_MB = 32  # fetched ranges kept per zip and process
TAIL_BYTES = 22 + 0xFFFF  # the end of central directory record and the longest zip comment
MAX_REDIRECTS = 5
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
T = TypeVar("T")


class RemoteError(OSError):
    """A remote zip that cannot be read; `retry`: whether another attempt may succeed."""

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


class ZipURL:
    """The URL of a remote zip, with the `name` and `stem` of its last path part (as `Path` has them)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.scheme = url.split("://", 1)[0].lower()
        self.name = PurePosixPath(unquote(urlsplit(url).path)).name
        self.stem = PurePosixPath(self.name).stem

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ZipURL({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZipURL) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


def zip_location(path: str | os.PathLike) -> Path | ZipURL:
    """A `data.path` value as what `ZipStore` opens: a ZipURL for `http(s)://`, `s3://`, `gs://`, else a Path
    (`file://` URLs included); a DataError for a URL of another scheme."""
    text = os.fspath(path)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in (*HTTP_SCHEMES, *EXTRAS):
        return ZipURL(text)
    if scheme == "file":
        return Path(url2pathname(urlsplit(text).path))
    if re.fullmatch(r"[a-z][a-z0-9+.-]+", scheme):
        known = ", ".join(f"{name}://" for name in (*HTTP_SCHEMES, *EXTRAS, "file"))
        raise DataError(text, None, f"unsupported URL scheme {scheme}:// (read: {known} or a local path)", "read")
    return Path(text)


class RangeSource(Protocol):
    """Byte ranges of one remote file; `RemoteFile` retries and caches them."""

    def get(self, start: int, stop: int) -> tuple[bytes, int]:
        """(bytes [start, stop), the file's size in bytes or -1 when the source does not say)."""

    def tail(self, count: int) -> tuple[bytes, int, str]:
        """(the last `count` bytes, or all when fewer, the file's size in bytes, its version: ETag or time)."""

    def close(self) -> None:
        """Release connections (a later request opens them again)."""


def with_retries(call: Callable[[], T], retries: int = RETRIES, backoff_s: float = BACKOFF_S) -> T:
    """`call()`, tried again after a RemoteError that allows it, `retries` times at most, after `backoff_s` seconds,
    then twice as long each time; the error that ends several attempts says how many there were."""
    attempt = 0
    while True:
        try:
            return call()
        except RemoteError as e:
            attempt += 1
            if not e.retry or attempt > retries:
                raise (RemoteError(f"{e} ({attempt} attempts)") if attempt > 1 else e) from None
            time.sleep(backoff_s * 2 ** (attempt - 1))


class HTTPRanges:
    """Range requests to an `http(s)://` URL, one kept-alive connection per host (standard library only)."""

    def __init__(self, url: str, timeout_s: float = TIMEOUT_S) -> None:
        self.url, self.timeout_s = url, timeout_s
        self._connections: dict[tuple[str, str], http.client.HTTPConnection] = {}

    def _connection(self, scheme: str, host: str) -> http.client.HTTPConnection:
        key = (scheme, host)
        if key not in self._connections:
            kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            self._connections[key] = kind(host, timeout=self.timeout_s)
        return self._connections[key]

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections = {}

    def _response(self, byte_range: str) -> http.client.HTTPResponse:
        """The response to `GET` with `Range: bytes=<byte_range>`, redirects followed."""
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            headers = {"Range": f"bytes={byte_range}", "Accept-Encoding": "identity", "User-Agent": "mdeas"}
            connection = self._connection(parts.scheme, parts.netloc)
            try:
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
                location = response.getheader("Location")
                if response.status not in (301, 302, 303, 307, 308) or not location:
                    return response
                response.read()  # the redirect's body, so that the connection can be reused
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise RemoteError(f"cannot connect to {parts.netloc} ({_reason(e)})", retry=True) from None
            url = urljoin(url, location)
        self.close()
        raise RemoteError(f"more than {MAX_REDIRECTS} redirects")

    def _body(self, response: http.client.HTTPResponse, expected: int) -> bytes:
        try:
            data = response.read()
        except http.client.IncompleteRead as e:
            data = e.partial
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise RemoteError(f"response cut short ({_reason(e)})", retry=True) from None
        if len(data) != expected:
            self.close()
            raise RemoteError(f"response cut short: {len(data)} of {expected} bytes", retry=True)
        return data

    def _fetch(self, byte_range: str, whole: Callable[[int], bool]) -> tuple[bytes, int, int, str]:
        """(body, its first byte, file size, version) for `byte_range`; a 200 answer (the whole file) is taken
        only when `whole(size)` says the range asked for all of it."""
        response = self._response(byte_range)
        version = response.getheader("ETag") or response.getheader("Last-Modified") or ""
        if response.status == 206:
            found = _CONTENT_RANGE.fullmatch(response.getheader("Content-Range", "").strip())
            if not found:
                self.close()
                raise RemoteError(f"HTTP 206 without a byte Content-Range ({response.getheader('Content-Range')})")
            first, last, size = map(int, found.groups())
            return self._body(response, last - first + 1), first, size, version
        if response.status == 200:
            size = response.getheader("Content-Length")
            if size is not None and size.isdigit() and whole(int(size)):
                return self._body(response, int(size)), 0, int(size), version
            self.close()  # without reading the whole file
            raise RemoteError(
                "the server ignores range requests (HTTP 200 with the whole file); download the zip and give its path"
            )
        self.close()
        raise RemoteError(f"HTTP {response.status} {response.reason}", retry=response.status in _RETRY_STATUS)

    def get(self, start: int, stop: int) -> tuple[bytes, int]:
        data, first, size, _ = self._fetch(f"{start}-{stop - 1}", lambda size: start == 0 and stop >= size)
        if first != start or len(data) != stop - start:
            raise RemoteError(f"asked for bytes {start}-{stop - 1}, got {first}-{first + len(data) - 1} of {size}")
        return data, size

    def tail(self, count: int) -> tuple[bytes, int, str]:
        data, first, size, version = self._fetch(f"-{count}", lambda size: size <= count)
        if first + len(data) != size:
            raise RemoteError(f"asked for the last {count} bytes, got {first}-{first + len(data) - 1} of {size}")
        return data, size, version


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


class FsspecRanges:
    """Byte ranges of an `s3://` or `gs://` URL through fsspec and the filesystem the URL's extra installs."""

    def __init__(self, url: str) -> None:
        scheme = url.split("://", 1)[0].lower()
        try:
            from fsspec.core import url_to_fs

            self.fs, self.path = url_to_fs(url)
        except ImportError:
            extra = EXTRAS.get(scheme, scheme)
            raise RemoteError(f"{scheme}:// URLs need the {extra} extra: pip install 'mdeas[{extra}]'") from None

    def _call(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except FileNotFoundError:  # its text is the path alone, which the error names already
            raise RemoteError("no such object") from None
        except PermissionError as e:
            raise RemoteError(f"permission denied: {_reason(e)}") from None
        except Exception as e:  # each filesystem raises its own types for network failures
            raise RemoteError(f"{type(e).__name__}: {_reason(e)}", retry=True) from None

    def get(self, start: int, stop: int) -> tuple[bytes, int]:
        data = self._call(lambda: self.fs.cat_file(self.path, start=start, end=stop))
        if len(data) != stop - start:
            raise RemoteError(f"response cut short: {len(data)} of {stop - start} bytes", retry=True)
        return data, -1

    def tail(self, count: int) -> tuple[bytes, int, str]:
        info = self._call(lambda: self.fs.info(self.path))
        size = int(info["size"])
        version = next((str(info[k]) for k in ("ETag", "etag", "generation", "LastModified", "mtime") if k in info), "")
        return self.get(max(0, size - count), size)[0], size, version

    def close(self) -> None:
        """Nothing to release: fsspec keeps its filesystems' sessions."""


def open_source(url: ZipURL) -> RangeSource:
    """The RangeSource of `url`: HTTPRanges for `http(s)://`, FsspecRanges for the others."""
    return HTTPRanges(url.url) if url.scheme in HTTP_SCHEMES else FsspecRanges(url.url)


class RemoteFile:
    """A read-only, seekable binary file over a RangeSource, with the retries of `with_retries` and an LRU cache of
    fetched ranges (CACHE_MB MiB). `prefetch` fetches a range that the next reads will take apart; a read outside
    the current range (the last one prefetched or read) is a request of its own, exactly as long as the read."""

    def __init__(self, source: RangeSource) -> None:
        self.source = source
        self.cache_bytes = int(CACHE_MB * (1 << 20))
        self.pos = 0
        self._size: int | None = None
        self._version: str | None = None
        self._spans: OrderedDict[int, bytes] = OrderedDict()  # first byte → bytes, least recently used first
        self._held = 0  # bytes in _spans
        self._current: tuple[int, bytes] = (0, b"")

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        if self._size is None:
            self._read_tail()
        return self._size

    @property
    def version(self) -> str:
        """The file's ETag or modification time as the server gives it ('' when it gives none)."""
        if self._version is None:
            self._read_tail()
        return self._version

    def _read_tail(self) -> None:
        """Fetch the last TAIL_BYTES (the end records): the file's size and version come with them."""
        data, size, self._version = with_retries(lambda: self.source.tail(TAIL_BYTES))
        self._known(size)
        self._keep(size - len(data), data)

    def _known(self, size: int) -> None:
        if self._size is not None and size >= 0 and size != self._size:
            raise RemoteError(f"changed while being read: {self._size} bytes, now {size}")
        if size >= 0:
            self._size = size

    def _keep(self, start: int, data: bytes) -> None:
        """Make [start, start + len(data)) the current range, and cache it unless it is over a quarter of the
        cache."""
        self._current = (start, data)
        if start in self._spans:
            self._held -= len(self._spans.pop(start))
        if len(data) > self.cache_bytes // 4:
            return
        self._spans[start] = data
        self._held += len(data)
        while self._held > self.cache_bytes:
            self._held -= len(self._spans.popitem(last=False)[1])

    def _fetch(self, start: int, stop: int) -> bytes:
        data, size = with_retries(lambda: self.source.get(start, stop))
        self._known(size)
        return data

    def prefetch(self, start: int, stop: int) -> None:
        """Fetch bytes [start, stop) in one request, unless the current range or a cached range starting at `start`
        holds them."""
        first, data = self._current
        if first <= start and stop <= first + len(data):
            return
        cached = self._spans.get(start)
        if cached is not None and len(cached) >= stop - start:
            self._spans.move_to_end(start)
            self._current = (start, cached)
            return
        if self._size is not None:
            stop = min(stop, self._size)
        self._keep(start, self._fetch(start, stop))

    def read(self, count: int = -1) -> bytes:
        """Up to `count` bytes from the current position (all the rest for a negative `count`)."""
        if count < 0 or self._size is not None:
            count = max(0, min(self.size - self.pos, count if count >= 0 else self.size))
        if count == 0:
            return b""
        pos, stop = self.pos, self.pos + count
        start, data = self._current
        if start <= pos and stop <= start + len(data):
            chunk = data[pos - start : stop - start]
        elif pos < start < stop <= start + len(data):  # the end is cached (the directory before the end records)
            chunk = self._fetch(pos, start) + data[: stop - start]
        else:
            chunk = self._fetch(pos, stop)
            if len(chunk) <= self.cache_bytes // 4:  # not the central directory: it is read once
                self._keep(pos, chunk)
        self.pos += len(chunk)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos}.get(whence)
        self.pos = (self.size if base is None else base) + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        self.source.close()
        self._spans.clear()
        self._held, self._current = 0, (0, b"")

"""Remote zips read in place: range requests to a local HTTP server, fsspec filesystems, one-line errors."""

import importlib.util
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fsspec
import pytest
import torch
from fsspec.implementations.memory import MemoryFileSystem
from fsspec.registry import _registry as fsspec_filesystems  # scheme → class, what fsspec.register_implementation fills

from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.data.errors import DataError
from mdeas.data.remote import RemoteError, ZipURL, with_retries
from mdeas.data.zipstore import ZipStore
from mdeas.evaluate import evaluate
from mdeas.outline import KnownBackgroundOutline
from tests.conftest import TINY_RUN, write_canonical_zip


class RangeServer(ThreadingHTTPServer):
    """Serves the files of `root` over HTTP/1.1 (kept alive) with single byte ranges (`a-b`, `a-`, `-n`), and
    records every request as (path, Range header, status, body bytes sent), and the client port it came from.

    Misbehaviours, for the error tests: `ignore_ranges` answers 200 with the whole file; `flaky` ("503" or
    "reset") fails the first request of each distinct range that way; `cut_at` (a byte offset) sends half of any
    range holding it, then closes the connection; `versioned=False` sends no ETag. `/moved/<name>` redirects to
    `/<name>`; while `cut_redirects` is above 0, such a redirect's body is cut short (and the count lowered)."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.log: list[tuple[str, str, int, int]] = []
        self.ports: list[int] = []  # the client's port per answered request (one per connection)
        self.lock = threading.Lock()
        self.ignore_ranges, self.flaky, self.cut_at, self.versioned = False, "", None, True
        self.cut_redirects = 0
        self._failed: set[str] = set()

    def handle_error(self, request, client_address) -> None:
        """Quiet about clients that hang up mid-answer (the retry tests cut connections on purpose); anything else is
        printed as usual."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"

    @property
    def bytes_sent(self) -> int:
        return sum(entry[3] for entry in self.log)

    def first_failure(self, byte_range: str) -> bool:
        with self.lock:
            fail = bool(self.flaky) and byte_range not in self._failed
            self._failed.add(byte_range)
            return fail

    def record(self, *entry) -> None:
        with self.lock:
            self.log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, as real servers send them
    server: RangeServer

    def log_message(self, *args) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        server, byte_range = self.server, self.headers.get("Range", "")
        if self.path.startswith("/moved/"):
            body = b"moved to " + self.path.removeprefix("/moved").encode()
            cut, server.cut_redirects = server.cut_redirects > 0, server.cut_redirects - 1
            self._answer(302, body[:5] if cut else body, {"Location": self.path.removeprefix("/moved")}, len(body))
            self.close_connection = cut
            return
        path = server.root / self.path.lstrip("/")
        if not path.is_file():
            self._answer(404, b"not found", {})
            return
        if byte_range and server.first_failure(byte_range):
            if server.flaky == "503":
                self._answer(503, b"busy", {})
                return
            server.record(self.path, byte_range, 0, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
            self.close_connection = True
            return
        data = path.read_bytes()
        if not byte_range or server.ignore_ranges:
            self._answer(200, data, {})
            return
        first, last = _parse(byte_range.removeprefix("bytes="), len(data))
        body = data[first : last + 1]
        headers = {"Content-Range": f"bytes {first}-{last}/{len(data)}"} | (
            {"ETag": '"v1"'} if server.versioned else {}
        )
        cut = server.cut_at is not None and first <= server.cut_at <= last
        self._answer(206, body[: len(body) // 2] if cut else body, headers, len(body))
        if cut:
            self.close_connection = True

    def _answer(self, status: int, body: bytes, headers: dict, length: int | None = None) -> None:
        self.server.record(self.path, self.headers.get("Range", ""), status, len(body))  # before the client sees it
        self.server.ports.append(self.client_address[1])
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body) if length is None else length)}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


def _parse(spec: str, size: int) -> tuple[int, int]:
    """(first, last) byte of a single range `a-b`, `a-` or `-n` in a file of `size` bytes."""
    a, b = spec.split("-")
    if not a:
        return max(0, size - int(b)), size - 1
    return int(a), min(int(b), size - 1) if b else size - 1


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RangeServer]:
    served = RangeServer(tmp_path)
    thread = threading.Thread(target=served.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served
    served.shutdown()
    served.server_close()


def free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def entry_offset(path: Path, name: str) -> int:
    """Where entry `name`'s data starts in the zip at `path` (past its local header)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    return info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2


# ---------------------------------------------------------------- reading in place


def test_a_remote_zip_reads_like_the_local_one_in_one_request_per_entry(server, tmp_path):
    local = write_canonical_zip(tmp_path / "set.zip", num_samples=60, size=32)
    remote, here = ZipStore([server.url("set.zip")]), ZipStore([local])
    assert remote.listing == here.listing and isinstance(remote.paths[0], ZipURL)
    assert len(server.log) == 1  # the end records, with the central directory before them in the last 64 KiB
    names = here.listing[0]
    assert all(remote.read(name) == here.read(name) for name in names)
    requests = len(server.log)
    assert requests <= 1 + len(names)  # at most one request an entry (some came with the end records)
    assert remote.read(names[3]) == here.read(names[3]) and len(server.log) == requests  # cached


def test_an_entry_over_the_size_limit_is_refused_before_it_is_fetched(server, tmp_path, monkeypatch):
    write_canonical_zip(tmp_path / "set.zip", num_samples=60)
    monkeypatch.setenv("MDEAS_MAX_ENTRY_MB", "0.001")
    store = ZipStore([server.url("set.zip")])
    requests = len(server.log)
    with pytest.raises(DataError, match=r"^http://.*/set.zip: manifest.csv: refused: declares .* MiB limit"):
        store.read("manifest.csv")
    assert len(server.log) == requests


def test_file_urls_are_local_paths(tmp_path):
    local = write_canonical_zip(tmp_path / "set.zip", num_samples=4)
    store = ZipStore([local.as_uri()])
    assert store.paths == [local] and store.read("meta.json") == ZipStore([local]).read("meta.json")


def test_a_limited_run_fetches_a_small_part_and_caches_each_size_once(server, tmp_path):
    """A run limited to 64 samples fetches only their entries, once; a second run finds the caches built by the
    first and reads its samples from them without a request."""
    zipped = write_canonical_zip(tmp_path / "set.zip", num_samples=600, size=32)
    size = zipped.stat().st_size
    kwargs = dict(path=server.url("set.zip"), image_size=32, batch_size=4, num_workers=0, limit=64,
                  cache_dir=str(tmp_path / "cache"), cache_resized=True)  # fmt: skip
    first = MaskDepthDataModule(**kwargs)
    first.setup("fit")
    assert sum(len(d) for d in first.datasets.values()) == 64
    directory_at = first.index.store.directories[0].directory_at
    assert [r for _, r, _, _ in server.log[:2]] == ["bytes=-65557", f"bytes={directory_at}-{size - 65557 - 1}"]
    fetched, store = server.bytes_sent, first.index.store
    samples = [s for data in first.datasets.values() for s in data.samples]
    names = {"manifest.csv", "meta.json", *(k for s in samples for k in (s.bg, s.fg_bg, s.mask, s.depth))}
    spans = [directory.span(directory.row[name]) for directory in store.directories for name in names]
    assert fetched <= server.log[0][3] + server.log[1][3] + sum(stop - start for start, stop in spans)  # once each
    assert fetched < 0.25 * size, f"{fetched} of {size} bytes"
    caches = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(caches) == 3 and all(name.startswith("resized-32px-") for name in caches)
    requests = len(server.log)
    again = MaskDepthDataModule(**kwargs)
    again.setup("fit")  # the same URL, size and ETag: the caches built above; only the index is read again
    assert len(server.log) - requests == 4 and sorted(p.name for p in (tmp_path / "cache").iterdir()) == caches
    requests = len(server.log)
    assert again.datasets["train"][0]["bg"].shape == (3, 32, 32)
    assert len(server.log) == requests  # the sample comes from the cache: nothing is fetched


def test_a_zip_whose_server_names_no_version_is_not_cached(server, tmp_path, caplog):
    write_canonical_zip(tmp_path / "set.zip", num_samples=12, size=32)
    server.versioned = False
    data = MaskDepthDataModule(path=server.url("set.zip"), image_size=32, batch_size=4, num_workers=0,
                               cache_dir=str(tmp_path / "cache"), cache_resized=True)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="mdeas.data.resized_cache"):
        data.setup("fit")
    assert all(d.cache is None for d in data.datasets.values()) and not (tmp_path / "cache").exists()
    assert f"not caching at 32 px: the server gives no ETag or Last-Modified for {server.url('set.zip')}" in caplog.text
    assert data.datasets["train"][0]["bg"].shape == (3, 32, 32)  # read from the zip instead


def test_loader_workers_read_through_their_own_connections(server, tmp_path):
    local = write_canonical_zip(tmp_path / "set.zip", num_samples=60)
    kwargs = dict(image_size=32, batch_size=4, num_workers=2, cache_resized=False, pin_memory=False)
    batches, seen = [], []
    for path in (server.url("set.zip"), str(local)):
        data = MaskDepthDataModule(path=path, **kwargs)
        data.setup("fit")
        seen.append(len(server.ports))
        batches.append(list(data.val_dataloader()))
    remote, here = batches
    parent, loading = set(server.ports[: seen[0]]), set(server.ports[seen[0] : seen[1]])
    assert len(loading) >= 2 and not loading & parent  # a connection per worker, none of them the parent's
    assert [b["id"] for b in remote] == [b["id"] for b in here]
    assert all(
        torch.equal(a["fg_bg"], b["fg_bg"]) and torch.equal(a["depth"], b["depth"])
        for a, b in zip(remote, here, strict=True)
    )


class BucketFileSystem(MemoryFileSystem):
    """fsspec's in-memory filesystem under the s3:// and gs:// schemes (its store is MemoryFileSystem's)."""

    protocol = ("s3", "gs")

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return super()._strip_protocol(path.split("://", 1)[-1])


def test_s3_and_gs_go_through_fsspec(tmp_path, monkeypatch):
    """A zip store and a data module read `s3://` and `gs://` URLs through the filesystem fsspec registers for the
    scheme (here one in memory, as s3fs or gcsfs would be), the same entries and batches as the local copy."""
    local = write_canonical_zip(tmp_path / "set.zip", num_samples=6)
    with fsspec.open("memory://bucket/set.zip", "wb") as f:
        f.write(local.read_bytes())
    for scheme in BucketFileSystem.protocol:
        monkeypatch.setitem(fsspec_filesystems, scheme, BucketFileSystem)
    here = ZipStore([local])

    def batch(path: str) -> dict:
        data = MaskDepthDataModule(path=path, image_size=32, batch_size=6, split=(0.0, 0.0, 1.0), cache_resized=False)
        data.setup("test")
        return next(iter(data.test_dataloader()))

    expected = batch(str(local))
    for url in ("s3://bucket/set.zip", "gs://bucket/set.zip"):
        store = ZipStore([url])
        assert store.listing == here.listing and store.read("manifest.csv") == here.read("manifest.csv"), url
        read = batch(url)
        assert read["id"] == expected["id"] and torch.equal(read["fg_bg"], expected["fg_bg"]), url
        with pytest.raises(DataError) as missing:
            ZipStore([url.replace("set", "gone")])
        assert str(missing.value) == f"{url.replace('set', 'gone')}: cannot read (no such object)"

    def refused(self, path: str, **kwargs) -> dict:
        raise PermissionError("Access Denied")  # what s3fs raises for a 403

    monkeypatch.setattr(BucketFileSystem, "info", refused)
    with pytest.raises(DataError) as locked:
        ZipStore(["s3://bucket/set.zip"])
    assert str(locked.value) == "s3://bucket/set.zip: cannot read (permission denied: Access Denied)"


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_s3_without_its_extra_is_a_one_line_error():
    with pytest.raises(DataError) as e:
        ZipStore(["s3://bucket/set.zip"])
    assert str(e.value) == "s3://bucket/set.zip: cannot read (s3:// URLs need the s3 extra: pip install 'mdeas[s3]')"


def test_a_url_of_another_scheme_is_named_not_read_as_a_path():
    with pytest.raises(DataError) as e:
        ZipStore(["ftp://host/set.zip"])
    known = "http://, https://, s3://, gs://, file:// or a local path"
    assert str(e.value) == f"ftp://host/set.zip: unsupported URL scheme ftp:// (read: {known})"


# ---------------------------------------------------------------- bad remote input, in process


def test_a_refused_connection_is_retried_then_named(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/set.zip"
    with pytest.raises(
        DataError, match=rf"^{url}: cannot read \(cannot connect to 127.0.0.1:\d+ \(.*refused.*\) \(4 attempts\)\)$"
    ):
        ZipStore([url])


def test_an_unknown_host_is_named():
    with pytest.raises(
        DataError, match=r"^http://no-such-host.invalid/set.zip: cannot read \(cannot connect to no-such-host.invalid"
    ):
        ZipStore(["http://no-such-host.invalid/set.zip"])


def test_a_missing_file_is_named_at_once(server):
    url = server.url("nope.zip")
    with pytest.raises(DataError) as e:
        ZipStore([url])
    assert str(e.value) == f"{url}: cannot read (HTTP 404 Not Found)" and len(server.log) == 1


def test_a_server_ignoring_ranges_is_refused(server, tmp_path):
    write_canonical_zip(tmp_path / "set.zip", num_samples=200)
    server.ignore_ranges = True
    with pytest.raises(DataError, match=r": cannot read \(the server ignores range requests \(HTTP 200 with the whole"):
        ZipStore([server.url("set.zip")])


def test_a_response_cut_short_names_the_entry(server, tmp_path):
    local = write_canonical_zip(tmp_path / "set.zip", num_samples=60)
    store = ZipStore([server.url("set.zip")])
    server.cut_at = entry_offset(local, "fg_bg/b002_f05.jpg")
    with pytest.raises(DataError) as e:
        store.read("fg_bg/b002_f05.jpg")
    assert str(e.value).startswith(
        f"{server.url('set.zip')}: fg_bg/b002_f05.jpg: cannot read entry (response cut short"
    )
    assert str(e.value).endswith("(4 attempts))")


def test_a_redirect_cut_short_is_retried(server, tmp_path):
    local = write_canonical_zip(tmp_path / "set.zip", num_samples=6)
    server.cut_redirects = 1
    store = ZipStore([server.url("moved/set.zip")])
    assert store.listing[0] == ZipStore([local]).listing[0]
    assert [entry[2] for entry in server.log[:2]] == [302, 302]  # the cut one, then the retry


@pytest.mark.parametrize("how", ["503", "reset"])
def test_a_flaky_read_is_retried(server, tmp_path, how):
    local = write_canonical_zip(tmp_path / "set.zip", num_samples=60)
    server.flaky = how
    store = ZipStore([server.url("set.zip")])
    assert store.read("mask/b001_f03.png") == ZipStore([local]).read("mask/b001_f03.png")
    statuses = [status for _, _, status, _ in server.log]
    assert statuses == [503 if how == "503" else 0, 206] * 2  # the end records, the entry: each failed once


def test_retries_are_bounded():
    calls = []

    def failing():
        calls.append(1)
        raise RemoteError("HTTP 503 Service Unavailable", retry=True)

    with pytest.raises(RemoteError, match=r"^HTTP 503 Service Unavailable \(3 attempts\)$"):
        with_retries(failing, retries=2, backoff_s=0)
    assert len(calls) == 3


# ---------------------------------------------------------------- bad remote input, through the entry points


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, env=env)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stderr.strip().splitlines()[-1]


def test_check_names_a_missing_remote_zip_in_one_line(server, tmp_path):
    url = server.url("nope.zip")
    assert one_line_error(run("mdeas.data.check", f"path={url}", cwd=tmp_path)) == (
        f"error: {url}: cannot read (HTTP 404 Not Found)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("case", ["refused", "unknown host", "ignored ranges"])
def test_check_names_unreadable_remote_zips_in_one_line(server, tmp_path, case):
    write_canonical_zip(tmp_path / "set.zip", num_samples=200)
    url = {"refused": f"http://127.0.0.1:{free_port()}/set.zip", "unknown host": "http://no-such-host.invalid/set.zip"}
    server.ignore_ranges = True
    url = url.get(case, server.url("set.zip"))
    line = one_line_error(run("mdeas.data.check", f"path={url}", cwd=tmp_path))
    expected = {"refused": "cannot connect to 127.0.0.1", "unknown host": "cannot connect to no-such-host.invalid",
                "ignored ranges": "the server ignores range requests"}[case]  # fmt: skip
    assert line.startswith(f"error: {url}: cannot read ({expected}"), line


@pytest.mark.slow
def test_training_names_an_entry_cut_short_in_one_line(server, tmp_path):
    local = write_canonical_zip(tmp_path / "set.zip", num_samples=60)  # the entry lies before the last 64 KiB
    server.cut_at = entry_offset(local, "depth/b003_f07.png")
    url = server.url("set.zip")
    done = run("mdeas.train", f"data.path={url}", *TINY_RUN, "data.cache_resized=true", "trainer.max_epochs=1",
               "hydra.run.dir=run", "~logger", cwd=tmp_path)  # fmt: skip
    line = one_line_error(done)
    assert line.startswith(f"error: {url}: depth/b003_f07.png: cannot read entry (response cut short"), line


# ---------------------------------------------------------------- a run on a remote zip


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 generated samples at 64 px (2.8 MB)."""
    from mdeas.synth.generate import generate

    return generate(tmp_path_factory.mktemp("generated") / "set.zip", 1000, workers=2, image_size=64)


@pytest.mark.slow
def test_train_and_evaluate_read_a_remote_zip_in_place(server, tmp_path, generated):
    os.link(generated, tmp_path / "set.zip")
    url, size = server.url("set.zip"), generated.stat().st_size
    tiny = (*TINY_RUN, "data.limit=64", "data.cache_resized=true", "trainer.max_epochs=1", "callbacks.image_grid=null")
    done = run("mdeas.train", f"data.path={url}", *tiny, "hydra.run.dir=run", "~logger", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trained = server.bytes_sent
    assert trained < 0.2 * size, f"training fetched {trained} of {size} bytes"
    done = run("mdeas.evaluate", "ckpt_path=run/checkpoints/best.ckpt", f"data.path={url}", "data.limit=64",
               "output=evaluated", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "evaluated" / "metrics.json").read_text())
    local = evaluate(str(tmp_path / "run/checkpoints/best.ckpt"), {"path": str(generated), "limit": 64},
                     str(tmp_path / "local"), outline=KnownBackgroundOutline(), mirror=True)  # fmt: skip
    assert results["samples"] == local["samples"] > 0  # the same samples read by range requests as from the file
    assert results["model"]["mask/iou"] == pytest.approx(local["model"]["mask/iou"], abs=1e-6)
    assert server.bytes_sent - trained < 0.2 * size, f"evaluate fetched {server.bytes_sent - trained} of {size} bytes"

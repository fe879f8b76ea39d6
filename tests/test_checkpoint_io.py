"""A process killed (SIGKILL) in the middle of saving a checkpoint leaves the previous checkpoint complete.

Lightning's TorchCheckpointIO saves through fsspec: the bytes go to a temporary file in TMPDIR, which is then moved
onto the checkpoint path. The move is a rename when TMPDIR is on the checkpoint's filesystem, and a copy into the
checkpoint path itself when it is not; AtomicCheckpointIO writes and renames beside the checkpoint in both cases.
The same atomic write (`mdeas.atomic`) serves dataset zips and results, also when several processes write one file.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fsspec.implementations.local import LocalFileOpener
from pytorch_lightning.plugins.io import CheckpointIO, TorchCheckpointIO

from mdeas.atomic import atomic_write
from mdeas.callbacks.atomic_checkpoint import AtomicCheckpointIO
from mdeas.predict import write_png
from mdeas.synth.writer import write_zip

CHUNK = 1 << 20  # bytes written between two points where the kill may strike
FORK = multiprocessing.get_context("fork")  # the child needs no imports: one kill point costs milliseconds


def checkpoint(epoch: int) -> dict:
    """An 8 MiB checkpoint whose weights say which epoch it is."""
    return {"epoch": epoch, "state_dict": {"w": torch.full((2 << 20,), float(epoch))}}


def save_and_die(io: CheckpointIO, content: dict, path: Path, tmp_dir: Path, kill_at: int) -> None:
    """Save `content` to `path` through `io` with temporary files in `tmp_dir`, writing at most CHUNK bytes at a time
    (file writes, and the kernel copy of a move between filesystems); SIGKILL this process after chunk `kill_at`."""
    tempfile.tempdir = str(tmp_dir)
    chunks = 0

    def count() -> None:
        nonlocal chunks
        chunks += 1
        if chunks == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    write, sendfile = LocalFileOpener.write, os.sendfile

    def chunked_write(self: LocalFileOpener, data: bytes) -> int:
        view = memoryview(data)
        for start in range(0, len(view), CHUNK):
            write(self, view[start : start + CHUNK])
            count()
        return len(view)

    def chunked_sendfile(out_fd: int, in_fd: int, offset: int, count_: int) -> int:
        sent = sendfile(out_fd, in_fd, offset, min(count_, CHUNK))
        count()
        return sent

    LocalFileOpener.write = chunked_write
    os.sendfile = chunked_sendfile
    io.save_checkpoint(content, path)


@pytest.fixture
def tmp_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """TMPDIR for the save: beside the checkpoints ("same"), or on another filesystem, /dev/shm ("other")."""
    if request.param == "same":
        (tmp_path / "tmp").mkdir()
        yield tmp_path / "tmp"
        return
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a writable /dev/shm on another filesystem than the test's folder")
    other = Path(tempfile.mkdtemp(dir=shm))
    yield other
    shutil.rmtree(other)


LIGHTNING_ACROSS = pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="fsspec copies its temporary file into the checkpoint path in place"
)


@pytest.mark.parametrize(
    ("io_class", "tmp_dir"),
    [
        (TorchCheckpointIO, "same"),
        pytest.param(TorchCheckpointIO, "other", marks=LIGHTNING_ACROSS),
        (AtomicCheckpointIO, "same"),
        (AtomicCheckpointIO, "other"),
    ],
    indirect=["tmp_dir"],
)
def test_a_save_killed_at_any_point_keeps_the_previous_checkpoint(
    io_class: type[CheckpointIO], tmp_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    io_class().save_checkpoint(checkpoint(0), path)
    old = path.read_bytes()
    new = checkpoint(1)
    for kill_at in range(1, 100):
        child = FORK.Process(target=save_and_die, args=(io_class(), new, path, tmp_dir, kill_at))
        child.start()
        child.join()
        if child.exitcode == 0:
            break  # the save finished before chunk `kill_at`
        assert child.exitcode == -signal.SIGKILL
        intact = path.read_bytes() == old
        assert intact, f"killed after chunk {kill_at} of the save: {path} is no longer the previous checkpoint"
        assert torch.load(path, weights_only=True)["epoch"] == 0
    assert kill_at > 8, "the save was never killed while writing its 8 MiB"
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], new["state_dict"]["w"])


def test_writers_of_one_path_at_once_each_fill_their_own_file(tmp_path):
    """Processes of one run may write the same file together (each rank generating the default dataset): every
    writer finishes and the file is one writer's whole zip, never a mix."""
    out, both_writing = tmp_path / "set.zip", threading.Barrier(2, timeout=30)

    def entries(tag: str):
        yield f"{tag}-0.txt", tag.encode()
        both_writing.wait()  # the other writer has begun its own file too
        yield f"{tag}-1.txt", tag.encode()

    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(write_zip, out, {"writer": tag}, [], entries(tag)) for tag in ("a", "b")]
        assert [future.result() for future in done] == [out, out]
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert archive.testzip() is None
    assert names[2:] in (["a-0.txt", "a-1.txt"], ["b-0.txt", "b-1.txt"]) and os.listdir(tmp_path) == ["set.zip"]


def test_a_write_removes_the_tmp_files_a_killed_process_left_and_keeps_a_running_writers(tmp_path):
    path = tmp_path / "last.ckpt"
    names = (
        ".last.ckpt.0123456789ab.tmp",
        ".last.ckpt.0123456789ac.tmp",
        ".best.ckpt.0123456789ad.tmp",
        ".last.ckpt.old.0123456789ae.tmp",
    )  # the last: a tmp file of `last.ckpt.old`, not of `last.ckpt`
    stale, running, *others = (tmp_path / name for name in names)
    for leftover in (stale, running, *others):
        leftover.write_bytes(b"half a checkpoint")
    for old in (stale, *others):
        os.utime(old, (1e9, 1e9))  # last written in 2001: before this process began
    atomic_write(path, lambda tmp: tmp.write_bytes(b"whole"))
    assert path.read_bytes() == b"whole"
    assert not stale.exists()  # a killed save of this path
    assert running.exists() and all(other.exists() for other in others)  # written since this process began; others'


def test_a_prediction_write_cut_short_keeps_the_earlier_file_and_names_it(tmp_path, monkeypatch):
    """predict's PNGs go through a file beside each output: a write that fails midway (a full disk, a file-size
    limit) leaves the earlier output whole and no partial file, and the error names the output, not the tmp file
    (it left a truncated PNG in place and an error naming no file)."""
    path = tmp_path / "a_mask.png"
    write_png(path, np.full((4, 4), 255, np.uint8))
    before = path.read_bytes()
    real = Path.write_bytes

    def full_disk(self: Path, data: bytes) -> int:
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError) as error:
        write_png(path, np.zeros((64, 64), np.uint8))
    assert str(error.value) == f"[Errno {errno.ENOSPC}] No space left on device: '{path}'"
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a_mask.png"]
    monkeypatch.undo()
    write_png(path, np.zeros((64, 64), np.uint8))
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape == (64, 64)

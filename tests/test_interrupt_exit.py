"""Ctrl-C ends an entry point with one word and exit status 130, also when Lightning stopped a trainer call for it,
and worker processes (a writer's, a loader's) leave it to the main process (no traceback from each of them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, Dataset

from mdeas.callbacks.interrupt import ResumeOnInterrupt, ctrl_c_as_interrupt
from mdeas.cli import FULL_ERROR, INTERRUPTED, run_app
from mdeas.data.datamodule import start_worker
from mdeas.synth.parallel import ordered_map


def _interrupted() -> None:
    raise KeyboardInterrupt


def test_ctrl_c_ends_an_entry_point_with_status_130(monkeypatch, capsys):
    for name in (FULL_ERROR, "MDEAS_ONE_LINE_ERRORS"):  # set, then unset: monkeypatch restores what run_app sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    with pytest.raises(SystemExit) as ended:
        run_app(_interrupted)
    assert ended.value.code == INTERRUPTED == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_running_out_of_memory_ends_an_entry_point_in_one_line(monkeypatch):
    """numpy's _ArrayMemoryError is a MemoryError: `mdeas.synth image_size=100000` ended in a traceback."""
    for name in (FULL_ERROR, "MDEAS_ONE_LINE_ERRORS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)

    def too_large() -> None:
        np.zeros((2**62,), np.uint8)

    def allocator_refuses() -> None:  # what PyTorch's CPU allocator raises (export batch_size=100000000)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: 9 bytes")

    def opencv_refuses() -> None:  # evaluate data.image_size=100000: cv2.resize
        cv2.resize(np.zeros((8, 8), np.uint8), (2**20, 2**20))

    for app in (too_large, allocator_refuses, opencv_refuses):
        with pytest.raises(SystemExit) as ended:
            run_app(app)
        said = str(ended.value.code)
        assert said.startswith("error: out of memory (") and "\n" not in said
        assert said.endswith("): a size, batch or count too large for this machine?")

    def other_fault() -> None:
        raise RuntimeError("other")

    with pytest.raises(RuntimeError, match="^other$"):  # any other fault keeps its traceback
        run_app(other_fault)


def sigint_handler(_: int) -> str:
    """The SIGINT handler of the process this runs in, by name (module level: a spawned worker imports it)."""
    handler = signal.getsignal(signal.SIGINT)
    return "ignored" if handler == signal.SIG_IGN else "handled"


def test_pool_workers_leave_ctrl_c_to_the_parent():
    assert list(ordered_map(sigint_handler, [0, 1], workers=2)) == ["ignored", "ignored"]
    assert list(ordered_map(sigint_handler, [0, 1], workers=1)) == ["handled", "handled"]


def test_a_dataset_writer_ends_on_sigterm_as_on_ctrl_c(tmp_path):
    """`kill` sent to the process group of `python -m mdeas.synth` mid-write: status 130, `interrupted`, no worker
    left and no half-written zip (the temporary file beside `out` removed)."""
    command = [sys.executable, "-m", "mdeas.synth", f"out={tmp_path / 'x.zip'}", "num_samples=100000", "workers=2"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".x.zip.*.tmp")) and time.monotonic() < deadline:  # writing has begun
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == INTERRUPTED and err.strip().splitlines()[-1] == "interrupted", err[-2000:]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ProcessLookupError):  # the process group is gone: no worker outlived the parent
        os.killpg(process.pid, 0)


class Handlers(Dataset):
    """Two items, each the SIGINT handler of the process that reads it (`sigint_handler`)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> str:
        return sigint_handler(i)


def test_loader_workers_leave_ctrl_c_to_the_main_process():
    """The main process stops training after the batch under way and needs its loader workers for that."""
    assert [Handlers()[i] for i in range(2)] == ["handled", "handled"]
    assert list(DataLoader(Handlers(), batch_size=None, num_workers=1, worker_init_fn=start_worker)) == ["ignored"] * 2


def _stopped(callbacks: list, error: BaseException, during: BaseException | None = None) -> None:
    """A trainer call that raises `error`, while handling `during` when given."""
    with ctrl_c_as_interrupt(SimpleNamespace(callbacks=callbacks)):
        if during is None:
            raise error
        try:
            raise during
        except type(during):
            raise error  # noqa: B904 (as Lightning does: the KeyboardInterrupt is the exit's context)


def test_a_trainer_call_that_ctrl_c_ended_comes_out_as_keyboard_interrupt():
    ctrl_c, sigterm = ResumeOnInterrupt("."), ResumeOnInterrupt(".")
    ctrl_c.stopped_by, sigterm.stopped_by = signal.SIGINT, signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):  # Lightning's stop at once: sys.exit(1) while handling the Ctrl-C
        _stopped([], SystemExit(1), during=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):  # training stopped after its batch for a Ctrl-C
        _stopped([ctrl_c], SIGTERMException())
    with pytest.raises(SIGTERMException):  # for a SIGTERM: exit status 143, not 130
        _stopped([sigterm], SIGTERMException())
    with pytest.raises(SystemExit) as caught:  # another exit inside a trainer call stays what it was
        _stopped([], SystemExit(1), during=ValueError("not a Ctrl-C"))
    assert type(caught.value) is SystemExit and caught.value.code == 1

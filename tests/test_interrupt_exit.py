"""Ctrl-C ends an entry point with one word and exit status 130, and a writer's worker processes leave it to the
parent (no traceback from each of them)."""

from __future__ import annotations

import signal

import pytest

from mdeas.cli import FULL_ERROR, INTERRUPTED, run_app
from mdeas.synth.parallel import ordered_map


def _interrupted() -> None:
    raise KeyboardInterrupt


def test_ctrl_c_ends_an_entry_point_with_status_130(monkeypatch, capsys):
    monkeypatch.delenv(FULL_ERROR, raising=False)
    monkeypatch.delenv("MDEAS_ONE_LINE_ERRORS", raising=False)
    with pytest.raises(SystemExit) as ended:
        run_app(_interrupted)
    assert ended.value.code == INTERRUPTED == 130
    assert capsys.readouterr().err == "interrupted\n"


def sigint_handler(_: int) -> str:
    """The SIGINT handler of the process this runs in, by name (module level: a spawned worker imports it)."""
    handler = signal.getsignal(signal.SIGINT)
    return "ignored" if handler == signal.SIG_IGN else "handled"


def test_pool_workers_leave_ctrl_c_to_the_parent():
    assert list(ordered_map(sigint_handler, [0, 1], workers=2)) == ["ignored", "ignored"]
    assert list(ordered_map(sigint_handler, [0, 1], workers=1)) == ["handled", "handled"]

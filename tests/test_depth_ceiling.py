"""experiments/depth_ceiling.py: its scoring on hand-made depth maps, and that the metric world has the higher
ceiling (depth learnable with its scale) than the wide one on the same seeds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.depth_ceiling import best_constant, ceiling_table, main

REPO = Path(__file__).resolve().parents[1]


def test_best_constant_covers_the_densest_window_of_log_depths() -> None:
    depth = np.array([1.0] * 10 + [1.1] * 3 + [10.0] * 5)
    constant = best_constant(depth)
    assert 1.1 / 1.25 < constant < 1.25  # both 1.0 and 1.1 within a factor 1.25, not 10
    rows = {name: (d1, rel) for name, d1, rel in ceiling_table([depth])}
    assert rows["best constant (max delta1)"][0] == pytest.approx(13 / 18)


@pytest.mark.parametrize(("factor", "expected"), [(1.2, 1.0), (2.0, 0.0)])
def test_unknown_scale_scores_how_far_each_image_s_scale_is_from_the_set_s(factor: float, expected: float) -> None:
    shape = np.linspace(1.0, 5.0, 50)
    rows = ceiling_table([shape, factor * shape])  # the same shape at two scales: each off by sqrt(factor)
    _, unknown_d1, unknown_rel = rows[2]
    assert unknown_d1 == pytest.approx(expected)
    assert unknown_rel == pytest.approx((np.sqrt(factor) - 1 / np.sqrt(factor)) / 2)  # one image above, one below
    assert rows[3][1:] == pytest.approx((1.0, 0.0))  # median-scaled exact shape: the sanity row


def _ceiling(output: str) -> float:
    """The value of the output's last line, which must read exactly `ceiling delta1: X.XXX`."""
    last = output.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"ceiling delta1: [01]\.\d{3}", last), last
    return float(last.split(": ")[1])


def test_the_metric_world_beats_the_wide_one(capsys: pytest.CaptureFixture[str]) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "experiments.depth_ceiling", "--num", "12", "--size", "32"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "| exact shape, unknown scale (set's geometric mean) |" in result.stdout
    main(["--num", "12", "--size", "32", "--camera", "wide"])
    wide = capsys.readouterr().out
    assert wide.startswith("camera wide: 12 samples at 32 px, seed 0;")
    assert _ceiling(result.stdout) > _ceiling(wide) + 0.3

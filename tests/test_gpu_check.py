"""The GPU check end to end on the CPU at toy sizes (`--device cpu --tiny`), and its wheel list."""

import importlib
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from experiments import gpu_check

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # half a minute, for a script run only on a GPU machine: `make test-all` before taking one there
def test_the_tiny_check_writes_every_section_to_both_summaries(tmp_path):
    out = tmp_path / "check"
    status = gpu_check.main(["--out", str(out), "--device", "cpu", "--tiny"])
    record = json.loads((out / "summary.json").read_text())
    sections = record["sections"]
    assert list(sections) == ["install", "tests", "chain", "bench"]
    assert all(s["status"] in ("passed", "failed", "skipped") and s["seconds"] >= 0 for s in sections.values())
    assert status == 0, {name: s.get("note") for name, s in sections.items()}
    assert sections["install"]["installed"] == []  # everything is here already
    assert sections["tests"]["cases"] and {c["outcome"] for c in sections["tests"]["cases"]} <= {"passed", "skipped"}
    assert {(r["model"], r["augment_on"]) for r in sections["bench"]["end_to_end"]} == {
        ("densenet_dilated", "cpu"),
        ("densenet_dilated", "gpu"),
    }
    stages = sections["chain"]["stages"]
    assert [s["stage"] for s in stages] == ["stage0", "stage1", "stage2"]
    assert all("val/score" in s["val"] and s["seconds"] > 0 for s in stages)
    markdown = (out / "summary.md").read_text()
    for heading in ("### install", "### tests", "### chain", "### bench"):
        assert heading in markdown
    assert "| chain | passed |" in markdown


def test_the_wheel_pins_name_installed_distributions_within_the_projects_ranges():
    """Each pin names a distribution installed here (a typo would fetch nothing), and where pyproject.toml asks for
    that distribution the pinned version lies in its range (an upstream release changes neither)."""
    tomllib = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")  # tomli: the dev extra
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    ranges = {canonicalize_name(r.name): r.specifier for r in map(Requirement, wanted)}
    for name, version in gpu_check.WHEELS.items():
        assert importlib.metadata.version(name), name  # PackageNotFoundError for a name not installed
        assert ranges.get(canonicalize_name(name), SpecifierSet()).contains(version), (name, version)
    assert {"hydra-core", "kornia", "albumentations", "pytest"} <= set(ranges)  # the ranges were read


def test_a_command_over_its_limit_is_stopped_with_what_it_started(tmp_path):
    check = gpu_check.Check(tmp_path, tmp_path, "cpu", True, time.monotonic() + 60)
    script = "import subprocess, sys, time; print(subprocess.Popen(['sleep', '60']).pid, flush=True); time.sleep(60)"
    start = time.monotonic()
    assert check.run("slow", [sys.executable, "-c", script], limit=2) is None
    assert time.monotonic() - start < 30
    child = int((tmp_path / "slow.log").read_text().splitlines()[1])
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_test_outcomes_are_read_from_the_log_when_pytest_was_stopped(tmp_path):
    log = tmp_path / "tests.log"
    log.write_text("tests/test_gpu.py::test_a[bf16] PASSED [ 10%]\ntests/test_gpu.py::test_b FAILED [ 20%]\n")
    cases = gpu_check.case_results(tmp_path / "missing.xml", log)
    assert [(c["name"], c["outcome"]) for c in cases] == [("test_a[bf16]", "passed"), ("test_b", "failed")]

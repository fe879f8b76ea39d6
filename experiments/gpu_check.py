"""One prepared check of a GPU machine within a time budget: AMP, compile, DDP and the data path.

    python -m experiments.gpu_check --download-wheels wheels/         # beforehand, on a machine with network
    python -m experiments.gpu_check --out gpu_check                   # on the GPU machine: --budget 480 s by default
    python -m experiments.gpu_check --out /tmp/gc --device cpu --tiny # the same sections on a CPU, in seconds

It is sized for a machine without network that has Python 3.12 with torch (CUDA), pytorch-lightning,
torchmetrics, tensorboard, opencv and onnx, but neither hydra-core, omegaconf, kornia, albumentations nor pytest.
Copy the repository and the wheel folder there and run it from the repository root. The sections run in order,
each as a subprocess (working directory --out; the repository and the installed wheels on PYTHONPATH) with its own
time limit within the global --budget; a section that fails does not stop the next:

- install: every distribution of WHEELS that is missing (or older than its pin) is installed from the wheel
  folder, `pip install --no-index --find-links WHEELS --no-deps --target OUT/site-packages`: nothing is fetched,
  nothing already installed is replaced (torch least of all), and the repository is used from PYTHONPATH rather
  than installed. Then what the wheels provide is imported and the versions recorded.
- tests: `pytest -m gpu tests/test_gpu.py`: bf16-mixed and 16-mixed steps against fp32, channels-last, compile,
  predict and export on CUDA, a 1-GPU `trainer=ddp` run, `data.augment_on=gpu` on CUDA.
- chain: `experiment=best` shortened (CHAIN: a few thousand samples, one or two epochs a stage, compile off: it
  would compile again at every stage): wall time and metrics per stage.
- bench: `experiments.bench_train` for densenet_dilated and resunet at 64, 128 and 224 px: fp32, bf16 +
  channels_last, and + compile (224 px only: every compiled row compiles afresh); model step alone and end to end
  (bf16 + channels_last) from a generated zip with the augmentation in the loader and on the device; beside the
  H100 anchors (ANCHORS). Last, as its compiling makes it the longest: stopped at the deadline, it keeps the rows
  measured so far.

`summary.md` (ready to paste into experiments/RESULTS.md) and `summary.json` in --out give each section's
status (passed, failed or skipped), seconds and findings; `<section>.log` holds its output. `--device cpu --tiny`
runs the same sections at toy sizes (32 px, a few steps, a few samples, no compile). This module imports only the
standard library, so it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = {  # distribution → version (the development .venv's): what the GPU machine may lack, transitive ones too
    "hydra-core": "1.3.8",
    "omegaconf": "2.3.1",
    "antlr4-python3-runtime": "4.9.3",
    "PyYAML": "6.0.4",
    "kornia": "0.9.0",
    "kornia_rs": "0.2.0",
    "albumentations": "2.0.8",
    "albucore": "0.0.24",
    "pydantic": "2.14.4",
    "pydantic_core": "2.50.5",
    "annotated-types": "0.8.0",
    "typing-inspection": "0.4.5",
    "typing_extensions": "4.16.0",
    "stringzilla": "5.3.2",
    "simsimd": "6.5.16",
    "scipy": "1.17.1",
    "pytest": "9.2.0",
    "iniconfig": "2.3.1",
    "pluggy": "1.7.0",
    "Pygments": "2.21.0",
}
# Not listed on purpose: opencv-python-headless (albumentations and albucore declare it, but import cv2, which the
# machine's opencv provides), and torch, numpy, pillow, packaging, tqdm (there with torch, lightning, tensorboard).
SOURCE_ONLY = {"antlr4-python3-runtime"}  # PyPI has only its sdist: built here into a pure-Python wheel
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")  # scipy 1.17: 2_27 and up
PROBE = """
import json, sys
from importlib.metadata import version
import albumentations, cv2, hydra, kornia, omegaconf, pytest, scipy, torch
versions = {"torch": torch.__version__, "pytorch-lightning": version("pytorch-lightning"),
            "torchmetrics": version("torchmetrics"), "hydra-core": hydra.__version__, "kornia": kornia.__version__,
            "albumentations": albumentations.__version__, "opencv": cv2.__version__}
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
info = {"python": sys.version.split()[0], "cuda": torch.version.cuda, "device": device, "versions": versions}
open(sys.argv[1], "w").write(json.dumps(info))
"""  # imports what the wheels provide; the project itself is imported by every later section
ANCHORS = {  # (size, configuration) → samples/s of seed 002's densenet_dilated on an H100 (bf16: + channels_last)
    (64, "fp32"): 5157,
    (64, "bf16 + channels_last"): 9118,
    (128, "fp32"): 1440,
    (128, "bf16 + channels_last"): 2564,
    (224, "fp32"): 467,
    (224, "bf16 + channels_last"): 866,
    (224, "bf16 + channels_last + compile"): 1716,
}
CONFIGS = ("fp32", "bf16 + channels_last", "bf16 + channels_last + compile")
BENCH = {  # --tiny or not → bench_train arguments
    False: shlex.split(
        "--models densenet_dilated resunet --sizes 64 128 224 --compile-sizes 224 --batch 64 --steps 25 --warmup 5 "
        "--e2e-steps 15 --workers 8 --samples 1000"
    ),
    True: shlex.split(
        "--models densenet_dilated --sizes 32 --batch 2 --steps 1 --warmup 1 --e2e-steps 1 --workers 0 --samples 8 "
        "--stored 32"
    ),
}
CHAIN = {  # --tiny or not → overrides of `python -m mdeas.train -m experiment=best`
    False: shlex.split(
        "data.synth.num_samples=3000 compile=false 'progressive.stages=[{image_size:64,max_epochs:2,batch_size:128},"
        "{image_size:128,max_epochs:1,batch_size:64},{image_size:224,max_epochs:1,batch_size:32}]'"
    ),
    True: shlex.split(
        "data.synth.num_samples=24 +data.synth.fg_per_bg=2 +data.synth.workers=1 data.synth.image_size=32 "
        "model=densenet_dilated compile=false channels_last=false trainer.precision=32-true data.num_workers=0 "
        "callbacks.image_grid=null "
        "+trainer.limit_train_batches=2 +trainer.limit_val_batches=1 +trainer.limit_test_batches=1 "
        "'progressive.stages=[{image_size:32,max_epochs:1,batch_size:4},{image_size:32,max_epochs:1,batch_size:4},"
        "{image_size:32,max_epochs:1,batch_size:4}]'"
    ),
}
LIMITS = {"install": 90, "tests": 180, "chain": 150, "bench": 300}  # seconds at most per section
MINIMUM = 20  # seconds: a section with less left of the budget is skipped


@dataclass
class Check:
    """What every section needs: the options, the output folder, its subprocess environment and the deadline."""

    out: Path
    wheels: Path
    device: str
    tiny: bool
    deadline: float

    @property
    def site(self) -> Path:
        return self.out / "site-packages"

    def env(self) -> dict[str, str]:
        """This environment, with the repository and the installed wheels first on PYTHONPATH."""
        path = os.pathsep.join(p for p in (str(REPO), str(self.site), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path, "NO_ALBUMENTATIONS_UPDATE": "1", "HYDRA_FULL_ERROR": "1"}

    def run(self, section: str, command: list[str], limit: float) -> int | None:
        """Run `command` in its own process group, its output appended to `<section>.log`; the exit status, or None
        when it was stopped (with everything it started) at `limit` seconds or at the deadline."""
        timeout = max(1.0, min(limit, self.deadline - time.monotonic()))
        with (self.out / f"{section}.log").open("a") as log:
            log.write(f"$ {shlex.join(command)}\n")
            log.flush()
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.out, env=self.env(),
                                    start_new_session=True)  # fmt: skip
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return None


def stopped(code: int | None, what: str) -> dict:
    """The result of a command that did not end with status 0."""
    why = "was stopped at its time limit" if code is None else f"exited with status {code}"
    return {"status": "failed", "note": f"{what} {why}"}


def missing_wheels(site: Path) -> list[str]:
    """The pins of WHEELS whose distribution is neither installed nor in `site`, or older than the pin."""
    from packaging.version import Version

    found = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in importlib.metadata.distributions()}
    found |= {
        d.metadata["Name"].lower().replace("_", "-"): d.version
        for d in importlib.metadata.distributions(path=[str(site)])
    }
    pins = []
    for name, version in WHEELS.items():
        have = found.get(name.lower().replace("_", "-"))
        if have is None or Version(have) < Version(version):
            pins.append(f"{name}=={version}")
    return pins


def install(check: Check) -> dict:
    """Install what is missing from the wheel folder into OUT/site-packages, then import everything."""
    pins = missing_wheels(check.site)
    result: dict = {"installed": pins}
    if pins and not check.wheels.is_dir():
        note = f"missing {', '.join(pins)} and no wheel folder {check.wheels} (make one: --download-wheels)"
        return result | {"status": "failed", "note": note}
    if pins:
        command = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(check.wheels),
                   "--no-deps", "--upgrade", "--target", str(check.site), *pins]  # fmt: skip
        code = check.run("install", command, LIMITS["install"])
        if code != 0:
            return result | stopped(code, "pip install")
    probe = check.out / "environment.json"
    code = check.run("install", [sys.executable, "-c", PROBE, str(probe)], LIMITS["install"])
    if code != 0:
        return result | stopped(code, "importing the project")
    return result | {"status": "passed", "environment": json.loads(probe.read_text())}


def outcome(case: ET.Element) -> str:
    """passed, failed or skipped, from a JUnit XML test case."""
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    return "skipped" if case.find("skipped") is not None else "passed"


def case_results(report: Path, log: Path) -> list[dict]:
    """Each test's name, outcome and seconds from pytest's JUnit report or, when pytest was stopped before writing
    it, each outcome from its verbose log (no seconds)."""
    if report.is_file():
        cases = ET.parse(report).getroot().iter("testcase")
        return [{"name": c.get("name"), "outcome": outcome(c), "seconds": float(c.get("time", 0))} for c in cases]
    found = re.findall(r"::(\S+) (PASSED|FAILED|ERROR|SKIPPED)", log.read_text() if log.is_file() else "")
    verdict = {"PASSED": "passed", "SKIPPED": "skipped"}
    return [{"name": name, "outcome": verdict.get(word, "failed"), "seconds": None} for name, word in found]


def tests(check: Check) -> dict:
    """The CUDA tests (`-m gpu`) of tests/test_gpu.py, each with its outcome and seconds; skipped without CUDA."""
    report = check.out / "tests.xml"
    report.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider", "-rs",
               str(REPO / "tests" / "test_gpu.py"), f"--junitxml={report}"]  # fmt: skip
    code = check.run("tests", command, LIMITS["tests"])
    result = {"cases": case_results(report, check.out / "tests.log")}
    cases = result["cases"]
    failed = [c["name"] for c in cases if c["outcome"] == "failed"]
    if failed:
        return result | {"status": "failed", "note": f"failed: {', '.join(failed)}"}
    if code != 0:
        return result | stopped(code, "pytest")
    if all(c["outcome"] == "skipped" for c in cases):
        return result | {"status": "skipped", "note": "no CUDA device: every test skipped itself"}
    return result | {"status": "passed"}


def bench(check: Check) -> dict:
    """bench_train (both models but with --tiny) in CONFIGS, model step and end to end (augmentation on cpu and gpu)."""
    report = check.out / "bench_train.json"
    report.unlink(missing_ok=True)
    configs = CONFIGS if check.device == "cuda" else CONFIGS[:2]
    command = [sys.executable, "-m", "experiments.bench_train", "--device", check.device, "--configs", *configs,
               "--e2e-config", CONFIGS[1], "--augment-on", "cpu", "gpu", *BENCH[check.tiny],
               "--json", str(report)]  # fmt: skip
    code = check.run("bench", command, LIMITS["bench"])
    found = json.loads(report.read_text()) if report.is_file() else {}  # rows measured before any stop
    return found | (stopped(code, "bench_train") if code != 0 else {"status": "passed"})


def chain(check: Check) -> dict:
    """The shortened `experiment=best` chain: per stage its size, epochs, wall seconds and metrics."""
    import yaml  # PyYAML: there with pytorch-lightning

    sweep = check.out / "chain"
    shutil.rmtree(sweep, ignore_errors=True)  # a finished stage left by an earlier check would be skipped
    command = [sys.executable, "-m", "mdeas.train", "-m", "experiment=best", f"hydra.sweep.dir={sweep}",
               f"trainer.accelerator={'gpu' if check.device == 'cuda' else 'cpu'}", *CHAIN[check.tiny]]  # fmt: skip
    code = check.run("chain", command, LIMITS["chain"])
    stages = []
    for folder in sorted(sweep.glob("stage*")):
        metrics, begun = folder / "metrics.json", folder / ".hydra" / "overrides.yaml"
        if not metrics.is_file():
            break
        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
        found = json.loads(metrics.read_text())
        stages.append(
            {
                "stage": folder.name,
                "image_size": config["data"]["image_size"],
                "epochs": config["trainer"]["max_epochs"],
                "seconds": metrics.stat().st_mtime - begun.stat().st_mtime,
                "val": found.get("val", {}),
                "test": found.get("test", {}),
            }
        )
    result = {"command": shlex.join(command), "stages": stages}
    if code != 0:
        return result | stopped(code, "the chain")
    return result | {"status": "passed"}


SECTIONS: dict[str, Callable[[Check], dict]] = {"install": install, "tests": tests, "chain": chain, "bench": bench}


def run_sections(check: Check) -> dict[str, dict]:
    """Every section in order, each with its status and seconds; an exception fails its section only."""
    results = {}
    for name, section in SECTIONS.items():
        start = time.monotonic()
        left = check.deadline - start
        (check.out / f"{name}.log").unlink(missing_ok=True)
        print(f"[gpu_check] {name} ({left:.0f} s of the budget left)", flush=True)
        if left < MINIMUM:
            results[name] = {"status": "skipped", "note": f"{left:.0f} s left of the budget"}
        else:
            try:
                results[name] = section(check)
            except Exception as e:  # a broken section must not stop the others
                results[name] = {"status": "failed", "note": f"{type(e).__name__}: {e}"}
        results[name]["seconds"] = round(time.monotonic() - start, 1)
        print(f"[gpu_check] {name}: {results[name]['status']} in {results[name]['seconds']} s", flush=True)
    return results


def _bench_lines(found: dict) -> list[str]:
    lines = ["| model | size | configuration | samples/s | × fp32 | × H100 anchor |", "|---|---:|---|---:|---:|---:|"]
    for row in found.get("model_step", []):
        anchor = ANCHORS.get((row["size"], row["config"])) if row["model"] == "densenet_dilated" else None
        versus = f"{row['samples_per_s'] / anchor:.2f}" if anchor else ""
        lines.append(f"| {row['model']} | {row['size']} | {row['config']} | {row['samples_per_s']:.0f} | "
                     f"{row['x_fp32']:.2f} | {versus} |")  # fmt: skip
    lines += ["", "| model | size | configuration | augment on | model step | end to end | end to end / model step |",
              "|---|---:|---|---|---:|---:|---:|"]  # fmt: skip
    for row in found.get("end_to_end", []):
        share = 100 * row["end_to_end"] / row["model_step"]
        lines.append(f"| {row['model']} | {row['size']} | {row['config']} | {row['augment_on']} | "
                     f"{row['model_step']:.0f} | {row['end_to_end']:.0f} | {share:.0f} % |")  # fmt: skip
    return lines


def _chain_lines(found: dict) -> list[str]:
    lines = [f"`{found.get('command', '')}`", "", "| stage | size | epochs | wall s | val score | val IoU | val δ1 | "
             "test IoU | test δ1 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for s in found.get("stages", []):
        values = [s["val"].get("val/score"), s["val"].get("val/mask/iou"), s["val"].get("val/depth/delta1"),
                  s["test"].get("test/mask/iou"), s["test"].get("test/depth/delta1")]  # fmt: skip
        cells = " | ".join("" if v is None else f"{v:.3f}" for v in values)
        lines.append(f"| {s['stage']} | {s['image_size']} | {s['epochs']} | {s['seconds']:.0f} | {cells} |")
    return lines


def summary_markdown(record: dict) -> str:
    """The summary as markdown: a status table, then each section's findings."""
    env = record["sections"]["install"].get("environment", {})
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    lines = [f"## GPU check ({record['date']})", "",
             f"`{record['command']}` on {env.get('device', record['device'])} (Python {env.get('python', '?')}, "
             f"CUDA {env.get('cuda')}; {versions}); {record['seconds']:.0f} s of a {record['budget']:.0f} s budget.",
             "", "| section | status | seconds | note |", "|---|---|---:|---|"]  # fmt: skip
    for name, found in record["sections"].items():
        lines.append(f"| {name} | {found['status']} | {found['seconds']:.0f} | {found.get('note', '')} |")
    sections = record["sections"]
    installed = sections["install"].get("installed") or ["nothing"]
    lines += ["", "### install", "", f"Installed from the wheel folder: {', '.join(installed)}."]
    lines += ["", "### tests", "", "| test | outcome | seconds |", "|---|---|---:|"]
    for case in sections["tests"].get("cases", []):
        seconds = "" if case["seconds"] is None else f"{case['seconds']:.1f}"
        lines.append(f"| {case['name']} | {case['outcome']} | {seconds} |")
    lines += ["", "### chain", "", *_chain_lines(sections["chain"])]
    lines += ["", "### bench", "", *_bench_lines(sections["bench"])]
    return "\n".join(lines) + "\n"


def download_wheels(folder: Path, python_version: str) -> int:
    """Fetch WHEELS into `folder` for Python `python_version` on x86-64 Linux (run where there is network);
    returns the folder's size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    binary = [f"{n}=={v}" for n, v in WHEELS.items() if n not in SOURCE_ONLY]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "download", "--only-binary=:all:", "--python-version", python_version, *platforms,
                    "--no-deps", "-d", str(folder), *binary], check=True)  # fmt: skip
    source = [f"{n}=={v}" for n, v in WHEELS.items() if n in SOURCE_ONLY]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(folder), *source], check=True)
    return sum(f.stat().st_size for f in folder.glob("*.whl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="output folder (summary.md, summary.json, logs)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: the whole check in seconds (with --device cpu)")
    parser.add_argument("--wheels", type=Path, default=REPO / "wheels", help="wheel folder (default: wheels/)")
    parser.add_argument("--budget", type=float, default=480, help="seconds for all sections (default 480)")
    parser.add_argument("--download-wheels", type=Path, metavar="DIR", help="fetch the wheels into DIR and stop")
    parser.add_argument("--python-version", default="3.12", help="of the wheels to download (default 3.12)")
    args = parser.parse_args(argv)
    if args.download_wheels:
        size = download_wheels(args.download_wheels, args.python_version)
        print(f"{len(WHEELS)} wheels in {args.download_wheels}: {size / 2**20:.1f} MiB")
        return 0
    if args.out is None:
        parser.error("give --out DIR (or --download-wheels DIR)")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    check = Check(args.out, args.wheels.resolve(), args.device, args.tiny, start + args.budget)
    sections = run_sections(check)
    record = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": shlex.join(["python", "-m", "experiments.gpu_check", *(sys.argv[1:] if argv is None else argv)]),
        "device": args.device,
        "tiny": args.tiny,
        "budget": args.budget,
        "seconds": time.monotonic() - start,
        "sections": sections,
    }
    (args.out / "summary.json").write_text(json.dumps(record, indent=2))
    (args.out / "summary.md").write_text(summary_markdown(record))
    print(f"[gpu_check] {args.out / 'summary.md'}")
    return 1 if any(s["status"] == "failed" for s in sections.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

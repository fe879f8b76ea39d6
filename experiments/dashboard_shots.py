"""Screenshots of a run's TensorBoard as a person opens it: Time Series, Images and HPARAMS.

    python experiments/dashboard_shots.py --logdir outputs/<date>/<time> --out shots [--size 1400,1000]

Starts `tensorboard --logdir` on a free local port, waits until it has read the scalars, and has headless
Chromium take a screenshot of each page (`timeseries.png`, `images.png`, `hparams.png` in `--out`) as a fresh
browser window of `--size` pixels first shows it.
Chromium comes from Debian (`apt-get install chromium`); `--chromium` names another binary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mdeas.failure import fail

PAGES = {"timeseries": "#timeseries", "images": "#images", "hparams": "#hparams"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_scalars(url: str, timeout_s: float = 60.0) -> None:
    """Return once the TensorBoard at `url` lists scalar tags; TimeoutError after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/data/plugin/scalars/tags", timeout=5) as reply:
                if any(json.load(reply).values()):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"TensorBoard at {url} showed no scalars within {timeout_s:.0f} s")


def screenshot(chromium: str, url: str, out: Path, budget_ms: int, size: str = "1400,1000") -> None:
    """Headless Chromium's screenshot of `url` after `budget_ms` of virtual time, written as PNG to `out`. Charts are
    drawn on the page's own thread (no OffscreenCanvas): a worker's drawing may miss the screenshot."""
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-features=OffscreenCanvas",
        "--hide-scrollbars", "--no-first-run", f"--window-size={size}", f"--virtual-time-budget={budget_ms}",
        f"--screenshot={out}", url,
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def take_shots(logdir: Path, out: Path, chromium: str, budget_ms: int = 15000, size: str = "1400,1000") -> list[Path]:
    """Serve `logdir` with TensorBoard and write one PNG per page of PAGES into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1", f"--port={port}"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_scalars(url)
        shots = []
        for name, fragment in PAGES.items():
            screenshot(chromium, f"{url}/{fragment}", out / f"{name}.png", budget_ms, size)
            shots.append(out / f"{name}.png")
        return shots
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", type=Path, required=True, help="a run directory (or any TensorBoard logdir)")
    parser.add_argument("--out", type=Path, required=True, help="folder for timeseries.png, images.png, hparams.png")
    parser.add_argument("--chromium", default=None, help="the browser binary (default: chromium on PATH)")
    parser.add_argument("--budget", type=int, default=15000, help="virtual time each page gets to render, in ms")
    parser.add_argument("--size", default="1400,1000", help="window width,height in px")
    args = parser.parse_args()
    chromium = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        fail("chromium: not found; apt-get install chromium, or give --chromium")
    for path in take_shots(args.logdir, args.out, chromium, args.budget, args.size):
        print(path)


if __name__ == "__main__":
    main()

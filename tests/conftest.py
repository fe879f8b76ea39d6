import csv
import io
import json
import os
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image


def encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


CONF = str(Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated datasets and resized caches made by tests (and their subprocesses) go to a temporary folder."""
    os.environ["MDEAS_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_is_not_ignored() -> None:
    """Tests of Ctrl-C hold in a test run started in the background too: a shell without job control starts a
    command given with `&` with SIGINT ignored, which this process and every subprocess it starts would inherit."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def one_thread():
    """One intra-op thread: tiny models train fastest, and at a steady pace, on one thread when the machine's few
    cores are shared (OpenMP threads spinning against other processes make each step many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_RUN = (  # a later override wins, e.g. model=resunet (the base of the default, 11 M parameters)
    "model=densenet_dilated",
    "data.image_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.cache_resized=false",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",  # the same arithmetic on every CPU (the default, auto, follows the hardware)
)


def compose_train(output_dir: Path, data: Path, *overrides: str) -> DictConfig:
    """The real train config writing to `output_dir`, on the zip `data` at 32 px, batch 4, in-process loading, with
    the small densenet_dilated unless `overrides` choose another model."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(
            "train", overrides=[f"paths.output_dir={output_dir}", f"data.path={data}", *TINY_RUN, *overrides]
        )


def write_canonical_zip(
    path: Path, num_samples: int = 12, size: int = 32, fg_per_bg: int = 2, seed: int = 0, objects: int | None = None
) -> Path:
    """A small canonical dataset written by hand: a bright square on a random background, known depth. Ids are
    b<bg>_f<sample>, or with `objects` the seed scheme's b<bg>_o<object>_m0_s<sample>_p0, sample i showing
    object i % objects."""
    rng = np.random.default_rng(seed)
    rows = []
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(num_samples):
            b = i // fg_per_bg
            bg = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            if i % fg_per_bg == 0:
                zf.writestr(f"bg/b{b:03d}.jpg", encode(bg, "JPEG"))
            mask = np.zeros((size, size), np.uint8)
            mask[4 + i % 5 : 16 + i % 5, 6:18] = 255
            fg_bg = bg.copy()
            fg_bg[mask > 0] = (250, 20, 20)
            depth = np.full((size, size), 10000, np.uint16)
            depth[mask > 0] = 2000 + 100 * i
            depth[0, 0] = 0  # one unknown pixel
            sid = f"b{b:03d}_f{i:02d}" if objects is None else f"b{b:03d}_o{i % objects:03d}_m0_s{i:02d}_p0"
            zf.writestr(f"fg_bg/{sid}.jpg", encode(fg_bg, "JPEG"))
            zf.writestr(f"mask/{sid}.png", encode(mask, "PNG"))
            zf.writestr(f"depth/{sid}.png", encode(depth, "PNG"))
            rows.append([sid, f"bg/b{b:03d}.jpg", f"fg_bg/{sid}.jpg", f"mask/{sid}.png", f"depth/{sid}.png"])
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([["id", "bg", "fg_bg", "mask", "depth"], *rows])
        zf.writestr("manifest.csv", text.getvalue())
        zf.writestr("meta.json", json.dumps({"depth": {"format": "png16", "unit": "mm", "max": 20000}}))
    return path


def without_depth(source: Path, out: Path) -> Path:
    """A copy of the canonical zip `source` at `out` with no depth: no depth/ entries, the manifest's depth fields
    empty, meta.json {"depth": null} (as the real-photo check sets are written)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            if name == "manifest.csv":
                rows = [line.split(",") for line in src.read(name).decode().splitlines()]
                dst.writestr(name, "\n".join(",".join([*row[:4], "" if i else "depth"]) for i, row in enumerate(rows)))
            elif name == "meta.json":
                dst.writestr(name, json.dumps({"depth": None}))
            elif not name.startswith("depth/"):
                dst.writestr(name, src.read(name))
    return out


@pytest.fixture
def canonical_zip(tmp_path: Path) -> Path:
    return write_canonical_zip(tmp_path / "data.zip")


def changed_far_from_mask(s, margin: int = 16) -> float:
    """Fraction of the pixels more than `margin` px from the mask where fg_bg differs from bg by > 2 levels (an
    in-camera JPEG carries a change across its 16 px blocks)."""
    rows, cols = np.nonzero(s.mask)
    yy, xx = np.mgrid[: s.mask.shape[0], : s.mask.shape[1]]
    far = (
        (yy < rows.min() - margin)
        | (yy > rows.max() + margin)
        | (xx < cols.min() - margin)
        | (xx > cols.max() + margin)
    )
    changed = np.abs(s.fg_bg.astype(int) - s.background.rgb.astype(int)).max(axis=2) > 2
    return changed[far].mean() if far.any() else 0.0


def truncated_fg_bg(tmp_path: Path, every: int) -> Path:
    """The 24-sample canonical zip with every `every`-th sample's fg_bg JPEG cut to a third."""
    src, out = write_canonical_zip(tmp_path / "clean.zip", num_samples=24), tmp_path / "bad.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        fg_bg = sorted(name for name in zin.namelist() if name.startswith("fg_bg/"))
        bad = set(fg_bg[::every])
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data[: len(data) // 3] if info.filename in bad else data)
    return out

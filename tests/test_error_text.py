"""Every bad input ends in one line naming the zip (or file), the entry and the cause in words: no Python object
reprs, no traceback. The cases go through the entry points' formatter (`mdeas.cli.one_line`) or a CLI run."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose as compose_config
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException, OverrideParseException
from PIL import Image

from mdeas.cli import QUOTING_HINT, _summary, one_line
from mdeas.data.dataset import MaskDepthDataset
from mdeas.data.errors import DataError
from mdeas.data.layouts import load_index
from mdeas.predict import folder_images, read_image, zip_items
from mdeas.synth.compose import compose
from tests.conftest import write_canonical_zip
from tests.layouts_fixtures import drop_entry, replace_entry

FG_BG, MASK, DEPTH = "fg_bg/b000_f01.jpg", "mask/b000_f01.png", "depth/b000_f01.png"
NOT_AN_IMAGE = "cannot decode image (not an image file (unknown format))"
TRUNCATED, EMPTY = "cannot decode image (truncated image)", "empty file (0 bytes)"
INTERNALS = re.compile(r"object at 0x|Traceback|<[\w.]+ [^>]*>")


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def assert_readable(message: str, culprit: str, entry: str | None) -> None:
    """One line, naming `culprit` (a zip or file name) and `entry`, without Python internals."""
    assert "\n" not in message and not INTERNALS.search(message), message
    assert culprit in message and (entry is None or entry in message), message


def cut(fraction: float) -> Callable[[bytes], bytes]:
    return lambda data: data[: int(len(data) * fraction)]


def bad_crc(src: Path, dst: Path, entry: str) -> Path:
    """A copy of `src` (entries stored uncompressed) with one byte of `entry`'s data flipped."""
    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        data = zf.read(entry)
    raw[raw.index(data) + len(data) // 2] ^= 0xFF
    dst.write_bytes(bytes(raw))
    return dst


def not_a_zip(path: Path) -> Path:
    path.write_bytes(b"not a zip " * 100)
    return path


def data_path_error(path: Path) -> BaseException:
    """The error of indexing `path` and decoding every sample (what training meets first)."""
    try:
        index = load_index(str(path))
        dataset = MaskDepthDataset(index, index.samples, 16)
        for i in range(len(dataset)):
            dataset[i]
    except DataError as e:
        return e
    raise AssertionError(f"{path}: no error")


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    return write_canonical_zip(tmp_path / "clean.zip", num_samples=4, size=32)


def with_entry(clean: Path, entry: str, change: Callable[[bytes], bytes]) -> Path:
    with zipfile.ZipFile(clean) as zf:
        data = zf.read(entry)
    return replace_entry(clean, clean.with_name("bad.zip"), entry, change(data))


DATA_CASES = {  # name → (make the bad zip from the clean one, the entry to be named or None: the zip itself, cause)
    "non-image entry": (lambda z: with_entry(z, FG_BG, lambda d: b"these are not image bytes"), FG_BG,
                        r"cannot decode image \(not an image file \(unknown format\)\)"),
    # a JPEG cut in its header fails in Pillow (truncated image), later in libjpeg (... JPEG data)
    "truncated JPEG": (lambda z: with_entry(z, FG_BG, cut(1 / 3)), FG_BG,
                       r"cannot decode image \((truncated image|truncated or corrupt JPEG data)\)"),
    "JPEG header only": (lambda z: with_entry(z, FG_BG, lambda d: d[:3]), FG_BG,
                         r"cannot decode image \(damaged JPEG header\)"),
    "truncated PNG": (lambda z: with_entry(z, MASK, cut(1 / 2)), MASK, r"cannot decode image \(truncated image\)"),
    "PNG signature only": (lambda z: with_entry(z, DEPTH, lambda d: d[:8]), DEPTH,
                           r"cannot decode image \(damaged PNG header\)"),
    "empty entry": (lambda z: with_entry(z, MASK, lambda d: b""), MASK, r"empty entry \(0 bytes\)"),
    "bad CRC": (lambda z: bad_crc(z, z.with_name("bad.zip"), DEPTH), DEPTH, r"cannot read entry \(Bad CRC-32: .*\)"),
    "wrong mode": (lambda z: with_entry(z, DEPTH, lambda d: encode(np.zeros((32, 32, 3), np.uint8), "PNG")), DEPTH,
                   r"expected a 16-bit depth PNG, got mode RGB"),
    "missing partner": (lambda z: drop_entry(z, z.with_name("bad.zip"), MASK), MASK,
                        r"listed for sample b000_f01 but missing \(manifest\.csv line 3\)"),
    "corrupt zip": (lambda z: not_a_zip(z.with_name("bad.zip")), None, r"not a readable zip \(.+\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_data_path_errors_name_zip_entry_and_cause(clean, case):
    make, entry, cause = DATA_CASES[case]
    message = one_line(data_path_error(make(clean)))
    assert_readable(message, "bad.zip", entry)
    assert re.search(rf"bad\.zip: {re.escape(entry) + ': ' if entry else ''}{cause}$", message), message


def test_check_cli_lists_the_entry_in_words(clean, tmp_path):
    bad = DATA_CASES["non-image entry"][0](clean)
    done = subprocess.run(
        [sys.executable, "-m", "mdeas.data.check", f"path={bad}", "num_workers=0"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert not INTERNALS.search(output), output[-2000:]
    assert f"{FG_BG}: cannot decode image (not an image file (unknown format))" in output, output[-2000:]
    assert_readable(done.stderr.strip().splitlines()[-1], "bad.zip", None)


def _compose_inputs(root: Path) -> dict[str, Path]:
    bg_dir, fg_dir = root / "bg", root / "fg"
    bg_dir.mkdir()
    fg_dir.mkdir()
    (bg_dir / "room.png").write_bytes(encode(np.full((40, 40, 3), 120, np.uint8), "PNG"))
    cutout = np.zeros((20, 20, 4), np.uint8)
    cutout[5:15, 5:15] = (250, 10, 10, 255)
    (fg_dir / "block.png").write_bytes(encode(cutout, "PNG"))
    return {"bg_dir": bg_dir, "fg_dir": fg_dir}


@pytest.mark.parametrize(
    ("damage", "file", "cause"),
    [
        (lambda d: (d["bg_dir"] / "room.png").write_bytes(b"not an image"), "bg/room.png", NOT_AN_IMAGE),
        (
            lambda d: (d["fg_dir"] / "block.png").write_bytes((d["fg_dir"] / "block.png").read_bytes()[:70]),
            "fg/block.png",
            TRUNCATED,
        ),
        (lambda d: (d["bg_dir"] / "room.png").write_bytes(b""), "bg/room.png", EMPTY),
    ],
)
def test_compose_errors_name_the_file(tmp_path, damage, file, cause):
    inputs = _compose_inputs(tmp_path)
    damage(inputs)
    with pytest.raises(DataError) as error:
        compose(tmp_path / "c.zip", workers=1, image_size=32, scales=[1.0], positions=1, **inputs)
    message = one_line(error.value)
    assert_readable(message, file, None)
    assert message == f"{tmp_path / file}: {cause}"


def test_compose_cli_error_is_one_readable_line(tmp_path):
    inputs = _compose_inputs(tmp_path)
    (inputs["bg_dir"] / "room.png").write_bytes(b"not an image")
    done = subprocess.run(
        [sys.executable, "-m", "mdeas.synth.compose", f"bg_dir={inputs['bg_dir']}", f"fg_dir={inputs['fg_dir']}",
         f"out={tmp_path / 'c.zip'}", "workers=1", "image_size=32", "positions=1", "scales=[1.0]"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1 and not INTERNALS.search(done.stderr), done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert_readable(last, "room.png", None)
    assert last.endswith("cannot decode image (not an image file (unknown format))"), last


def test_predict_input_errors_name_the_file_or_entry(clean, tmp_path):
    files = {"junk.png": b"not an image", "empty.png": b"", "cut.png": encode(np.zeros((30, 30, 3), np.uint8), "PNG")}
    files["cut.png"] = files["cut.png"][:60]
    causes = {"junk.png": NOT_AN_IMAGE, "empty.png": EMPTY, "cut.png": TRUNCATED}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as error:
            read_image(tmp_path / name)
        assert_readable(one_line(error.value), name, None)
        assert one_line(error.value) == f"{tmp_path / name}: {causes[name]}"
    bad = DATA_CASES["non-image entry"][0](clean)
    with pytest.raises(DataError) as error:
        list(zip_items(str(bad), tmp_path / "out"))
    assert_readable(one_line(error.value), "bad.zip", FG_BG)
    assert one_line(error.value) == f"{bad}: {FG_BG}: {NOT_AN_IMAGE}"


@pytest.mark.parametrize(
    ("module", "missing"),
    [("mdeas.evaluate", "ckpt_path"), ("mdeas.export", "output"), ("mdeas.synth.compose", "bg_dir")],
)
def test_a_mandatory_key_left_unset_is_the_whole_error(tmp_path, module, missing):
    """`???` keys: stderr is only `error: Missing mandatory value: <key>` (Hydra's own "Error executing job" line
    before it would make two)."""
    args = ["ckpt_path=x.ckpt"] if module == "mdeas.export" else []
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == f"error: Missing mandatory value: {missing}\n", done.stderr


def test_an_override_that_does_not_parse_is_named(tmp_path):
    """Hydra's parser names the override for some errors only (not for an unclosed list)."""
    cmd = [sys.executable, "-m", "mdeas.summary", "data.split=[0.5,0.5"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: Error parsing override 'data.split=[0.5,0.5': no viable alternative"), (
        done.stderr
    )


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("data.path=in/é.jpg", "a character the override grammar does not take"),  # Hydra: LexerNoViableAlt...
        ("bg=in/a(1).jpg", "mismatched input '(' expecting <EOF>"),
    ],
)
def test_an_override_with_a_character_to_quote_says_how(override, said):
    with pytest.raises(OverrideParseException) as error:
        OverridesParser.create().parse_overrides([override])
    assert _summary(error.value)[1] == f"Error parsing override {override!r}: {said} ({QUOTING_HINT})"
    quoted = override.replace("=", "='", 1) + "'"
    assert OverridesParser.create().parse_overrides([quoted])[0].value() == override.split("=", 1)[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["mdeas.train", "ckpt_path=123"],
            "ckpt_path must be a file or folder name, got 123 (quote a name made of digits: 'ckpt_path=\"123\"')",
        ),
        pytest.param(
            ["mdeas.evaluate", "ckpt_path=a.ckpt", "output=2024"],
            "output must be a file or folder name, got 2024 (quote a name made of digits: 'output=\"2024\"')",
            marks=pytest.mark.slow,  # the same check (`file_names`) as train's and compare's, in the fast set
        ),
        pytest.param(
            ["mdeas.predict", "ckpt_path=a.ckpt", "output=o", "bg=1", "fg_bg=f.jpg"],
            "bg must be a file or folder name, got 1 (quote a name made of digits: 'bg=\"1\"')",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["mdeas.export", "ckpt_path=7", "output=m.pt"],
            "ckpt_path must be a file or folder name, got 7 (quote a name made of digits: 'ckpt_path=\"7\"')",
            marks=pytest.mark.slow,
        ),
        (
            ["mdeas.compare", "ckpt_paths=[a.ckpt,12]"],
            "ckpt_paths must be a list of file names, got ['a.ckpt', 12] (quote a name made of digits: '\"12\"')",
        ),
        (
            ["mdeas.synth", "out=5", "num_samples=2"],
            "out must be a file or folder name, got 5 (quote a name made of digits: 'out=\"5\"')",
        ),
    ],
)
def test_a_name_made_of_digits_is_named_with_how_to_quote_it(tmp_path, args, message):
    """Hydra reads `output=2024` as a number: each entry point names the key and says to quote it (a path
    function given an int ended in a traceback)."""
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"error: {message}\n"


def test_a_folder_pairs_names_in_another_case_and_names_an_ambiguous_partner(tmp_path):
    """input=DIR made on Windows: fg_bg/a.JPG beside bg/a.jpg is one pair, so is fg_bg/d.jpg beside bg/d.png,
    Thumbs.db is no image to pair (as .DS_Store); with bg/B.jpg and bg/b.JPG both there, fg_bg/b.jpg has two and
    neither is taken."""
    image = encode(np.zeros((8, 8, 3), np.uint8), "PNG")
    names = ("bg/a.jpg", "fg_bg/a.JPG", "bg/c.png", "fg_bg/c.png", "bg/d.png", "fg_bg/d.jpg", "fg_bg/Thumbs.db")
    for name in (*names, "fg_bg/.DS_Store"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(image)
    assert folder_images(tmp_path) == [
        (tmp_path / "fg_bg/a.JPG", tmp_path / "bg/a.jpg"),
        (tmp_path / "fg_bg/c.png", tmp_path / "bg/c.png"),
        (tmp_path / "fg_bg/d.jpg", tmp_path / "bg/d.png"),
    ]
    for name in ("bg/B.jpg", "bg/b.JPG", "fg_bg/b.jpg"):
        (tmp_path / name).write_bytes(image)
    with pytest.raises(DataError) as error:
        folder_images(tmp_path)
    assert one_line(error.value) == f"{tmp_path / 'bg'}: b.jpg: 2 partners of {tmp_path / 'fg_bg/b.jpg'} (B.jpg, ...)"


def test_an_unknown_config_choice_lists_the_choices_without_hydras_search_path():
    with initialize_config_dir(config_dir=str(Path(__file__).parents[1] / "conf"), version_base="1.3"):
        with pytest.raises(MissingConfigException) as error:
            compose_config("train", overrides=["model=resunett"])
    details, head = _summary(error.value)
    assert "Config search path:" in str(error.value)  # Hydra's, left out
    assert head == "In 'train': Could not find 'model/resunett'"
    assert details[0] == "Available options in 'model':" and "\tresunet" in details
    assert all(line.startswith("\t") for line in details[1:]) and not [line for line in details if "provider=" in line]

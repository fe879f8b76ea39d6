"""Fuzzing as a test: damaged copies of small zips of every layout (experiments/fuzz_inputs.py) index, decode and
`check` cleanly or end in one DataError naming a zip; then one regular test for each bug the fuzzer (or reading
the readers with it in mind) found."""

import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed

from experiments.fuzz_inputs import Case, cases, fuzz, run_written
from mdeas.data.dataset import load_sample
from mdeas.data.errors import DataError
from mdeas.data.layouts import load_index
from mdeas.data.zipstore import ZipStore
from tests.conftest import write_canonical_zip
from tests.layouts_fixtures import make_samples, write_by_kind

FUZZ = {"database": None, "deadline": None, "suppress_health_check": list(HealthCheck)}  # time bound: per stage


@settings(max_examples=200, derandomize=True, **FUZZ)
@given(case=cases())
def test_damaged_zips_of_every_layout_work_or_end_in_one_data_error(tmp_path_factory, case: Case):
    run_written(case, tmp_path_factory.mktemp("fuzz"))


@pytest.mark.slow
@hypothesis_seed(1)
@settings(max_examples=3000, **FUZZ)
@given(case=cases())
def test_damaged_zips_long_run(tmp_path_factory, case: Case):
    run_written(case, tmp_path_factory.mktemp("fuzz"))


def with_entries(source: Path, out: Path, changed: dict[str, bytes | tuple[str, bytes]]) -> Path:
    """A copy of zip `source` whose entries named in `changed` hold new bytes, or a new (name, bytes)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            new = changed.get(info.filename, zin.read(info))
            name, data = new if isinstance(new, tuple) else (info.filename, new)
            zout.writestr(name, data)
    return out


@pytest.fixture
def canonical(tmp_path: Path) -> Path:
    return write_canonical_zip(tmp_path / "set.zip", num_samples=4, size=16)


def test_a_deeply_nested_meta_json_is_a_layout_error(canonical, tmp_path):
    """Was RecursionError from json.loads."""
    path = with_entries(canonical, tmp_path / "deep.zip", {"meta.json": b"[" * 100_000})
    with pytest.raises(DataError, match=r"deep.zip: meta.json: unreadable depth encoding \(maximum recursion depth"):
        load_index(str(path))


@pytest.mark.parametrize(
    "meta",
    [{"depth": {"max": "20000"}}, {"depth": {"unit": ["mm"]}}, {"depth": {"unit": "millimetres"}}, {"depth": 5}, [1]],
)
def test_meta_json_values_of_the_wrong_type_are_layout_errors(canonical, tmp_path, meta):
    """Were TypeError (a string max compared with 0; a list unit unhashable in the set of encodings)."""
    path = with_entries(canonical, tmp_path / "meta.zip", {"meta.json": json.dumps(meta).encode()})
    with pytest.raises(
        DataError, match=r"meta.zip: meta.json: depth must be png16 or gray8, unit mm, cm, m or relative and max"
    ):
        load_index(str(path))


@pytest.mark.parametrize(
    "manifest, said",
    [
        (b'id,bg,fg_bg,mask,depth\n"' + b"x" * 200_000 + b"\n", "field larger than field limit"),
        (b"id,bg,fg_bg,mask,depth\nb000_f00,bg/b0\r00.jpg,x,y,z\n", "new-line character seen in unquoted field"),
    ],
)
def test_a_manifest_the_csv_module_cannot_split_is_a_layout_error(canonical, tmp_path, manifest, said):
    """Were _csv.Error: an unclosed quote making the rest of the file one field, a lone carriage return."""
    path = with_entries(canonical, tmp_path / "bad.zip", {"manifest.csv": manifest})
    with pytest.raises(DataError, match=rf"bad.zip: manifest.csv: unreadable table \({said}"):
        load_index(str(path))


def test_entry_names_with_a_leading_slash_pair_like_the_others(tmp_path):
    """Was ValueError from os.path.commonpath (absolute and relative names in one kind)."""
    paths, _ = write_by_kind(tmp_path, make_samples(backgrounds=2, per_bg=2, size=16))
    mask = paths[2]
    first = zipfile.ZipFile(mask).namelist()[0]
    with_entries(mask, tmp_path / "m.zip", {first: ("/" + first, zipfile.ZipFile(mask).read(first))})
    (tmp_path / "m.zip").replace(mask)
    assert len(load_index([str(p) for p in paths]).samples) == 4


def test_entry_names_with_control_characters_are_shown_on_one_line(canonical, tmp_path):
    """Were multi-line messages: an entry named `mask/b000\\nf00.png` (listed quoted in the manifest)."""
    manifest = zipfile.ZipFile(canonical).read("manifest.csv").replace(b"mask/b000_f00.png", b'"mask/b000\nf00.png"')
    path = with_entries(
        canonical, tmp_path / "nl.zip", {"mask/b000_f00.png": ("mask/b000\nf00.png", b"junk"), "manifest.csv": manifest}
    )
    index = load_index(str(path))
    with pytest.raises(DataError) as caught:
        load_sample(index, index.samples[0])
    said = "cannot decode image (not an image file (unknown format))"
    assert str(caught.value) == f"{path}: mask/b000\\x0af00.png: {said}"


def test_a_packed_size_past_the_end_of_the_file_is_refused_before_reading(tmp_path):
    """Was a read of the declared 4 GiB (MemoryError under an address-space limit such as `ulimit -v`)."""
    data = b"x" * 64
    header = struct.pack("<5H3L2H", 20, 0, 0, 0, 0, zlib.crc32(data), 0xFFFFFFF0, 64, 5, 0)
    body = b"PK\x03\x04" + header + b"a.bin" + data
    directory = b"PK\x01\x02" + struct.pack("<H", 20) + header + struct.pack("<3H2L", 0, 0, 0, 0, 0) + b"a.bin"
    end = b"PK\x05\x06" + struct.pack("<4H2LH", 0, 0, 1, 1, len(directory), len(body), 0)
    (tmp_path / "big.zip").write_bytes(body + directory + end)
    with pytest.raises(DataError, match=r"big.zip: a.bin: not a readable zip \(lies past the central directory"):
        ZipStore([tmp_path / "big.zip"])


def test_the_fuzzer_makes_both_readable_and_damaged_zips(tmp_path):
    """The property above holds only if the cases really span both outcomes at every stage."""
    tried, outcomes, failures = fuzz(40, 0, tmp_path)
    assert tried == 40 and failures == []
    for stage in ("index", "dataset", "check"):
        results = {key.split(": ", 1)[1] for key in outcomes if key.startswith(f"{stage}: ")}
        assert "ok" in results and results - {"ok", "skipped"}, (stage, results)

"""A program's output folder: made before the work, gone again after a failure that wrote nothing into it."""

from __future__ import annotations

import pytest

from mdeas.atomic import output_folder


def test_a_failure_removes_the_empty_folders_it_made_and_keeps_the_rest(tmp_path):
    (tmp_path / "old").mkdir()
    with pytest.raises(RuntimeError), output_folder(tmp_path / "old" / "new" / "out") as out:
        assert out.is_dir()
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["old"] and not any((tmp_path / "old").iterdir())
    with pytest.raises(RuntimeError), output_folder(tmp_path / "a" / "out") as out:
        (out / "written.png").write_bytes(b"")  # what a run wrote stays, and the folders holding it
        raise RuntimeError
    assert (tmp_path / "a" / "out" / "written.png").exists()
    with output_folder(tmp_path / "b") as out:
        pass
    assert out.is_dir()  # kept after a run that did not fail, even empty

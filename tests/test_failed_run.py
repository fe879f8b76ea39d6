import io
import logging
import subprocess
import sys
from pathlib import Path

from mdeas.failed_run import end_failed_run, holds_only_hydra_files


def hydra_run(folder: Path) -> Path:
    """What Hydra writes when a run starts: .hydra/ with its three files and an empty train.log."""
    (folder / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (folder / ".hydra" / name).write_text("a: 1\n")
    (folder / "train.log").write_text("")
    return folder


def test_a_folder_holds_only_hydra_files_until_the_run_writes_its_own(tmp_path):
    run = hydra_run(tmp_path / "run")
    assert holds_only_hydra_files(run)
    (run / "checkpoints").mkdir()
    assert not holds_only_hydra_files(run)
    (run / "checkpoints").rmdir()
    (run / ".hydra" / "notes.txt").write_text("mine")
    assert not holds_only_hydra_files(run)
    assert not holds_only_hydra_files(tmp_path / "absent")
    assert not holds_only_hydra_files(tmp_path)


def test_a_run_that_failed_before_writing_anything_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "kept").mkdir(parents=True)
    run = hydra_run(tmp_path / "outputs" / "2026-12-07" / "10-00-00")
    end_failed_run(run, "notazip.zip: no such file")
    assert not (tmp_path / "outputs" / "2026-12-07").exists()  # the date folder held only this run
    assert (tmp_path / "outputs" / "kept").is_dir()


def test_a_run_that_failed_later_has_the_error_in_its_log_file_only(tmp_path):
    run = hydra_run(tmp_path / "run")
    (run / "checkpoints").mkdir()
    console, root = io.StringIO(), logging.getLogger()
    handlers = [logging.FileHandler(run / "train.log"), logging.StreamHandler(console)]
    for handler in handlers:
        root.addHandler(handler)
    try:
        end_failed_run(run, "non-finite loss at step 7")
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
    assert (run / "train.log").read_text() == "non-finite loss at step 7\n"
    assert console.getvalue() == "" and (run / "checkpoints").is_dir()


def test_train_with_a_missing_zip_says_so_and_leaves_no_run_folder(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mdeas.train", "data.path=missing.zip", "hydra.run.dir=runs/c"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == "error: missing.zip: no such file"
    assert list(tmp_path.iterdir()) == []

import io
import logging
import subprocess
import sys

from mdeas.failed_run import log_to_files


def test_a_failed_runs_error_goes_to_its_log_file_only(tmp_path):
    console, root = io.StringIO(), logging.getLogger()
    handlers = [logging.FileHandler(tmp_path / "train.log"), logging.StreamHandler(console)]
    for handler in handlers:
        root.addHandler(handler)
    try:
        log_to_files("non-finite loss at step 7")
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
    assert (tmp_path / "train.log").read_text() == "non-finite loss at step 7\n" and console.getvalue() == ""


def test_train_with_a_missing_checkpoint_says_so_in_its_log_and_makes_no_folder_named_after_it(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mdeas.train", "ckpt_path=runs/gone/checkpoints/last.ckpt"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    message = "runs/gone/checkpoints/last.ckpt: no such checkpoint file"
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == f"error: {message}"
    assert not (tmp_path / "runs").exists()
    (log,) = (tmp_path / "outputs").glob("*/*/train.log")  # the default run folder
    assert log.read_text().strip().endswith(message)

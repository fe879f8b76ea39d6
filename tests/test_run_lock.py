"""One process per run folder and per generated set: locks held by another process, a training run refused in a
folder in use, and a set that another process generated while this one waited."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mdeas import file_lock, run_lock
from mdeas.file_lock import Held, exclusive
from mdeas.synth import default_set
from tests.conftest import TINY_RUN

REPO = Path(__file__).resolve().parents[1]
HOLD = "import sys, time; from pathlib import Path; from mdeas.file_lock import exclusive\n" \
       "with exclusive(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.readline()"  # fmt: skip


@pytest.fixture
def holder():
    """Starts a process that holds the lock of a file until it is told to end (its stdin closed)."""
    started = []

    def hold(path: Path) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
        started.append(process)
        assert process.stdout.readline() == "held\n"
        return process

    yield hold
    for process in started:
        process.stdin.close()
        process.wait(timeout=30)


def test_a_lock_held_elsewhere_is_named_with_its_pid_and_free_once_that_process_ends(tmp_path, holder):
    path = tmp_path / "run" / ".lock"
    other = holder(path)
    with pytest.raises(Held) as caught, exclusive(path, wait=False):
        pass
    assert caught.value.holder == f"pid {other.pid}" and caught.value.path == path
    other.stdin.close()
    other.wait(timeout=30)
    with exclusive(path, wait=False):
        assert path.read_text() == f"{os.getpid()}\n"


def test_a_second_trainer_in_a_run_folder_ends_in_one_line_before_training(tmp_path, holder):
    run = tmp_path / "run"
    other = holder(run / run_lock.LOCK)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    data = f"data.path={REPO / 'tests' / 'missing.zip'}"  # never read: the folder is refused first
    done = subprocess.run([sys.executable, "-m", "mdeas.train", *TINY_RUN, data, f"hydra.run.dir={run}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {run}: another training process (pid {other.pid}) is using this run folder; wait for it to end, or "
        "give this run a folder of its own (hydra.run.dir=..., or hydra.sweep.dir=... with -m)"
    )
    assert not (run / "checkpoints").exists()


def test_only_the_first_process_of_a_run_takes_its_folder(tmp_path, holder, monkeypatch):
    """The processes Lightning or torchrun start beside the first, for other devices or nodes, share its folder."""
    holder(tmp_path / run_lock.LOCK)
    monkeypatch.setattr(run_lock.rank_zero_only, "rank", 1)
    with run_lock.sole_trainer(tmp_path):
        pass
    monkeypatch.setattr(run_lock.rank_zero_only, "rank", 0)
    monkeypatch.setenv("NODE_RANK", "1")
    with run_lock.sole_trainer(tmp_path):
        pass
    monkeypatch.delenv("NODE_RANK")
    with pytest.raises(SystemExit, match=r"another training process \(pid \d+\) is using this run folder"):
        with run_lock.sole_trainer(tmp_path):
            pass


def test_a_set_generated_by_another_process_meanwhile_is_not_generated_again(tmp_path, holder, monkeypatch):
    """Two runs started together: the second waits for the first's generation and then takes its set."""
    made = default_set.GeneratedSet(num_samples=4, image_size=32)
    target = made.path(tmp_path)
    other = holder(target.with_name(f".{target.name}.lock"))
    monkeypatch.setattr(default_set, "generate", lambda *args, **kwargs: pytest.fail("generated twice"))
    found = []
    waiting = threading.Thread(target=lambda: found.append(made(tmp_path)))
    waiting.start()
    waiting.join(timeout=1.0)
    assert waiting.is_alive() and not found  # waits while the other process generates
    target.write_bytes(b"the other process's set")
    other.stdin.close()
    other.wait(timeout=30)
    waiting.join(timeout=30)
    assert found == [target]


def test_a_file_system_without_locks_lets_the_work_go_on_with_a_warning(tmp_path, monkeypatch, caplog):
    def refused(handle, operation):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(file_lock.fcntl, "flock", refused)
    with caplog.at_level("WARNING", logger="mdeas.file_lock"), exclusive(tmp_path / ".lock", wait=False):
        pass
    assert f"{tmp_path / '.lock'}: cannot be locked (No locks available); going on without the lock" in caplog.text

"""`python -m mdeas.train --help`: what it does, examples, then the config groups and the composed config."""

import subprocess
import sys


def test_train_help_opens_with_usage_and_examples_then_lists_every_group() -> None:
    done = subprocess.run([sys.executable, "-m", "mdeas.train", "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.rstrip().splitlines()
    assert lines[0] == "python -m mdeas.train [group=choice ...] [key=value ...] [-m for a sweep]"
    assert "  python -m mdeas.train debug=fdr" in lines and "== Configuration groups ==" in lines
    assert "debug: default, fdr, limit, overfit, profiler" in lines and "logger: csv, tensorboard" in lines
    assert lines[-1].startswith("Powered by Hydra")

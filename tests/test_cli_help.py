"""`--help` of every entry point: what it does, examples, then the composed config (and for train its config groups)."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest


def test_train_help_opens_with_usage_and_examples_then_lists_every_group() -> None:
    done = subprocess.run([sys.executable, "-m", "mdeas.train", "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.rstrip().splitlines()
    assert lines[0] == "python -m mdeas.train [group=choice ...] [key=value ...] [-m for a sweep]"
    assert "  python -m mdeas.train debug=fdr" in lines and "== Configuration groups ==" in lines
    assert "debug: default, fdr, limit, overfit, profiler" in lines and "logger: csv, tensorboard" in lines
    assert lines[-1].startswith("Powered by Hydra")


TOOLS = ["mdeas.evaluate", "mdeas.compare", "mdeas.predict", "mdeas.export", "mdeas.data.check", "mdeas.data.stats",
         "mdeas.summary", "mdeas.synth", "mdeas.synth.compose"]  # fmt: skip


@pytest.mark.slow  # nine interpreters; train's help, with the same layout, is in the fast set
def test_every_other_entry_point_opens_its_help_with_usage_and_examples_then_its_own_config() -> None:
    """`--help` of each tool: its usage line, what it does with examples, then its composed config, without train's
    config groups (which do not apply to it)."""
    with ThreadPoolExecutor(2) as pool:
        runs = list(
            pool.map(
                lambda m: subprocess.run([sys.executable, "-m", m, "--help"], capture_output=True, text=True), TOOLS
            )
        )
    for module, done in zip(TOOLS, runs, strict=True):
        assert done.returncode == 0, (module, done.stderr[-2000:])
        lines = done.stdout.rstrip().splitlines()
        assert lines[0].startswith(f"python -m {module} "), (module, lines[0])
        examples = lines.index("== Config ==")
        assert any(line.startswith(f"  python -m {module} ") for line in lines[1:examples]), module
        assert "== Configuration groups ==" not in lines and "model: composed" not in done.stdout, module
        assert lines[-1].startswith("Powered by Hydra"), module

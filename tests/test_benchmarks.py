"""The benchmarks run end to end on tiny settings and print their tables and the `ratio:` line."""

import re

import pytest
import torch

from experiments import bench_data, bench_models, bench_refiner, bench_train


def test_bench_data_prints_every_loader_and_the_ratio(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bench_data.main(["--samples", "24", "--stored", "128", "--sizes", "64", "--workers", "0", "--passes", "1",
                     "--cpu-samples", "8", "--batch", "4"])  # fmt: skip
    out = capsys.readouterr().out
    for layout in ("canonical", "seed002"):
        for loader in ("seed-style (extracted files)", "resized cache build", "mdeas, no augmentation",
                       "mdeas, decoded each epoch at full size", "mdeas, decoded each epoch", "mdeas |"):  # fmt: skip
            assert f"| {layout} | {loader}" in out, (layout, loader)
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line.split("|") for line in out.splitlines()}
    seed_style, mdeas = rows["seed002", "seed-style (extracted files)", "64"], rows["seed002", "mdeas", "64"]
    ratio = float(re.search(r"\nratio: (\d+\.\d\d)\n$", out).group(1))
    assert ratio == float(mdeas[5]) and float(seed_style[5]) == 1.0  # the headline: mdeas over seed-style, seed002
    assert ratio == pytest.approx(float(mdeas[4]) / float(seed_style[4]), rel=0.01)


def test_timed_counts_each_timed_batch_s_fetch_and_step(monkeypatch):
    """On a clock that a fetch moves by 1 s and a step by 0.5 s: 4 timed batches of 2 samples take 4 × 1.5 s."""
    clock = [0.0]

    def batches():
        while True:
            clock[0] += 1.0
            yield {"bg": torch.zeros(2, 3, 4, 4)}

    monkeypatch.setattr(bench_train.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(bench_train, "train_step", lambda *args: clock.__setitem__(0, clock[0] + 0.5))
    rate = bench_train.timed(torch.nn.Linear(1, 1), None, batches(), False, warmup=2, steps=4)
    assert rate == pytest.approx(8 / 6.0)


@pytest.mark.slow  # trains the default model at 224 px; `timed`'s window is checked above on a fake clock
def test_bench_train_prints_steps_end_to_end_and_the_ratio(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bench_train.main(["--device", "cpu", "--sizes", "32", "224", "--batch", "1", "--steps", "1", "--warmup", "1",
                      "--e2e-steps", "2", "--workers", "0", "--samples", "12", "--stored", "64"])  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("| 32 |") == 5 and out.count("| 224 |") == 4  # 4 configurations each, 1 end-to-end row
    assert re.search(r"\| 32 \| [^|]+ \| [\d.]+ \| [\d.]+ \| \d+ % \|", out)
    assert re.search(r"\nratio: \d+\.\d\d\n$", out)
    assert list((tmp_path / "data/cache/bench/resized").iterdir())  # the end-to-end row read the resized cache


def test_bench_refiner_prints_every_model_the_outline_step_mirroring_and_the_ratio(capsys):
    bench_refiner.main(["--sizes", "96x64", "--runs", "1", "--fractions", "0.05"])
    out = capsys.readouterr().out
    rows = (
        "resunet at 64 px, upsampled",
        "+ refiner, 5% of the patches",
        "+ refiner, 10% of the patches",
        "+ default refiner (the base's hidden map, alpha maps), 10%",
        "+ default refiner without alpha maps (model.refiner.alpha=false), 10%",
        "+ default refiner, 10%, + outline step",
        "+ default refiner, 10%, + outline step, mirror-averaged",
    )
    for row in rows:
        assert f"| 96×64 | {row} | " in out, row
    cells = {line.split("|")[2].strip(): line.split("|")[3:5] for line in out.splitlines() if "| 96×64 |" in line}
    assert float(cells[rows[0]][1]) == 1.0  # each row's time over the base's, the base first
    ratio = float(re.search(r"\nratio: (\d+\.\d\d)\n$", out).group(1))
    assert ratio == float(cells[rows[2]][1])  # the headline: the configured refiner (10 %) over the base alone


def test_bench_models_times_presets_in_alternating_rounds(monkeypatch):
    """A preset costing 3× the baseline reads 3.00 although the machine runs twice as slow in every other round:
    each round times every preset once, and the ratio is taken within a round."""
    calls = []

    def forward_seconds(model, bg, fg_bg):
        calls.append(model.name)
        spell = 2.0 if (len(calls) - 1) // 2 % 2 else 1.0  # the machine slows down every other round
        return spell * (0.03 if model.name == "mobile_unet" else 0.01)

    def named(name):
        model = torch.nn.Identity()
        model.name = name
        return model

    monkeypatch.setattr(bench_models, "list_models", lambda: [bench_models.BASELINE, "mobile_unet"])
    monkeypatch.setattr(bench_models, "create_model", named)
    monkeypatch.setattr(bench_models, "layer_table", lambda model, size: ([], 1.5))
    monkeypatch.setattr(bench_models, "forward_seconds", forward_seconds)
    rows = bench_models.bench(size=16, batch=2, runs=3, warmup=1)
    assert calls == [bench_models.BASELINE, "mobile_unet"] * 4
    assert [(name, ratio) for name, _, _, _, ratio in rows] == [(bench_models.BASELINE, 1.0), ("mobile_unet", 3.0)]
    assert rows[1][3] == pytest.approx(0.06 * 1000 / 2)  # the median timed round (2×, 1×, 2×) per image, in ms
    assert "| `mobile_unet` | 0 | 1.50 | 30.00 | 3.00 |" in bench_models.table(rows, 16)


def test_bench_data_times_past_the_first_batch_and_says_when_nothing_is_left(monkeypatch):
    """On a clock that each call moves by 1 s: the first batch starts the clock, the second (4 samples) is timed,
    1000 ms / 4 samples; a loader of one batch leaves nothing to time."""
    clock = iter(range(100))
    monkeypatch.setattr(bench_data.time, "process_time", lambda: float(next(clock)))
    samples = [{"bg": torch.zeros(3, 4, 4)}] * 8
    assert bench_data.cpu_ms(torch.utils.data.DataLoader(samples, batch_size=4), limit=4) == 250.0
    one_batch = torch.utils.data.DataLoader(samples[:4], batch_size=4)
    with pytest.raises(SystemExit, match=r"^error: the loader gives 1 batch\(es\): too few samples to time"):
        bench_data.cpu_ms(one_batch, limit=8)

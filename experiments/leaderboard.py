"""Which architecture and which loss: every model preset trained with its seed's loss and with the default loss at an
equal budget, ranked on the same test split beside the classical |fg_bg − bg| baseline.

    python -m experiments.leaderboard                                     # every preset, 64 px, 8 epochs, 2000 samples
    python -m experiments.leaderboard --models densenet_dilated mobile_unet --epochs 2 --out outputs/lb-quick
    python -m experiments.leaderboard --real data/real_check.zip --results   # + real photos; publish to RESULTS.md
    python -m experiments.leaderboard trainer.accelerator=gpu data.num_workers=8   # overrides for every run

Each entry is one `python -m mdeas.train model=<preset> loss=<loss> ...` subprocess with
`hydra.run.dir=<out>/<preset>__<loss>`; its metrics.json is read back. An entry whose metrics.json exists is not
trained again, so re-running the same command resumes an interrupted leaderboard (an entry trained with other
settings is an error). Every entry gets the same data, split, seed, image size, batch size and number of epochs,
hence the same number of optimiser steps. Writes `<out>/leaderboard.md` and `<out>/leaderboard.json` and prints the
report; plots go to `<out>` (`leaderboard.png`, `panels/<preset>.png`), or with `--results` next to the results file,
to which the report is appended as a dated section.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import mdeas
from experiments.plots import bar_chart, sample_grid, sample_panel, save_png
from mdeas.data.errors import DataError
from mdeas.evaluate import evaluate
from mdeas.failure import fail
from mdeas.inference import CheckpointError, load_module
from mdeas.models import list_models
from mdeas.summary import layer_table

CONF = Path(mdeas.__file__).resolve().parents[1] / "conf"
SEED_LOSSES = {
    "densenet_dilated": "ssim_mse",
    "resunet": "rmse_dice",
    "resnet_unet": "bce_ssim",
    "unet_shared": "dice_bce_densedepth",
    "dwsep_pair": "smoothl1_dice",
}
DEFAULT_LOSS = "bce_dice_ssim"
LEFT_OUT = ("composed",)  # not a fixed architecture: only with --models
BASELINE = r"\|fg_bg − bg\| baseline"
# (header, row key, format spec; "" = text)
COLUMNS = (
    ("model", "model", ""),
    ("loss", "loss", ""),
    ("params", "params", ",d"),
    ("GFLOPs at 224", "gflops", ".2f"),
    ("train samples/s", "samples_per_s", ".1f"),
    ("val IoU", "val_iou", ".3f"),
    ("val Dice", "val_dice", ".3f"),
    ("test IoU", "test_iou", ".3f"),
    ("test Dice", "test_dice", ".3f"),
    ("depth RMSE", "rmse", ".3f"),
    ("AbsRel", "abs_rel", ".3f"),
    ("δ1", "delta1", ".3f"),
    ("δ1 scale-and-shift", "delta1_ssi", ".3f"),
)
REAL_COLUMN = ("real IoU", "real_iou", ".3f")
METRICS = {
    "iou": "mask/iou",
    "dice": "mask/dice",
    "rmse": "depth/rmse",
    "abs_rel": "depth/abs_rel",
    "delta1": "depth/delta1",
    "delta1_ssi": "depth/delta1_ssi",
}
DEPTH_BASELINES = {"constant": "train median depth (constant)", "mean_map": "train mean depth map"}


@dataclass(frozen=True)
class Entry:
    """One leaderboard run: a model preset trained with a loss preset."""

    model: str
    loss: str

    @property
    def name(self) -> str:
        return f"{self.model}__{self.loss}"


def entries(models: list[str]) -> list[Entry]:
    """Each model with its seed's loss (if it has one), then with DEFAULT_LOSS."""
    return [Entry(m, loss) for m in models for loss in dict.fromkeys([SEED_LOSSES.get(m, DEFAULT_LOSS), DEFAULT_LOSS])]


def budget_overrides(args: argparse.Namespace) -> list[str]:
    """The train overrides every entry shares: data, size, epochs, batch, seed (and the user's extra overrides)."""
    overrides = [
        f"data.image_size={args.image_size}",
        f"trainer.max_epochs={args.epochs}",
        f"data.synth.num_samples={args.num_samples}",
        f"data.batch_size={args.batch_size}",
        f"seed={args.seed}",
        "callbacks.image_grid=null",
    ]
    if args.limit is not None:
        overrides.append(f"data.limit={args.limit}")
    if args.data_path is not None:
        overrides.append(f"data.path={args.data_path}")
    return overrides + list(args.overrides)


def prepare_budget(overrides: list[str]) -> dict:
    """Generate the dataset (if it is the cached default) before any timing, and count one entry's budget:
    train samples per epoch and optimiser steps per epoch, from the data module the runs will build."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    steps = len(datamodule.train_dataloader())
    samples = min(steps * datamodule.batch_size, len(datamodule.datasets["train"]))  # a dropped last batch
    return {
        "samples_per_epoch": samples,
        "steps_per_epoch": steps,
        "epochs": int(cfg.trainer.max_epochs),
        "batch_size": datamodule.batch_size,
        "image_size": datamodule.image_size,
        "seed": int(cfg.seed),
    }


def _check_settings(run: Path, overrides: list[str]) -> None:
    stored = run / ".hydra" / "overrides.yaml"
    if not stored.exists():
        return
    before = list(OmegaConf.load(stored))
    then, now = [o for o in before if o not in overrides], [o for o in overrides if o not in before]
    if then or now:
        fail(f"{run}: trained with {' '.join(then) or '-'}, not {' '.join(now) or '-'}; use another --out")


def run_entry(entry: Entry, out: Path, overrides: list[str], samples: int) -> str | None:
    """Train `entry` unless its metrics.json exists; writes <run>/timing.json. Returns None, or why it failed."""
    run = out / entry.name
    task = [f"model={entry.model}", f"loss={entry.loss}", *overrides, "+trainer.enable_progress_bar=false"]
    _check_settings(run, task)
    if (run / "metrics.json").exists():
        print(f"{entry.name}: trained already", file=sys.stderr)
        return None
    if run.exists():
        shutil.rmtree(run)  # an interrupted attempt: start it again, so that its time is whole
    run.mkdir(parents=True)
    command = [sys.executable, "-m", "mdeas.train", *task, f"hydra.run.dir={run}"]
    log = run / "console.log"
    print(f"{entry.name}: training (log {log})", file=sys.stderr)
    start = time.perf_counter()
    with log.open("w") as stream:
        code = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    if code != 0 or not (run / "metrics.json").exists():
        return f"{entry.name}: training failed (exit {code}); see {log}"
    timing = {"wall_s": wall, "train_samples": samples, "command": shlex.join(command)}
    (run / "timing.json").write_text(json.dumps(timing, indent=2))
    print(f"{entry.name}: done in {wall:.0f} s", file=sys.stderr)
    return None


def _evaluated(ckpt: Path, data: dict, out: Path, resolution: str = "native") -> dict:
    """`mdeas.evaluate.evaluate` of `ckpt` on `data` into `out` at `resolution`, or its metrics.json from an
    earlier run."""
    if (out / "metrics.json").exists():
        cached = json.loads((out / "metrics.json").read_text())
        if cached.get("resolution", "native") == resolution:
            return cached
    return evaluate(str(ckpt), data, str(out), resolution=resolution)


def _real(run: Path, real: str) -> dict:
    """`run`'s best checkpoint and the baseline evaluated on the real-photo set `real`."""
    return _evaluated(run / "checkpoints" / "best.ckpt", {"path": real}, run / f"real-{Path(real).stem}")


def _metrics(values: dict, prefix: str) -> dict:
    return {key: values.get(prefix + name) for key, name in METRICS.items()}


def entry_row(entry: Entry, run: Path, real: str | None) -> dict:
    """A table row of a trained entry: size, throughput, val/test metrics (and real-photo mask IoU), its folder."""
    results = json.loads((run / "metrics.json").read_text())
    timing_file = run / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else None
    model = load_module(run / "checkpoints" / "best.ckpt").model
    val, test = _metrics(results["val"], "val/"), _metrics(results.get("test", {}), "test/")
    row = {
        "model": f"`{entry.model}`",
        "loss": f"`{entry.loss}`",
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": layer_table(model, 224)[1],
        "samples_per_s": timing["train_samples"] / timing["wall_s"] if timing else None,
        "val_iou": val["iou"],
        "val_dice": val["dice"],
        "test_iou": test["iou"],
        "test_dice": test["dice"],
        "rmse": test["rmse"],
        "abs_rel": test["abs_rel"],
        "delta1": test["delta1"],
        "delta1_ssi": test["delta1_ssi"],
        "run": str(run),
    }
    if real:
        row["real_iou"] = _real(run, real)["model"]["mask/iou"]
    return row


def depth_baseline_rows(run: Path, out: Path) -> list[dict]:
    """The image-blind depth predictors fitted on the train split (DEPTH_BASELINES), scored on the same test split,
    via `run`'s best.ckpt; none for data without depth."""
    fitted = _evaluated(run / "checkpoints" / "best.ckpt", {}, out / "baseline", "model").get("depth_baseline")
    if not fitted:
        return []
    return [
        {"model": label, "loss": "sees no image", **_metrics(fitted[key], "")} for key, label in DEPTH_BASELINES.items()
    ]


def baseline_row(run: Path, out: Path, real: str | None) -> dict:
    """The |fg_bg − bg| baseline on the same test split (threshold chosen on val), via `run`'s best.ckpt."""
    base = _evaluated(run / "checkpoints" / "best.ckpt", {}, out / "baseline", "model")["baseline"]
    row = {
        "model": BASELINE,
        "loss": f"threshold {base['threshold']:.2f}",
        "test_iou": base["mask/iou"],
        "test_dice": base["mask/dice"],
    }
    if real:
        row["real_iou"] = _real(run, real)["baseline"]["mask/iou"]
    return row


def format_table(rows: list[dict], real: bool = False) -> str:
    """Markdown: one line per row in the given order; a missing or None value is an empty cell."""
    columns = (*COLUMNS, REAL_COLUMN) if real else COLUMNS
    lines = [
        "| " + " | ".join(h for h, _, _ in columns) + " |",
        "|" + "|".join("---" if not spec else "---:" for _, _, spec in columns) + "|",
    ]
    for row in rows:
        cells = ["" if row.get(key) is None else format(row[key], spec) for _, key, spec in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ranked(rows: list[dict]) -> list[dict]:
    """Rows by test mask IoU, best first (rows without one last)."""
    return sorted(rows, key=lambda r: -r["test_iou"] if r.get("test_iou") is not None else float("inf"))


def machine() -> str:
    """The machine in one line: OS, CPU count, Python, torch, Lightning, GPU."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}, pytorch-lightning {pl.__version__}, {gpu}"
    )


def plots(rows: dict[Entry, dict], baseline: dict, where: Path) -> list[Path]:
    """leaderboard.png (test mask IoU and δ1 per entry, grouped by model) and panels/<preset>.png (each loss's
    predictions on 4 test samples) under `where`; returns their paths."""
    panels: dict[str, dict] = {"test mask IoU": {}, "test depth delta1": {}}
    for entry, row in rows.items():
        panels["test mask IoU"].setdefault(entry.model, {})[entry.loss] = row["test_iou"]
        panels["test depth delta1"].setdefault(entry.model, {})[entry.loss] = row["delta1"]
    written = [where / "leaderboard.png"]
    save_png(bar_chart(panels, {"test mask IoU": baseline["test_iou"]}), written[0])
    for model in dict.fromkeys(e.model for e in rows):
        grids = {
            f"loss: {e.loss}": sample_grid(Path(row["run"]) / "checkpoints" / "best.ckpt")
            for e, row in rows.items()
            if e.model == model
        }
        written.append(where / "panels" / f"{model}.png")
        save_png(sample_panel(grids), written[-1])
    return written


def report(command: str, table: str, budget: dict, images: list[Path], where: Path) -> str:
    """The markdown body: command, machine, date, budget, table, notes and links to `images` (the chart, then the
    panels; relative to `where`, the folder of the markdown file)."""
    steps = budget["steps_per_epoch"] * budget["epochs"]
    links = [f"[{p.stem}]({os.path.relpath(p, where)})" for p in images[1:]]
    return "\n".join(
        [
            f"`{command}` — {machine()}; {datetime.date.today().isoformat()}.",
            "",
            f"Equal budget per entry: {budget['samples_per_epoch']:,} train samples × {budget['epochs']} epoch(s) "
            f"({steps:,} optimiser steps of batch {budget['batch_size']}) at {budget['image_size']} px, seed "
            f"{budget['seed']}, the same data and split.",
            "",
            table,
            "",
            "Ranked by test mask IoU; the depth baselines, which see no image, last. Masks at threshold 0.5; depth on "
            "the test split over valid pixels, in metres (canonical data) or fractions of the grey range (seed "
            "layouts); δ1 scale-and-shift after a per-image least-squares fit (in inverse depth for the seeds' "
            "relative depth). train samples/s: train samples "
            "seen / wall time of the whole training subprocess (start-up, validation every epoch and the final val "
            "and test included). The baseline thresholds |fg_bg − bg| (threshold chosen on the val split).",
            "",
            f"![test mask IoU and depth δ1 per entry]({os.path.relpath(images[0], where)})",
            "",
            "Sample panels (fg_bg | mask GT | mask pred | depth GT | depth pred, 4 test samples, one block per loss): "
            + ", ".join(links)
            + ".",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "overrides", nargs="*", help="extra train overrides for every run, e.g. trainer.accelerator=gpu"
    )
    parser.add_argument("--models", nargs="+", help=f"presets (default: all but {', '.join(LEFT_OUT)})")
    parser.add_argument("--image-size", type=int, default=64, help="data.image_size (default 64)")
    parser.add_argument("--epochs", type=int, default=8, help="trainer.max_epochs (default 8)")
    parser.add_argument("--num-samples", type=int, default=2000, help="generated samples (default 2000)")
    parser.add_argument("--limit", type=int, help="data.limit: train on a seeded subset of this many samples")
    parser.add_argument("--batch-size", type=int, default=32, help="data.batch_size (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--data-path", help="data.path: a dataset zip instead of the generated default")
    parser.add_argument(
        "--real", help="also evaluate every run on this real-photo check set (e.g. data/real_check.zip)"
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/leaderboard"), help="runs and report folder")
    parser.add_argument(
        "--results",
        nargs="?",
        const="experiments/RESULTS.md",
        type=Path,
        help="append the report to this file (default experiments/RESULTS.md); plots beside it",
    )
    args = parser.parse_args(argv)
    known = list_models()
    for name in args.models or []:
        if name not in known:
            parser.error(f"unknown model {name!r}; known models: {', '.join(known)}")
    if args.real and not Path(args.real).is_file():
        parser.error(f"--real {args.real}: no such file")
    return args


def leaderboard(args: argparse.Namespace, command: str) -> list[str]:
    """Train what is missing, then write the report, the plots and (with --results) the results section; returns
    the failed entries' messages."""
    overrides = budget_overrides(args)
    budget = prepare_budget(overrides)
    samples = budget["samples_per_epoch"] * budget["epochs"]
    todo = entries(args.models or [m for m in list_models() if m not in LEFT_OUT])
    failures = [f for f in (run_entry(e, args.out, overrides, samples) for e in todo) if f]
    runs = {e: args.out / e.name for e in todo if (args.out / e.name / "metrics.json").exists()}
    if not runs:
        return failures
    rows = {e: entry_row(e, run, args.real) for e, run in runs.items()}
    baseline = baseline_row(next(iter(runs.values())), args.out, args.real)
    depth_rows = depth_baseline_rows(next(iter(runs.values())), args.out)
    table = format_table([*ranked([*rows.values(), baseline]), *depth_rows], real=bool(args.real))
    where = args.results.parent if args.results else args.out
    images = plots(rows, baseline, where)
    summary = {"budget": budget, "rows": [*rows.values(), baseline, *depth_rows]}
    (args.out / "leaderboard.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    text = report(command, table, budget, images, args.out)
    (args.out / "leaderboard.md").write_text(text + "\n")
    print(text)
    if args.results:
        with args.results.open("a") as stream:
            stream.write(f"\n## Leaderboard: which model and loss ({datetime.date.today().isoformat()})\n\n")
            stream.write(report(command, table, budget, images, where) + "\n")
    return failures


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        failures = leaderboard(args, shlex.join(["python", "-m", "experiments.leaderboard", *argv]))
    except (DataError, CheckpointError, ValueError) as e:
        fail(str(e))
    if failures:
        fail("failed entries (re-run the same command to retry them):\n" + "\n".join(failures))


if __name__ == "__main__":
    main()

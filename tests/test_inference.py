import json
import re
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from mdeas.cli import exit_on_data_error
from mdeas.data.decode import open_image, to_depth, to_grey, to_png16
from mdeas.data.errors import DataError
from mdeas.data.layouts import load_index
from mdeas.data.zipstore import ZipStore
from mdeas.evaluate import evaluate, table
from mdeas.export import export
from mdeas.inference import CheckpointError, Prediction, Predictor, load_module, mirror_averaged, read_checkpoint
from mdeas.models.refiner import RefinedNet
from mdeas.outline import KnownBackgroundOutline
from mdeas.predict import depth_color, panel, predict, video_items
from mdeas.train import train
from tests.conftest import compose_train, without_depth, write_canonical_zip
from tests.layouts_fixtures import make_samples, write_seed002

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A checkpoint trained for one short epoch on a tiny dataset, with the run's own metrics."""
    root = tmp_path_factory.mktemp("trained")
    data = write_canonical_zip(root / "tiny.zip", num_samples=24, size=48, fg_per_bg=2)
    cfg = compose_train(root / "run", data, "trainer.max_epochs=1", "callbacks.image_grid=null")
    results = train(cfg)
    return {"root": root, "data": data, "ckpt": Path(results["best_checkpoint"]), "results": results}


def run(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd)


def test_evaluate_reproduces_the_runs_test_metrics(trained):
    results = evaluate(str(trained["ckpt"]), {}, str(trained["root"] / "eval"), resolution="model")
    assert {"test/mask/iou", "test/depth/delta1", "test/depth/rmse"} <= trained["results"]["test"].keys()
    for key, value in trained["results"]["test"].items():
        assert results["model"][key.removeprefix("test/")] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert 0.0 < results["baseline"]["threshold"] <= 0.5
    # the red square on random noise is easy for the difference baseline
    assert results["baseline"]["mask/iou"] > 0.5
    assert json.loads((trained["root"] / "eval" / "metrics.json").read_text()) == results


def test_evaluate_on_another_dataset_scores_85_percent_of_its_samples(trained, tmp_path):
    other = write_canonical_zip(tmp_path / "other.zip", num_samples=40, size=40, fg_per_bg=2, seed=5)
    results = evaluate(str(trained["ckpt"]), {"path": str(other)}, str(tmp_path / "e"))
    assert results["samples"] == 34  # 20 backgrounds: 3 pick the threshold, 17 × 2 samples are scored


def test_a_checkpoint_records_what_its_zips_hold(trained):
    """What evaluate recognises the training zips by, named from anywhere (ZipStore.contents)."""
    assert load_module(trained["ckpt"]).hparams.data["contents"] == ZipStore([trained["data"]]).contents()


def test_evaluate_on_a_dataset_without_depth_reports_no_depth_rows(trained, tmp_path):
    source = write_canonical_zip(tmp_path / "with_depth.zip", num_samples=40, size=40, fg_per_bg=2, seed=5)
    other = without_depth(source, tmp_path / "no_depth.zip")
    results = evaluate(str(trained["ckpt"]), {"path": str(other)}, str(tmp_path / "e"))
    assert results["samples"] == 34 and 0.0 <= results["model"]["mask/iou"] <= 1.0
    assert not [key for key in results["model"] if "depth" in key]
    assert "depth" not in table(results)


def write_pair(folder: Path, name: str, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    fg = bg.copy()
    fg[5:20, 5:25] = (255, 0, 0)
    (folder / "bg").mkdir(parents=True, exist_ok=True)
    (folder / "fg_bg").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "bg" / name), bg)
    cv2.imwrite(str(folder / "fg_bg" / name), fg)


def check_outputs(out: Path, sample_id: str, size: tuple[int, int]) -> None:
    mask = cv2.imread(str(out / f"{sample_id}_mask.png"), cv2.IMREAD_UNCHANGED)
    depth = cv2.imread(str(out / f"{sample_id}_depth.png"), cv2.IMREAD_UNCHANGED)
    color = cv2.imread(str(out / f"{sample_id}_depth_color.png"))
    panel = cv2.imread(str(out / f"{sample_id}_panel.png"))
    assert mask.shape == size[::-1] and set(np.unique(mask)) <= {0, 255}
    assert depth.shape == size[::-1] and depth.dtype == np.uint16 and depth.max() <= 20000
    assert color.shape == (*size[::-1], 3)
    assert panel.shape == (size[1], 3 * size[0], 3)


def test_predict_pair_folder_zip_and_video(trained, tmp_path):
    ckpt = str(trained["ckpt"])
    write_pair(tmp_path / "in", "a.png", (50, 30))
    write_pair(tmp_path / "in", "b.png", (40, 40))
    write_pair(tmp_path / "wide", "c.png", (96, 64))  # the video's 48x32 frames, twice as large
    done = run("mdeas.predict", f"ckpt_path={ckpt}", "output=pair", f"bg={tmp_path}/in/bg/a.png",
               f"fg_bg={tmp_path}/in/fg_bg/a.png", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    check_outputs(tmp_path / "pair", "a", (50, 30))
    done = run("mdeas.predict", f"ckpt_path={ckpt}", "output=folder", "input=in", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-1500:]
    check_outputs(tmp_path / "folder", "a", (50, 30))
    check_outputs(tmp_path / "folder", "b", (40, 40))
    for name in ("a_mask.png", "a_depth.png"):  # one pair, two ways in: the same outputs
        assert (tmp_path / "folder" / name).read_bytes() == (tmp_path / "pair" / name).read_bytes(), name
    done = run("mdeas.predict", f"ckpt_path={ckpt}", "output=zip", f"input={trained['data']}", "batch_size=5",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    assert len(list((tmp_path / "zip").glob("*_mask.png"))) == 24
    check_outputs(tmp_path / "zip", "b000_f00", (48, 48))
    # a short video of fg_bg frames over one background
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (48, 32))
    frame = cv2.imread(str(tmp_path / "in" / "fg_bg" / "a.png"))
    for _ in range(4):
        writer.write(cv2.resize(frame, (48, 32)))
    writer.release()
    done = run("mdeas.predict", f"ckpt_path={ckpt}", "output=video", "video=clip.avi", "bg=wide/bg/c.png",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    check_outputs(tmp_path / "video", "clip_000003", (48, 32))
    masks = [cv2.imread(str(tmp_path / "video" / f"clip_{n:06d}_mask.png"), cv2.IMREAD_UNCHANGED) for n in range(4)]
    assert all(np.array_equal(m, masks[0]) for m in masks)  # four equal frames, four equal masks
    video = cv2.VideoCapture(str(tmp_path / "video" / "clip_panel.mp4"))
    frames = [frame for ok, frame in iter(video.read, (False, None)) if ok]
    assert len(frames) == 4 and all(frame.shape == (32, 3 * 48, 3) for frame in frames)  # fg_bg | mask | depth
    assert not list((tmp_path / "video").glob(".*"))  # written under a name of its own, then renamed
    squashed = "in/bg/a.png: size 50x30 is not the shape of the video's 48x32 frames (resized, it would squash)"
    with pytest.raises(DataError, match=re.escape(squashed)):
        list(video_items(str(tmp_path / "clip.avi"), str(tmp_path / "in" / "bg" / "a.png")))
    still = tmp_path / "in" / "fg_bg" / "a.png"  # OpenCV would read it as a one-frame video
    with pytest.raises(DataError, match=re.escape(f"{still}: a still PNG image, not a video")):
        list(video_items(str(still), str(tmp_path / "in" / "bg" / "a.png")))
    frames = [Image.new("RGB", (50, 30), (40 * k, 0, 0)) for k in range(3)]  # an animated GIF is a video
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:], duration=100)
    assert len(list(video_items(str(tmp_path / "moving.gif"), str(tmp_path / "in" / "bg" / "a.png")))) == 3
    (tmp_path / "blocked" / "clip_panel.mp4").mkdir(parents=True)  # the panel video cannot be written
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        paths = [f"video={tmp_path / 'clip.avi'}", f"bg={tmp_path / 'wide/bg/c.png'}", f"output={tmp_path / 'blocked'}"]
        cfg = compose("predict", overrides=[f"ckpt_path={ckpt}", "device=cpu", *paths])
    with pytest.raises(OSError, match=r"cannot write an mp4 video there: .*blocked/clip_panel\.mp4"):
        predict(cfg)
    assert not list((tmp_path / "blocked").glob(".*"))  # no partial video left


def test_a_video_without_frames_or_cut_short_is_a_data_error(tmp_path):
    """OpenCV simply stops reading: an empty or truncated video would otherwise pass as a shorter one."""
    cv2.imwrite(str(tmp_path / "bg.png"), np.zeros((32, 48, 3), np.uint8))
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (48, 32))
    for k in range(4):
        writer.write(np.full((32, 48, 3), 40 * k, np.uint8))
    writer.release()
    cv2.VideoWriter(str(tmp_path / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (48, 32)).release()
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * 0.9)])  # its header still declares 4 frames
    bg = str(tmp_path / "bg.png")
    assert len(list(video_items(str(tmp_path / "clip.avi"), bg))) == 4
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'empty.avi'}: no frames")):
        list(video_items(str(tmp_path / "empty.avi"), bg))
    cut = f"{tmp_path / 'cut.avi'}: frame 1: cannot read it: the video declares 4 frames (damaged or cut short)"
    with pytest.raises(DataError, match=re.escape(cut)):
        list(video_items(str(tmp_path / "cut.avi"), bg))
    frame_starts = [m.start() for m in re.finditer(b"\xff\xd8", data)]  # each MJPG frame is a JPEG
    damaged = bytearray(data)
    damaged[frame_starts[2] : frame_starts[3] - 20] = bytes(frame_starts[3] - 20 - frame_starts[2])  # frame 2 zeroed
    (tmp_path / "damaged.avi").write_bytes(damaged)
    with pytest.raises(DataError, match=re.escape("damaged.avi: frame 2: cannot read it: the video declares 4 frames")):
        list(video_items(str(tmp_path / "damaged.avi"), bg))


def test_predict_that_fails_on_its_input_leaves_no_output_folder(trained, tmp_path):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        pair = [f"bg={tmp_path / 'no_bg.png'}", f"fg_bg={tmp_path / 'no.png'}", f"output={tmp_path / 'preds'}"]
        cfg = compose("predict", overrides=[f"ckpt_path={trained['ckpt']}", "device=cpu", *pair])
    with pytest.raises(DataError, match="no_bg.png"):
        predict(cfg)
    assert not (tmp_path / "preds").exists()


def test_predict_reads_the_first_input_before_it_loads_the_model(tmp_path, monkeypatch):
    """A missing or undecodable input fails in one line at once, not after the checkpoint has loaded."""

    def never(path: str) -> None:
        raise AssertionError(f"the model was loaded from {path}")

    monkeypatch.setattr("mdeas.predict.load_module", never)
    (tmp_path / "bg.jpg").write_bytes(b"not an image")
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        overrides = ["ckpt_path=any.ckpt", f"output={tmp_path / 'o'}", f"fg_bg={tmp_path / 'bg.jpg'}"]
        configs = [compose("predict", overrides=[*overrides, f"bg={tmp_path / name}"]) for name in ("no.jpg", "bg.jpg")]
    for cfg, name in zip(configs, ("no.jpg", "bg.jpg"), strict=True):
        with pytest.raises(DataError, match=re.escape(name)):
            predict(cfg)
    assert not (tmp_path / "o").exists()


def test_predict_takes_a_list_of_zips_as_one_dataset(trained, tmp_path):
    zips = [str(write_canonical_zip(tmp_path / f"{name}.zip", num_samples=2, size=32)) for name in ("za", "zb")]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        overrides = [f"ckpt_path={trained['ckpt']}", f"input=[{','.join(zips)}]", f"output={tmp_path / 'o'}"]
        predict(compose("predict", overrides=[*overrides, "device=cpu"]))
        predict(compose("predict", overrides=[*overrides[:2], f"output={tmp_path / 'l'}", "layout=canonical"]))
        unknown = compose("predict", overrides=[*overrides[:2], f"output={tmp_path / 'x'}", "layout=nope"])
    masks = sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*_mask.png"))
    assert masks == ["b000_f00_mask.png", "b000_f01_mask.png", "zb/b000_f00_mask.png", "zb/b000_f01_mask.png"]
    named = sorted(p.relative_to(tmp_path / "l").as_posix() for p in (tmp_path / "l").rglob("*_mask.png"))
    assert named == masks  # the layout given: the same samples as detected
    with pytest.raises(DataError, match="za.zip.*unknown layout 'nope'; one of"):
        predict(unknown)


def test_predict_limit_takes_the_first_samples_and_refuses_a_count_that_is_not_one(trained, tmp_path):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        base = [f"ckpt_path={trained['ckpt']}", f"input={trained['data']}", "device=cpu", "batch_size=2"]
        predict(compose("predict", overrides=[*base, f"output={tmp_path / 'o'}", "limit=3"]))
        bad = [compose("predict", overrides=[*base, f"output={tmp_path / 'x'}", f"limit={n}"]) for n in ("0", "1.5")]
    masks = sorted(p.name for p in (tmp_path / "o").rglob("*_mask.png"))
    assert masks == [f"{sample.id}_mask.png" for sample in load_index(str(trained["data"])).samples[:3]]
    for cfg, shown in zip(bad, ("0", "1.5"), strict=True):
        with pytest.raises(ValueError, match=rf"^limit \(or null: all\) must be a whole number >= 1, got {shown}$"):
            predict(cfg)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("layout", ["seed002", "canonical"])
def test_predict_writes_depth_as_the_training_data_stores_it(tmp_path, monkeypatch, layout):
    """A model trained on a seed layout (8-bit grey, near = bright) or the canonical one (16-bit, mm) that predicts
    each sample's own depth and mask writes back the dataset's depth image (where its depth is known) and mask, in
    the folders of the sample's id."""
    data = tmp_path / f"{layout}.zip"
    if layout == "seed002":
        write_seed002(data, make_samples(backgrounds=6, per_bg=2, size=32))
    else:
        write_canonical_zip(data, fg_per_bg=2)
    run_cfg = compose_train(tmp_path / "run", data, "trainer.max_epochs=1", "callbacks.image_grid=null")
    ckpt = train(run_cfg)["best_checkpoint"]
    index = load_index(str(data))
    entries = [open_image(index.store.read(s.depth), str(data), s.depth) for s in index.samples]
    truth = [to_depth(entry, index.depth)[0] for entry in entries]
    masks = [to_grey(open_image(index.store.read(s.mask), str(data), s.mask)) >= 128 for s in index.samples]
    assert all(0 < m.mean() < 1 for m in masks)

    class Oracle(torch.nn.Module):
        """The checkpoint's settings, predicting each sample's decoded depth in the order predict reads them."""

        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.hparams, self.learns_depth = module.hparams, module.learns_depth
            self.queue = list(zip(truth, masks, strict=True))

        def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> dict[str, torch.Tensor]:
            depths, logits = zip(*[self.queue.pop(0) for _ in bg], strict=True)
            depth = torch.stack([torch.from_numpy(d) for d in depths])[:, None]
            mask = torch.stack([torch.where(torch.from_numpy(m), 5.0, -5.0) for m in logits])[:, None]
            return {"mask": mask, "depth": depth}

    monkeypatch.setattr("mdeas.predict.load_module", lambda path: Oracle(load_module(path)))
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        overrides = [f"ckpt_path={ckpt}", f"output={tmp_path / 'out'}", f"input={data}", "batch_size=5", "device=cpu"]
        overrides += ["mirror=false", "outline=none"]  # one pass: the oracle answers each sample once, as it is
        predict(compose("predict", overrides=overrides))
    for sample, entry, mask in zip(index.samples, entries, masks, strict=True):
        written = cv2.imread(str(tmp_path / "out" / f"{sample.id}_depth.png"), cv2.IMREAD_UNCHANGED)
        stored = to_grey(entry) if layout == "seed002" else to_png16(entry)
        known = np.ones(stored.shape, bool) if layout == "seed002" else stored > 0
        assert written.dtype == (np.uint8 if layout == "seed002" else np.uint16), sample.id
        assert written.shape == (32, 32) and known.mean() > 0.5, sample.id
        assert np.abs(written.astype(int) - stored.astype(int))[known].max() <= 1, sample.id
        written_mask = cv2.imread(str(tmp_path / "out" / f"{sample.id}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(written_mask, mask.astype(np.uint8) * 255), sample.id


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_parity(trained, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    done = run("mdeas.export", f"ckpt_path={trained['ckpt']}", f"format={fmt}", f"output=m.{fmt}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "TracerWarning" not in done.stderr, done.stderr[-1500:]  # the size checks are constants at S, by design
    diff = float(done.stdout.strip().rsplit("max abs diff vs PyTorch: ", 1)[1])
    assert diff <= 1e-4 and (tmp_path / f"m.{fmt}").stat().st_size > 100_000
    # the exported file itself, on RGB in [0, 1], against the checkpoint's model on inputs normalised by hand
    generator = torch.Generator().manual_seed(1)
    bg, fg_bg = (torch.rand(2, 3, 32, 32, generator=generator) for _ in range(2))
    if fmt == "torchscript":
        mask, depth = torch.jit.load(str(tmp_path / "m.torchscript"))(bg, fg_bg)
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
        mask, depth = map(torch.from_numpy, session.run(None, {"bg": bg.numpy(), "fg_bg": fg_bg.numpy()}))
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        out = load_module(trained["ckpt"]).model((bg - mean) / std, (fg_bg - mean) / std)
    torch.testing.assert_close(mask, torch.sigmoid(out["mask"]), atol=1e-4, rtol=0)
    torch.testing.assert_close(depth, out["depth"], atol=1e-4, rtol=0)


def test_bad_inputs_are_one_line_errors(trained, tmp_path, monkeypatch):
    ckpt = str(trained["ckpt"])
    write_pair(tmp_path / "in", "a.png", (50, 30))
    write_pair(tmp_path / "ok", "a.png", (50, 30))  # inputs are read first: a checkpoint error needs good ones
    (tmp_path / "in" / "fg_bg" / "lonely.png").write_bytes((tmp_path / "in" / "fg_bg" / "a.png").read_bytes())
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    (tmp_path / "cut.png").write_bytes((tmp_path / "in" / "bg" / "a.png").read_bytes()[:60])
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((10, 10, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: 30x50 upright
    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(tmp_path / "turned.jpg", exif=exif)
    with zipfile.ZipFile(tmp_path / "turned.zip", "w") as z:
        z.write(tmp_path / "turned.jpg", "fg_bg/a.jpg")
        z.writestr("bg/a.png", cv2.imencode(".png", np.zeros((50, 30, 3), np.uint8))[1].tobytes())
    for folder in ("empty/bg", "empty/fg_bg"):
        (tmp_path / folder).mkdir(parents=True)
    for folder in ("gif/bg", "gif/fg_bg"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "a.gif").write_bytes(b"GIF89a")
    write_pair(tmp_path / "nested", "a.png", (8, 8))
    (tmp_path / "nested" / "fg_bg" / "day2").mkdir()
    write_pair(tmp_path / "dup", "a.png", (8, 8))
    write_pair(tmp_path / "dup", "a.jpg", (8, 8))
    write_pair(tmp_path / "broken", "a.png", (8, 8))
    (tmp_path / "broken" / "fg_bg" / "b.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "text.mp4").write_text("hello\n")
    entry_points = [  # each entry point as a user runs it: the last line of stderr, a non-zero status
        (["mdeas.predict", "ckpt_path=nope.ckpt", "output=o", "input=ok"], "nope.ckpt: no such checkpoint file"),
        (["mdeas.predict", f"ckpt_path={ckpt}", "output=o", "video=text.mp4", "bg=ok/bg/a.png"],
         "text.mp4: cannot open video"),
        (["mdeas.export", "ckpt_path=junk.ckpt", "format=onnx", "output=m.onnx"], "junk.ckpt: not a PyTorch"),
        (["mdeas.evaluate", "ckpt_path=junk.ckpt"], "junk.ckpt: not a PyTorch checkpoint"),
    ]  # fmt: skip
    for args, message in entry_points:
        done = run(*args, cwd=tmp_path)
        assert done.returncode != 0, args
        last = done.stderr.strip().splitlines()[-1]
        assert message in last, (args, done.stderr[-800:])
        assert "moov atom" not in done.stderr  # FFmpeg's own log line before the one-line error
    predict_inputs = [  # the rest of predict's inputs through the same error handling, in this process
        (["ckpt_path=junk.ckpt", "input=ok"], "junk.ckpt: not a PyTorch checkpoint"),
        ([f"ckpt_path={ckpt}", "input=in"], "lonely.png: missing partner"),
        ([f"ckpt_path={ckpt}", "bg=missing.png", "fg_bg=cut.png"], "missing.png: no such file"),
        ([f"ckpt_path={ckpt}", "bg=in", "fg_bg=cut.png"], "in: a folder, not a file"),
        ([f"ckpt_path={ckpt}", "input=in", "bg=a.png", "fg_bg=b.png"], "give one input: bg= fg_bg=, input= or video="),
        ([f"ckpt_path={ckpt}", "bg=cut.png", "fg_bg=cut.png"], "cut.png: cannot decode image"),
        ([f"ckpt_path={ckpt}", "bg=small.png", "fg_bg=in/bg/a.png"], "a.png: size 50x30 differs from its bg's 10x10"),
        ([f"ckpt_path={ckpt}", "bg=turned.jpg", "fg_bg=in/bg/a.png"],
         "a.png: size 50x30 differs from its bg's 30x50, as shown upright (bg turned by its EXIF orientation)"),
        ([f"ckpt_path={ckpt}", "input=turned.zip"],
         "fg_bg/a.jpg: size 50x30 differs from its bg's 30x50 as stored (fg_bg with an EXIF orientation: a zip's"),
        ([f"ckpt_path={ckpt}", "input=empty"], "empty/fg_bg: no images (.jpg"),
        ([f"ckpt_path={ckpt}", "input=gif"], "gif/fg_bg: a.gif: not an image of a known kind (.jpg"),
        ([f"ckpt_path={ckpt}", "input=nested"], "nested/fg_bg: day2: a folder: input=DIR reads the images directly"),
        ([f"ckpt_path={ckpt}", "input=broken"], "broken/fg_bg: b.png: not a file (a broken link, a pipe or a device)"),
        ([f"ckpt_path={ckpt}", "video=nope.mp4", "bg=ok/bg/a.png"], "nope.mp4: no such file"),
        ([f"ckpt_path={ckpt}", "input=ok/bg/a.png"], "a.png: a PNG image, not a zip: give one pair as bg=... fg_bg="),
        ([f"ckpt_path={ckpt}", "input=dup"], "dup/fg_bg: a.png: same name as a.jpg: their outputs would overwrite"),
        ([f"ckpt_path={ckpt}", "input=ok", "device=gpu0"], "device must be auto, cpu, cuda or cuda:N, got 'gpu0'"),
        ([f"ckpt_path={ckpt}", "input=ok", "layout=seed002"], "layout=seed002 is for input=ZIP only"),  # was ignored
    ]  # fmt: skip
    if not torch.cuda.is_available():
        predict_inputs.append(
            ([f"ckpt_path={ckpt}", "input=ok", "device=cuda"], "device=cuda: this machine has no CUDA")
        )
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        for overrides, message in predict_inputs:
            with pytest.raises(SystemExit) as caught, exit_on_data_error(CheckpointError, ValueError):
                predict(compose("predict", overrides=["output=o", "device=cpu", *overrides]))
            line = caught.value.code
            assert line.startswith("error: ") and message in line and "\n" not in line, (overrides, line)


def test_checkpoint_of_another_model_is_named(trained, tmp_path):
    ckpt = torch.load(trained["ckpt"], weights_only=False)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if "depth_decoder" not in k}
    torch.save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="other.ckpt: weights of model 'densenet_dilated' do not fit: ") as caught:
        load_module(tmp_path / "other.ckpt")
    removed = sorted(k for k in torch.load(trained["ckpt"])["state_dict"] if "depth_decoder" in k)  # model.…
    assert str(caught.value).endswith(f"do not fit: {len(removed)} missing (first {removed[0]})")


@pytest.mark.parametrize(
    ("content", "kind"),
    [(b"", "EOFError"), (b"hello\n", "KeyError"), (b"junk\n", "KeyError"), (None, "not an mdeas checkpoint")],
)
def test_any_unreadable_file_is_a_one_line_checkpoint_error(tmp_path, content, kind):
    path = tmp_path / "bad.ckpt"
    torch.save({"epoch": 0}, path) if content is None else path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    line = str(caught.value)
    assert line.startswith(f"{path}: not a") and kind in line and "\n" not in line, line


def test_export_check_pair_is_a_seeded_scene_with_one_rectangle_per_image():
    from mdeas.export import check_pair

    bg, fg_bg = check_pair(3, 48)
    assert bg.shape == fg_bg.shape == (3, 3, 48, 48) and 0 <= float(bg.min()) and float(fg_bg.max()) <= 1
    changed = (fg_bg != bg).any(1)
    for image, region in zip(fg_bg, changed, strict=True):  # one opaque colour over a 16×24 rectangle
        rows, cols = region.nonzero().unbind(1)
        assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (16, 24)
        inside = image[:, int(rows.min()) : int(rows.max()) + 1, int(cols.min()) : int(cols.max()) + 1]
        assert (inside == inside[:, :1, :1]).all()
    assert float((bg[:, :, 1:] - bg[:, :, :-1]).abs().max()) < 0.2  # smooth: no pixel noise for patches to tie on
    assert all(torch.equal(a, b) for a, b in zip(check_pair(3, 48), (bg, fg_bg), strict=True))


def test_the_readmes_python_example_gives_predicts_mask(trained, tmp_path, monkeypatch):
    """The README's "From Python" block, run as written (its checkpoint path replaced), masks as predict writes."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("From Python, the same predictions", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    write_pair(tmp_path, "pair.png", (50, 30))
    for folder, name in (("bg", "bg.jpg"), ("fg_bg", "scene.jpg")):
        cv2.imwrite(
            str(tmp_path / name), cv2.imread(str(tmp_path / folder / "pair.png")), [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(block.replace("outputs/<date>/<time>/checkpoints/best.ckpt", str(trained["ckpt"])), names)
    done = run("mdeas.predict", f"ckpt_path={trained['ckpt']}", "output=out", "bg=bg.jpg", "fg_bg=scene.jpg",
               "device=cpu", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    written = cv2.imread(str(tmp_path / "out" / "scene_mask.png"), cv2.IMREAD_UNCHANGED)
    assert names["mask"].shape == (30, 50) and np.array_equal(written, names["mask"].astype(np.uint8) * 255)
    assert names["depth"].shape == (30, 50) and 0.0 <= names["depth"].min() <= names["depth"].max() <= 1.0


def test_the_predictor_refuses_a_pair_of_two_sizes(trained):
    predictor = Predictor(load_module(trained["ckpt"]))
    bg, fg_bg = np.zeros((20, 30, 3), np.uint8), np.zeros((20, 31, 3), np.uint8)
    with pytest.raises(ValueError, match=r"^bg size 30x20 differs from fg_bg 31x20$"):
        predictor([bg], [fg_bg])


def test_the_panel_is_the_composite_the_mask_and_depth_near_bright():
    """fg_bg | mask 0/255 in three channels | depth in colour, nearer brighter (the colour map's luminance rises)."""
    fg_bg = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    depth_norm = np.array([[0.0, 0.5, 1.0], [0.2, 0.2, 0.2]], np.float32)
    mask = np.array([[0.9, 0.1, 0.51], [0.0, 0.5, 1.0]], np.float32)
    view = panel(fg_bg, Prediction(mask, np.zeros((2, 3), np.uint16), depth_norm))
    assert view.shape == (2, 9, 3) and view.dtype == np.uint8
    assert np.array_equal(view[:, :3], fg_bg)
    assert np.array_equal(view[:, 3:6], np.repeat((mask > 0.5)[..., None] * 255, 3, axis=2).astype(np.uint8))
    assert np.array_equal(view[:, 6:], depth_color(depth_norm))
    grey = cv2.cvtColor(depth_color(depth_norm), cv2.COLOR_RGB2GRAY).astype(int)
    assert grey[0, 0] > grey[0, 1] > grey[0, 2] and len(set(grey[1])) == 1


def test_the_predictor_takes_read_only_arrays_without_a_warning(trained):
    """Decoders hand out read-only arrays; torch warns on each one it wraps without copying."""
    predictor = Predictor(load_module(trained["ckpt"]), outline=KnownBackgroundOutline())
    assert not isinstance(predictor.module.model, RefinedNet)  # the path that wraps the input arrays for the step
    bg = np.zeros((20, 30, 3), np.uint8)
    fg_bg = bg.copy()
    fg_bg[5:15, 10:20] = 200
    for array in (bg, fg_bg):
        array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (out,) = predictor([bg], [fg_bg])
    assert out.mask.shape == (20, 30) and out.depth_norm.shape == (20, 30)


def test_evaluate_names_an_image_size_the_model_cannot_take_before_reading_any_sample(trained, tmp_path):
    """The model's stride does not divide 40: said before every split was decoded and cached at that size."""
    stride = load_module(trained["ckpt"]).model.stride
    expected = rf"^data\.image_size=40: input size 40x40 is not divisible by the model stride {stride} "
    with pytest.raises(ValueError, match=expected):
        evaluate(str(trained["ckpt"]), {"image_size": 40, "cache_dir": str(tmp_path / "cache")}, str(tmp_path / "e"))
    assert list(tmp_path.iterdir()) == []


def test_export_options_are_checked_in_one_line_and_write_nothing(trained, tmp_path):
    for batch_size in (0, True):  # true would be 1 to Python, and torch.rand then fails on a bool
        with pytest.raises(
            ValueError,
            match=rf"^batch_size must be a whole number >= 1 \(the example batch traced\), got {batch_size}$",
        ):
            export(trained["ckpt"], "torchscript", str(tmp_path / "b0.pt"), batch_size=batch_size)
    for fmt, opset in (("onnx", 99), ("onnx", 3), ("onnx", "abc"), ("torchscript", "abc"), ("torchscript", True)):
        # refused before the export, in one line (the exporter's own error is a page); TorchScript ignored it
        with pytest.raises(ValueError, match=rf"^opset must be a whole number from \d+ .* to \d+ .*, got {opset!r}$"):
            export(trained["ckpt"], fmt, str(tmp_path / "o99.onnx"), opset=opset)
    with pytest.raises(ValueError, match=r"^opset must be a whole number from 11 \(the first whose Resize matches"):
        export(trained["ckpt"], "onnx", str(tmp_path / "o7.onnx"), opset=7)  # upsampling would not match
    for folder in (f"{tmp_path / 'new'}/", str(tmp_path)):  # `new/` was written as a file named new
        with pytest.raises(ValueError, match=rf"^output must name a file, not a folder: {re.escape(folder)}$"):
            export(trained["ckpt"], "torchscript", folder)
    forgot = str(tmp_path / "forgot.onnx")
    with pytest.raises(ValueError, match=rf"^output {re.escape(forgot)} names a onnx file, but format=torchscript"):
        export(trained["ckpt"], "torchscript", forgot)
    assert list(tmp_path.iterdir()) == []
    copy = tmp_path / "c.ckpt"
    copy.write_bytes(Path(trained["ckpt"]).read_bytes())
    with pytest.raises(ValueError, match=r"c.ckpt is the checkpoint it exports: name another file$"):
        export(str(copy), "torchscript", str(tmp_path / "." / "c.ckpt"))
    assert copy.read_bytes() == Path(trained["ckpt"]).read_bytes()


def test_mirror_averaging_flips_the_pair_and_its_outputs_back():
    """A `run` whose mask is fg_bg's red plus a column ramp 0..W−1 fixed to the image, depth bg's red: averaged with
    the mirrored pair's, the image content stays where it was and the ramp becomes its mean, (W − 1) / 2."""
    bg, fg_bg = torch.rand(2, 2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    ramp = torch.arange(5.0)

    def run(b: torch.Tensor, f: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mask": f[:, :1] + ramp, "depth": b[:, :1], "hidden": b}

    out = mirror_averaged(run, bg, fg_bg)
    assert sorted(out) == ["depth", "mask"]
    assert torch.allclose(out["mask"], fg_bg[:, :1] + 2.0)
    assert torch.equal(out["depth"], bg[:, :1])


def test_mirroring_is_on_by_default_and_predict_drops_it_when_asked(trained, tmp_path):
    """evaluate, compare and predict average with the mirrored pair by default; `predict` writes the masks of
    `Predictor(mirror=True)` (with the default outline step), and with `mirror=false` those of one pass, which differ
    for this asymmetric model."""
    write_pair(tmp_path / "in", "a.png", (50, 30))
    pair = [
        f"ckpt_path={trained['ckpt']}",
        f"bg={tmp_path}/in/bg/a.png",
        f"fg_bg={tmp_path}/in/fg_bg/a.png",
        "device=cpu",
    ]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        assert [compose(name).mirror for name in ("evaluate", "compare", "predict")] == [True, True, True]
        configs = [
            compose("predict", overrides=[*pair, f"output={tmp_path / m}", f"mirror={m}"]) for m in ("true", "false")
        ]
    bg, fg_bg = (cv2.imread(str(tmp_path / "in" / kind / "a.png"))[..., ::-1].copy() for kind in ("bg", "fg_bg"))
    module = load_module(trained["ckpt"])
    mirrored, once = (Predictor(module, "cpu", KnownBackgroundOutline(), m)([bg], [fg_bg])[0] for m in (True, False))
    for cfg, expected in zip(configs, (mirrored, once), strict=True):
        predict(cfg)
        written = cv2.imread(str(Path(cfg.output) / "a_mask.png"), cv2.IMREAD_UNCHANGED) > 127
        assert np.array_equal(written, expected.mask > 0.5)
    assert not np.array_equal(mirrored.mask > 0.5, once.mask > 0.5)


def test_a_checkpoint_that_learnt_no_depth_scores_and_writes_none(trained, tmp_path):
    """The trained checkpoint relabelled as trained with every depth term at weight 0: its depth head is not scored
    (`score` is the mask IoU, no depth rows or depth baseline) and predict writes the mask and a two-tile panel."""
    saved = torch.load(trained["ckpt"], weights_only=False)
    for term in saved["hyper_parameters"]["loss"]["terms"].values():
        term["weight"] = 0.0 if term["target"] == "depth" else term["weight"]
    torch.save(saved, ckpt := tmp_path / "mask_only.ckpt")
    scored = evaluate(str(ckpt), {}, str(tmp_path / "eval"))
    assert not [key for key in scored["model"] if key.startswith("depth")] and "depth_baseline" not in scored
    assert scored["model"]["score"] == pytest.approx(scored["model"]["mask/iou"])
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        write_pair(tmp_path / "in", "a.png", (40, 30))
        overrides = [f"ckpt_path={ckpt}", f"output={tmp_path / 'out'}", "device=cpu", f"input={tmp_path / 'in'}"]
        predict(compose("predict", overrides=overrides))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_mask.png", "a_panel.png"]
    assert cv2.imread(str(tmp_path / "out" / "a_panel.png")).shape == (30, 80, 3)


def test_a_checkpoint_of_data_without_depth_learns_none(trained):
    """The data side of `learns_depth`: recorded by train (`depth_known`), true where a checkpoint has no record."""
    hparams = dict(load_module(trained["ckpt"]).hparams)
    assert hparams["data"]["depth_known"] is True
    for known, learns in ((False, False), (None, True)):
        data = {k: v for k, v in hparams["data"].items() if k != "depth_known"}
        data |= {} if known is None else {"depth_known": known}
        module = type(load_module(trained["ckpt"]))(**{**hparams, "data": data})
        assert module.learns_depth is learns


def test_predict_reads_a_zip_of_bg_and_fg_bg_folders_as_it_reads_the_folders(trained, tmp_path):
    """input=pairs.zip holding only bg/ and fg_bg/ (no masks, no depth) predicts each pair at its size."""
    write_pair(tmp_path / "in", "a.png", (40, 30))
    write_pair(tmp_path / "in", "b.png", (24, 36))
    with zipfile.ZipFile(tmp_path / "pairs.zip", "w") as archive:
        for path in sorted((tmp_path / "in").rglob("*.png")):
            archive.write(path, path.relative_to(tmp_path / "in").as_posix())
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        overrides = [f"ckpt_path={trained['ckpt']}", f"output={tmp_path / 'out'}", f"input={tmp_path / 'pairs.zip'}"]
        predict(compose("predict", overrides=[*overrides, "device=cpu"]))
    check_outputs(tmp_path / "out", "a", (40, 30))
    check_outputs(tmp_path / "out", "b", (24, 36))


def test_a_model_that_learns_no_depth_computes_no_depth_metric(trained, recwarn):
    """Its depth metrics are never updated: computing them would only warn (torchmetrics' compute before update)."""
    module = load_module(trained["ckpt"])
    module.learns_depth = False
    module.log_dict = lambda logged, **_: setattr(module, "logged", logged)
    batch = {"mask": torch.ones(1, 1, 8, 8), "depth": torch.rand(1, 1, 8, 8), "valid": torch.ones(1, 1, 8, 8).bool()}
    module.mask_metrics["val"].update(torch.full((1, 1, 8, 8), 3.0), batch["mask"])
    module._log_metrics("val")
    assert sorted(module.logged)[-1] == "val/score" and not [k for k in module.logged if "depth" in k]
    assert module.logged["val/score"] == module.logged["val/mask/iou"] == 1.0
    assert not [w for w in recwarn if "compute" in str(w.message)]


def test_a_cut_checkpoint_is_named_with_the_first_sentence_of_torchs_complaint(tmp_path):
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[:500])
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(cut)
    line = str(caught.value)
    assert line.startswith(f"{cut}: not a PyTorch checkpoint (") and line.endswith(")"), line
    assert ". " not in line.split("(", 1)[1] and len(line) < len(str(cut)) + 160, line

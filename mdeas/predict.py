"""Predict masks and depth maps with a trained checkpoint.

`python -m mdeas.predict ckpt_path=run/checkpoints/best.ckpt output=preds bg=bg.jpg fg_bg=scene.jpg`, or
`input=DIR` (DIR/bg/<name> and DIR/fg_bg/<name>), `input=data.zip` or `'input=[a.zip,b.zip]'` (any supported
dataset, or bg/ and fg_bg/ folders alone: the `by_kind` layout without masks), `video=clip.mp4 bg=bg.jpg`.
Per sample it writes <id>_mask.png (0/255), <id>_depth.png (depth as the training data stores it: 16-bit in its
unit, e.g. mm, or for a seed layout 8-bit grey with near = bright), <id>_depth_color.png (near = bright) and
<id>_panel.png (fg_bg | mask | depth), each at the input's size; for a video also <name>_panel.mp4. A checkpoint
that learnt no depth (`MaskDepthModule.learns_depth`) writes the mask and a panel without depth. An id with
folders (a seed layout's) is written in those folders under the output. Each mask and depth map is averaged with
those of the pair mirrored left to right, at twice the time (`mirror=false`: one pass).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path, PurePosixPath

import cv2
import hydra
import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from mdeas.atomic import atomic_write, output_folder
from mdeas.cli import exit_on_data_error, run_app
from mdeas.config_values import file_names, flag, whole_number
from mdeas.data.decode import check_pixels, decode_rgb, exif_turn, image_format, open_image
from mdeas.data.errors import DataError
from mdeas.data.layouts import IMAGE_EXTENSIONS, load_index
from mdeas.data.zipstore import fold, read_file
from mdeas.inference import CheckpointError, Prediction, Predictor, load_module, resolve_device
from mdeas.module import NO_DEPTH_LEARNT
from mdeas.outline import from_config

Item = tuple[str, np.ndarray, np.ndarray]  # id, bg, fg_bg (uint8 RGB)

log = logging.getLogger(__name__)


def read_image(path: str | Path) -> np.ndarray:
    """uint8 RGB [H, W, 3] from an image file, upright as its EXIF orientation says (as a viewer shows it, so the
    outputs match what the user sees); DataError naming the file otherwise, or when the file is larger than
    MDEAS_MAX_ENTRY_MB (read nothing) or its header declares more than MDEAS_MAX_MEGAPIXELS (decode nothing)."""
    return decode_rgb(read_file(Path(path)), str(path), "", upright=True)


def same_size(bg: np.ndarray, fg_bg: np.ndarray, source: object, entry: str) -> None:
    """DataError naming the fg_bg `source` and `entry` when its size differs from its bg's."""
    if bg.shape[:2] != fg_bg.shape[:2]:
        size = lambda image: f"{image.shape[1]}x{image.shape[0]}"  # noqa: E731
        raise DataError(source, entry, f"size {size(fg_bg)} differs from its bg's {size(bg)}", "size")


def same_upright_size(bg: np.ndarray, fg_bg: np.ndarray, bg_path: str | Path, fg_path: str | Path) -> None:
    """`same_size` of a pair of files read upright (`read_image`); the DataError names the file turned by its EXIF
    orientation, as the sizes it gives are the turned ones."""
    try:
        same_size(bg, fg_bg, fg_path, "")
    except DataError as error:
        files = (("bg", bg_path), ("fg_bg", fg_path))
        turned = [kind for kind, path in files if exif_turn(open_image(read_file(Path(path)), str(path), ""))]
        if not turned:
            raise
        said = f"{error.problem}, as shown upright ({' and '.join(turned)} turned by its EXIF orientation)"
        raise DataError(error.source, None, said, "size") from None


def pair_items(bg: str, fg_bg: str) -> Iterator[Item]:
    """The one pair bg=… fg_bg=…, named by the fg_bg file's stem."""
    return folder_items([(Path(fg_bg), Path(bg))])


OS_FILES = ("thumbs.db", "desktop.ini")  # what Windows leaves in a folder of images (macOS's start with a dot)


def folder_images(root: Path) -> list[tuple[Path, Path]]:
    """The fg_bg images of input=DIR, sorted (dot files and OS_FILES left out), each with its partner in DIR/bg:
    the bg of the same name, else the one bg of the same stem in any case, Unicode form or extension: (fg_bg, bg)
    paths. DataError naming the folder or file when DIR/bg or DIR/fg_bg is missing, DIR/fg_bg holds no image (or a
    file of another kind, a folder or a broken link: they would be skipped), a partner is missing or ambiguous, or
    two names share a stem (their outputs, <stem>_mask.png etc., would overwrite each other)."""
    bg_dir, fg_dir = root / "bg", root / "fg_bg"
    for d in (bg_dir, fg_dir):
        if not d.is_dir():
            raise DataError(d, "", "missing folder (input=DIR needs DIR/bg and DIR/fg_bg)")
    listed = sorted(p for p in fg_dir.iterdir() if not p.name.startswith(".") and p.name.lower() not in OS_FILES)
    folders = [p.name for p in listed if p.is_dir()]
    if folders:
        raise DataError(fg_dir, folders[0], "a folder: input=DIR reads the images directly in fg_bg/ only")
    unreadable = [p.name for p in listed if not p.is_file()]
    if unreadable:
        raise DataError(fg_dir, unreadable[0], "not a file (a broken link, a pipe or a device)")
    other = [p.name for p in listed if p.suffix.lower() not in IMAGE_EXTENSIONS]
    if other or not listed:
        what = "not an image of a known kind" if other else "no images"
        raise DataError(fg_dir, other[0] if other else "", f"{what} ({' '.join(IMAGE_EXTENSIONS)})")
    stems: dict[str, str] = {}
    backgrounds: dict[str, list[Path]] = {}  # by the stem in one case and Unicode form (`fold`)
    for path in sorted(p for p in bg_dir.iterdir() if p.is_file()):
        backgrounds.setdefault(fold(path.stem), []).append(path)
    pairs = []
    for fg in listed:
        near = backgrounds.get(fold(fg.stem), [])
        bg = bg_dir / fg.name if (bg_dir / fg.name).is_file() else near[0] if len(near) == 1 else None
        if bg is None:
            said = f"missing partner of {fg}" if not near else f"{len(near)} partners of {fg} ({near[0].name}, ...)"
            raise DataError(bg_dir, fg.name, said)
        if fg.stem in stems:
            raise DataError(fg_dir, fg.name, f"same name as {stems[fg.stem]}: their outputs would overwrite each other")
        stems[fg.stem] = fg.name
        pairs.append((fg, bg))
    return pairs


def folder_items(pairs: list[tuple[Path, Path]]) -> Iterator[Item]:
    """The (fg_bg, bg) files of input=DIR (as `folder_images` lists and checks them), named by the fg_bg stem."""
    for fg, bg in pairs:
        pair = read_image(bg), read_image(fg)
        same_upright_size(*pair, bg, fg)
        yield fg.stem, *pair


def zip_items(paths: str | list[str], out: Path, layout: str | None = None) -> Iterator[Item]:
    """The samples of a dataset zip or of several (any supported layout: `layout`, or detected when None), named by
    their ids; every id is checked (`output_stem`) before the first sample is read. An image file given as a zip is
    a DataError that says how to give one pair."""
    for path in [paths] if isinstance(paths, str) else paths:
        known = _still_image(path)
        if known:
            raise DataError(path, None, f"a {known} image, not a zip: give one pair as bg=... fg_bg=...", "read")
    store = (index := load_index(paths, layout, pairs_only=True)).store
    for s in index.samples:
        output_stem(out, s.id, store.source(s.fg_bg))
    for s in index.samples:
        pair = tuple(decode_rgb(store.read(key), str(store.source(key)), store.name(key)) for key in (s.bg, s.fg_bg))
        try:
            same_size(*pair, store.source(s.fg_bg), store.name(s.fg_bg))
        except DataError as error:
            keys = (("bg", s.bg), ("fg_bg", s.fg_bg))
            turned = [kind for kind, key in keys if exif_turn(open_image(store.read(key), "", store.name(key)))]
            if not turned:
                raise
            said = f"{error.problem} as stored ({' and '.join(turned)} with an EXIF orientation: a zip's images are "
            raise DataError(
                error.source, error.entry, said + "read as stored, as their masks were drawn)", "size"
            ) from None
        yield s.id, *pair


def video_items(video: str, bg: str) -> Iterator[Item]:
    """The frames of `video` against the background `bg` (resized to the frames' size when its aspect ratio is theirs
    within 2 %, else a DataError), named <stem>_<frame>; a DataError for a video without frames, or one that ends
    two or more frames before the count its container declares (cut short, or a damaged frame OpenCV stops at)."""
    background = read_image(bg)
    capture = open_video(video)
    if not capture.isOpened():
        raise DataError(video, "", "cannot open video")
    try:
        check_pixels(int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), video, "")
        stem, n = Path(video).stem, 0
        frames = iter(capture.read, (False, None))
        first, second = next(frames, (False, None)), next(frames, (False, None))
        still = first[0] and not second[0] and _still_image(video)
        if still:
            raise DataError(video, "", f"a still {still} image, not a video")
        for ok, frame in chain([first, second], frames):
            if not ok:
                break
            check_pixels(frame.shape[1], frame.shape[0], video, f"frame {n}")  # when the container declared no size
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if frame.shape != background.shape:
                (h, w), (bh, bw) = frame.shape[:2], background.shape[:2]
                if abs(np.log((bw / bh) / (w / h))) > 0.02:
                    problem = f"size {bw}x{bh} is not the shape of the video's {w}x{h} frames"
                    problem += " (resized, it would squash)"
                    raise DataError(bg, "", problem, "size")
                background = cv2.resize(background, (w, h), interpolation=cv2.INTER_AREA)
            yield f"{stem}_{n:06d}", background, frame
            n += 1
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # 0 or less where the container does not say
        if n == 0:
            raise DataError(video, "", "no frames")
        if n < declared - 1:  # a count estimated from the duration may be one too many
            raise DataError(
                video, f"frame {n}", f"cannot read it: the video declares {declared} frames (damaged or cut short)"
            )
    finally:
        capture.release()


def _still_image(path: str) -> str | None:
    """The image format of the file `path` by its first bytes (None for a video or no file): OpenCV reads a still
    image as a one-frame video."""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as file:
        return image_format(file.read(12))


def open_video(video: str) -> cv2.VideoCapture:
    """OpenCV's capture of the file `video`, FFmpeg's own log lines off (its errors are told in one line from what
    the capture reads; OPENCV_FFMPEG_LOGLEVEL set by the user wins); DataError when there is no such file."""
    if not os.path.isfile(video):
        raise DataError(video, "", "a folder, not a video file" if os.path.isdir(video) else "no such file")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg opens its first file
    return cv2.VideoCapture(video)


def video_property(video: str, prop: int) -> float:
    """One `cv2.CAP_PROP_*` of a video file (0 when unknown or unreadable)."""
    capture = open_video(video)
    try:
        return capture.get(prop)
    finally:
        capture.release()


def depth_color(depth_norm: np.ndarray) -> np.ndarray:
    """Normalised depth [H, W] (larger = farther) → RGB uint8 [H, W, 3], near = bright."""
    grey = np.round((1.0 - np.clip(depth_norm, 0, 1)) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def panel(fg_bg: np.ndarray, p: Prediction, with_depth: bool = True) -> np.ndarray:
    """fg_bg | mask | depth colour side by side: RGB uint8 [H, 3W, 3]; without `with_depth`, fg_bg | mask [H, 2W, 3]."""
    mask = np.repeat((p.mask[..., None] > 0.5).astype(np.uint8) * 255, 3, axis=2)
    return np.concatenate([fg_bg, mask, *([depth_color(p.depth_norm)] if with_depth else [])], axis=1)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a PNG (uint8 or uint16, grey or BGR) whole or not at all (`atomic_write`: a full disk or Ctrl-C leaves
    the earlier file); an OSError names the file (cv2.imwrite would only return False)."""
    encoded = cv2.imencode(".png", image)[1].tobytes()
    atomic_write(path, lambda tmp: tmp.write_bytes(encoded), durable=False)


def output_stem(out: Path, sample_id: str, source: object) -> str:
    """`out`/<id> as a path prefix; DataError naming `source` and the id when the id would lead outside `out`
    (absolute, or with a `..` part: a dataset's manifest is untrusted)."""
    id_path = PurePosixPath(sample_id.replace("\\", "/"))
    if not sample_id or id_path.is_absolute() or ".." in id_path.parts:
        raise DataError(source, sample_id, "refused: this id would write outside the output folder", "layout")
    return str(out / sample_id)


def write_outputs(stem: str, fg_bg: np.ndarray, p: Prediction, with_depth: bool = True) -> np.ndarray:
    """Write the four files of one sample, <stem>_mask.png etc. (in the folders `stem` names, as seed layouts'
    ids do), or without `with_depth` the mask and a panel without depth; returns its panel."""
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    write_png(Path(f"{stem}_mask.png"), (p.mask > 0.5).astype(np.uint8) * 255)
    if with_depth:
        write_png(Path(f"{stem}_depth.png"), p.depth)
        write_png(Path(f"{stem}_depth_color.png"), cv2.cvtColor(depth_color(p.depth_norm), cv2.COLOR_RGB2BGR))
    view = panel(fg_bg, p, with_depth)
    write_png(Path(f"{stem}_panel.png"), cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
    return view


def items_of(cfg: DictConfig) -> tuple[Iterator[Item], int | None]:
    """The input samples of the config and their count when known (the inputs' names are checked first)."""
    file_names(cfg, "ckpt_path", "output", "bg", "fg_bg", "input", "video")
    given = [name for name, on in (("video", cfg.video), ("fg_bg", cfg.fg_bg), ("input", cfg.input)) if on]
    if len(given) > 1 or (cfg.input and cfg.bg):
        said = ", ".join(f"{name}=" for name in [*given, *(["bg"] if cfg.bg else [])])
        raise ValueError(f"give one input: bg= fg_bg=, input= or video= bg= (got {said})")
    reads_zips = bool(cfg.input) and (not isinstance(cfg.input, str) or not Path(cfg.input).is_dir())
    if cfg.get("layout") is not None and not reads_zips:  # it was ignored
        raise ValueError(f"layout={cfg.layout} is for input=ZIP only (the layout of a zip its names do not tell)")
    if cfg.video:
        if not cfg.bg:
            raise ValueError("video=... needs bg=... (the background the frames are compared with)")
        frames = int(video_property(cfg.video, cv2.CAP_PROP_FRAME_COUNT)) or None
        return video_items(cfg.video, cfg.bg), frames
    if cfg.bg and cfg.fg_bg:
        return pair_items(cfg.bg, cfg.fg_bg), 1
    if cfg.input:
        if not isinstance(cfg.input, str):  # a list of zips: one dataset (e.g. the seeds' sets split over zips)
            return zip_items([str(path) for path in cfg.input], Path(cfg.output), cfg.get("layout")), None
        root = Path(cfg.input)
        if root.is_dir():
            pairs = folder_images(root)
            return folder_items(pairs), len(pairs)
        return zip_items(str(root), Path(cfg.output), cfg.get("layout")), None
    raise ValueError("give bg=... fg_bg=..., input=DIR, input=ZIP or video=... bg=...")


def predict(cfg: DictConfig) -> Path:
    """Run the checkpoint over the inputs of `cfg`; returns the output folder."""
    whole_number(cfg.batch_size, "batch_size", 1)
    mirror = flag(cfg.get("mirror", True), "mirror")
    limit = cfg.get("limit")
    if limit is not None:
        whole_number(limit, "limit (or null: all)", 1)
    outline = from_config(cfg.get("outline"))
    items, total = items_of(cfg)
    if limit is not None:  # the first samples only, in the inputs' order
        items, total = islice(items, limit), limit if total is None else min(total, limit)
    first = next(items, None)  # a bad input fails here, before the model loads
    items = chain([] if first is None else [first], items)
    predictor = Predictor(load_module(cfg.ckpt_path), resolve_device(cfg.device), outline, mirror)
    if not predictor.module.learns_depth:
        log.info("no depth maps written: %s learnt no depth (%s)", cfg.ckpt_path, NO_DEPTH_LEARNT)
    out = Path(cfg.output)
    with output_folder(out):
        write_predictions(cfg, predictor, out, items, total)
    return out


def write_predictions(
    cfg: DictConfig, predictor: Predictor, out: Path, items: Iterator[Item], total: int | None
) -> None:
    """The masks, depths and panels of `items` (the inputs of `cfg`, `total` of them when known) in the folder
    `out` (and, for a video, its panel video)."""
    source = cfg.video or cfg.fg_bg or (cfg.input if isinstance(cfg.input, str) else ",".join(cfg.input))
    writer, batch = None, []
    video_path = out / f"{Path(cfg.video or 'none').stem}_panel.mp4"
    being_written = video_path.with_name(f".{video_path.stem}.{os.getpid()}.mp4")  # named when released
    try:
        with tqdm(total=total, desc="predict", unit="sample") as bar:
            for item in chain(items, [None]):
                if item is not None:
                    batch.append(item)
                if batch and (item is None or len(batch) == cfg.batch_size):
                    preds = predictor([b for _, b, _ in batch], [f for _, _, f in batch])
                    for (sample_id, _, fg_bg), p in zip(batch, preds, strict=True):
                        stem = output_stem(out, sample_id, source)
                        view = write_outputs(stem, fg_bg, p, predictor.module.learns_depth)
                        if cfg.video:
                            if writer is None:
                                fps = video_property(cfg.video, cv2.CAP_PROP_FPS) or 25.0
                                fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                                opened = cv2.VideoWriter(str(being_written), fourcc, fps, view.shape[1::-1])
                                if video_path.is_dir() or not opened.isOpened():
                                    opened.release()
                                    being_written.unlink(missing_ok=True)
                                    raise OSError(errno.EIO, "cannot write an mp4 video there", str(video_path))
                                writer = opened
                            writer.write(cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
                    bar.update(len(batch))
                    batch = []
    finally:  # the frames written so far stay a playable video when a later one fails
        if writer is not None:
            writer.release()
            being_written.replace(video_path)  # whole: another prediction into this folder writes its own


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Write masks and depth maps for a pair, a folder, a dataset zip or a video (see conf/predict.yaml)."""
    with exit_on_data_error(CheckpointError, ValueError):
        out = predict(cfg)
    print(f"predictions written to {out}")


if __name__ == "__main__":
    run_app(main)

"""Load a trained checkpoint and run it on raw images: normalise, resize, predict, map back to the input size (a
refined model, `mdeas.models.refiner.RefinedNet`, refines its mask at the input size instead).

A checkpoint carries what this needs (DESIGN.md): the model config, the input size, the normalisation and the
depth encoding, so nothing but the checkpoint path is required. Checkpoints are data, never code: every one is read
with `torch.load(weights_only=True)` (tensors, numbers, strings and plain containers; mdeas writes nothing else),
and one that would load anything more (a class, a function) is refused, naming what it would load.
"""

from __future__ import annotations

import inspect
import pickle
import pickletools
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from hydra.errors import InstantiationException

from mdeas.checkpoint_configs import DATA_TARGETS, MODEL_TARGETS, UntrustedConfig, check_buildable
from mdeas.cli import one_line
from mdeas.config_values import finite_number, flag, numbers, whole_number
from mdeas.data.decode import encode_depth
from mdeas.data.layouts import DepthEncoding
from mdeas.data.normalisation import IMAGENET_MEAN, IMAGENET_STD, Normalisation
from mdeas.models.refiner import RefinedNet, upsample
from mdeas.module import MaskDepthModule
from mdeas.outline import KnownBackgroundOutline


class CheckpointError(ValueError):
    """A file that cannot be used as an mdeas checkpoint; the message names the file."""


def _pickle_globals(path: Path) -> list[str]:
    """`module.name` of each global the first pickle in `path` would import, read without running it ([] when it
    is no pickle; a name taken from the pickle's memo is not seen)."""
    names, strings = [], []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(".".join(strings[-2:]))
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # damaged or no pickle: what was read so far
        pass
    return names


def _refused(path: Path, error: pickle.UnpicklingError) -> str:
    """Why the weights-only unpickler refused `path`: the globals it would load (read from the pickle without
    running it: all of them for a torch.save zip, else those of the first pickle or the one the unpickler names),
    or, naming none, that it is not a checkpoint."""
    try:
        wanted = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a torch.save zip
        wanted = _pickle_globals(path) or re.findall(r"GLOBAL ([\w.]+)", str(error))[:1]
    if wanted:
        return f"{path}: refused: it would load {', '.join(wanted)} (a checkpoint may hold only tensors and plain data)"
    complaint = re.search(r"(Unsupported [^\n.]*)", str(error))
    return f"{path}: not a PyTorch checkpoint ({complaint.group(1) if complaint else 'not plain data'})"


MODULE_HPARAMS = frozenset(inspect.signature(MaskDepthModule.__init__).parameters) - {"self"}


def _first_sentence(error: BaseException, limit: int = 120) -> str:
    """The first sentence of an error's text, at most `limit` characters (cut at a word, with "...")."""
    first = str(error).splitlines()[0].split(". ")[0].rstrip(".")
    return first if len(first) <= limit else first[:limit].rsplit(" ", 1)[0] + "..."


def read_checkpoint(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The contents of an mdeas checkpoint (hyper_parameters with a model config, state_dict), read as data
    (`weights_only=True`); one-line CheckpointError naming the file for a missing file, a non-checkpoint, another
    program's checkpoint, a TorchScript export, or one that would load code or classes (naming them)."""
    path = Path(ckpt_path)
    if not path.is_file():
        why = "a folder, not a checkpoint file" if path.is_dir() else "no such checkpoint file"
        raise CheckpointError(f"{path}: {why}")
    if _is_torchscript(path):
        raise CheckpointError(f"{path}: a TorchScript export, not a checkpoint; give the .ckpt that training wrote")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_sentence(e)})") from None
        raise CheckpointError(_refused(path, e)) from None
    except Exception as e:  # anything else a foreign or damaged file raises while unpickling: KeyError, IndexError...
        detail = _first_sentence(e) if isinstance(e, (OSError, RuntimeError, ValueError)) and str(e) else ""
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({detail or type(e).__name__})") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or not isinstance(hparams.get("model"), dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not an mdeas checkpoint (no model config or weights inside)")
    foreign = sorted(set(hparams) - MODULE_HPARAMS)
    if foreign:
        raise CheckpointError(f"{path}: not an mdeas checkpoint (hyper-parameters {foreign} are not mdeas')")
    _check_data_record(hparams.get("data") or {}, path)
    _check_finite(ckpt["state_dict"], path)
    return ckpt


def _check_finite(state: object, path: Path) -> None:
    """A CheckpointError naming the file and the first weight that holds NaN or inf (a diverged run saved it)."""
    for name, tensor in state.items() if isinstance(state, dict) else ():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"{path}: non-finite weights ({name} holds NaN or inf): the run that saved it diverged"
            )


def _check_data_record(data: object, path: Path) -> None:
    """The input size, normalisation and depth encoding a checkpoint records (what inference reads from it), or a
    CheckpointError naming the file and the value."""
    try:
        if not isinstance(data, dict):
            raise ValueError(f"data must be a mapping, got {type(data).__name__}")
        if "image_size" in data:
            whole_number(data["image_size"], "data.image_size", 1)
        for key in ("mean", "std"):
            if key in data:
                numbers(data[key], f"data.{key}", 3, positive=key == "std")
        depth = data.get("depth")
        if isinstance(depth, dict):  # how predict writes depth back
            if "max" in depth and not finite_number(depth["max"], "data.depth.max") > 0:
                raise ValueError(f"data.depth.max must be above 0, got {depth['max']!r}")
            if depth.get("inverted") is not None:
                flag(depth["inverted"], "data.depth.inverted")
        if data.get("depth_known") is not None:  # whether the depth head learnt anything
            flag(data["depth_known"], "data.depth_known")
    except ValueError as e:
        raise CheckpointError(f"{path}: damaged record of its data: {e}") from None


def _is_torchscript(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (`torch.jit.save`: a zip holding <name>/code/ and <name>/constants.pkl);
    a damaged zip is left to torch.load to report."""
    try:
        with zipfile.ZipFile(path) as archive:
            parts = {tuple(name.split("/")[1:2]) for name in archive.namelist()}
    except Exception:  # not a zip, or one zipfile cannot read: BadZipFile, EOFError, UnicodeDecodeError...
        return False
    return {("code",), ("constants.pkl",)} <= parts


def _load_state(target: torch.nn.Module, state: dict, path: str | Path, hparams: dict) -> None:
    """`target.load_state_dict(state)`, or a CheckpointError that says how the weights differ: tensors missing from
    the checkpoint, tensors the model has no place for, tensors of another shape (a count and the first of each)."""
    ours = target.state_dict()
    missing, extra = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    shaped = sorted(k for k in set(ours) & set(state) if ours[k].shape != state[k].shape)
    if missing or extra or shaped:
        name = (hparams.get("model") or {}).get("name", "?")
        found = [f"{len(missing)} missing (first {missing[0]})"] if missing else []
        found += [f"{len(extra)} not in this model (first {extra[0]})"] if extra else []
        if shaped:
            k = shaped[0]
            found.append(
                f"{len(shaped)} of another shape (first {k}: {tuple(state[k].shape)}, here {tuple(ours[k].shape)})"
            )
        raise CheckpointError(f"{path}: weights of model {name!r} do not fit: {'; '.join(found)}")
    target.load_state_dict(state)


def load_weights(model: torch.nn.Module, ckpt_path: str | Path) -> None:
    """Copy the model's weights (under `model.`) of an mdeas checkpoint into `model` (strict: every tensor must fit). A
    RefinedNet also takes a checkpoint of its base model alone (second-stage training): into its `base`; and one
    whose refiner read no alpha maps into a refiner that does (its alpha conv keeps its zero start)."""
    ckpt = read_checkpoint(ckpt_path)
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    if isinstance(model, RefinedNet) and not any(k.startswith("base.") for k in weights):
        model = model.base
    elif isinstance(model, RefinedNet) and model.refiner.alpha is not None and "refiner.alpha.weight" not in weights:
        weights |= {f"refiner.alpha.{k}": v for k, v in model.refiner.alpha.state_dict().items()}
    _load_state(model, weights, ckpt_path, ckpt["hyper_parameters"])


def load_module(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> MaskDepthModule:
    """The trained module of `ckpt_path` in eval mode; a one-line CheckpointError for anything else."""
    ckpt = read_checkpoint(ckpt_path, map_location)
    hparams = ckpt["hyper_parameters"]
    _check_buildable([hparams["model"], hparams.get("loss")], MODEL_TARGETS, ckpt_path)
    try:
        module = MaskDepthModule(**hparams)
    except (InstantiationException, TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{ckpt_path}: cannot build its model ({one_line(e)})") from None
    _load_state(module, ckpt["state_dict"], ckpt_path, ckpt["hyper_parameters"])
    return module.eval().to(map_location)


def stored_data_config(module: MaskDepthModule, ckpt_path: str | Path) -> dict:
    """The data module config the checkpoint trained with ({} when it holds none), checked before anything builds
    it: CheckpointError naming the file for a config that would call code other than mdeas' data parts."""
    stored = (module.hparams.data or {}).get("config") or {}
    _check_buildable(stored, DATA_TARGETS, ckpt_path, transforms=True)
    return stored


def _check_buildable(config: object, allowed: frozenset[str], ckpt_path: str | Path, transforms: bool = False) -> None:
    """`checkpoint_configs.check_buildable` as a CheckpointError naming the file."""
    try:
        check_buildable(config, allowed, transforms)
    except UntrustedConfig as e:
        raise CheckpointError(f"{ckpt_path}: refused: {e}") from None


def resolve_device(device: str) -> str:
    """The torch device of a `device=` option: "auto" is "cuda" when a GPU is present, else "cpu"; "cpu", "cuda"
    and "cuda:N" are taken as given; ValueError for another name or for a GPU this machine does not have."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if not re.fullmatch(r"cuda(:\d+)?", str(device)):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device={device}: this machine has no CUDA device (use device=auto or device=cpu)")
    return device


def model_size(module: MaskDepthModule) -> int:
    """The square input size (px) the module trained at: data.image_size of its checkpoint (224 if unknown)."""
    return int((module.hparams.data or {}).get("image_size", 224))


def area_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Float images [B, C, h, w] → [B, C, size, size] by OpenCV's INTER_AREA, image by image: the data pipeline's
    resize, on floats rather than uint8 (within half a grey level; torch's area mode differs where the sizes do not
    divide, and repeats pixels when enlarging)."""
    hwc = images.permute(0, 2, 3, 1).float().cpu().numpy()
    arrays = [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in hwc]
    return torch.from_numpy(np.stack(arrays).reshape(len(arrays), size, size, -1)).permute(0, 3, 1, 2).to(images)


def normalisation(module: MaskDepthModule) -> Normalisation:
    """The input normalisation the module trained with (its data config's mean and std; ImageNet's without)."""
    data = module.hparams.data or {}
    return Normalisation(data.get("mean", IMAGENET_MEAN), data.get("std", IMAGENET_STD))


Outputs = dict[str, torch.Tensor]


def mirror_averaged(
    run: Callable[[torch.Tensor, torch.Tensor], Outputs], bg: torch.Tensor, fg_bg: torch.Tensor
) -> Outputs:
    """{"mask", "depth"} of `run(bg, fg_bg)` (images [B, 3, H, W]) averaged with those of the pair mirrored left to
    right, mirrored back, in float32: test-time augmentation by the flip the models trained with (mask logits
    averaged)."""
    out, mirrored = run(bg, fg_bg), run(bg.flip(-1), fg_bg.flip(-1))
    return {key: (out[key].float() + mirrored[key].float().flip(-1)) / 2 for key in ("mask", "depth")}


def _native(module: MaskDepthModule, bg: torch.Tensor, fg_bg: torch.Tensor) -> Outputs:
    """`full_resolution` without its options."""
    size = model_size(module)
    if isinstance(module.model, RefinedNet):
        out = module.model.forward_full(bg, fg_bg, size)
        return {key: out[key] for key in ("mask", "depth")}
    small = module(area_resize(bg, size), area_resize(fg_bg, size))
    return {key: upsample(small[key], fg_bg.shape[-2:]) for key in ("mask", "depth")}


@torch.no_grad()
def full_resolution(
    module: MaskDepthModule,
    bg: torch.Tensor,
    fg_bg: torch.Tensor,
    outline: KnownBackgroundOutline | None = None,
    mirror: bool = False,
) -> Outputs:
    """Normalised bg, fg_bg float [B, 3, H, W] of any size → {"mask": logits, "depth"}, [B, 1, H, W] each, at
    that size: a RefinedNet's `forward_full`; any other model runs on the pair resized to the model size as the
    data pipeline resizes (`area_resize`), its outputs upsampled bilinearly. `mirror`: averaged with the mirrored
    pair's (`mirror_averaged`); `outline`: then re-decides the mask around its outline from the pair's colours
    (`mdeas.outline`)."""
    if mirror:
        out = mirror_averaged(lambda b, f: _native(module, b, f), bg, fg_bg)
    else:
        out = _native(module, bg, fg_bg)
    if outline is not None:
        rgb = normalisation(module).invert
        out["mask"] = outline(out["mask"], rgb(bg), rgb(fg_bg))
    return out


def _rgb(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] → float32 [1, 3, H, W] in [0, 1] (a read-only array, as a decoder returns, is copied)."""
    return torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None].float() / 255


def _arrays(out: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Mask probabilities and depth clamped to [0, 1], float32 [B, H, W] each, from model outputs."""
    return torch.sigmoid(out["mask"].float())[:, 0].cpu().numpy(), out["depth"].float().clamp(0, 1)[:, 0].cpu().numpy()


@dataclass
class Prediction:
    """Per-sample outputs at the input size: `mask` probability float32 [H, W] in [0, 1]; `depth` [H, W] as the
    training data stores depth (`encode_depth`: uint16 in its unit, e.g. mm, for png16; uint8 grey for gray8, near
    = bright when inverted, as the seeds' sets); `depth_norm` float32 [H, W] in [0, 1] (larger = farther)."""

    mask: np.ndarray
    depth: np.ndarray
    depth_norm: np.ndarray


class Predictor:
    """Batched inference on uint8 RGB arrays of any size (bg and fg_bg of one sample share a size); `outline`
    re-decides each mask around its outline at the input size (`mdeas.outline`; None: the model's mask); `mirror`
    averages each output with the mirrored pair's (`mirror_averaged`). Both default to off here; `predict` turns both
    on (conf/predict.yaml)."""

    def __init__(
        self,
        module: MaskDepthModule,
        device: str | torch.device = "cpu",
        outline: KnownBackgroundOutline | None = None,
        mirror: bool = False,
    ) -> None:
        self.module = module.eval().to(device)
        self.device = torch.device(device)
        self.outline, self.mirror = outline, mirror
        data = module.hparams.data or {}
        self.size = model_size(module)
        self.normalisation = normalisation(module)
        self.depth_encoding = DepthEncoding(**(data.get("depth") or {}))

    def _tensor(self, images: list[np.ndarray], resized: bool = True) -> torch.Tensor:
        """Normalised float32 [B, 3, H, W] on the device, each image resized to the model size (`area_resize`, after
        normalising: the pixels `full_resolution` feeds) unless not `resized` (then the images must share a size)."""
        normalised = [self.normalisation.from_uint8(im) for im in images]
        if resized:
            normalised = [area_resize(im[None], self.size)[0] for im in normalised]
        return torch.stack(normalised).contiguous().to(self.device)

    def _outputs(self, bgs: list[np.ndarray], fg_bgs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(mask probability, normalised depth) float32 [H, W] per sample at its input's size: a RefinedNet refines
        each sample at its own size, one at a time; other models run the batch at the model size."""
        if isinstance(getattr(self.module, "model", None), RefinedNet):
            outputs = []
            for bg, fg_bg in zip(bgs, fg_bgs, strict=True):
                pair = (self._tensor([image], resized=False) for image in (bg, fg_bg))
                out = full_resolution(self.module, *pair, outline=self.outline, mirror=self.mirror)
                outputs.append(tuple(a[0] for a in _arrays(out)))
            return outputs
        pair = self._tensor(bgs), self._tensor(fg_bgs)
        out = mirror_averaged(self.module, *pair) if self.mirror else self.module(*pair)
        outputs = []
        for i, (bg, fg_bg) in enumerate(zip(bgs, fg_bgs, strict=True)):  # logits upsampled, then the sigmoid
            full = {key: upsample(out[key][i : i + 1].float(), fg_bg.shape[:2]) for key in ("mask", "depth")}
            if self.outline is not None:
                full["mask"] = self.outline(full["mask"], *(_rgb(im).to(self.device) for im in (bg, fg_bg)))
            outputs.append(tuple(a[0] for a in _arrays(full)))
        return outputs

    @torch.no_grad()
    def __call__(self, bgs: list[np.ndarray], fg_bgs: list[np.ndarray]) -> list[Prediction]:
        """Predict a batch; each output is at its own input's size."""
        for bg, fg_bg in zip(bgs, fg_bgs, strict=True):
            if bg.shape != fg_bg.shape:
                raise ValueError(
                    f"bg size {bg.shape[1]}x{bg.shape[0]} differs from fg_bg {fg_bg.shape[1]}x{fg_bg.shape[0]}"
                )
        return [
            Prediction(mask, encode_depth(depth, self.depth_encoding), depth)
            for mask, depth in self._outputs(bgs, fg_bgs)
        ]

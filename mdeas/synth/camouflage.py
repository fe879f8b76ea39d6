"""Objects that wear the background's colours: a wooden horse on a wooden table, a red disc on a red saucer.

Where an object's colour matches the background behind it, |fg_bg − bg| is close to zero and a model that only
thresholds the difference loses that part of the object. Generated objects rarely match their background by
chance; this recolours a share of them with the background's own texture, taken from elsewhere in the image, so
that a model learns to find an object from its outline, its shading and the break in the texture, not only from
its colour.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mdeas.synth.scene import Foreground


def camouflage(fg: Foreground, background: np.ndarray, rng: np.random.Generator) -> Foreground:
    """`fg` recoloured towards `background` (scene colour [H, W, 3], the image `fg` is pasted into) moved
    sideways by a share ~ U(0.25, 0.75) of the width (wrapping round) and up or down by at most a tenth of the
    height: rgb ← (1 − w)·rgb + w·moved, w ~ U(0.6, 0.95). The object keeps its outline, alpha and depth and a
    trace of its own shading; its colours become those of the background near its height, in another place."""
    h, w = background.shape[:2]
    shift = (int(rng.integers(-(h // 10), h // 10 + 1)), int(round(w * rng.uniform(0.25, 0.75))))
    moved = np.roll(background, shift, axis=(0, 1))
    weight = rng.uniform(0.6, 0.95)
    return replace(fg, rgb=np.clip((1 - weight) * fg.rgb + weight * moved, 0, 1))

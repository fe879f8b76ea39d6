"""Cut-out edges as people make them: a soft (feathered) outline and, often, the colour of the backdrop the object
was cut from, on the blended pixels (a fringe) or on an opaque rim inside the outline (a mask cut a pixel or two too
wide). Rendered objects have clean anti-aliased edges of their own colour; the cut-outs the seeds pasted (RGBA images
from the web) rarely do, and a mask model should not learn that the outline of an object is always crisp nor that
its edge has the colour of its inside."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from mdeas.synth.scene import Foreground

_RING = np.ones((5, 5), np.uint8)  # the feathered alpha may reach 2 px beyond the object
_FAR = np.float32(1e9)


def rough_edges(fg: Foreground, rng: np.random.Generator) -> Foreground:
    """`fg` with its alpha blurred by a Gaussian of σ ~ U(0.4, 1.2) px and one random backdrop colour, which with
    p = 0.5 each tints a fringe (pixels near the outline, weight 1 − |2α − 1|, mixed by a share ~ U(0.3, 0.9)) and
    an opaque rim (the pixels of α > 0.5 within w ~ U(1, 2.5) px of the outline, mixed by a share ~ U(0.3, 0.9)
    that falls linearly from the outermost pixel to 0 at w + 1 px). The 2 px ring the blur reaches takes the
    object's depth (its nearest pixels) and colour (normalised convolution), so the composite's depth test keeps
    it; the mask (α > 0.5) follows the feathered outline, rim included."""
    support = fg.alpha > 0
    ring = cv2.dilate(support.astype(np.uint8), _RING).astype(bool) & ~support
    depth = np.where(support, fg.depth, _FAR).astype(np.float32)
    depth = np.where(ring, cv2.erode(depth, _RING), fg.depth)
    weight = cv2.GaussianBlur(fg.alpha.astype(np.float32), (0, 0), 1.5)[..., None]
    spread = cv2.GaussianBlur((fg.rgb * fg.alpha[..., None]).astype(np.float32), (0, 0), 1.5)
    rgb = np.where(ring[..., None], spread / np.maximum(weight, 1e-6), fg.rgb)
    alpha = cv2.GaussianBlur(fg.alpha.astype(np.float32), (0, 0), float(rng.uniform(0.4, 1.2)))
    alpha = np.where(support | ring, alpha, 0.0)
    backdrop = rng.uniform(0, 1, 3)
    if rng.random() < 0.5:
        edge = np.clip(1 - np.abs(2 * alpha - 1), 0, 1)[..., None] * rng.uniform(0.3, 0.9)
        rgb = rgb * (1 - edge) + backdrop * edge
    if rng.random() < 0.5:
        inside = cv2.distanceTransform((alpha > 0.5).astype(np.uint8), cv2.DIST_L2, 3)  # 1 on the outermost px
        width = rng.uniform(1.0, 2.5)
        rim = np.clip((width + 1 - inside) / width, 0, 1) * (inside > 0)
        rim = rim[..., None] * rng.uniform(0.3, 0.9)
        rgb = rgb * (1 - rim) + backdrop * rim
    return replace(fg, rgb=np.clip(rgb, 0, 1), alpha=alpha.astype(np.float64), depth=depth)

"""The camera's response: exposure, white balance, tone curve, vignetting, defocus, sensor noise, and a JPEG
round trip. One Sensor is drawn per background and applied alike to the background and to every composite made
from it, so that the images differ only where the scene does (and in their noise, when it is drawn anew)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Sensor:
    """gain: exposure multiplier; balance: RGB [3] gains; gamma: tone exponent; vignette: corner darkening in
    [0, 1); blur: Gaussian defocus sigma (px); noise: sigma of Gaussian noise (grey levels) plus `shot` x sqrt
    of the signal; jpeg: quality of an in-camera JPEG round trip, 0 for none."""

    gain: float
    balance: tuple[float, float, float]
    gamma: float
    vignette: float
    blur: float
    noise: float
    shot: float
    jpeg: int

    def apply(self, rgb: np.ndarray, noise_rng: np.random.Generator) -> np.ndarray:
        """Linear scene colour [H, W, 3] (about [0, 1]) → uint8 [H, W, 3] as the camera records it."""
        rows, cols = ((np.arange(n) + 0.5) / n - 0.5 for n in rgb.shape[:2])
        radius2 = (rows[:, None] ** 2 + cols[None, :] ** 2) * 2
        image = rgb * (self.gain * np.asarray(self.balance))[None, None, :] * (1 - self.vignette * radius2)[..., None]
        image = np.clip(image, 0, 1) ** (1 / self.gamma)
        if self.blur > 0:
            image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), self.blur).astype(np.float64)
        image = image * 255.0
        sigma = np.sqrt(self.noise**2 + self.shot**2 * image)
        image = np.clip(np.rint(image + sigma * noise_rng.standard_normal(image.shape)), 0, 255).astype(np.uint8)
        if self.jpeg:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=self.jpeg)
            image = np.asarray(Image.open(buffer).convert("RGB"))
        return image


def sample_sensor(rng: np.random.Generator, mean_level: float) -> Sensor:
    """A random camera, exposed so that a scene of mean linear level `mean_level` comes out at 0.3-0.6 after the
    tone curve."""
    gamma = float(rng.uniform(0.8, 1.25))
    target = float(rng.uniform(0.3, 0.6)) ** gamma
    balance = np.clip(1 + rng.normal(0, 0.06, 3), 0.8, 1.2)
    return Sensor(
        gain=target / max(mean_level, 1e-3),
        balance=(float(balance[0]), float(balance[1]), float(balance[2])),
        gamma=gamma,
        vignette=float(rng.uniform(0, 0.4)),
        blur=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.3 else 0.0,
        noise=float(rng.uniform(0.3, 3.0)),
        shot=float(rng.uniform(0.0, 0.3)),
        jpeg=int(rng.integers(40, 96)) if rng.random() < 0.5 else 0,
    )

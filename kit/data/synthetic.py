"""A synthetic mini competition in the exact Dogs vs. Cats Redux file layout.

It lets the demo and the tests run the whole pipeline offline in seconds. "Dogs" carry
round, mostly warm-coloured blobs and "cats" angular, mostly cool-coloured shapes, over
noisy backgrounds of any colour: a small CNN learns it in a minute, but not perfectly. The
training set also carries the kinds of broken file the real data and real users produce.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from kit import fileio
from kit.score import SAMPLE

# name -> how to make the bytes; the tests assert each is handled with the right reason.
PLANTED_TRAIN = {
    "cat.90001.jpg": "empty",
    "dog.90002.jpg": "truncated",
    "cat.90003.jpg": "png",
    "dog.90004.jpg": "grayscale",
    "cat.90005.jpg": "cmyk",
    "dog.90006.jpg": "one-pixel",
    "cat.90007.jpg": "text",
}
# Test files must all be predicted, so the test set only gets files that are unreadable.
PLANTED_TEST = ("empty", "text")


def draw_image(rng: np.random.Generator, label: int) -> np.ndarray:
    """One RGB uint8 picture of varied size and aspect ratio carrying the class signal."""
    import cv2

    short = int(rng.integers(80, 320))
    aspect = float(rng.uniform(0.6, 1.7))
    h, w = (short, int(short * aspect)) if rng.random() < 0.5 else (int(short * aspect), short)
    base = rng.integers(40, 200, size=3)
    image = np.clip(base + rng.normal(0, 25, size=(h, w, 3)), 0, 255).astype(np.uint8)
    image = cv2.GaussianBlur(image, (5, 5), 0)
    for _ in range(int(rng.integers(1, 3))):
        colour = _shape_colour(rng, label)
        cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
        r = int(min(h, w) * rng.uniform(0.2, 0.35))
        if label == 1:
            axes = (r, int(r * rng.uniform(0.6, 1.0)))
            cv2.ellipse(image, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            points = _polygon(rng, cx, cy, r, corners=int(rng.integers(3, 5)))
            cv2.fillPoly(image, [points], colour)
    return image


def _shape_colour(rng, label):
    """Mostly warm shapes for dogs and cool ones for cats; one in five is any colour."""
    if rng.random() < 0.2:
        return tuple(int(c) for c in rng.integers(0, 256, size=3))
    hot, cold = int(rng.integers(170, 256)), int(rng.integers(0, 90))
    mid = int(rng.integers(0, 256))
    return (hot, mid, cold) if label == 1 else (cold, mid, hot)


def _polygon(rng, cx, cy, r, corners):
    angles = rng.uniform(0, 2 * np.pi) + np.arange(corners) * 2 * np.pi / corners
    return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1).astype(np.int32)


def encode_jpeg(image_rgb: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
                              [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buffer.tobytes()


def bad_file(kind: str, rng: np.random.Generator) -> bytes:
    """Bytes for one planted problem file, all named .jpg."""
    import cv2

    good = encode_jpeg(draw_image(rng, 1))
    if kind == "empty":
        return b""
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "png":
        return cv2.imencode(".png", draw_image(rng, 0))[1].tobytes()
    if kind == "grayscale":
        gray = cv2.cvtColor(draw_image(rng, 1), cv2.COLOR_RGB2GRAY)
        return cv2.imencode(".jpg", gray)[1].tobytes()
    if kind == "cmyk":
        from PIL import Image   # OpenCV cannot write CMYK JPEGs; Pillow ships with matplotlib

        out = io.BytesIO()
        Image.fromarray(draw_image(rng, 0)).convert("CMYK").save(out, "JPEG")
        return out.getvalue()
    if kind == "one-pixel":
        return cv2.imencode(".jpg", np.zeros((1, 1, 3), np.uint8))[1].tobytes()
    if kind == "text":
        return b"This is not a picture of a cat.\n"
    raise ValueError(f"unknown planted file kind {kind!r}")


def make_competition(out_dir: str | Path, n_train: int = 600, n_test: int = 200,
                     seed: int = 0, planted: bool = True) -> Path:
    """Write train.zip, test.zip and sample_submission.csv under out_dir/competition/.

    The test labels go to out_dir/test_labels.csv, outside the competition folder, as
    Kaggle keeps them. Returns the competition folder. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    competition = out_dir / "competition"
    competition.mkdir(parents=True, exist_ok=True)

    with fileio.atomic_path(competition / "train.zip") as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for i in range(n_train):
            label = i % 2
            name = f"{'dog' if label else 'cat'}.{i // 2}.jpg"
            zf.writestr(f"train/{name}", encode_jpeg(draw_image(rng, label)))
        if planted:
            for name, kind in PLANTED_TRAIN.items():
                zf.writestr(f"train/{name}", bad_file(kind, rng))

    labels = rng.integers(0, 2, size=n_test)
    broken = set(rng.choice(np.arange(1, n_test + 1), size=len(PLANTED_TEST), replace=False)) if planted else set()
    with fileio.atomic_path(competition / "test.zip") as tmp, zipfile.ZipFile(tmp, "w") as zf:
        kinds = iter(PLANTED_TEST)
        for image_id, label in zip(range(1, n_test + 1), labels):
            data = bad_file(next(kinds), rng) if image_id in broken else encode_jpeg(draw_image(rng, int(label)))
            zf.writestr(f"test/{image_id}.jpg", data)

    ids = np.arange(1, n_test + 1)
    with fileio.atomic_path(competition / SAMPLE) as tmp:
        pd.DataFrame({"id": ids, "label": 0.5}).to_csv(tmp, index=False)
    with fileio.atomic_path(out_dir / "test_labels.csv") as tmp:
        pd.DataFrame({"id": ids, "label": labels}).to_csv(tmp, index=False)
    return competition

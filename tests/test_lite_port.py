"""The Keras port of EfficientNet-Lite computes what the published weights were trained to compute.

- golden logits for three generated images guard the port against regressions (no data needed);
- on the shared real photos: the top-1 ImageNet class is a dog breed for dogs and a cat for cats,
  and a photo's pooled features barely move when the photo is re-encoded as JPEG.

The golden values were produced by this port (``python tests/test_lite_port.py`` prints them);
what makes them trustworthy is the real-photo test, run on the same code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import needs_real_data

from kit.models import backbones

DOGS, CATS = range(151, 269), range(281, 286)

# variant -> per generated image: its five largest logits as (class, logit), at the native size.
GOLDEN = {
    "efficientnet_lite0": [[(782, 4.2026), (818, 3.8924), (149, 3.8016), (727, 3.6106), (908, 3.432)], [(506, 7.5046), (723, 6.9093), (800, 5.8107), (787, 5.7336), (632, 5.444)], [(911, 6.2645), (735, 6.1572), (658, 5.5923), (533, 5.2923), (824, 5.004)]],
    "efficientnet_lite1": [[(149, 4.1091), (574, 3.7923), (540, 3.6586), (978, 3.5789), (818, 3.5376)], [(506, 8.0669), (659, 6.8092), (787, 6.7634), (613, 6.7272), (902, 6.4422)], [(735, 5.2059), (824, 5.1786), (911, 4.9525), (392, 4.8583), (658, 4.1789)]],
    "efficientnet_lite2": [[(149, 4.0033), (782, 3.6853), (499, 3.6417), (409, 3.3169), (974, 3.3167)], [(506, 5.7531), (641, 4.5197), (767, 4.4816), (585, 4.4775), (838, 4.2132)], [(533, 6.6716), (906, 6.2533), (911, 4.5721), (772, 4.4607), (741, 4.4416)]],
}


def generated_images(size: int) -> np.ndarray:
    """Three deterministic pictures: a colour ramp, rings, and smoothed seeded noise ([0, 255] RGB)."""
    import cv2

    u, v = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size))
    ramp = np.stack([u, v, 1 - u * v], axis=-1) * 255
    radius = np.hypot(u - 0.5, v - 0.4)
    rings = np.stack([np.cos(radius * 40), np.sin(radius * 25), np.cos(u * 12)], axis=-1) * 110 + 128
    noise = np.random.default_rng(13).uniform(0, 255, (size, size, 3)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=size / 60)
    noise = (noise - noise.mean()) * 4 + 128
    return np.clip(np.stack([ramp, rings, noise]), 0, 255).astype(np.uint8)


def logits(name: str, images: np.ndarray, size: int) -> np.ndarray:
    """Pre-softmax class scores: the pooled features through the top's Dense layer."""
    pooled = np.asarray(backbones.build(name, input_size=size)(backbones.preprocess(name, images), training=False))
    kernel, bias = backbones.build(name, input_size=32, include_top=True).get_layer("_fc").get_weights()
    return pooled @ kernel + bias


def top5(scores: np.ndarray) -> list[list[tuple[int, float]]]:
    return [[(int(c), round(float(row[c]), 4)) for c in np.argsort(-row)[:5]] for row in scores]


@pytest.fixture
def fresh_keras():
    yield
    import keras

    keras.backend.clear_session()


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_logits(name, fresh_keras):
    size = backbones.get(name).default_input_size
    scores = logits(name, generated_images(size), size)
    assert len(scores) == len(GOLDEN[name])
    for row, expected in zip(scores, GOLDEN[name]):
        classes = [c for c, _ in expected]
        assert int(row.argmax()) == classes[0]
        np.testing.assert_allclose(row[classes], [s for _, s in expected], atol=2e-3)


# ------------------------------------------------------------------ real photos


@pytest.fixture(scope="module")
def real_sample(tmp_path_factory):
    """Every tenth dog and every tenth cat of ../shared/data/dvc-real, by number: 150 of each."""
    from conftest import REAL_COMPETITION

    from kit import fetch

    data = fetch.fetch_from(REAL_COMPETITION, tmp_path_factory.mktemp("real") / "comp", log=lambda *_: None)
    index = fetch.read_index(data, "train")
    index = index.assign(number=index["id"].str.split(".").str[1].astype(int)).sort_values(["label", "number"])
    return pd.concat([index[index["label"] == label].iloc[::10] for label in (1, 0)])


def _pixels(paths, size: int) -> np.ndarray:
    from kit.data import generators

    return np.stack([generators.decode_sizes(p, (size,))[size] for p in paths])


@needs_real_data
@pytest.mark.real_data
def test_top1_class_is_the_right_animal(real_sample, fresh_keras):
    """Lite2 at its native 260 px (bench/clean_imagenet.py reports all three on all 3,000 photos)."""
    name, size = "efficientnet_lite2", 260
    model = backbones.build(name, include_top=True)
    probs = model.predict(backbones.preprocess(name, _pixels(real_sample["path"], size)), batch_size=32, verbose=0)
    top1 = probs.argmax(axis=1)
    labels = real_sample["label"].to_numpy()
    dogs = np.isin(top1[labels == 1], DOGS).mean()
    cats = np.isin(top1[labels == 0], CATS).mean()
    print(f"{name}@{size} top-1: a dog class for {dogs:.1%} of {int((labels == 1).sum())} dogs, "
          f"a cat class for {cats:.1%} of {int((labels == 0).sum())} cats")
    assert dogs >= 0.95, f"dog class for only {dogs:.1%} of dogs"
    assert cats >= 0.80, f"cat class for only {cats:.1%} of cats"


@needs_real_data
@pytest.mark.real_data
def test_pooled_features_survive_a_jpeg_re_encode(real_sample, tmp_path, fresh_keras):
    """Re-encoding at quality 85 changes the bytes, not the picture: each photo's features stay closest
    to its own original's, far closer than to any other photo's."""
    import cv2

    from kit.models import features

    name, size = "efficientnet_lite0", 224
    originals = list(real_sample["path"].iloc[:12])
    copies = []
    for n, path in enumerate(originals):
        copy = tmp_path / f"copy{n}.jpg"
        cv2.imwrite(str(copy), cv2.imread(path), [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert copy.read_bytes() != open(path, "rb").read()
        copies.append(str(copy))
    model = backbones.build(name, input_size=size)
    embed = lambda paths: features.root_unit(np.asarray(model(backbones.preprocess(name, _pixels(paths, size)))))
    a, b = embed(originals), embed(copies)
    similarity = b @ a.T
    own = np.diag(similarity)
    others = np.where(np.eye(len(a), dtype=bool), -1, similarity).max(axis=1)
    assert own.min() > 0.97, own
    assert (own - others).min() > 0.1, (own, others)


if __name__ == "__main__":   # regenerate GOLDEN after a deliberate change to the port
    for entry in GOLDEN:
        native = backbones.get(entry).default_input_size
        print(f'    "{entry}": {top5(logits(entry, generated_images(native), native))},')

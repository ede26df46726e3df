"""Synthetic mini competitions in the file layouts of other Kaggle image-classification competitions.

Each layout copies one competition's data page: where the pictures are and in what format, where
the training labels come from (class folders, a labels CSV whose ids keep or drop the extension,
`<class>.<n>` names), the sample submission's header and values (one probability, one probability
column per class, a class name, an integer grade; zipped or not) and, for State Farm, the CSV that
groups pictures by driver. Pictures are small and few; each class draws its own colour and shape,
so a model can learn them. Deterministic for a given seed: the same bytes every time.

The Dogs vs. Cats Redux layout stays in kit.data.synthetic (`make_competition`), the default.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kit import COMPETITION, fileio
from kit.errors import KitError

FOLDERS, CSV = "folders", "csv"
PROBABILITY, PROBABILITIES, CLASS = "probability", "probabilities", "class"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)    # a fixed time stamp, so a zip's bytes depend on its contents only
TEST_LABELS = "test_labels.csv"      # beside the competition folder, as Kaggle keeps the answers away


@dataclass(frozen=True)
class Layout:
    name: str                     # the competition's slug (kit.task.known knows it) or a made-up name
    classes: tuple                # class values as the competition's labels write them
    extension: str                # of every picture
    train_place: str              # folders, relative to the competition folder
    test_place: str
    labels: str                   # FOLDERS or CSV
    id_column: str
    submission: str               # PROBABILITY, PROBABILITIES or CLASS
    value_column: str = "label"   # the sample's value column, unless one column per class
    labels_file: str = ""         # CSV: its name, class column, and whether ids keep the extension
    label_column: str = ""
    csv_ids_keep_extension: bool = False
    sample_ids_keep_extension: bool = False
    sample_zipped: bool = False
    id_prefix: str = ""           # "img_" ids are img_<n>; others random hexadecimal
    grayscale: bool = False
    size: int = 32
    drivers: int = 0              # State Farm: driver_imgs_list.csv groups the pictures by driver
    extra: dict = field(default_factory=dict)   # further files of the real layout the kit must ignore


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("aerial-cactus-identification", (0, 1), ".jpg", "train", "test", CSV, "id", PROBABILITY,
           value_column="has_cactus", labels_file="train.csv", label_column="has_cactus",
           csv_ids_keep_extension=True, sample_ids_keep_extension=True),
    Layout("histopathologic-cancer-detection", (0, 1), ".tif", "train", "test", CSV, "id", PROBABILITY,
           labels_file="train_labels.csv", label_column="label"),
    Layout("plant-seedlings-classification", ("Black-grass", "Charlock", "Common Chickweed", "Sugar beet"), ".png",
           "train", "test", FOLDERS, "file", CLASS, value_column="species", sample_ids_keep_extension=True,
           sample_zipped=True),
    Layout("dog-breed-identification", ("affenpinscher", "beagle", "boston_bull", "chow"), ".jpg", "train", "test",
           CSV, "id", PROBABILITIES, labels_file="labels.csv", label_column="breed"),
    Layout("aptos2019-blindness-detection", (0, 1, 2, 3, 4), ".png", "train_images", "test_images", CSV, "id_code",
           CLASS, value_column="diagnosis", labels_file="train.csv", label_column="diagnosis",
           extra={"test.csv": "ids"}),
    Layout("state-farm-distracted-driver-detection", ("c0", "c1", "c2", "c3"), ".jpg", "imgs/train", "imgs/test",
           FOLDERS, "img", PROBABILITIES, sample_ids_keep_extension=True, id_prefix="img_", drivers=6),
    Layout("cassava-leaf-disease-classification", (0, 1, 2, 3, 4), ".jpg", "train_images", "test_images", CSV,
           "image_id", CLASS, labels_file="train.csv", label_column="label", csv_ids_keep_extension=True,
           sample_ids_keep_extension=True, extra={"label_num_to_disease_map.json": "class names"}),
    # No Kaggle competition: grayscale pictures in class folders, named classes, an unknown slug.
    Layout("grayscale-shapes", ("triangle", "square", "pentagon"), ".png", "train", "test", FOLDERS, "id", CLASS,
           grayscale=True),
)}
NAMES = (COMPETITION, *LAYOUTS)


def make(out_dir: str | Path, name: str = COMPETITION, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """The competition folder out_dir/competition/ in layout `name`, and out_dir/test_labels.csv."""
    if name == COMPETITION:
        from kit.data import synthetic

        return synthetic.make_competition(out_dir, n_train, n_test, seed)
    if name not in LAYOUTS:
        raise KitError(f"unknown synthetic layout {name!r}; choose one of: {', '.join(NAMES)}")
    return make_layout(out_dir, LAYOUTS[name], n_train, n_test, seed)


def make_layout(out_dir: str | Path, layout: Layout, n_train: int, n_test: int, seed: int) -> Path:
    k = len(layout.classes)
    if n_train < k or n_test < 1:
        raise KitError(f"layout {layout.name} needs at least {k} training pictures (one per class) and 1 test picture")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    train_labels = np.arange(n_train) % k
    test_labels = rng.integers(0, k, size=n_test)
    stems = picture_stems(rng, n_train + n_test, layout.id_prefix)
    train_stems, test_stems = stems[:n_train], stems[n_train:]
    with fileio.atomic_dir(out_dir / "competition") as folder:
        write_pictures(folder, layout, rng, train_stems, train_labels, test_stems, test_labels)
        write_tables(folder, layout, rng, train_stems, train_labels, test_stems)
    answers = pd.DataFrame({layout.id_column: sample_ids(layout, test_stems),
                            answer_column(layout): [layout.classes[i] for i in test_labels]})
    with fileio.atomic_path(out_dir / TEST_LABELS) as tmp:
        answers.to_csv(tmp, index=False)
    return out_dir / "competition"


def answer_column(layout: Layout) -> str:
    """The answer file's class column: the labels CSV's, or the sample's single value column, or label."""
    return layout.label_column or (layout.value_column if layout.submission != PROBABILITIES else "label")


def picture_stems(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    """n distinct file stems: img_<n> with a prefix, else ten hexadecimal digits."""
    if prefix:
        return [f"{prefix}{i}" for i in rng.permutation(np.arange(1, 10 * n + 1))[:n]]
    numbers = list(dict.fromkeys(int(x) for x in rng.integers(0, 16 ** 10, size=2 * n)))[:n]
    return [f"{x:010x}" for x in numbers]


def write_pictures(folder: Path, layout: Layout, rng, train_stems, train_labels, test_stems, test_labels) -> None:
    for stem, label in zip(train_stems, train_labels):
        sub = f"{layout.classes[label]}/" if layout.labels == FOLDERS else ""
        _write(folder / layout.train_place / f"{sub}{stem}{layout.extension}", draw(rng, layout, int(label)))
    for stem, label in zip(test_stems, test_labels):
        _write(folder / layout.test_place / f"{stem}{layout.extension}", draw(rng, layout, int(label)))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def draw(rng: np.random.Generator, layout: Layout, label: int) -> bytes:
    """One encoded picture: a noisy background and a shape whose colour (or grey level) and number of
    corners follow the class."""
    import cv2

    k, size = len(layout.classes), layout.size
    image = np.clip(rng.integers(40, 200, size=3) + rng.normal(0, 20, size=(size, size, 3)), 0, 255).astype(np.uint8)
    hue = int(180 * label / k + rng.integers(-6, 7)) % 180
    colour = cv2.cvtColor(np.uint8([[[hue, 220, 230]]]), cv2.COLOR_HSV2RGB)[0, 0]
    if layout.grayscale:
        colour = np.full(3, 30 + 200 * label // max(k - 1, 1), np.uint8)
    cx, cy = (int(c) for c in rng.integers(size // 3, 2 * size // 3, size=2))
    radius = int(size * rng.uniform(0.22, 0.32))
    corners = 3 + label % 4
    angles = rng.uniform(0, 2 * np.pi) + np.arange(corners) * 2 * np.pi / corners
    points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1).astype(np.int32)
    cv2.fillPoly(image, [points], tuple(int(c) for c in colour))
    if layout.grayscale:
        return cv2.imencode(layout.extension, cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))[1].tobytes()
    quality = [cv2.IMWRITE_JPEG_QUALITY, 90] if layout.extension == ".jpg" else []
    return cv2.imencode(layout.extension, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), quality)[1].tobytes()


def sample_ids(layout: Layout, stems) -> list[str]:
    return [f"{s}{layout.extension}" if layout.sample_ids_keep_extension else s for s in stems]


def write_tables(folder: Path, layout: Layout, rng, train_stems, train_labels, test_stems) -> None:
    """The labels CSV (or driver list), the sample submission, and the layout's other files."""
    if layout.labels == CSV:
        ids = [f"{s}{layout.extension}" if layout.csv_ids_keep_extension else s for s in train_stems]
        _csv(folder / layout.labels_file,
             pd.DataFrame({layout.id_column: ids, layout.label_column: [layout.classes[i] for i in train_labels]}))
    if layout.drivers:
        drivers = [f"p{d:03d}" for d in sorted(rng.choice(100, size=layout.drivers, replace=False))]
        _csv(folder / "driver_imgs_list.csv", pd.DataFrame({
            "subject": [drivers[i] for i in rng.integers(0, layout.drivers, size=len(train_stems))],
            "classname": [layout.classes[i] for i in train_labels],
            layout.id_column: [f"{s}{layout.extension}" for s in train_stems]}))
    sample = pd.DataFrame({layout.id_column: sample_ids(layout, test_stems)})
    if layout.submission == PROBABILITIES:
        for name in layout.classes:
            sample[str(name)] = round(1 / len(layout.classes), 6)
    else:
        sample[layout.value_column] = 0.5 if layout.submission == PROBABILITY else layout.classes[0]
    if layout.sample_zipped:
        _zipped_csv(folder / "sample_submission.csv.zip", sample)
    else:
        _csv(folder / "sample_submission.csv", sample)
    for name, kind in layout.extra.items():
        if kind == "ids":
            _csv(folder / name, pd.DataFrame({layout.id_column: sample_ids(layout, test_stems)}))
        else:
            (folder / name).write_text(json.dumps({str(i): f"disease {c}" for i, c in enumerate(layout.classes)}))


def _csv(path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(path, index=False)


def _zipped_csv(path: Path, frame: pd.DataFrame) -> None:
    """A zip holding one CSV, stored (deflate's bytes differ between zlib builds) with a fixed time stamp."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo(path.name.removesuffix(".zip"), date_time=ZIP_TIME), frame.to_csv(index=False))

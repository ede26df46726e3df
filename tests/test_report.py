"""Run reports: the page and its PNGs for tiny cnn and features runs, Grad-CAM, activations, live curves."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_kit
from kit import config, methods, report
from kit.errors import KitError
from kit.predict import submission

TINY_CNN = {"image_size": 32, "width": 8, "dense": 16, "epochs": 2, "batch_size": 16, "learning_rate": 1e-3}
TINY_FEATURES = {"backbones": "tiny@32", "weights": "none", "heads": "logreg,dense", "folds": 3, "head_epochs": 5}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _trained(root: Path, preset: str, overrides: dict, fetched) -> config.Config:
    cfg = config.resolve(preset, {**overrides, "data_dir": str(fetched), "runs_dir": str(root / "runs"),
                                  "submissions_dir": str(root / "subs"), "cache_dir": str(root / "cache")})
    methods.train(cfg, log=lambda *_: None)
    submission.predict(cfg, log=lambda *_: None)
    return cfg


@pytest.fixture(scope="module")
def cnn_page(fetched, tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn")
    cfg = _trained(root, "demo", {**TINY_CNN, "run": "tinycnn"}, fetched)
    clean = root / "reports" / "clean"
    clean.mkdir(parents=True)
    _write_png(clean / "contact_sheet.png")
    (clean / "report.csv").write_text("path,reason\na.jpg,duplicate\n")
    return report.build(report.find_run(None, cfg.runs_dir), root / "reports", log=lambda *_: None)


@pytest.fixture(scope="module")
def features_page(fetched, tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    cfg = _trained(root, "cpu", {**TINY_FEATURES, "run": "tinyfeat"}, fetched)
    return report.build(report.find_run("tinyfeat", cfg.runs_dir), root / "reports", log=lambda *_: None)


def _write_png(path: Path) -> None:
    import cv2

    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8))


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def _links(page: Path) -> list[str]:
    parser = _Links()
    parser.feed(page.read_text())
    return parser.links


class _Tables(HTMLParser):
    """Every table of the page as {first cell of a row: the row's other cells}, and the page's paragraphs."""

    def __init__(self):
        super().__init__()
        self.tables, self.paragraphs, self._row, self._cell = [], [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "p":
            self.paragraphs.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self.tables[-1][self._row[0]] = self._row[1:]
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        elif self.paragraphs:
            self.paragraphs[-1] += data


def _page_numbers(page: Path) -> _Tables:
    parser = _Tables()
    parser.feed(page.read_text())
    return parser


def _table_with(parsed: _Tables, header: str) -> dict[str, list[str]]:
    """The rows, less the header, of the table whose first column is headed `header`."""
    table = next(table for table in parsed.tables if header in table)
    return {label: cells for label, cells in table.items() if label != header}


def _run_files(page: Path) -> tuple[dict, dict]:
    """metrics.json and the submission's sidecar of the run a fixture's page shows."""
    root, name = page.parents[2], page.parent.name
    return (json.loads((root / "runs" / name / "metrics.json").read_text()),
            json.loads((root / "subs" / f"{name}.json").read_text()))


def _assert_page_matches_metrics(page: Path, kind: str) -> None:
    """The summary's and the calibration table's log losses, and the scores table, are metrics.json's (one
    schema for every method: `kind` is what its scored_on says in words)."""
    parsed = _page_numbers(page)
    metrics, sidecar = _run_files(page)
    raw, fixed, chosen = metrics["log_loss_raw"], metrics["log_loss_fixed_clip"], metrics["log_loss_chosen_clip"]
    summary = re.search(r"log loss (\d\.\d+) at the submission's clip .*, on (\d+) images", parsed.paragraphs[0])
    assert float(summary.group(1)) == pytest.approx(sidecar["local_log_loss"], abs=5e-5)
    assert int(summary.group(2)) == metrics["n_held_out"]
    calibration = _table_with(parsed, f"log loss on {kind} predictions")
    losses = {label.split(" ")[0]: float(cells[0]) for label, cells in calibration.items()}
    assert losses["raw"] == pytest.approx(raw, abs=5e-5) and losses["fixed"] == pytest.approx(fixed, abs=5e-5)
    assert losses["chosen"] == pytest.approx(chosen, abs=5e-5)
    scores = _table_with(parsed, "metrics.json")
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("models", "stages"):
            assert float(scores[key][0]) == pytest.approx(value, rel=1e-4), key


def _check_png(path: Path) -> None:
    import cv2

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000, path
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.std() > 1, f"{path} is blank or does not decode"


@pytest.mark.parametrize("which", ["cnn_page", "features_page"])
def test_page_links_only_to_existing_valid_files(which, request):
    page = request.getfixturevalue(which)
    links = _links(page)
    assert links, "the page shows something"
    for link in links:
        assert "://" not in link and not link.startswith("//"), f"{link}: the page must work offline"
        target = (page.parent / link).resolve()
        assert target.is_file(), f"{link} does not exist"
        if target.suffix == ".png":
            _check_png(target)
    for png in page.parent.glob("*.png"):
        _check_png(png)
        assert png.name in links, f"{png.name} is written but not shown"
    assert not [p for p in page.parent.parent.iterdir() if p.name.startswith(".")], "no partial build left behind"


def test_cnn_page_has_every_section_and_the_runs_numbers(cnn_page):
    text = cnn_page.read_text()
    pngs = {p.name for p in cnn_page.parent.glob("*.png")}
    assert {"curves-model.png", "calibration.png", "mistakes.png", "uncertain.png", "gradcam.png",
            "activations.png", "filters.png"} <= pngs
    assert "../clean/contact_sheet.png" in _links(cnn_page) and "(1 rows)" in text
    assert "2 unreadable test files" in text      # the fixture plants two
    # a cnn run chooses its clip on its validation split, as the others do on their out-of-fold predictions
    _assert_page_matches_metrics(cnn_page, "validation")


def test_features_page_has_no_curves_and_the_runs_numbers(features_page):
    assert not list(features_page.parent.glob("curves*.png")), "a features run has no training epochs"
    # the maps come from a regression on the run's backbone, not from its heads: the page must say so
    assert "logistic regression on tiny@32" in features_page.read_text() and "stand-in" in features_page.read_text()
    metrics, _ = _run_files(features_page)
    _assert_page_matches_metrics(features_page, "out-of-fold")
    parsed = _page_numbers(features_page)
    models = _table_with(parsed, "model")
    assert set(models) == set(metrics["models"])
    for name, row in metrics["models"].items():
        loss, accuracy, weight = (float(cell) for cell in models[name][:3])
        assert loss == pytest.approx(row["log_loss"], abs=5e-5)
        assert accuracy == pytest.approx(row["accuracy"], abs=5e-5)
        assert weight == pytest.approx(metrics["blend_weights"][name], abs=5e-4)
    timings = _table_with(parsed, "stage")
    assert list(timings) == [row["stage"] for row in metrics["stages"]]
    for row in metrics["stages"]:
        assert [float(cell) for cell in timings[row["stage"]]] == [row["seconds"], row["peak_rss_mb"]]


def test_find_run_refuses_unfinished_and_reserved_names(tmp_path):
    with pytest.raises(KitError, match="no finished run"):
        report.find_run(None, tmp_path)
    (tmp_path / "half").mkdir()
    with pytest.raises(KitError, match="not finished"):
        report.find_run("half", tmp_path)
    result = run_kit("report", "half", "--runs-dir", tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_histories_of_a_finetune_run_join_the_phases(tmp_path):
    from kit import plots

    fold = tmp_path / "tiny@32" / "fold0"
    fold.mkdir(parents=True)
    row = "epoch,accuracy,loss,val_accuracy,val_loss\n"
    (fold / "history-warmup.csv").write_text(row + "0,0.6,0.7,0.6,0.68\n")
    (fold / "history-finetune.csv").write_text(row + "0,0.7,0.6,0.7,0.6\n1,0.8,0.5,0.75,0.55\n")
    (tmp_path / "tiny@32" / "fold1").mkdir()            # a fold that has not started: left out
    histories = report.training_histories(tmp_path)
    assert [(model, [name for name, _ in folds]) for model, folds in histories] == [("tiny@32", ["fold0"])]
    frame, starts = plots.read_history(histories[0][1][0][1])
    assert frame["step"].tolist() == [1, 2, 3] and starts == [2]
    _check_png(plots.curves([("fold0", frame, starts)], tmp_path / "c.png"))


# --------------------------------------------------------------------------- Grad-CAM and activations


@pytest.mark.parametrize("name,size", [("tiny", 32), ("squeezenet", 64)])
def test_gradcam_and_activations_on_backbones(name, size):
    from kit.models import backbones
    from kit.report import gradcam

    net = backbones.build(name, weights=None, input_size=size)
    rng = np.random.default_rng(0)
    batch = backbones.preprocess(name, rng.integers(0, 256, (2, size, size, 3)))
    direction = (rng.normal(size=net.output.shape[-1]), 0.0)
    for cam in (gradcam.gradcam(net, batch), gradcam.gradcam(net, batch, direction=direction, target="w")):
        assert cam.heat.shape == (2, size, size)
        assert cam.heat.min() >= 0 and cam.heat.max() <= 1 and cam.heat.std() > 0.01
        assert cam.layer == {"tiny": "conv3", "squeezenet": "fire9_concat"}[name]
    assert cam.target == "w"
    layer = gradcam.default_activation_layer(net)
    maps = gradcam.activations(net, batch[:1], layer.name)
    assert maps.ndim == 4 and maps.shape[-1] == layer.filters
    kernel_name, kernel = gradcam.first_conv_kernel(net)
    assert kernel_name == "conv1" and kernel.shape[:3] == (3, 3, 3)
    with pytest.raises(KitError, match="no layer 'nope'"):
        gradcam.activations(net, batch, "nope")


def test_gradcam_explains_the_cnn_logit_towards_the_chosen_class(cnn_page):
    from kit.report import gradcam
    from kit.tfquiet import import_keras

    keras = import_keras()
    model = keras.models.load_model(Path(cnn_page).parents[2] / "runs" / "tinycnn" / "model.keras")
    batch = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    dog = gradcam.gradcam(model, batch, sides=[1, 1])
    cat = gradcam.gradcam(model, batch, sides=[-1, -1])
    assert dog.layer == gradcam.conv_layers(model)[-1].name
    assert "logit of probabilities" in dog.target
    assert dog.heat.shape == (2, 32, 32) and not np.allclose(dog.heat, cat.heat)


# --------------------------------------------------------------------------- curves while training


def test_watch_curves_redraws_after_every_epoch(tmp_path):
    from kit import plots
    from kit.tfquiet import import_keras

    keras = import_keras()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(32, 4))
    y = (x[:, 0] > 0).astype(float)
    picture = tmp_path / "curves.png"
    drawn = []

    class Snapshot(keras.callbacks.Callback):   # after the redraw: what the file holds as each epoch ends
        def on_epoch_end(self, epoch, logs=None):
            drawn.append(picture.read_bytes() if picture.is_file() else None)

    csv = tmp_path / "history.csv"
    model.fit(x, y, validation_split=0.25, epochs=3, verbose=0,
              callbacks=[keras.callbacks.CSVLogger(str(csv)), plots.redraw_curves_callback(csv, picture), Snapshot()])
    assert len(pd.read_csv(csv)) == 3
    assert drawn[0] is not None, "the picture exists after the first epoch"
    assert all(b is not None and b != a for a, b in zip(drawn, drawn[1:])), "the picture changed after every epoch"
    _check_png(picture)
    csv.write_text("a,b\n1,2,3,4\n")   # a log that does not parse must not stop training
    plots.redraw_curves_callback(csv, tmp_path / "curves.png").on_epoch_end(0)

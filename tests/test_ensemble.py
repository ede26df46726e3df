"""Generators, the feature cache, K-fold heads, blending and clip choice, and a features run end to end."""

import json

import numpy as np
import pandas as pd
import pytest

from kit import config, methods, score
from kit.data import generators
from kit.fetch import read_index
from kit.models import features, heads
from kit.predict import blend, submission
from kit.run import rundir


def _paths(fetched, n=12):
    index = read_index(fetched, "train")
    return index["path"].tolist()[:n], index["label"].to_numpy()[:n]


# --------------------------------------------------------------------------- generators

def test_batches_give_every_size_from_one_decode(fetched):
    paths, labels = _paths(fetched, 10)
    batches = generators.ImageBatches(paths, labels, sizes=(48, 32), batch_size=4,
                                      preprocess=(lambda b: b / 255.0, lambda b: b - 1.0))
    inputs, y, kept = batches[0]
    assert [a.shape for a in inputs] == [(4, 48, 48, 3), (4, 32, 32, 3)]
    assert inputs[0].max() <= 1.0 and inputs[1].min() >= -1.0
    assert y.tolist() == labels[:4].tolist() and kept.tolist() == [0, 1, 2, 3]
    assert len(batches) == 3


def test_unusable_files_leave_the_batch_and_are_recorded(fetched):
    index = read_index(fetched, "train")
    bad = index[index["id"].isin(["cat.90001", "dog.90002"])]["path"].tolist()
    good = index["path"].tolist()[:2]
    batches = generators.ImageBatches(good + bad, sizes=(32,), batch_size=4)
    inputs, _, kept = batches[0]
    assert kept.tolist() == [0, 1] and inputs[0].shape[0] == 2
    assert sorted(s.reason for s in batches.skips.values()) == ["empty-file", "truncated"]


def test_shuffle_and_augmentation_are_seeded(fetched):
    paths, labels = _paths(fetched, 8)
    make = lambda seed: generators.ImageBatches(paths, labels, sizes=(32,), batch_size=8, shuffle=True,
                                                seed=seed, augment_with=generators.Augment())
    a, b, c = make(3), make(3), make(4)
    (xa,), _, ka = a[0]
    (xb,), _, kb = b[0]
    (xc,), _, kc = c[0]
    assert ka.tolist() == kb.tolist() and np.array_equal(xa, xb)
    assert ka.tolist() != kc.tolist()
    a.on_epoch_end()
    (xa2,), _, ka2 = a[0]
    assert ka2.tolist() != ka.tolist(), "a new epoch reshuffles"
    plain = generators.ImageBatches(paths, labels, sizes=(32,), batch_size=8)
    (xp,), _, _ = plain[0]
    assert not np.array_equal(np.sort(xa.ravel()), np.sort(xp.ravel())), "augmentation changed pixels"


def test_augment_keeps_shape_and_range():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    out = generators.augment(image, rng, generators.Augment())
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)
    off = generators.Augment(flip=False, rotation=0, shift=0, shear=0, zoom=0, brightness=0,
                             contrast=0, saturation=0, gamma=0, noise=0)
    assert np.abs(generators.augment(image, rng, off).astype(int) - image).max() <= 1


# --------------------------------------------------------------------------- feature cache

TINY = features.Extractor("tiny", 32, weights=None)


def test_cache_computes_once_and_only_what_changed(fetched, tmp_path):
    import shutil

    paths, _ = _paths(fetched, 11)
    spare, paths = paths[-1], paths[:10]
    copies = []
    for p in paths:
        copies.append(str(tmp_path / "img" / p.split("/")[-1]))
        (tmp_path / "img").mkdir(exist_ok=True)
        shutil.copy(p, copies[-1])
    # weights=None builds new random weights each time: a cache hit must return the first result.
    first = features.extract(copies, TINY, tmp_path / "cache", batch_size=4, log=lambda *_: None)
    assert first.computed == 10 and first.ok.all() and first.features.shape[:2] == (10, 2)
    again = features.extract(copies, TINY, tmp_path / "cache", batch_size=4, log=lambda *_: None)
    assert again.computed == 0 and np.array_equal(again.features, first.features)
    shutil.copy(spare, copies[0])    # image 0 now holds a picture the cache has never seen
    changed = features.extract(copies, TINY, tmp_path / "cache", batch_size=4, log=lambda *_: None)
    assert changed.computed == 1
    assert np.array_equal(changed.features[1:], first.features[1:])
    other_size = features.extract(copies, features.Extractor("tiny", 40, weights=None), tmp_path / "cache",
                                  batch_size=4, log=lambda *_: None)
    assert other_size.computed == 10


def test_interrupted_extraction_resumes_after_the_last_part(fetched, tmp_path, monkeypatch):
    paths, _ = _paths(fetched, 10)
    monkeypatch.setattr(features, "PART_ROWS", 4)
    real_write = features.write_part
    calls = []

    def write_then_die(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_write(*args)

    monkeypatch.setattr(features, "write_part", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        features.extract(paths, TINY, tmp_path / "cache", batch_size=2, log=lambda *_: None)
    monkeypatch.setattr(features, "write_part", real_write)
    resumed = features.extract(paths, TINY, tmp_path / "cache", batch_size=2, log=lambda *_: None)
    assert resumed.computed == 6 and resumed.ok.all()


def test_flip_view_features_differ_from_original(fetched, tmp_path):
    paths, _ = _paths(fetched, 4)
    feats = features.extract(paths, TINY, tmp_path / "cache", batch_size=4, log=lambda *_: None)
    assert not np.allclose(feats.features[:, 0], feats.features[:, 1])


def test_finetune_predictions_average_the_config_s_views(fetched):
    """A network that answers a picture and its mirror in opposite ways: averaged over orig and flip it says
    0.5 everywhere; with the orig view alone it does not."""
    from kit.methods import finetune
    from kit.tfquiet import import_keras

    keras = import_keras()
    inputs = keras.Input((32, 32, 3))
    left_minus_right = keras.layers.Lambda(lambda x: keras.ops.sigmoid(
        10 * (keras.ops.mean(x[:, :, :16], axis=(1, 2, 3)) - keras.ops.mean(x[:, :, 16:], axis=(1, 2, 3))))[:, None])
    model = keras.Model(inputs, left_minus_right(inputs))
    frame = read_index(fetched, "train").head(6)
    cfg = config.Config(method="finetune", backbones="tiny@32", weights="none", batch_size=4)
    probs = {}
    for views in ("orig,flip", "orig"):
        extractors = config.Config(**{**cfg.to_dict(), "views": views}).extractors()
        probs[views], ok = finetune.predict_tta(model, extractors, frame, cfg, 2)
        assert ok.all()
    assert np.allclose(probs["orig,flip"], 0.5, atol=1e-6)
    assert np.abs(probs["orig"] - 0.5).max() > 1e-3


def test_views_mirror_and_zoom_into_the_centre():
    batch = np.full((2, 20, 20, 3), 100.0, np.float32)
    batch[:, 2:18, 2:18] = np.random.default_rng(0).random((2, 16, 16, 3))   # the central 80% of the side
    assert np.array_equal(generators.view_of(batch, "orig"), batch)
    assert np.array_equal(generators.view_of(batch, "flip"), batch[:, :, ::-1])
    zoom = generators.view_of(batch, "zoom")
    assert zoom.shape == batch.shape and zoom.max() < 1.0      # no border pixel survives the zoom
    assert zoom.mean() == pytest.approx(batch[:, 2:18, 2:18].mean(), abs=0.02)   # the centre, stretched
    assert np.array_equal(generators.view_of(batch, "zoom-flip"), zoom[:, :, ::-1])
    parsed = config.Config(views=" orig, flip,zoom ,zoom-flip,", backbones="tiny@32").extractors()[0].views
    assert parsed == ("orig", "flip", "zoom", "zoom-flip")
    with pytest.raises(config.KitError, match="views 'rotate' is not one of: orig, flip, zoom, zoom-flip"):
        config.Config(views="orig,rotate")


# --------------------------------------------------------------------------- heads, blend, clip

def _separable(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2, d)) + (y[:, None, None] * 2.0 - 1.0) * 0.8
    x = features.image_vectors([x.astype(np.float32)])
    return x, y, x[:20]


def test_image_vectors_average_views_and_normalise_each_block():
    a = np.abs(np.random.default_rng(0).normal(size=(5, 2, 4))).astype(np.float32)
    b = 100 * a[:, :, :3]
    x = features.image_vectors([a, b])
    assert x.shape == (5, 7)
    assert np.allclose(np.linalg.norm(x[:, :4], axis=1), 1) and np.allclose(np.linalg.norm(x[:, 4:], axis=1), 1)
    assert np.allclose(x[:, :4], np.sqrt(a.mean(1)) / np.linalg.norm(np.sqrt(a.mean(1)), axis=1, keepdims=True))


@pytest.mark.parametrize("name", sorted(heads.HEADS))
def test_heads_give_oof_for_every_image(name):
    x, y, x_test = _separable()
    # Few rows make few optimiser steps: a higher learning rate lets the small test converge.
    kwargs = {"epochs": 15, "learning_rate": 0.03} if name == "dense" else {}
    result = heads.HEADS[name](x, y, x_test, k=4, seed=0, log=lambda *_: None, **kwargs)
    assert result.oof.shape == (120,) and result.test.shape == (20,)
    assert 0 < result.oof_log_loss < 0.45
    assert score.log_loss(y, result.oof) == pytest.approx(result.oof_log_loss)


def test_folds_split_images_stratified():
    y = np.array([0, 1] * 20)
    seen = np.concatenate([val for _, val in heads.folds(y, 5, seed=0)])
    assert sorted(seen.tolist()) == list(range(40))
    with pytest.raises(config.KitError, match="at least 5 images of each class"):
        heads.folds(np.array([0, 0, 0, 1, 1, 1]), 5, seed=0)


def test_blend_prefers_the_better_model():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    good = np.clip(y * 0.8 + 0.1 + rng.normal(0, 0.05, 500), 0.01, 0.99)
    noise = rng.uniform(0.01, 0.99, 500)
    w = blend.blend_weights(np.stack([noise, good], axis=1), y)
    assert w[1] > 0.9
    blended = score.log_loss(y, np.stack([noise, good], axis=1) @ w)
    for share in np.linspace(0, 1, 21):   # the weights minimise the blend's loss: no mix of the two does better
        assert blended <= score.log_loss(y, share * good + (1 - share) * noise) + 1e-6


def test_clip_choice_tracks_the_error_rate():
    y = np.array([1] * 980 + [0] * 20)          # 2% of the confident answers are wrong
    p = np.full(1000, 0.9999)
    (low, high), loss = blend.choose_clip(p, y)
    assert 0.01 <= low <= 0.03 and high == 1 - low
    assert loss < score.log_loss(y, score.clip(p, *blend.fixed_clip(config.Config())))


# --------------------------------------------------------------------------- a features run end to end

def _assert_blend_is_the_recorded_one(oof: pd.DataFrame, metrics: dict) -> None:
    """oof.csv's blend is its model columns weighted as metrics.json says, scores what metrics.json says, and
    is no worse than any one model alone (the weights are fitted on these predictions)."""
    weights = metrics["blend_weights"]
    np.testing.assert_allclose(oof["blend"], sum(w * oof[name] for name, w in weights.items()), rtol=1e-9)
    assert metrics["log_loss_raw"] == pytest.approx(score.log_loss(oof["label"], oof["blend"]))
    alone = {name: score.log_loss(oof["label"], oof[name]) for name in weights}
    assert metrics["log_loss_raw"] <= min(alone.values()) + 1e-4, (metrics["log_loss_raw"], alone)


def test_features_run_writes_oof_and_submission_with_chosen_clip(fetched, tmp_path):
    cfg = config.resolve("cpu", {"backbones": "tiny@32", "weights": "none", "heads": "logreg,dense", "folds": 3,
                                 "head_epochs": 5, "data_dir": str(fetched), "runs_dir": str(tmp_path / "runs"),
                                 "submissions_dir": str(tmp_path / "subs"), "cache_dir": str(tmp_path / "cache")})
    messages = []
    metrics = methods.train(cfg, log=messages.append)
    oof = pd.read_csv(rundir.run_dir(cfg) / "oof.csv")
    assert len(oof) == metrics["n_train"] == metrics["n_held_out"] == 87 - 4
    assert set(oof.columns) == {"id", "label", "logreg", "dense", "blend"} and metrics["scored_on"] == "oof"
    _assert_blend_is_the_recorded_one(oof, metrics)
    assert [r["stage"] for r in metrics["stages"]][-1] == "blend"
    assert any("6 train and test images skipped" in m for m in messages)   # 4 unusable train + 2 test
    path = submission.predict(cfg, log=lambda *_: None)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["local_score_kind"] == "oof"
    assert sidecar["clip"] == metrics["clip_chosen"]
    assert sidecar["local_log_loss"] == pytest.approx(metrics["log_loss_chosen_clip"])
    sub = pd.read_csv(path)
    assert len(sub) == 24 and sub["label"].between(*metrics["clip_chosen"]).all()


# --------------------------------------------------------------------------- end to end: frozen and fine-tuned

@pytest.mark.slow
@pytest.mark.parametrize("method", ["frozen", "finetune"])
def test_end_to_end_methods_give_oof_and_resume(fetched, tmp_path, method, monkeypatch):
    from kit.methods import finetune

    overrides = {"method": method, "backbones": "tiny@32,tiny@40", "weights": "none", "folds": 2, "epochs": 2,
                 "warmup_epochs": 1, "unfreeze": 0.5, "batch_size": 16, "data_dir": str(fetched),
                 "runs_dir": str(tmp_path / "runs"), "submissions_dir": str(tmp_path / "subs"),
                 "pixel_cache_dir": str(tmp_path / "pixels")}
    cfg = config.resolve("cpu", overrides)
    calls = []
    real = finetune.train_fold

    def die_on_second_fold(name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    monkeypatch.setattr(finetune, "train_fold", die_on_second_fold)
    with pytest.raises(KeyboardInterrupt):
        methods.train(cfg, log=lambda *_: None)
    assert not rundir.is_finished(cfg)
    finished_fold = next(rundir.run_dir(cfg).rglob("predictions.npz"))
    stamp = finished_fold.stat().st_mtime_ns

    monkeypatch.setattr(finetune, "train_fold", real)
    metrics = methods.train(cfg, log=lambda *_: None)
    assert finished_fold.stat().st_mtime_ns == stamp, "the finished fold was reused, not retrained"
    expected_models = 2 if method == "finetune" else 1
    assert len(metrics["models"]) == expected_models
    oof = pd.read_csv(rundir.run_dir(cfg) / "oof.csv")
    assert len(oof) == 83 and oof["id"].is_unique
    _assert_blend_is_the_recorded_one(oof, metrics)
    history = pd.read_csv(next(rundir.run_dir(cfg).rglob("history-warmup.csv")))
    assert {"loss", "val_loss"} <= set(history.columns)
    if method == "finetune":
        assert list(rundir.run_dir(cfg).rglob("history-finetune.csv"))
    path = submission.predict(cfg, log=lambda *_: None)
    assert len(pd.read_csv(path)) == 24

"""Every cleaning check on a synthetic competition with planted anomalies, and a clean image left alone."""

import zipfile

import numpy as np
import pandas as pd
import pytest

from kit import clean, config, fetch
from kit.data import synthetic
from kit.errors import KitError


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The synthetic competition plus: a dog picture labelled cat, a twin with the other label,
    a train picture that is also in test, and a name from the published lists."""
    root = tmp_path_factory.mktemp("clean")
    competition = synthetic.make_competition(root / "src", n_train=120, n_test=10, seed=7)
    rng = np.random.default_rng(11)
    dog_as_cat = synthetic.encode_jpeg(synthetic.draw_image(rng, 1))
    twin = synthetic.encode_jpeg(synthetic.draw_image(rng, 0))
    leaked = synthetic.encode_jpeg(synthetic.draw_image(rng, 1))
    with zipfile.ZipFile(competition / "train.zip", "a") as zf:
        zf.writestr("train/cat.70001.jpg", dog_as_cat)
        zf.writestr("train/cat.70002.jpg", twin)
        zf.writestr("train/dog.70002.jpg", twin)
        zf.writestr("train/dog.70003.jpg", leaked)
        zf.writestr("train/cat.4085.jpg", synthetic.encode_jpeg(synthetic.draw_image(rng, 0)))  # on a public list
    with zipfile.ZipFile(competition / "test.zip", "a") as zf:
        zf.writestr("test/11.jpg", leaked)
    sample = pd.read_csv(competition / "sample_submission.csv")
    pd.concat([sample, pd.DataFrame({"id": [11], "label": [0.5]})]).to_csv(competition / "sample_submission.csv", index=False)
    data = fetch.fetch_from(competition, root / "data", log=lambda *_: None)
    cfg = config.resolve("cpu", {"backbones": "tiny@32", "weights": "none", "folds": 3, "data_dir": str(data),
                                 "cache_dir": str(root / "cache"), "runs_dir": str(root / "runs")})
    return cfg, root


def _reasons(flags):
    return {(f.file, f.reason.split(":")[0]) for f in flags}


def test_files_check_names_each_bad_file(planted):
    cfg, _ = planted
    index = fetch.read_index(cfg.data_dir, "train")
    found = _reasons(clean.check_files(index))
    assert found == {("cat.90001", "empty-file"), ("dog.90002", "truncated"), ("dog.90006", "too-small"),
                     ("cat.90007", "not-an-image")}


def test_known_lists(planted):
    cfg, _ = planted
    flags = clean.check_known(fetch.read_index(cfg.data_dir, "train"))
    assert [(f.file, f.reason, f.score) for f in flags] == [("cat.4085", "known:mislabelled+seed004", 2.0)]
    with pytest.raises(KitError, match="unknown anomaly list 'mine'"):
        clean.check_known(fetch.read_index(cfg.data_dir, "train"), ("mine",))


def test_duplicates_conflicting_labels_and_test_leak(planted):
    cfg, _ = planted
    flags = clean.check_duplicates(fetch.read_index(cfg.data_dir, "train"), fetch.read_index(cfg.data_dir, "test"))
    assert {(f.file, f.reason, f.action) for f in flags} == {
        ("cat.70002", "duplicate-conflict:dog.70002", "exclude"),
        ("dog.70002", "duplicate-conflict:cat.70002", "exclude"),
        ("dog.70003", "duplicate-of-test:11", "review"),
    }


def test_imagenet_check_with_planted_scores(planted):
    cfg, _ = planted
    index = fetch.read_index(cfg.data_dir, "train").head(6).copy()
    index["label"] = [1, 1, 0, 0, 1, 0]
    probs = np.full((6, 1000), 1e-4)
    probs[0, 200] = probs[2, 282] = probs[4, 155] = probs[5, 284] = 0.9   # in-class top-1
    probs[1, 900:1000] = np.linspace(0.02, 0.05, 100)                          # a dog whose top-60 holds no dog
    probs[3, 286] = 0.9                                                        # a "cat" that looks like a cougar
    flags = clean.check_imagenet(index, {"a": probs, "b": probs})
    assert [f.file for f in flags] == [index["id"][1], index["id"][3]]
    assert all(f.reason == "imagenet" and f.score == 1.0 for f in flags)
    assert clean.check_imagenet(index, {"a": probs}, big_cats=True)[-1].file == index["id"][1]
    # A majority of the voters must agree: one of three is not enough.
    agreeable = probs.copy()
    agreeable[1, 160] = agreeable[3, 281] = 0.95
    assert clean.check_imagenet(index, {"a": probs, "b": agreeable, "c": agreeable}) == []
    assert [f.score for f in clean.check_imagenet(index, {"a": probs, "b": probs, "c": agreeable})] == [2 / 3, 2 / 3]


def test_imagenet_probs_from_cached_features_match_the_classifier(planted, tmp_path):
    """For a top that is a Dense layer on pooled features, the cache path gives the full classifier's softmax."""
    from kit.data import generators
    from kit.models import backbones, features

    cfg, _ = planted
    cfg = config.Config(**{**cfg.to_dict(), "cache_dir": str(tmp_path), "backbones": "efficientnet_lite0@64",
                           "weights": "imagenet", "views": "orig"})
    index = fetch.read_index(cfg.data_dir, "train")
    unreadable = {f.file for f in clean.check_files(index)}
    index = index[~index["id"].isin(unreadable)].head(4)
    (voter,) = clean.imagenet_voters(cfg)
    assert voter == features.Extractor("efficientnet_lite0", 64, "imagenet", (), ("orig",))
    probs = clean.imagenet_probs(index, voter, cfg, log=lambda *_: None)
    model = backbones.build("efficientnet_lite0", input_size=64, include_top=True)
    pixels = np.stack([generators.decode_sizes(p, (64,))[64] for p in index["path"]])
    expected = model.predict(backbones.preprocess("efficientnet_lite0", pixels), verbose=0)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_imagenet_check_does_not_apply_with_random_weights(planted):
    cfg, root = planted
    summary = clean.run_clean(cfg, checks=("imagenet",), report_dir=root / "r-imagenet", log=lambda *_: None)
    assert summary["ran"] == [] and "weights=none" in summary["not_applicable"]["imagenet"]
    assert clean.imagenet_voters(cfg, ("efficientnet_lite2@300", "efficientnet_lite1"))[1].size == 240


def test_label_noise_ranks_the_relabelled_image_first(planted, tmp_path):
    from kit.tfquiet import import_keras

    cfg, _ = planted
    cfg = config.Config(**{**cfg.to_dict(), "cache_dir": str(tmp_path)})
    import_keras().utils.set_random_seed(0)   # the tiny backbone's weights are random: pin them
    index = fetch.read_index(cfg.data_dir, "train")
    oof = clean.oof_from_features(index, cfg, log=lambda *_: None)
    flags = clean.check_label_noise(oof, threshold=1.0, top=3)
    assert "cat.70001" in [f.file for f in flags], [f.file for f in flags]
    assert all(f.reason == "label-noise" for f in flags)
    assert flags == sorted(flags, key=lambda f: f.score)


def test_label_noise_threshold():
    oof = pd.DataFrame({"id": ["a", "b", "c"], "label": [1, 0, 1], "blend": [0.01, 0.5, 0.99]})
    assert [(f.file, round(f.score, 2)) for f in clean.check_label_noise(oof, 0.05)] == [("a", 0.01)]


def test_clean_command_writes_report_sheet_exclusions_and_training_honours_them(planted):
    cfg, root = planted
    summary = clean.run_clean(cfg, checks=("files", "known", "duplicates"), report_dir=root / "report",
                              log=lambda *_: None)
    report = pd.read_csv(summary["report"])
    assert list(report.columns) == ["file", "label", "reason", "score", "action"]
    excluded = set(pd.read_csv(summary["exclusions"])["id"])
    assert excluded == {"cat.90001", "dog.90002", "dog.90006", "cat.90007", "cat.4085", "cat.70002", "dog.70002"}
    assert "cat.0" not in set(report["file"]), "a clean image is not flagged"
    sheet = __import__("cv2").imread(summary["contact_sheet"])
    assert sheet is not None and sheet.std() > 0
    messages = []
    from kit.data import dataset

    kept = dataset.training_index(cfg, log=messages.append)
    assert not excluded & set(kept["id"]) and len(kept) == 120 + 7 + 5 - 7
    assert any("excluded 7 training images" in m for m in messages)
    everything = dataset.training_index(config.Config(**{**cfg.to_dict(), "use_exclusions": False}))
    assert len(everything) == 120 + 7 + 5


def test_rebalance_keeps_class_counts(planted, tmp_path):
    cfg, root = planted
    index = fetch.read_index(cfg.data_dir, "train")
    excluded = ["cat.4085", "cat.70002", "dog.70002"]
    additions = pd.read_csv(clean.rebalance(index, excluded, tmp_path, seed=0))
    assert sorted(additions["label"]) == [0, 0, 1]
    assert all(__import__("os").path.getsize(p) > 0 for p in additions["path"])


def test_unknown_check_is_refused(planted):
    cfg, root = planted
    with pytest.raises(KitError, match="unknown check 'eyes'"):
        clean.run_clean(cfg, checks=("eyes",), report_dir=root / "r2")


def _own_data_dir(cfg, tmp_path):
    """The planted data in a folder of this test's own, so its exclusions touch no other test."""
    import shutil

    shutil.copytree(cfg.data_dir, tmp_path / "data")
    for name in (clean.EXCLUSIONS, clean.ADDITIONS):   # what earlier tests of the module wrote
        (tmp_path / "data" / name).unlink(missing_ok=True)
    return config.Config(**{**cfg.to_dict(), "data_dir": str(tmp_path / "data")})


@pytest.mark.bad_input
@pytest.mark.parametrize("options, message", [
    ({"known_lists": ("seed004", "seed04")}, "the known check cannot run: unknown anomaly list 'seed04'"),
    ({"checks": ("files", "label-noise"), "noise_run": "nope"}, "the label-noise check cannot run: --noise-run nope"),
    ({"checks": ("imagenet",), "imagenet_backbones": ("resnet5",)}, "the imagenet check cannot run: unknown backbone"),
])
def test_a_check_that_cannot_run_is_an_error_and_the_exclusions_stay(planted, tmp_path, options, message):
    cfg = _own_data_dir(planted[0], tmp_path)
    clean.run_clean(cfg, checks=("files",), report_dir=tmp_path / "first", log=lambda *_: None)
    before = (tmp_path / "data" / clean.EXCLUSIONS).read_bytes()
    with pytest.raises(KitError, match=message) as caught:
        clean.run_clean(cfg, **{"checks": ("files", "known"), **options}, report_dir=tmp_path / "second",
                        log=lambda *_: None)
    assert "\n" not in str(caught.value) and "is as it was" in str(caught.value)
    assert (tmp_path / "data" / clean.EXCLUSIONS).read_bytes() == before
    assert not (tmp_path / "second").exists()


@pytest.mark.bad_input
def test_clean_command_exits_non_zero_with_one_line(planted, tmp_path):
    from conftest import run_kit

    cfg = _own_data_dir(planted[0], tmp_path)
    result = run_kit("clean", "--checks", "files,known", "--known-lists", "seed004,typo", "--set",
                     f"data_dir={cfg.data_dir}", "--report-dir", tmp_path / "report", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "the known check cannot run: unknown anomaly list 'typo'" in result.stderr
    assert not (tmp_path / "data" / clean.EXCLUSIONS).exists()


def test_an_imagenet_check_without_a_top_does_not_apply_and_is_not_counted(planted, tmp_path):
    cfg = _own_data_dir(planted[0], tmp_path)
    messages = []
    with_weights = config.Config(**{**cfg.to_dict(), "weights": "imagenet"})
    summary = clean.run_clean(with_weights, checks=("files", "imagenet"), imagenet_backbones=("tiny",),
                              report_dir=tmp_path / "report", log=messages.append)
    assert summary["ran"] == ["files"]
    assert summary["not_applicable"] == {"imagenet": "tiny has no 1000-class ImageNet top"}
    assert "clean: imagenet: does not apply (tiny has no 1000-class ImageNet top); not run" in messages
    assert "clean: ran 1 check(s): files; not applicable: imagenet" in messages
    assert set(pd.read_csv(summary["exclusions"])["id"]) == {"cat.90001", "dog.90002", "dog.90006", "cat.90007"}
    random = clean.run_clean(cfg, checks=("imagenet",), imagenet_backbones=("tiny",), report_dir=tmp_path / "r2",
                             log=lambda *_: None)
    assert random["ran"] == [] and "weights=none" in random["not_applicable"]["imagenet"]


def test_on_another_competition_the_checks_for_any_classes_run_and_the_redux_ones_do_not_apply(tmp_path):
    from kit.data import synthetic_layouts

    slug = "dog-breed-identification"   # four breeds in a labels CSV
    source = synthetic_layouts.make(tmp_path / "src", slug, n_train=48, n_test=6, seed=2)
    data = fetch.fetch_from(source, tmp_path / "data", log=lambda *_: None, competition=slug)
    cfg = config.resolve("cpu", {"competition": slug, "backbones": "tiny@32", "weights": "none", "folds": 3,
                                 "data_dir": str(data), "cache_dir": str(tmp_path / "cache"),
                                 "runs_dir": str(tmp_path / "runs")})
    messages = []
    summary = clean.run_clean(cfg, report_dir=tmp_path / "report", log=messages.append, noise_threshold=1.0)
    assert summary["ran"] == ["files", "label-noise", "duplicates"]
    assert set(summary["not_applicable"]) == {"known", "imagenet"}
    # With the threshold at 1, every image is flagged with the probability OOF gives its own breed.
    report = pd.read_csv(tmp_path / "report" / "report.csv")
    noise = report[report["reason"] == "label-noise"]
    assert len(noise) == 48 and noise["score"].between(0, 1).all()

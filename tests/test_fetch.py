"""fetch --from: safe, idempotent, atomic extraction and the index."""

import os
import shutil
import zipfile

import pandas as pd
import pytest

from kit import fetch
from kit.data import synthetic
from kit.errors import KitError

quiet = dict(log=lambda *_: None)


def test_index_lists_every_file_with_labels(competition, fetched):
    train = pd.read_csv(fetched / "index" / "train.csv")
    test = pd.read_csv(fetched / "index" / "test.csv")
    assert list(train.columns) == ["id", "path", "label"]
    assert list(test.columns) == ["id", "path"]
    with zipfile.ZipFile(competition / "train.zip") as zf:
        assert len(train) == len([n for n in zf.namelist() if not n.endswith("/")])
    assert len(test) == 24 and test["id"].tolist() == list(range(1, 25))
    assert (train["label"] == train["id"].str.startswith("dog").astype(int)).all()
    assert all(os.path.isfile(p) for p in train["path"])
    assert (fetched / "sample_submission.csv").is_file()


def test_second_fetch_does_nothing(competition, tmp_path):
    messages = []
    target = tmp_path / "data"
    fetch.fetch_from(competition, target, log=messages.append)
    stamp = (target / "index" / "train.csv").stat().st_mtime_ns
    messages.clear()
    fetch.fetch_from(competition, target, log=messages.append)
    assert messages == [f"fetch: {target} is up to date with {competition}; nothing to do"]
    assert (target / "index" / "train.csv").stat().st_mtime_ns == stamp


def test_changed_source_is_fetched_again(tmp_path):
    source = synthetic.make_competition(tmp_path / "src", n_train=10, n_test=4, seed=3, planted=False)
    target = tmp_path / "data"
    fetch.fetch_from(source, target, **quiet)
    synthetic.make_competition(tmp_path / "src", n_train=12, n_test=4, seed=3, planted=False)
    fetch.fetch_from(source, target, **quiet)
    assert len(pd.read_csv(target / "index" / "train.csv")) == 12


def test_interrupted_fetch_is_not_complete_and_rerun_finishes(competition, tmp_path, monkeypatch):
    target = tmp_path / "data"
    real_index = fetch.write_index

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "write_index", crash)
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch_from(competition, target, **quiet)
    assert not fetch.is_complete(target)
    with pytest.raises(KitError, match="not a fetched competition"):
        fetch.read_index(target, "train")
    monkeypatch.setattr(fetch, "write_index", real_index)
    fetch.fetch_from(competition, target, **quiet)
    assert fetch.is_complete(target)


def test_leftover_partial_folder_is_replaced(competition, tmp_path):
    target = tmp_path / "data"
    (target / ".train.partial").mkdir(parents=True)
    (target / ".train.partial" / "cat.999999.jpg").write_bytes(b"half")
    fetch.fetch_from(competition, target, **quiet)
    assert not (target / ".train.partial").exists()
    assert not (target / "train" / "cat.999999.jpg").exists()


@pytest.mark.parametrize("entry", ["../evil.jpg", "/tmp/evil.jpg", "train/../../evil.jpg", "C:/evil.jpg"])
def test_unsafe_archive_entries_are_refused_before_extraction(competition, tmp_path, entry):
    source = tmp_path / "src"
    shutil.copytree(competition, source)
    with zipfile.ZipFile(source / "train.zip", "a") as zf:
        zf.writestr(entry, b"x")
    with pytest.raises(KitError, match="unsafe entry"):
        fetch.fetch_from(source, tmp_path / "data", **quiet)
    assert not (tmp_path / "data" / "train").exists()
    assert not (tmp_path / "evil.jpg").exists()


def test_unexpected_entry_is_refused(competition, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(competition, source)
    with zipfile.ZipFile(source / "test.zip", "a") as zf:
        zf.writestr("other/readme.txt", b"x")
    with pytest.raises(KitError, match="unexpected entry 'other/readme.txt'"):
        fetch.fetch_from(source, tmp_path / "data", **quiet)


def test_corrupt_archive_is_refused(competition, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(competition, source)
    data = (source / "train.zip").read_bytes()
    (source / "train.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(KitError, match="not a readable zip"):
        fetch.fetch_from(source, tmp_path / "data", **quiet)


def test_extracted_folders_are_used_in_place(competition, tmp_path):
    source = tmp_path / "kaggle-input"
    source.mkdir()
    for split in ("train", "test"):
        with zipfile.ZipFile(competition / f"{split}.zip") as zf:
            zf.extractall(source)
    shutil.copy(competition / "sample_submission.csv", source)
    target = fetch.fetch_from(source, tmp_path / "data", **quiet)
    train = pd.read_csv(target / "index" / "train.csv")
    assert all(p.startswith(str(source.resolve())) for p in train["path"])
    assert not (target / "train").exists()


def test_missing_pieces_are_named(tmp_path):
    with pytest.raises(KitError, match="no such directory"):
        fetch.fetch_from(tmp_path / "absent", tmp_path / "data", **quiet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(KitError, match="no sample_submission.csv"):
        fetch.fetch_from(tmp_path / "empty", tmp_path / "data", **quiet)


def test_oddly_named_files_are_reported_not_indexed(tmp_path):
    source = synthetic.make_competition(tmp_path / "src", n_train=6, n_test=3, seed=2, planted=False)
    with zipfile.ZipFile(source / "train.zip", "a") as zf:
        zf.writestr("train/horse.1.jpg", b"x")
    messages = []
    target = fetch.fetch_from(source, tmp_path / "data", log=messages.append)
    assert any("ignored 1 files" in m and "horse.1.jpg" in m for m in messages)
    assert "horse.1" not in pd.read_csv(target / "index" / "train.csv")["id"].tolist()

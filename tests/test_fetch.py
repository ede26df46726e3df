"""fetch --from: safe, idempotent, atomic extraction and the index."""

import os
import shutil
import zipfile

import pandas as pd
import pytest

from kit import fetch, fileio
from kit.data import synthetic
from kit.errors import KitError
from conftest import run_kit

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


# --- any competition's layout (kit.data.synthetic_layouts) ---------------------------------------

from pathlib import Path  # noqa: E402

from kit.data import synthetic_layouts  # noqa: E402
from kit.task import read  # noqa: E402

# The one synthetic layout no registry entry knows: its metric must be set.
UNKNOWN_SLUG_OVERRIDES = {"grayscale-shapes": {"metric": "f1_macro"}}


def fetch_layout(tmp_path, name, **make_args):
    source = synthetic_layouts.make(tmp_path / "src", name, **{"n_train": 10, "n_test": 3, "seed": 4, **make_args})
    overrides = UNKNOWN_SLUG_OVERRIDES.get(name, {})
    return source, fetch.fetch_from(source, tmp_path / "data", competition=name, overrides=overrides, **quiet)


def expected_labels(layout, source: Path, train: pd.DataFrame) -> list[str]:
    """Each indexed picture's class as the competition writes it: its folder, or its labels CSV row."""
    if layout.labels == synthetic_layouts.FOLDERS:
        return [Path(p).parent.name for p in train["path"]]
    table = pd.read_csv(source / layout.labels_file, dtype=str).set_index(layout.id_column)[layout.label_column]
    return [table[Path(p).name if layout.csv_ids_keep_extension else Path(p).stem] for p in train["path"]]


@pytest.mark.parametrize("name", sorted(synthetic_layouts.LAYOUTS))
def test_every_layout_is_indexed_with_class_indices_and_its_task_saved(tmp_path, name):
    layout = synthetic_layouts.LAYOUTS[name]
    source, data = fetch_layout(tmp_path, name)
    task = fetch.read_task(data)
    assert task == read.read_task(source, name, UNKNOWN_SLUG_OVERRIDES.get(name))   # task.json round-trips
    train, test = fetch.read_index(data, "train"), fetch.read_index(data, "test")

    pictures = sorted(p for p in (source / layout.train_place).rglob(f"*{layout.extension}"))
    assert sorted(Path(p) for p in train["path"]) == pictures   # every picture once, used in place
    values = expected_labels(layout, source, train)
    assert train["label"].tolist() == [[str(c) for c in task.classes].index(v) for v in values]
    assert set(train["label"]) == set(range(task.n_classes))
    stems = [Path(p).name if task.id_with_extension else Path(p).stem for p in train["path"]]
    assert train["id"].tolist() == stems

    sample = pd.read_csv(source / task.sample_file, dtype=str)
    assert sorted(test["id"]) == sorted(sample[task.id_column])
    assert all(Path(p).name == task.image_name(i) for i, p in zip(test["id"], test["path"]))
    if layout.drivers:
        drivers = pd.read_csv(source / "driver_imgs_list.csv", dtype=str).set_index("img")["subject"]
        assert list(train.columns) == ["id", "path", "label", "group"]
        assert train["group"].tolist() == drivers.loc[train["id"]].tolist()
    else:
        assert list(train.columns) == ["id", "path", "label"]


def zip_folder(folder: Path, archive: Path, prefix: str) -> None:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    shutil.rmtree(folder)


@pytest.mark.parametrize("prefix", ["train/", ""])
def test_class_folders_in_a_zip_are_extracted_with_their_folders(tmp_path, prefix):
    """Plant seedlings as Kaggle ships it: train.zip of train/<Species>/*.png (or the folders at its top)."""
    name = "plant-seedlings-classification"
    unzipped_source, unzipped = fetch_layout(tmp_path / "folders", name)
    source = tmp_path / "zipped"
    shutil.copytree(unzipped_source, source)
    zip_folder(source / "train", source / "train.zip", prefix)
    data = fetch.fetch_from(source, tmp_path / "data", competition=name, **quiet)
    train = fetch.read_index(data, "train")
    assert fetch.read_task(data).train_images == "train.zip"
    assert all(Path(p).parent.parent == (data / "train").resolve() for p in train["path"])
    assert all(os.path.isfile(p) for p in train["path"])
    folders = fetch.read_index(unzipped, "train")
    assert train[["id", "label"]].equals(folders[["id", "label"]])


def test_a_changed_setting_is_fetched_again(tmp_path):
    name = "histopathologic-cancer-detection"
    source, data = fetch_layout(tmp_path, name)
    messages = []
    fetch.fetch_from(source, data, competition=name, overrides={"metric": "accuracy"}, log=messages.append)
    assert not any("nothing to do" in m for m in messages)
    assert fetch.read_task(data).metric == "accuracy"


def test_an_old_data_folder_without_task_json_reads_its_task_from_the_files(competition, tmp_path):
    data = fetch.fetch_from(competition, tmp_path / "data", **quiet)
    saved = fetch.read_task(data)
    (data / fetch.TASK).unlink()
    assert fetch.read_task(data) == saved
    marker = fileio.read_json(data / fetch.MARKER)
    fileio.write_json(data / fetch.MARKER, {**marker, "source": str(tmp_path / "gone")})
    from_extracted = fetch.read_task(data)   # the source is gone: its own train/ and test/ folders
    assert (from_extracted.classes, from_extracted.metric, from_extracted.id_with_extension) == (
        saved.classes, saved.metric, saved.id_with_extension)


def test_an_unknown_layout_is_one_line_naming_the_key_to_set(tmp_path):
    source, _ = fetch_layout(tmp_path, "aerial-cactus-identification")
    (source / "train").rename(source / "pictures")
    result = run_kit("fetch", "--from", source, "--data-dir", tmp_path / "other",
                     "--set", "competition=aerial-cactus-identification")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "set train_images" in lines[0], result.stderr
    assert not fetch.is_complete(tmp_path / "other")
    fixed = run_kit("fetch", "--from", source, "--data-dir", tmp_path / "other",
                    "--set", "competition=aerial-cactus-identification", "--set", "train_images=pictures")
    assert fixed.returncode == 0, fixed.stderr
    assert len(fetch.read_index(tmp_path / "other", "train")) == 10


def test_an_unknown_competition_is_one_line_naming_metric(tmp_path):
    source, _ = fetch_layout(tmp_path, "aerial-cactus-identification")
    with pytest.raises(KitError, match="set metric"):
        fetch.fetch_from(source, tmp_path / "other", competition="someone-elses-cactus", **quiet)


def test_the_task_is_saved_beside_every_run(fetched, tmp_path):
    from kit.config import Config
    from kit.run import rundir
    from kit.task import spec

    out = rundir.start_run(Config(data_dir=str(fetched), runs_dir=str(tmp_path / "runs"), deterministic=False))
    assert spec.load(out / fetch.TASK) == fetch.read_task(fetched)
    assert fetch.TASK in rundir.RUN_OUTPUTS   # a kernel publishes it with the run


def test_ids_stay_as_the_sample_writes_them_where_numbers_would_lose_zeros(tmp_path):
    """Another competition's ids are text: "0007" is a name, not the number 7 (Redux's test ids stay ints)."""
    name = "histopathologic-cancer-detection"
    source = synthetic_layouts.make(tmp_path / "src", name, n_train=4, n_test=2, seed=4)
    for folder, csv_name, column in (("train", "train_labels.csv", "id"), ("test", "sample_submission.csv", "id")):
        table = pd.read_csv(source / csv_name, dtype=str)
        renamed = {old: f"{n:04d}" for n, old in enumerate(table[column], start=1 if folder == "train" else 10)}
        for old, new in renamed.items():
            (source / folder / f"{old}.tif").rename(source / folder / f"{new}.tif")
        table[column] = table[column].map(renamed)
        table.to_csv(source / csv_name, index=False)
    data = fetch.fetch_from(source, tmp_path / "data", competition=name, **quiet)
    assert fetch.read_index(data, "train")["id"].tolist() == ["0001", "0003", "0002", "0004"]
    assert fetch.read_index(data, "test")["id"].tolist() == ["0010", "0011"]

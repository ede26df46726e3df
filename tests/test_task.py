"""read_task: the Task of every synthetic layout, the overrides, and one-line errors naming the key to set."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from kit import COMPETITION
from kit.data import synthetic_layouts
from kit.errors import KitError
from kit.task import spec
from kit.task.read import read_task, task_from

from conftest import REAL_COMPETITION, needs_real_data

N_TRAIN, N_TEST = 15, 6

# What each competition's data page says, written out by hand (not derived from the synthetic layouts).
EXPECTED = {
    COMPETITION: dict(
        metric="log_loss", id_column="id", id_with_extension=False, image_extension=".jpg", train_images="train.zip",
        test_images="test.zip", label_source="file-names", classes=["cat", "dog"], header=["id", "label"],
        submission_values="probability", labels_file="", label_column="", sample_file="sample_submission.csv"),
    "aerial-cactus-identification": dict(
        metric="roc_auc", id_column="id", id_with_extension=True, image_extension=".jpg", train_images="train",
        test_images="test", label_source="csv", classes=[0, 1], header=["id", "has_cactus"],
        submission_values="probability", labels_file="train.csv", label_column="has_cactus"),
    "histopathologic-cancer-detection": dict(
        metric="roc_auc", id_column="id", id_with_extension=False, image_extension=".tif", train_images="train",
        test_images="test", label_source="csv", classes=[0, 1], header=["id", "label"],
        submission_values="probability", labels_file="train_labels.csv", label_column="label"),
    "plant-seedlings-classification": dict(
        metric="f1_micro", id_column="file", id_with_extension=True, image_extension=".png", train_images="train",
        test_images="test", label_source="folders", classes=["Black-grass", "Charlock", "Common Chickweed", "Sugar beet"],
        header=["file", "species"], submission_values="class", sample_file="sample_submission.csv.zip"),
    "dog-breed-identification": dict(
        metric="multi_log_loss", id_column="id", id_with_extension=False, image_extension=".jpg", train_images="train",
        test_images="test", label_source="csv", classes=["affenpinscher", "beagle", "boston_bull", "chow"],
        header=["id", "affenpinscher", "beagle", "boston_bull", "chow"], submission_values="probabilities",
        labels_file="labels.csv", label_column="breed"),
    "aptos2019-blindness-detection": dict(
        metric="quadratic_kappa", id_column="id_code", id_with_extension=False, image_extension=".png",
        train_images="train_images", test_images="test_images", label_source="csv", classes=[0, 1, 2, 3, 4],
        header=["id_code", "diagnosis"], submission_values="class", labels_file="train.csv", label_column="diagnosis"),
    "state-farm-distracted-driver-detection": dict(
        metric="multi_log_loss", id_column="img", id_with_extension=True, image_extension=".jpg",
        train_images="imgs/train", test_images="imgs/test", label_source="folders", classes=["c0", "c1", "c2", "c3"],
        header=["img", "c0", "c1", "c2", "c3"], submission_values="probabilities", group_column="subject",
        groups_file="driver_imgs_list.csv"),
    "cassava-leaf-disease-classification": dict(
        metric="accuracy", id_column="image_id", id_with_extension=True, image_extension=".jpg",
        train_images="train_images", test_images="test_images", label_source="csv", classes=[0, 1, 2, 3, 4],
        header=["image_id", "label"], submission_values="class", labels_file="train.csv", label_column="label"),
    "grayscale-shapes": dict(
        metric="accuracy", id_column="id", id_with_extension=False, image_extension=".png", train_images="train",
        test_images="test", label_source="folders", classes=["pentagon", "square", "triangle"], header=["id", "label"],
        submission_values="class", channels=1),
}
DEFAULTS = dict(labels_file="", label_column="", group_column="", groups_file="", channels=3,
                sample_file="sample_submission.csv")
UNKNOWN_SLUG_METRIC = {"grayscale-shapes": "accuracy"}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    """Every synthetic layout's competition folder, written once."""
    root = tmp_path_factory.mktemp("layouts")
    return {name: synthetic_layouts.make(root / name, name, N_TRAIN, N_TEST, seed=3) for name in synthetic_layouts.NAMES}


def copy_of(layouts, name, tmp_path) -> Path:
    return Path(shutil.copytree(layouts[name], tmp_path / "competition"))


def one_line_error(*args, **kwargs) -> str:
    with pytest.raises(KitError) as caught:
        read_task(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def overrides_for(name):
    return {"metric": UNKNOWN_SLUG_METRIC[name]} if name in UNKNOWN_SLUG_METRIC else {}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_read_task_of_every_layout(layouts, name):
    task = read_task(layouts[name], name, overrides_for(name))
    assert task.to_dict() == {"slug": name, **DEFAULTS, **EXPECTED[name]}


def test_every_synthetic_layout_is_tested():
    assert set(EXPECTED) == set(synthetic_layouts.NAMES)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_task_round_trips_through_json(layouts, name, tmp_path):
    task = read_task(layouts[name], name, overrides_for(name))
    assert spec.Task.from_dict(json.loads(json.dumps(task.to_dict()))) == task
    spec.save(task, tmp_path / "task.json")
    assert spec.load(tmp_path / "task.json") == task
    assert task_from(tmp_path / "task.json") == task


def test_the_task_names_its_files(layouts):
    aerial = read_task(layouts["aerial-cactus-identification"], "aerial-cactus-identification")
    histo = read_task(layouts["histopathologic-cancer-detection"], "histopathologic-cancer-detection")
    assert aerial.image_name("0a1b.jpg") == "0a1b.jpg" and histo.image_name("0a1b") == "0a1b.tif"
    assert aerial.binary and not read_task(layouts["aptos2019-blindness-detection"], "aptos2019-blindness-detection").binary
    redux = read_task(layouts[COMPETITION], COMPETITION)
    # Redux answers write 1 for a dog: an integer is the index of a named class.
    assert redux.class_index(["dog", "cat", "1", "0"]).tolist() == [1, 0, 1, 0]


def test_a_fetched_redux_folder_reads_the_same_facts(fetched):
    """After `kit fetch` the pictures are extracted folders and index/ holds CSVs with an id column:
    those are the kit's own files, not labels."""
    task = read_task(fetched, COMPETITION)
    assert (task.train_images, task.test_images, task.label_source) == ("train", "test", "file-names")
    assert task.classes == ("cat", "dog") and task.header == ("id", "label")


@needs_real_data
@pytest.mark.real_data
def test_the_real_redux_files_read_as_the_synthetic_ones():
    task = read_task(REAL_COMPETITION, COMPETITION)
    assert task.to_dict() == {"slug": COMPETITION, **DEFAULTS, **EXPECTED[COMPETITION]}


def test_a_zip_extracted_beside_itself_counts_once(layouts, tmp_path):
    folder = copy_of(layouts, COMPETITION, tmp_path)
    shutil.unpack_archive(folder / "train.zip", folder)   # train/ beside train.zip
    assert read_task(folder, COMPETITION).train_images == "train"


def test_unknown_competition_needs_a_metric(layouts):
    folder = layouts["aerial-cactus-identification"]
    message = one_line_error(folder, "my-own-competition")
    assert message.startswith("competition 'my-own-competition' is not one the kit knows")
    assert "set metric (one of: log_loss, multi_log_loss, roc_auc" in message
    task = read_task(folder, "my-own-competition", {"metric": "roc_auc"})
    known = read_task(folder, "aerial-cactus-identification")
    assert task.to_dict() == {**known.to_dict(), "slug": "my-own-competition"}


@pytest.mark.bad_input
@pytest.mark.parametrize("name, overrides, message", [
    ("aerial-cactus-identification", {"metric": "logloss"}, "unknown metric 'logloss'; choose one of:"),
    ("aerial-cactus-identification", {"metrics": "roc_auc"}, "unknown task override 'metrics'; valid ones: metric,"),
    ("aerial-cactus-identification", {"metric": ""}, "task override metric must be a non-empty name"),
    ("aerial-cactus-identification", {"metric": "multi_log_loss"},
     "metric multi_log_loss takes one probability column per class, but sample_submission.csv has one value column "
     "(has_cactus): set metric"),
    ("dog-breed-identification", {"metric": "accuracy"},
     "sample_submission.csv has 4 value columns, one per class, but metric accuracy takes a class: set metric"),
    ("aptos2019-blindness-detection", {"metric": "roc_auc"},
     "metric roc_auc needs two classes; the training labels hold 5: set metric"),
    ("plant-seedlings-classification", {"metric": "quadratic_kappa"},
     "metric quadratic_kappa needs integer grades as classes, got Black-grass, Charlock, Common Chickweed, Sugar beet: "
     "set metric"),
    ("aerial-cactus-identification", {"id_column": "label"},
     "sample_submission.csv has no column 'label': set id_column to one of: id, has_cactus"),
    ("aerial-cactus-identification", {"id_column": "has_cactus"},
     "sample_submission.csv: 6 of 6 ids in column 'has_cactus' name no test picture in test (first '0.5'): "
     "set id_column or test_images"),
    ("aerial-cactus-identification", {"train_images": "nowhere"}, "train_images 'nowhere': no jpg, png or tif pictures"),
    ("dog-breed-identification", {"label_column": "colour"},
     "cannot find the training labels in"),
    ("aptos2019-blindness-detection", {"labels_from": "folders"},
     "labels_from folders: the pictures in train_images are not in two or more class folders"),
    ("plant-seedlings-classification", {"labels_from": "file-names"},
     "labels_from file-names: the pictures in train are not all named <class>.<n>.<ext>"),
    ("plant-seedlings-classification", {"group_column": "field"},
     "group_column 'field': no CSV in"),
])
def test_bad_overrides_are_one_line(layouts, name, overrides, message):
    assert message in one_line_error(layouts[name], name, overrides)


@pytest.mark.bad_input
def test_two_labels_csvs_are_ambiguous(layouts, tmp_path):
    folder = copy_of(layouts, "aptos2019-blindness-detection", tmp_path)
    train = pd.read_csv(folder / "train.csv", dtype=str)
    train.assign(diagnosis="0").to_csv(folder / "train_old.csv", index=False)
    message = one_line_error(folder, "aptos2019-blindness-detection")
    assert message == "the training labels could be in train.csv, train_old.csv: set labels_from to one of them"
    task = read_task(folder, "aptos2019-blindness-detection", {"labels_from": "train.csv"})
    assert task.labels_file == "train.csv" and task.classes == (0, 1, 2, 3, 4)


@pytest.mark.bad_input
def test_a_labels_csv_with_two_columns_needs_label_column(layouts, tmp_path):
    folder = copy_of(layouts, "dog-breed-identification", tmp_path)
    labels = pd.read_csv(folder / "labels.csv", dtype=str)
    labels.assign(weight="12").to_csv(folder / "labels.csv", index=False)
    message = one_line_error(folder, "dog-breed-identification")
    assert message == "labels.csv has several columns beside 'id' (breed, weight): set label_column to the class column"
    assert read_task(folder, "dog-breed-identification", {"label_column": "breed"}).label_column == "breed"


@pytest.mark.bad_input
def test_pictures_in_two_places_need_train_images(layouts, tmp_path):
    folder = copy_of(layouts, "aerial-cactus-identification", tmp_path)
    shutil.copytree(folder / "train", folder / "train_extra")
    message = one_line_error(folder, "aerial-cactus-identification")
    assert message == "train pictures are in several places (train, train_extra): set train_images to one"
    assert read_task(folder, "aerial-cactus-identification", {"train_images": "train"}).train_images == "train"


@pytest.mark.bad_input
def test_no_labels_at_all_names_what_to_set(layouts, tmp_path):
    folder = copy_of(layouts, "histopathologic-cancer-detection", tmp_path)
    (folder / "train_labels.csv").unlink()
    message = one_line_error(folder, "histopathologic-cancer-detection")
    assert message.startswith(f"cannot find the training labels in {folder}: no class folders under train, no "
                              "<class>.<n> file names, no CSV with column 'id' and a class column")
    assert message.endswith("set labels_from and label_column")


def set_cactus_labels(folder, rows, value):
    """Write `value` as has_cactus in the given rows (all rows for None) of the cactus layout's train.csv."""
    table = pd.read_csv(folder / "train.csv", dtype=str)
    table.loc[table.index if rows is None else rows, "has_cactus"] = value
    table.to_csv(folder / "train.csv", index=False)


@pytest.mark.bad_input
@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "sample_submission.csv").unlink(), "no sample_submission.csv (or .csv.zip) in"),
    (lambda f: (f / "sample_submission.csv").write_text(""), "sample_submission.csv is empty"),
    (lambda f: shutil.rmtree(f / "test"), "no test pictures (jpg, png, tif) in"),
    (lambda f: (f / "train.csv").write_text("id,has_cactus\nnot-here.jpg,1\nnor-here.jpg,0\n"),
     "train.csv: no id in column 'id' names a training picture in train (first 'not-here.jpg'): "
     "set id_column or train_images"),
    (lambda f: set_cactus_labels(f, [1], ""), "train.csv: 1 rows have no has_cactus (first id"),
    (lambda f: set_cactus_labels(f, None, "1"), "the training labels hold one class only (1)"),
])
def test_broken_competition_files_are_one_line(layouts, tmp_path, damage, message):
    folder = copy_of(layouts, "aerial-cactus-identification", tmp_path)
    damage(folder)
    assert message in one_line_error(folder, "aerial-cactus-identification")


@pytest.mark.bad_input
def test_mixed_id_forms_in_the_sample_are_refused(layouts, tmp_path):
    folder = copy_of(layouts, "aerial-cactus-identification", tmp_path)
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str)
    sample.loc[0, "id"] = sample.loc[0, "id"].removesuffix(".jpg")
    sample.to_csv(folder / "sample_submission.csv", index=False)
    assert "some ids carry a file extension and some do not" in one_line_error(folder, "aerial-cactus-identification")


def test_state_farm_groups_by_driver_and_its_driver_list_is_not_labels(layouts):
    name = "state-farm-distracted-driver-detection"
    # Another slug: no registry entry, so no groups unless group_column is set.
    bare = read_task(layouts[name], "my-drivers", {"metric": "multi_log_loss"})
    assert (bare.label_source, bare.group_column) == ("folders", "")
    grouped = read_task(layouts[name], "my-drivers", {"metric": "multi_log_loss", "group_column": "subject"})
    assert (grouped.group_column, grouped.groups_file) == ("subject", "driver_imgs_list.csv")
    # The driver list also names each picture's class; it can be the labels when asked.
    from_csv = read_task(layouts[name], name, {"labels_from": "driver_imgs_list.csv", "label_column": "classname"})
    assert (from_csv.label_source, from_csv.labels_file, from_csv.classes) == ("csv", "driver_imgs_list.csv",
                                                                                read_task(layouts[name], name).classes)


def test_a_group_column_in_the_labels_csv(layouts, tmp_path):
    folder = copy_of(layouts, "cassava-leaf-disease-classification", tmp_path)
    train = pd.read_csv(folder / "train.csv", dtype=str)
    train.assign(plot=[f"p{i % 3}" for i in range(len(train))]).to_csv(folder / "train.csv", index=False)
    task = read_task(folder, "cassava-leaf-disease-classification", {"label_column": "label", "group_column": "plot"})
    assert (task.label_column, task.group_column, task.groups_file) == ("label", "plot", "train.csv")


@pytest.mark.bad_input
@pytest.mark.parametrize("edit, message", [
    ({"metric": "roc_auc"}, "task: metric roc_auc takes a probability, so the submission holds probability, not class"),
    ({"bogus": 1}, "unknown task key 'bogus'; valid keys:"),
    ({"classes": ["a"]}, "task: classes must be two or more distinct values"),
    ({"label_source": "guess"}, "task: label_source 'guess' is not one of: file-names, csv, folders"),
])
def test_a_bad_saved_task_is_one_line(layouts, edit, message):
    data = read_task(layouts["cassava-leaf-disease-classification"], "cassava-leaf-disease-classification").to_dict()
    with pytest.raises(KitError, match=message.replace("(", r"\(")):
        spec.Task.from_dict({**data, **edit})
    with pytest.raises(KitError, match="task key 'metric' is missing"):
        spec.Task.from_dict({k: v for k, v in data.items() if k != "metric"})


@pytest.mark.bad_input
def test_task_from_a_saved_file_takes_no_overrides(layouts, tmp_path):
    task = read_task(layouts[COMPETITION], COMPETITION)
    spec.save(task, tmp_path / "task.json")
    with pytest.raises(KitError, match="is a saved task: metric can be set only when reading a competition folder"):
        task_from(tmp_path / "task.json", overrides={"metric": "roc_auc"})
    with pytest.raises(KitError, match="task file not found"):
        task_from(tmp_path / "nothing.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(KitError, match="must hold a JSON object"):
        task_from(tmp_path / "bad.json")

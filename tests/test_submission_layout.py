"""The submission layout: built from probabilities in the sample's exact layout, read back, checked, scored;
`kit synth --layout` and `kit score --task/--metric` as a user runs them."""

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit import COMPETITION, cli
from kit.data import synthetic, synthetic_layouts
from kit.errors import KitError
from kit.predict import task_score
from kit.task import layout, metrics, spec
from kit.task.read import read_task

N_TRAIN, N_TEST = 12, 8
UNKNOWN_SLUG_METRIC = {"grayscale-shapes": "accuracy"}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, tuple[Path, spec.Task]]:
    """name -> (the folder holding competition/ and test_labels.csv, its task)."""
    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for name in synthetic_layouts.NAMES:
        competition = synthetic_layouts.make(root / name, name, N_TRAIN, N_TEST, seed=5)
        overrides = {"metric": UNKNOWN_SLUG_METRIC[name]} if name in UNKNOWN_SLUG_METRIC else {}
        out[name] = (root / name, read_task(competition, name, overrides))
    return out


def probabilities(n, k, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), size=n)
    probs[0] = np.eye(k)[0]   # a confident row, so that clipping has something to do
    return probs


@pytest.mark.parametrize("name", synthetic_layouts.NAMES)
def test_round_trip_in_the_samples_exact_layout(made, name, tmp_path):
    folder, task = made[name]
    sample = layout.read_sample(folder / "competition", task)
    ids = sample[task.id_column].iloc[::-1]   # any order in; the check returns the sample's
    probs = probabilities(len(ids), task.n_classes)
    path = layout.write(layout.submission_frame(task, ids, probs, clip=(0.005, 0.995)), tmp_path / "sub.csv")

    sample_text = (folder / "competition" / task.sample_file)
    header = pd.read_csv(sample_text, nrows=0).columns.tolist()
    assert path.read_text().splitlines()[0] == ",".join(header)
    rows = layout.check_file(path, task, sample)
    assert rows[task.id_column].tolist() == sample[task.id_column].tolist()
    back = layout.as_probabilities(rows, task)[::-1]
    m = metrics.get(task.metric)
    if task.submission_values == spec.CLASS:
        assert back.argmax(axis=1).tolist() == m.values(probs).tolist()
        assert set(rows[task.value_columns[0]]) <= set(task.classes)
    else:
        expected = metrics.as_matrix(m.values(probs, clip=(0.005, 0.995)))
        assert back == pytest.approx(expected, abs=1e-6)
        assert back.sum(axis=1) == pytest.approx(1, abs=1e-5)
        assert bool(back.min() > 0.004) is m.clips   # log losses clip; AUC ranks, so its probabilities stay as they are


def test_class_names_keep_their_spaces_and_grades_stay_integers(made, tmp_path):
    folder, plant = made["plant-seedlings-classification"]
    frame = layout.submission_frame(plant, ["a.png", "b.png"], np.eye(4)[[2, 3]])
    assert frame["species"].tolist() == ["Common Chickweed", "Sugar beet"]
    folder, aptos = made["aptos2019-blindness-detection"]
    frame = layout.submission_frame(aptos, ["a", "b"], np.eye(5)[[4, 1]])
    layout.write(frame, tmp_path / "sub.csv")
    assert (tmp_path / "sub.csv").read_text() == "id_code,diagnosis\na,4\nb,1\n"


def test_kappa_thresholds_cut_the_grades(made):
    _, aptos = made["aptos2019-blindness-detection"]
    probs = np.array([[0, 0.3, 0.7, 0, 0], [0, 0, 0, 0.5, 0.5]])   # expected grades 1.7 and 3.5
    assert layout.submission_frame(aptos, ["a", "b"], probs)["diagnosis"].tolist() == [2, 4]
    cut = layout.submission_frame(aptos, ["a", "b"], probs, thresholds=(0.5, 1.8, 2.5, 3.6))
    assert cut["diagnosis"].tolist() == [1, 3]


def submission_text(made, name, tmp_path, edit):
    """A valid submission of layout `name` written as text, then edited by `edit(lines) -> lines`."""
    folder, task = made[name]
    sample = layout.read_sample(folder / "competition", task)
    probs = probabilities(len(sample), task.n_classes)
    path = layout.write(layout.submission_frame(task, sample[task.id_column], probs), tmp_path / "sub.csv")
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    return path, task, sample


def _cell(lines, row, column, value):
    cells = lines[row].split(",")
    cells[column] = value
    return lines[:row] + [",".join(cells)] + lines[row + 1:]


@pytest.mark.bad_input
@pytest.mark.parametrize("name, edit, message", [
    ("dog-breed-identification", lambda l: [l[0].replace("beagle", "Beagle")] + l[1:],
     "header must be 'id,affenpinscher,beagle,boston_bull,chow', got 'id,affenpinscher,Beagle,boston_bull,chow'"),
    ("aerial-cactus-identification", lambda l: l[:-1], "ids do not match the sample submission's: 1 missing (first"),
    ("aerial-cactus-identification", lambda l: l + ["extra.jpg,0.5"], "1 not in the sample submission (first 'extra.jpg')"),
    ("aerial-cactus-identification", lambda l: l + [l[1]], "appears more than once (1 duplicates)"),
    ("histopathologic-cancer-detection", lambda l: [l[0], l[1].split(",")[0] + ".tif," + l[1].split(",")[1]] + l[2:],
     "1 missing (first"),
    ("aerial-cactus-identification", lambda l: _cell(l, 1, 1, "1.5"), "probabilities must lie in [0, 1]; found"),
    ("aerial-cactus-identification", lambda l: _cell(l, 2, 1, "nan"), "1 values are empty, NaN, infinite or not numbers"),
    ("aerial-cactus-identification", lambda l: _cell(l, 2, 1, ""), "1 values are empty, NaN, infinite or not numbers"),
    ("state-farm-distracted-driver-detection", lambda l: _cell(l, 3, 2, "0.9"),
     "the 4 class probabilities of 1 rows do not sum to 1"),
    ("plant-seedlings-classification", lambda l: _cell(l, 1, 1, "Sugar Beet"),
     "1 values in species are not one of the classes (Black-grass, Charlock, Common Chickweed, Sugar beet); "
     "first 'Sugar Beet'"),
    ("aptos2019-blindness-detection", lambda l: _cell(l, 1, 1, "2.5"),
     "1 values in diagnosis are not one of the integer grades (0, 1, 2, 3, 4); first '2.5'"),
    ("cassava-leaf-disease-classification", lambda l: _cell(l, 1, 0, ""), "1 rows have no image_id"),
])
def test_invalid_submissions_are_one_line(made, tmp_path, name, edit, message):
    path, task, sample = submission_text(made, name, tmp_path, edit)
    with pytest.raises(KitError) as caught:
        layout.check_file(path, task, sample)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(path))


@pytest.mark.bad_input
def test_a_sample_that_changed_since_the_task_was_read(made, tmp_path):
    folder, task = made["aerial-cactus-identification"]
    copy = Path(shutil.copytree(folder / "competition", tmp_path / "competition"))
    (copy / "sample_submission.csv").write_text("id,cactus\na.jpg,0.5\n")
    with pytest.raises(KitError, match="is not the task's 'id,has_cactus': read the task again"):
        layout.read_sample(copy, task)


@pytest.mark.parametrize("name", synthetic_layouts.NAMES)
def test_a_perfect_submission_scores_perfectly(made, name, tmp_path):
    folder, task = made[name]
    answers = pd.read_csv(folder / synthetic_layouts.TEST_LABELS, dtype=str)
    ids, labels = task_score.read_answers(folder / synthetic_layouts.TEST_LABELS, task)
    assert ids.tolist() == answers.iloc[:, 0].tolist()
    path = layout.write(layout.submission_frame(task, ids, np.eye(task.n_classes)[labels]), tmp_path / "sub.csv")
    result = task_score.score_file(path, folder / synthetic_layouts.TEST_LABELS, task)
    m = metrics.get(task.metric)
    assert result["metric"] == m.name and result["n"] == N_TEST
    # Log losses of exact answers are -log(1 - 1e-15), as good as a log loss gets.
    assert result["value"] == pytest.approx(0.0 if not m.higher_is_better else 1.0, abs=1e-9)


def test_scoring_against_another_metric_and_extra_answer_columns(made, tmp_path):
    folder, task = made["dog-breed-identification"]
    answers = pd.read_csv(folder / synthetic_layouts.TEST_LABELS, dtype=str).assign(notes="x")
    answers.to_csv(tmp_path / "answers.csv", index=False)
    ids, labels = task_score.read_answers(tmp_path / "answers.csv", task)
    probs = np.full((len(ids), 4), 0.1)
    probs[np.arange(len(ids)), labels] = 0.7
    path = layout.write(layout.submission_frame(task, ids, probs), tmp_path / "sub.csv")
    loss = task_score.score_file(path, tmp_path / "answers.csv", task)
    assert loss["value"] == pytest.approx(-np.log(0.7))
    assert task_score.score_file(path, tmp_path / "answers.csv", task, "accuracy")["value"] == 1.0


@pytest.mark.bad_input
def test_an_answer_file_without_a_class_column_is_one_line(made, tmp_path):
    folder, task = made["dog-breed-identification"]
    (tmp_path / "answers.csv").write_text("id,dog\na,beagle\n")
    with pytest.raises(KitError, match=r"needs the id column 'id' and a class column \(one of: breed, label\); "
                                       r"got 'id,dog'"):
        task_score.read_answers(tmp_path / "answers.csv", task)
    (tmp_path / "answers.csv").write_text("id,breed\na,poodle\n")
    with pytest.raises(KitError, match="'poodle' is not one of the 4 classes"):
        task_score.read_answers(tmp_path / "answers.csv", task)


# --- the command line, in process (the subprocess path is tests/test_cli.py's) ---------------------

def kit(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_synth_layout_writes_what_read_task_reads(tmp_path, capsys):
    code, out, _ = kit(capsys, "synth", tmp_path / "cactus", "--layout", "aerial-cactus-identification",
                       "--train", 10, "--test", 4, "--seed", 2)
    out_dir = tmp_path / "cactus"
    assert code == 0 and out == f"synth: wrote {out_dir / 'competition'} and {out_dir / 'test_labels.csv'}"
    task = read_task(tmp_path / "cactus" / "competition", "aerial-cactus-identification")
    assert task.labels_file == "train.csv" and len(list((tmp_path / "cactus" / "competition" / "test").iterdir())) == 4


def test_synth_layouts_are_the_same_bytes_for_the_same_seed(tmp_path):
    for run in ("a", "b"):
        synthetic_layouts.make(tmp_path / run, "plant-seedlings-classification", 8, 3, seed=4)
    files = {run: {p.relative_to(tmp_path / run): p.read_bytes() for p in sorted((tmp_path / run).rglob("*"))
                   if p.is_file()} for run in ("a", "b")}
    assert files["a"] == files["b"] and len(files["a"]) == 8 + 3 + 2
    other = synthetic_layouts.make(tmp_path / "c", "plant-seedlings-classification", 8, 3, seed=5)
    zipped = Path("competition/sample_submission.csv.zip")
    assert (other / zipped.name).read_bytes() != files["a"][zipped]


def test_synth_default_is_still_the_redux_layout(tmp_path, capsys):
    code, _, _ = kit(capsys, "synth", tmp_path / "cli", "--train", 10, "--test", 4, "--seed", 1)
    synthetic.make_competition(tmp_path / "direct", 10, 4, 1)
    for name in ("competition/sample_submission.csv", "test_labels.csv"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes()
    for archive in ("train.zip", "test.zip"):   # zip headers carry the time of writing; the members are the same
        with zipfile.ZipFile(tmp_path / "cli" / "competition" / archive) as a, \
                zipfile.ZipFile(tmp_path / "direct" / "competition" / archive) as b:
            assert [(i.filename, a.read(i)) for i in a.infolist()] == [(i.filename, b.read(i)) for i in b.infolist()]


@pytest.mark.bad_input
def test_synth_unknown_layout_lists_them(tmp_path, capsys):
    code, _, err = kit(capsys, "synth", tmp_path, "--layout", "mnist")
    assert code == 2 and err.startswith(f"error: unknown synthetic layout 'mnist'; choose one of: {COMPETITION}, "
                                        "aerial-cactus-identification,")


def test_score_redux_output_is_unchanged_and_takes_other_metrics(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("id,label\n1,1\n2,0\n3,1\n")
    (tmp_path / "sub.csv").write_text("id,label\n3,0.8\n1,0.9\n2,0.3\n")
    code, out, _ = kit(capsys, "score", tmp_path / "sub.csv", "--labels", tmp_path / "labels.csv")
    loss = -(np.log(0.9) + np.log(0.7) + np.log(0.8)) / 3
    assert code == 0 and out == f"log loss {loss:.5f}  accuracy 1.0000  (3 images)"
    code, out, _ = kit(capsys, "score", tmp_path / "sub.csv", "--labels", tmp_path / "labels.csv", "--metric", "roc_auc")
    assert code == 0 and out == "roc_auc 1.00000 (higher is better)  (3 images)"
    code, out, _ = kit(capsys, "score", tmp_path / "sub.csv", "--labels", tmp_path / "labels.csv", "--metric", "log_loss")
    assert code == 0 and out == f"log_loss {loss:.5f} (lower is better)  (3 images)"


def test_score_with_a_task_folder_or_a_saved_task(made, tmp_path, capsys):
    folder, task = made["aptos2019-blindness-detection"]
    ids, labels = task_score.read_answers(folder / synthetic_layouts.TEST_LABELS, task)
    wrong = (labels + 1) % 5   # every grade off: kappa well below 1
    path = layout.write(layout.submission_frame(task, ids, np.eye(5)[wrong]), tmp_path / "sub.csv")
    expected = metrics.get("quadratic_kappa").score(labels, wrong)
    answers = folder / synthetic_layouts.TEST_LABELS
    code, out, err = kit(capsys, "score", path, "--labels", answers, "--task", folder / "competition",
                         "--competition", "aptos2019-blindness-detection")
    assert (code, err) == (0, "") and out == f"quadratic_kappa {expected:.5f} (higher is better)  ({N_TEST} images)"
    spec.save(task, tmp_path / "task.json")
    code, out, _ = kit(capsys, "score", path, "--labels", answers, "--task", tmp_path / "task.json", "--metric", "accuracy")
    assert code == 0 and out == f"accuracy {np.mean(wrong == labels):.5f} (higher is better)  ({N_TEST} images)"


@pytest.mark.bad_input
@pytest.mark.parametrize("extra, message", [
    (["--metric", "auc"], "error: unknown metric 'auc'; choose one of: log_loss,"),
    (["--competition", "aptos2019-blindness-detection"], "error: --competition names the competition of --task FOLDER"),
    (["--task", "competition"], "error: competition 'competition' is not one the kit knows"),
])
def test_score_mistakes_are_one_line(made, capsys, monkeypatch, extra, message):
    folder, _ = made["aptos2019-blindness-detection"]
    monkeypatch.chdir(folder)
    code, _, err = kit(capsys, "score", "sub.csv", "--labels", synthetic_layouts.TEST_LABELS, *extra)
    assert code == 2 and err.startswith(message) and "\n" not in err

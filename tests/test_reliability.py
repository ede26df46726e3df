"""Reliability: processes killed mid-step and rerun, concurrent commands, bad input, secrets.

Faults are real SIGKILLs (`KIT_CRASH_AT`, see kit/faults.py) of `python -m kit` subprocesses:
no cleanup code runs. After each, the same command is rerun and must complete, reuse the
finished work, and end with what an uninterrupted run ends with.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_kit
from kit import fetch, lock
from kit.data import images, synthetic

TINY_FEATURES = ["--preset", "cpu", "--set", "backbones=tiny@32", "--set", "weights=none", "--set", "folds=2",
                 "--set", "head_epochs=2", "--set", "heads=logreg"]
TINY_FINETUNE = ["--preset", "cpu", "--set", "method=finetune", "--set", "backbones=tiny@32", "--set", "weights=none",
                 "--set", "folds=2", "--set", "epochs=2", "--set", "warmup_epochs=1", "--set", "unfreeze=0.5",
                 "--set", "batch_size=16"]
# The fault runs of each method: both feature heads (the dense one trains in Keras), and the rest tiny.
FAULT_RUNS = {
    "features": [*TINY_FEATURES, "--set", "heads=logreg,dense"],
    "finetune": TINY_FINETUNE,
    # A fine-tuning rate so high that validation loss rises at once: early stopping ends the phase.
    "finetune-stopping": [*TINY_FINETUNE, "--set", "epochs=6", "--set", "patience=1", "--set", "finetune_lr=0.01"],
    "frozen": [*TINY_FINETUNE, "--set", "method=frozen"],
    "cnn": ["--preset", "demo", "--set", "run=cpu", "--set", "image_size=32", "--set", "width=8", "--set", "dense=16",
            "--set", "epochs=2", "--set", "batch_size=16"],
}
# What a run hands on: compared byte for byte between a resumed run and an uninterrupted one.
OUTPUTS = {"cnn": ("val_predictions.csv", "test_predictions.csv")}
ENSEMBLE_OUTPUTS = ("oof.csv", "test_predictions.csv")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return synthetic.make_competition(tmp_path_factory.mktemp("rel-src"), n_train=40, n_test=8, seed=5)


def paths_for(root: Path) -> list[str]:
    return ["--set", f"data_dir={root / 'data'}", "--set", f"runs_dir={root / 'runs'}",
            "--set", f"submissions_dir={root / 'subs'}", "--set", f"cache_dir={root / 'cache'}",
            "--set", f"pixel_cache_dir={root / 'pixels'}"]


def kit_ok(*args, env=None):
    result = run_kit(*args, env=env)
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
    return result


def killed(*args, point: str):
    result = run_kit(*args, env={"KIT_CRASH_AT": point})
    assert result.returncode == -signal.SIGKILL, f"expected a SIGKILL at {point}: {result.stderr[-1500:]}"
    return result


def train_and_predict(root: Path, args: list) -> None:
    kit_ok("train", *args, *paths_for(root))
    kit_ok("predict", *args, *paths_for(root))


def outputs(root: Path, method: str) -> dict[str, bytes]:
    """A finished run's predictions and its submission, as bytes."""
    run = root / "runs" / "cpu"
    files = {name: (run / name).read_bytes() for name in OUTPUTS.get(method, ENSEMBLE_OUTPUTS)}
    return {**files, "submission": (root / "subs" / "cpu.csv").read_bytes()}


def assert_same_outputs(resumed: Path, uninterrupted: Path, method: str) -> None:
    got, want = outputs(resumed, method), outputs(uninterrupted, method)
    for name in want:
        assert got[name] == want[name], f"{name} of the resumed run differs from the uninterrupted run's"


def data_tree(data: Path) -> dict[str, bytes]:
    """Every file of a data directory (not its lock), with the directory's own path written ROOT."""
    return {str(p.relative_to(data)): p.read_bytes().replace(str(data).encode(), b"ROOT")
            for p in sorted(data.rglob("*")) if p.is_file() and p.name != ".kit.lock"}


@pytest.fixture(scope="module")
def uninterrupted(source, tmp_path_factory):
    """fetch and uninterrupted runs, each made once for the module: `uninterrupted("fetch")` is a
    fetched data directory; `uninterrupted(method, *extra_args)` a root with a trained and
    predicted run."""
    made = {}

    def get(what: str, *extra) -> Path:
        key = (what, *extra)
        if key not in made:
            root = tmp_path_factory.mktemp(f"uninterrupted-{what}")
            kit_ok("fetch", "--from", source, "--data-dir", root / "data")
            if what != "fetch":
                train_and_predict(root, [*FAULT_RUNS[what], *extra])
            made[key] = root
        return made[key] if what != "fetch" else made[key] / "data"

    return get


# --------------------------------------------------------------------------- faults survived

@pytest.mark.fault
def test_killed_during_extraction_then_rerun(source, tmp_path, uninterrupted):
    killed("fetch", "--from", source, "--data-dir", tmp_path / "data", point="extract")
    assert not fetch.is_complete(tmp_path / "data"), "an interrupted fetch must not look complete"
    assert not (tmp_path / "data" / "index").exists()
    kit_ok("fetch", "--from", source, "--data-dir", tmp_path / "data")
    assert data_tree(tmp_path / "data") == data_tree(uninterrupted("fetch"))
    assert not list((tmp_path / "data").glob(".*.partial"))


@pytest.mark.fault
@pytest.mark.slow
def test_killed_during_feature_extraction_then_rerun_reuses_the_cache(source, tmp_path, uninterrupted):
    kit_ok("fetch", "--from", source, "--data-dir", tmp_path / "data")
    args = FAULT_RUNS["features"]
    killed("train", *args, *paths_for(tmp_path), point="features")
    assert not (tmp_path / "runs" / "cpu" / "metrics.json").exists()
    parts = list((tmp_path / "cache").rglob("part-*.npz"))
    assert len(parts) == 1, "the first finished part survives the kill"
    rerun = run_kit("train", *args, *paths_for(tmp_path))
    assert rerun.returncode == 0, rerun.stderr[-1500:]
    assert "cached, computing" in rerun.stdout
    kit_ok("predict", *args, *paths_for(tmp_path))
    assert_same_outputs(tmp_path, uninterrupted("features"), "features")


@pytest.mark.fault
@pytest.mark.slow
@pytest.mark.parametrize("method", ["finetune", "finetune-stopping", "frozen", "cnn"])
def test_killed_during_training_then_rerun_ends_as_an_uninterrupted_run(source, tmp_path, uninterrupted, method):
    """Killed after the second epoch (finetune: inside its fine-tuning phase, so the rerun resumes with
    the optimizer and early-stopping state of that epoch; frozen: after its last epoch, before the
    phase was finished); cnn has no epoch states and trains again."""
    kit_ok("fetch", "--from", source, "--data-dir", tmp_path / "data")
    args = FAULT_RUNS[method]
    killed("train", *args, *paths_for(tmp_path), point="train-epoch:2")
    assert not (tmp_path / "runs" / "cpu" / "metrics.json").exists()
    if method.startswith("finetune"):
        states = {p.name: json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("state-*.json")}
        assert states["state-warmup.json"]["done"] and states["state-finetune.json"]["epoch"] == 1
    train_and_predict(tmp_path, args)
    reference = uninterrupted(method)
    if method == "finetune-stopping":
        state = json.loads(next((reference / "runs").rglob("fold0/state-finetune.json")).read_text())
        assert state["stopped"] and state["epoch"] < 6, "early stopping must end the phase for this case to count"
    assert_same_outputs(tmp_path, reference, method)


@pytest.mark.fault
@pytest.mark.slow
def test_killed_after_a_finished_fold_then_rerun_skips_it(source, tmp_path, uninterrupted):
    kit_ok("fetch", "--from", source, "--data-dir", tmp_path / "data")
    killed("train", *TINY_FINETUNE, *paths_for(tmp_path), point="fold")
    done = list((tmp_path / "runs").rglob("predictions.npz"))
    assert len(done) == 1
    stamp = done[0].stat().st_mtime_ns
    train_and_predict(tmp_path, TINY_FINETUNE)
    assert done[0].stat().st_mtime_ns == stamp, "the finished fold is reused, not trained again"
    assert_same_outputs(tmp_path, uninterrupted("finetune"), "finetune")


@pytest.mark.fault
@pytest.mark.slow
def test_killed_run_rerun_under_another_seed_equals_a_fresh_run_with_that_seed(source, tmp_path, uninterrupted):
    """The finished fold was trained under seed 42: rerun with seed 7, it is set aside, not blended in."""
    kit_ok("fetch", "--from", source, "--data-dir", tmp_path / "data")
    killed("train", *TINY_FINETUNE, *paths_for(tmp_path), point="fold")
    rerun = run_kit("train", *TINY_FINETUNE, "--set", "seed=7", *paths_for(tmp_path))
    assert rerun.returncode == 0, rerun.stderr[-1500:]
    assert "tiny@32 fold 1: config changed (seed 42 -> 7), training again" in rerun.stdout
    assert (tmp_path / "runs" / "cpu" / "set-aside" / "tiny@32" / "fold0" / "predictions.npz").is_file()
    kit_ok("predict", *TINY_FINETUNE, "--set", "seed=7", *paths_for(tmp_path))
    assert_same_outputs(tmp_path, uninterrupted("finetune", "--set", "seed=7"), "finetune")
    assert outputs(tmp_path, "finetune")["oof.csv"] != outputs(uninterrupted("finetune"), "finetune")["oof.csv"], \
        "seed 7 and seed 42 must give different predictions, or this test proves nothing"
    metrics = json.loads((tmp_path / "runs" / "cpu" / "metrics.json").read_text())
    assert metrics["identity"]["config"]["seed"] == 7 and len(metrics["digest"]) == 16


@pytest.mark.fault
def test_killed_while_writing_the_submission_then_rerun(source, tmp_path, uninterrupted):
    kit_ok("fetch", "--from", source, "--data-dir", tmp_path / "data")
    args = FAULT_RUNS["features"]
    kit_ok("train", *args, *paths_for(tmp_path))
    killed("predict", *args, *paths_for(tmp_path), point="submission")
    assert not (tmp_path / "subs" / "cpu.csv").exists(), "no half-written submission under the real name"
    kit_ok("predict", *args, *paths_for(tmp_path))
    assert_same_outputs(tmp_path, uninterrupted("features"), "features")
    sidecar = json.loads((tmp_path / "subs" / "cpu.json").read_text())
    from kit import fileio

    assert sidecar["sha256"] == fileio.file_digest(tmp_path / "subs" / "cpu.csv")


@pytest.mark.fault
def test_two_commands_on_one_data_directory(source, tmp_path, uninterrupted):
    with lock.exclusive(tmp_path / "data"):
        second = run_kit("fetch", "--from", source, "--data-dir", tmp_path / "data")
    assert second.returncode == 2
    line = second.stderr.strip().splitlines()
    assert len(line) == 1 and "is in use by pid" in line[0] and "wait for it to finish" in line[0]
    assert not fetch.is_complete(tmp_path / "data")
    kit_ok("fetch", "--from", source, "--data-dir", tmp_path / "data")   # released: works now
    assert data_tree(tmp_path / "data") == data_tree(uninterrupted("fetch"))


@pytest.mark.fault
def test_lock_is_released_when_its_holder_is_killed(source, tmp_path, uninterrupted):
    killed("fetch", "--from", source, "--data-dir", tmp_path / "data", point="extract")
    with lock.exclusive(tmp_path / "data"):
        pass
    kit_ok("fetch", "--from", source, "--data-dir", tmp_path / "data")
    assert data_tree(tmp_path / "data") == data_tree(uninterrupted("fetch"))


# --------------------------------------------------------------------------- bad images

def _jpeg(rng, gray=False):
    import cv2

    image = synthetic.draw_image(rng, 1)
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if gray else image)[1].tobytes()


def _bomb_jpeg(rng) -> bytes:
    """A real JPEG whose frame header claims 20000 x 20000 pixels."""
    data = bytearray(_jpeg(rng))
    i = 2
    while not (data[i] == 0xFF and 0xC0 <= data[i + 1] <= 0xC2):
        i += 1
    data[i + 5:i + 9] = struct.pack(">HH", 20000, 20000)
    return bytes(data)


def _png16(rng) -> bytes:
    import cv2

    return cv2.imencode(".png", (np.random.default_rng(1).integers(0, 65535, (60, 50, 3))).astype(np.uint16))[1].tobytes()


def _exif_rotated(rng) -> bytes:
    """A 80 x 40 (w x h) picture whose EXIF says 'rotate 90 degrees clockwise to display'."""
    from PIL import Image

    out = io.BytesIO()
    picture = Image.fromarray(np.zeros((40, 80, 3), np.uint8) + 128)
    exif = Image.Exif()
    exif[0x0112] = 6
    picture.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


BAD_IMAGES = {
    # name: (bytes maker, expected reason or None when it must decode, expected (h, w) when decoded)
    "zero-bytes": (lambda rng: b"", images.EMPTY, None),
    "truncated": (lambda rng: _jpeg(rng)[:900], images.TRUNCATED, None),
    "png-named-jpg": (lambda rng: synthetic.bad_file("png", rng), None, None),
    "text": (lambda rng: b"GIF? no, just text\n", images.NOT_IMAGE, None),
    "grayscale": (lambda rng: _jpeg(rng, gray=True), None, None),
    "cmyk": (lambda rng: synthetic.bad_file("cmyk", rng), None, None),
    "png-16-bit": (_png16, None, (60, 50)),
    "one-pixel": (lambda rng: synthetic.bad_file("one-pixel", rng), images.TOO_SMALL, None),
    "bomb-20000x20000": (_bomb_jpeg, images.TOO_LARGE, None),
    "exif-rotated": (_exif_rotated, None, (80, 40)),
}


@pytest.mark.bad_input
@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_bad_image_decodes_or_is_named(kind, tmp_path):
    make, reason, shape = BAD_IMAGES[kind]
    path = tmp_path / f"dog.{kind}.jpg"
    path.write_bytes(make(np.random.default_rng(0)))
    result = images.load_image(path)
    if reason is None:
        assert isinstance(result, np.ndarray), result
        assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3
        if shape:
            assert result.shape[:2] == shape
    else:
        assert isinstance(result, images.Skip) and result.reason == reason


@pytest.mark.bad_input
def test_unicode_file_name_decodes(tmp_path):
    path = tmp_path / "chat-été-猫.jpg"
    path.write_bytes(_jpeg(np.random.default_rng(0)))
    assert isinstance(images.load_image(path), np.ndarray)


@pytest.mark.bad_input
def test_bad_images_in_a_run_are_listed_with_reasons(tmp_path):
    """The whole corpus inside a competition: the run's skipped.csv names each unusable file."""
    source = synthetic.make_competition(tmp_path / "src", n_train=20, n_test=4, seed=2, planted=False)
    rng = np.random.default_rng(0)
    names = {}
    with zipfile.ZipFile(source / "train.zip", "a") as zf:
        for n, (kind, (make, reason, _)) in enumerate(sorted(BAD_IMAGES.items())):
            names[f"cat.{80000 + n}"] = reason
            zf.writestr(f"train/cat.{80000 + n}.jpg", make(rng))
    kit_ok("fetch", "--from", source, "--data-dir", tmp_path / "data")
    kit_ok("train", *TINY_FEATURES, *paths_for(tmp_path))
    skipped = pd.read_csv(tmp_path / "runs" / "cpu" / "skipped.csv")
    got = {Path(p).name[:-4]: r for p, r in zip(skipped["path"], skipped["reason"])}
    assert got == {name: reason for name, reason in names.items() if reason is not None}


# --------------------------------------------------------------------------- bad archives and configs

@pytest.mark.bad_input
@pytest.mark.parametrize("entry, message", [
    ("../outside.jpg", "unsafe entry"),
    ("/abs/outside.jpg", "unsafe entry"),
    ("notes/readme.txt", "unexpected entry"),
])
def test_bad_archive_entry_refused_nothing_outside(source, tmp_path, entry, message):
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(source, copy)
    with zipfile.ZipFile(copy / "train.zip", "a") as zf:
        zf.writestr(entry, b"x")
    result = run_kit("fetch", "--from", copy, "--data-dir", tmp_path / "deep" / "data")
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "deep" / "outside.jpg").exists() and not (tmp_path / "outside.jpg").exists()
    assert not (tmp_path / "deep" / "data" / "train").exists()


@pytest.mark.bad_input
def test_truncated_archive_refused(source, tmp_path):
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(source, copy)
    data = (copy / "test.zip").read_bytes()
    (copy / "test.zip").write_bytes(data[: len(data) - 200])
    result = run_kit("fetch", "--from", copy, "--data-dir", tmp_path / "data")
    assert result.returncode == 2 and "download it again" in result.stderr
    assert not fetch.is_complete(tmp_path / "data")


@pytest.mark.bad_input
@pytest.mark.parametrize("args, message", [
    (["--set", "epochz=1"], "unknown config key 'epochz' in --set; valid keys: augment, augment_scale, backbones"),
    (["--set", "folds=two"], "--set folds: expected int"),
    (["--set", "backbones=vgg19@224"], "unknown backbone 'vgg19'; valid names: xception, inception_v3"),
    (["--preset", "gpu-huge"], "unknown preset 'gpu-huge'; choose one of: "),
    (["--set", "heads=forest"], "heads 'forest' is not one of: logreg, dense"),
    (["--set", "method=magic"], "method 'magic' is not one of: cnn, features"),
])
def test_bad_config_refused_with_valid_choices(args, message, tmp_path):
    result = run_kit("train", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


# --------------------------------------------------------------------------- bad submissions

BAD_SUBMISSIONS = {
    "missing ids": (lambda ok: "\n".join(ok.splitlines()[:-1]) + "\n", "1 missing"),
    "duplicate ids": (lambda ok: ok + ok.splitlines()[1] + "\n", "appears more than once"),
    "extra ids": (lambda ok: ok + "999,0.5\n", "1 not in the sample submission (first '999')"),
    "NaN": (lambda ok: ok.replace(ok.splitlines()[1], ok.splitlines()[1].split(",")[0] + ",nan"), "NaN, infinite"),
    "inf": (lambda ok: ok.replace(ok.splitlines()[1], ok.splitlines()[1].split(",")[0] + ",inf"), "NaN, infinite"),
    "above 1": (lambda ok: ok.replace(ok.splitlines()[1], ok.splitlines()[1].split(",")[0] + ",1.5"), "must lie in [0, 1]"),
    "below 0": (lambda ok: ok.replace(ok.splitlines()[1], ok.splitlines()[1].split(",")[0] + ",-0.1"), "must lie in [0, 1]"),
    "wrong header": (lambda ok: ok.replace("id,label", "id,prob", 1), "header must be 'id,label'"),
    "wrong delimiter": (lambda ok: ok.replace(",", ";"), "header must be 'id,label'"),
    "empty file": (lambda ok: "", "is empty"),
}


@pytest.mark.bad_input
@pytest.mark.parametrize("kind", sorted(BAD_SUBMISSIONS))
def test_bad_submission_refused_before_any_upload(kind, source, tmp_path):
    from kaggle_emulator import KaggleEmulator

    kit_ok("fetch", "--from", source, "--data-dir", tmp_path / "data")
    sample = (tmp_path / "data" / "sample_submission.csv").read_text()
    damage, message = BAD_SUBMISSIONS[kind]
    path = tmp_path / "bad.csv"
    path.write_text(damage(sample))
    with KaggleEmulator(files=source) as emu:
        env = emu.cli_env(tmp_path / "home", fast_sleep=True)
        env["PYTHONPATH"] += os.pathsep + str(REPO)
        result = subprocess.run([sys.executable, "-m", "kit", "submit", str(path), "-m", "bad", "--force",
                                 "--set", f"data_dir={tmp_path / 'data'}"], env=env, capture_output=True,
                                text=True, timeout=120)
        assert emu.requests == [], "nothing may reach Kaggle"
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


# --------------------------------------------------------------------------- secrets

@pytest.mark.secret
@pytest.mark.slow
def test_the_key_appears_in_no_output_and_no_file(source, tmp_path):
    """fetch, train, predict, submit and the ledger against the emulator, and a kernel build,
    with fake credentials both in the environment and in kaggle.json."""
    from kaggle_emulator import KaggleEmulator

    key = "5ec7e75ec7e75ec7e75ec7e75ec7e7aa"
    work = tmp_path / "work"
    work.mkdir()
    outputs = []
    with KaggleEmulator(files=source, username="someone", key=key) as emu:
        env = emu.cli_env(tmp_path / "home", fast_sleep=True)
        env["PYTHONPATH"] += os.pathsep + str(REPO)
        config_dir = Path(env["KAGGLE_CONFIG_DIR"])
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "kaggle.json").write_text(json.dumps({"username": "someone", "key": key}))
        os.chmod(config_dir / "kaggle.json", 0o600)
        here = ["--set", "runs_dir=runs", "--set", "submissions_dir=submissions", "--set", "cache_dir=cache"]
        steps = [["fetch", *TINY_FEATURES], ["train", *TINY_FEATURES, *here], ["predict", *TINY_FEATURES, *here],
                 ["submit", "submissions/cpu.csv", "-m", "secret check", *TINY_FEATURES], ["submissions"]]
        if (REPO / "kit" / "kernels.py").is_file():
            steps.append(["kernels", "build", "--kernels-dir", str(work / "kernels")])
        for step in steps:
            result = subprocess.run([sys.executable, "-m", "kit", *step], cwd=work, env=env, capture_output=True,
                                    text=True, timeout=300)
            outputs += [result.stdout, result.stderr]
            assert result.returncode == 0, (step, result.stderr[-1500:])
    assert (work / "submissions" / "ledger.csv").is_file()
    for text in outputs:
        assert key not in text
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "kaggle.json":
            assert key.encode() not in path.read_bytes(), f"the key was written into {path}"

"""The Makefile's defaults: `make train` trains the cpu preset; predict, score and submit follow the run
the user made last. Checked with `make -n` (nothing runs but the latest-run lookup) in a scratch folder laid
out as the repository is (its Makefile, kit/, requirements.lock and .venv linked in), with nothing set on
make's command line that a user would not type: an early `PY=` once hid that the lookup ran before PY was
defined."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINKED = ("Makefile", "kit", "requirements.lock", ".venv")

pytestmark = pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").is_file(),
                                reason=f"no {REPO / '.venv'}: these run make as a user does, with the venv make built")


def make_n(work: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess | str:
    for name in LINKED:
        if not (work / name).exists():
            (work / name).symlink_to(REPO / name)
    env = {k: v for k, v in os.environ.items() if k not in ("RUN", "PRESET", "PYTHONPATH", "MAKEFLAGS", "MAKELEVEL")}
    result = subprocess.run(["make", "-n", *args], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    if not ok:
        return result
    assert result.returncode == 0, result.stderr
    return "\n".join(" ".join(line.split()) for line in result.stdout.splitlines())   # as a shell reads it


def finish_run(work: Path, name: str) -> None:
    folder = work / "runs" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "metrics.json").write_text("{}")
    time.sleep(0.02)   # distinct mtimes: "latest" is by finishing time


def test_train_without_preset_trains_the_cpu_preset(tmp_path):
    out = make_n(tmp_path, "train")
    assert "-m kit train --preset cpu" in out
    assert "--set run=" not in out


def test_predict_follows_the_latest_finished_run_and_trains_nothing(tmp_path):
    finish_run(tmp_path, "gpu-classic")
    finish_run(tmp_path, "mine")
    out = make_n(tmp_path, "predict")
    assert "predict follows the latest finished run, RUN=mine" in out
    assert "-m kit predict --preset cpu --set run=mine" in out
    assert "kit train" not in out and "kit fetch" not in out


def test_score_and_submit_follow_it_too(tmp_path):
    finish_run(tmp_path, "mine")
    assert "kit score submissions/mine.csv" in make_n(tmp_path, "score", "LABELS=labels.csv")
    assert "kit submit submissions/mine.csv" in make_n(tmp_path, "submit")


def test_a_named_run_or_preset_wins_over_the_latest(tmp_path):
    finish_run(tmp_path, "gpu-classic")
    finish_run(tmp_path, "mine")
    assert "--set run=gpu-classic" in make_n(tmp_path, "predict", "RUN=gpu-classic")
    out = make_n(tmp_path, "predict", "PRESET=demo")
    assert "-m kit predict --preset demo" in out and "run=mine" not in out


def test_train_then_predict_in_one_command_predicts_what_it_trains(tmp_path):
    finish_run(tmp_path, "mine")
    out = make_n(tmp_path, "train", "predict")
    assert "-m kit train --preset cpu" in out and "-m kit predict --preset cpu" in out
    assert "run=mine" not in out


def test_without_a_finished_run_predict_falls_back_to_the_cpu_preset(tmp_path):
    out = make_n(tmp_path, "predict")
    assert "follows the latest" not in out
    assert "-m kit train --preset cpu" in out and "-m kit predict --preset cpu" in out


def test_train_always_asks_the_kit_which_decides_whether_the_run_is_finished(tmp_path):
    finish_run(tmp_path, "cpu")
    assert "-m kit train --preset cpu" in make_n(tmp_path, "train")
    assert "-m kit train --preset cpu --set folds=3" in make_n(tmp_path, "train", "SET=folds=3")


def test_predict_is_always_asked_too_so_a_new_clip_is_applied(tmp_path):
    finish_run(tmp_path, "cpu")
    (tmp_path / "submissions").mkdir()
    (tmp_path / "submissions" / "cpu.csv").write_text("id,label\n")
    out = make_n(tmp_path, "predict", "SET=clip_low=0.01")
    assert "-m kit predict --preset cpu --set clip_low=0.01" in out and "kit train" not in out


def test_a_named_run_must_be_finished_and_is_never_trained_by_predict(tmp_path):
    finish_run(tmp_path, "cpu")
    out = make_n(tmp_path, "predict", "RUN=typo")
    assert "-m kit runs typo" in out and "kit train" not in out
    assert "kit runs" not in make_n(tmp_path, "predict", "RUN=cpu")
    assert "-m kit train --preset cpu --set run=typo" in make_n(tmp_path, "train", "RUN=typo")


def test_score_without_labels_is_one_line_before_anything_runs(tmp_path):
    finish_run(tmp_path, "cpu")
    result = make_n(tmp_path, "score", ok=False)
    assert result.returncode != 0 and "make score needs LABELS=FILE.csv" in result.stderr
    assert "kit" not in result.stdout


def test_help_lists_the_range_targets_and_the_defaults(tmp_path):
    make_n(tmp_path, "help")
    out = subprocess.run(["make", "-s", "help"], cwd=tmp_path, capture_output=True, text=True, timeout=60).stdout
    for target in ("lock", "test-oldest", "test-latest", "train", "predict"):
        assert f"  {target} " in out
    assert "cpu (default)" in out and "baseline (the from-scratch CNN)" in out


# --- COMPETITION=slug --------------------------------------------------------------------------

SLUG = "aerial-cactus-identification"
TARGETS = ("fetch", "train", "predict", "score", "submit", "submissions", "kernels", "clean", "clean-data", "report")
# What each target ran before COMPETITION reached the commands (`make -n TARGET`, whitespace as a shell reads
# it): Dogs vs. Cats Redux's commands must stay exactly these.
REDUX_COMMANDS = {
    "fetch": [".venv/bin/python -m kit fetch --preset cpu"],
    "train": [".venv/bin/python -m kit fetch --preset cpu", ".venv/bin/python -m kit train --preset cpu",
              ".venv/bin/python -m kit report cpu", 'echo "report: reports/cpu/index.html"'],
    "predict": [".venv/bin/python -m kit fetch --preset cpu", ".venv/bin/python -m kit train --preset cpu",
                ".venv/bin/python -m kit predict --preset cpu", ".venv/bin/python -m kit report cpu",
                'echo "report: reports/cpu/index.html"'],
    "score": [".venv/bin/python -m kit fetch --preset cpu", ".venv/bin/python -m kit train --preset cpu",
              ".venv/bin/python -m kit predict --preset cpu",
              ".venv/bin/python -m kit score submissions/cpu.csv --labels l.csv"],
    "submit": [".venv/bin/python -m kit fetch --preset cpu", ".venv/bin/python -m kit train --preset cpu",
               ".venv/bin/python -m kit predict --preset cpu",
               '.venv/bin/python -m kit submit submissions/cpu.csv -m "$MSG" --preset cpu'],
    "submissions": [".venv/bin/python -m kit submissions --preset cpu"],
    "kernels": [".venv/bin/python -m kit kernels build"],
    "clean": ["rm -rf runs reports"],
    "clean-data": [".venv/bin/python -m kit clean --preset cpu"],
    "report": [".venv/bin/python -m kit report"],
}


VENV_RECIPE = ("test -x ", ".venv/bin/python -m pip ", "touch .venv/")   # make's venv refresh, when the lock is newer


def commands(work: Path, target: str, *args: str) -> list[str]:
    extra = ("LABELS=l.csv",) if target == "score" else ()
    text = make_n(work, target, *extra, *args).replace("\\\n", " ")   # a recipe line continued with \
    return [" ".join(line.split()) for line in text.splitlines() if not line.startswith(("make", *VENV_RECIPE))]


@pytest.mark.parametrize("target", TARGETS)
def test_redux_commands_are_unchanged(tmp_path, target):
    assert commands(tmp_path, target) == REDUX_COMMANDS[target]


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "clean"])   # clean runs no kit: see below
def test_competition_reaches_every_command_of_every_target(tmp_path, target):
    kit_lines = [line for line in commands(tmp_path, target, f"COMPETITION={SLUG}") if " -m kit " in line]
    assert kit_lines
    for line in kit_lines:
        # `kit report` and `kit runs` take no config: they are pointed at the competition's runs; `kit score`
        # reads the competition's saved task
        reached = (f"--set competition={SLUG}", f"--runs-dir runs/{SLUG}", f"--task data/{SLUG}/task.json")
        assert any(marker in line for marker in reached), line


def test_another_competitions_runs_submissions_and_reports_sit_under_its_slug(tmp_path):
    from kit import config

    paths = config.resolve("cpu", {"competition": SLUG})
    out = make_n(tmp_path, "score", "LABELS=l.csv", f"COMPETITION={SLUG}")
    assert f"-m kit score {paths.submissions_dir}/cpu.csv --labels l.csv --task {paths.data_dir}/task.json" in out
    out = make_n(tmp_path, "train", f"COMPETITION={SLUG}")
    assert f"-m kit report cpu --runs-dir {paths.runs_dir} --reports-dir reports/{SLUG}" in out
    assert f"report: reports/{SLUG}/cpu/index.html" in out
    assert f"rm -rf runs/{SLUG} reports/{SLUG}" in make_n(tmp_path, "clean", f"COMPETITION={SLUG}")
    assert "--report-dir reports/" + SLUG + "/clean" in make_n(tmp_path, "clean-data", f"COMPETITION={SLUG}")
    assert f"--set data_dir=elsewhere" in make_n(tmp_path, "fetch", f"COMPETITION={SLUG}", "DATA=elsewhere")


def test_predict_follows_the_latest_run_of_that_competition_only(tmp_path):
    finish_run(tmp_path, f"{SLUG}/cactus-run")
    finish_run(tmp_path, "redux-run")
    out = make_n(tmp_path, "predict", f"COMPETITION={SLUG}")
    assert f"-m kit predict --preset cpu --set run=cactus-run --set competition={SLUG}" in out
    assert "redux-run" not in out
    assert "--set run=redux-run" in make_n(tmp_path, "predict")

"""The README's commands, typed as a user types them, in a fresh copy of the repository.

Nothing is overridden: no PY=, no STAMP=, no PYTHONPATH; make finds the real `.venv` (the one `make test`
built) where a user's `make` would. The defaults are the user's too: `make train` trains the cpu preset on
its real ImageNet weights, here on a tiny synthetic competition.

Two stand-ins, because the real things cannot be reached from here: Kaggle is the loopback emulator
(tests/kaggle_emulator.py; the official client talks to it through a proxy variable, as it would talk to
kaggle.com), and Kaggle's kernel runner is this machine running the pushed script in isolated mode
(`python -I`) with a fake /kaggle, the way tests/test_kernels.py plays kernels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO
from kaggle_emulator import KaggleEmulator
from kit import COMPETITION, fileio, score
from kit.data import synthetic, synthetic_layouts
from kit.task import layout, spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO / ".venv" / ".installed").is_file(),
                       reason=f"no {REPO / '.venv'} built by make (run the suite with `make test`)"),
]

USER, KEY = "acceptance-user", "acce55acce55acce55acce55acce55ac"
DATA = Path("data") / COMPETITION
# make's own variables, inherited when the suite runs under `make test`: a user's shell has none of them.
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def fresh_copy(target: Path) -> Path:
    """The repository as a clone of this working tree would hold it (tracked and untracked, not ignored),
    file times kept so the lock is no newer than the venv that was built from it; the real .venv linked in."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    (target / ".venv").symlink_to(REPO / ".venv", target_is_directory=True)
    return target


class User:
    """A shell in the fresh copy: credentials in the environment, the client pointed at the emulator."""

    def __init__(self, emu: KaggleEmulator, home: Path, repo: Path):
        self.repo = repo
        self.env = {k: v for k, v in emu.cli_env(home).items() if k not in MAKE_VARIABLES}
        self.printed: list[str] = []

    def make(self, *args: str, ok: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(["make", *args], cwd=self.repo, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        self.printed += [result.stdout, result.stderr]
        if ok:
            assert result.returncode == 0, f"make {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and len(lines) == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def play_kernel(script_text: str, competition: Path, where: Path, slug: str = COMPETITION) -> Path:
    """Kaggle's runner, stood in for: the pushed script, isolated, competition files in /kaggle/input/<slug>."""
    root = where / "kaggle"
    (root / "input").mkdir(parents=True)
    (root / "input" / slug).symlink_to(competition, target_is_directory=True)
    for name in ("cwd", "tmp", "home"):
        (where / name).mkdir()
    script = where / "kernel.py"
    script.write_text(script_text)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(where / "home"), "TMPDIR": str(where / "tmp"),
           "KIT_KAGGLE_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2", "KIT_OFFLINE": "1"}
    result = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-I", str(script)], cwd=where / "cwd", env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return root / "working"


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return synthetic.make_competition(tmp_path_factory.mktemp("source"), n_train=32, n_test=9, seed=3, planted=False)


def test_the_readme_flow_from_download_to_kernel_submission(competition, tmp_path):
    repo = fresh_copy(tmp_path / "repo")
    copied = time.time()
    labels = competition.parent / "test_labels.csv"
    with KaggleEmulator(files=competition, username=USER, key=KEY) as emu:
        user = User(emu, tmp_path / "home", repo)

        # fetch: the download through the official client.
        user.make("fetch")
        assert (repo / DATA / "fetch.json").is_file() and len(emu.calls("DownloadDataFiles")) == 1

        # train: the cpu preset; asked again, the kit says it is finished and nothing is redone.
        trained = user.make("train")
        assert "-m kit train --preset cpu" in trained.stdout and "report: reports/cpu/index.html" in trained.stdout
        metrics = repo / "runs" / "cpu" / "metrics.json"
        finished_at = metrics.stat().st_mtime_ns
        again = user.make("train")
        assert "train: run cpu is finished with these settings" in again.stdout
        assert metrics.stat().st_mtime_ns == finished_at and "kit report" not in again.stdout

        # predict, score, submit, submissions: each on the run just made, without naming it.
        predicted = user.make("predict")
        assert "predict follows the latest finished run, RUN=cpu" in predicted.stdout
        first = repo / "submissions" / "cpu.csv"
        sample = pd.read_csv(repo / DATA / "sample_submission.csv")
        score.validate_submission(pd.read_csv(first), sample["id"])
        scored = user.make("score", f"LABELS={labels}")
        expected = score.score_file(first, labels)
        assert f"log loss {expected['log_loss']:.5f}  accuracy {expected['accuracy']:.4f}" in scored.stdout
        first_bytes = first.read_bytes()
        user.make("submit", "MSG=first from make")
        assert [s.content for s in emu.submissions] == [first_bytes]
        assert emu.submissions[0].description == "first from make"
        emu.score_submission(emu.submissions[0].ref, "0.04321")
        listed = user.make("submissions")
        assert "0.04321" in listed.stdout

        # A changed setting trains again, says what changed, and the new file is what the next submit uploads.
        changed = user.make("train", "SET=folds=3")
        assert "train: run cpu was finished under other settings (config changed (folds 5 -> 3))" in changed.stdout
        assert fileio.read_json(metrics)["folds"] == 3
        user.make("predict")
        assert fileio.read_json(first.with_suffix(".json"))["config"]["folds"] == 3
        user.make("submit", "MSG=three folds")
        assert len(emu.submissions) == 2 and emu.submissions[1].content == first.read_bytes()
        assert fileio.read_json(first.with_suffix(".json"))["sha256"] == fileio.file_digest(first)

        # Mistakes are one line each, and cost nothing.
        assert "unknown config key 'foo'" in error_line(user.make("train", "SET=foo=1", ok=False))
        line = error_line(user.make("predict", "RUN=typo", ok=False))
        assert "no finished run named 'typo' (finished runs: cpu)" in line
        assert not (repo / "runs" / "typo").exists() and len(emu.submissions) == 2

        # kernels: build -> push -> status -> (Kaggle runs it) -> output -> submit.
        user.make("kernels")
        for path in (REPO / "kernels").rglob("*"):
            if path.is_file():
                assert (repo / "kernels" / path.relative_to(REPO / "kernels")).read_bytes() == path.read_bytes()
        pushed = user.make("kernel-push", "KERNEL=cpu")
        ref = f"{USER}/dvc-kit-cpu"
        assert f"pushed {ref} (version 1)" in pushed.stdout
        assert f"{ref} is QUEUED" in user.make("kernel-status", "KERNEL=cpu").stdout
        working = play_kernel(emu.kernel(ref).pushes[-1].text, competition, tmp_path / "kaggle-run")
        emu.set_kernel_status(ref, "COMPLETE")
        emu.set_kernel_output(ref, {p.name: p.read_bytes() for p in working.iterdir() if p.is_file()}, log="[log]\n")
        assert f"{ref} is COMPLETE" in user.make("kernel-status", "KERNEL=cpu").stdout
        user.make("kernel-output", "KERNEL=cpu")
        kernel_file = repo / "submissions" / "kernels" / "cpu.csv"
        assert kernel_file.read_bytes() == (working / "submission.csv").read_bytes()
        user.make("kernel-submit", "KERNEL=cpu", "MSG=from the kernel")
        assert len(emu.submissions) == 3 and emu.submissions[2].content == kernel_file.read_bytes()
        ledger = pd.read_csv(repo / "submissions" / "ledger.csv")
        assert ledger["file"].tolist() == ["submissions/cpu.csv"] * 2 + ["submissions/kernels/cpu.csv"]

    for text in user.printed:
        assert KEY not in text, "the API key in the output"
    for folder, dirs, files in os.walk(tmp_path):   # every file the flow wrote; not into the linked .venv
        for path in (Path(folder) / name for name in files):
            if not path.is_symlink() and path.stat().st_mtime >= copied and path.name != "kaggle.json":
                assert KEY.encode() not in path.read_bytes(), f"the API key in {path}"


def test_another_competition_by_its_slug_alone(tmp_path):
    """Issue 21's promise as typed: `COMPETITION=slug` on each command and nothing else to set. Plant
    Seedlings is the layout least like Redux's: labels from class folders, a zipped sample, the class name
    as the submitted value, micro F1. Its kernel is built for it and runs on its /kaggle/input folder."""
    slug = "plant-seedlings-classification"
    competition = synthetic_layouts.make(tmp_path / "source", slug, n_train=40, n_test=8, seed=3)
    labels = tmp_path / "source" / synthetic_layouts.TEST_LABELS
    repo = fresh_copy(tmp_path / "repo")
    with KaggleEmulator(files=competition, competition=slug, username=USER, key=KEY) as emu:
        user = User(emu, tmp_path / "home", repo)
        user.make("fetch", f"COMPETITION={slug}")
        task = spec.load(repo / "data" / slug / "task.json")
        assert (task.metric, task.label_source, task.header) == ("f1_micro", "folders", ("file", "species"))

        trained = user.make("train", f"COMPETITION={slug}")
        assert f"report: reports/{slug}/cpu/index.html" in trained.stdout
        assert fileio.read_json(repo / "runs" / slug / "cpu" / "metrics.json")["metric"] == "f1_micro"
        user.make("predict", f"COMPETITION={slug}")
        submission = repo / "submissions" / slug / "cpu.csv"
        checked = layout.check_file(submission, task, layout.read_sample(repo / "data" / slug, task))
        assert len(checked) == 8 and set(checked["species"]) <= set(task.classes)
        scored = user.make("score", f"COMPETITION={slug}", f"LABELS={labels}")
        assert "f1_micro " in scored.stdout and "(higher is better)" in scored.stdout

        user.make("submit", f"COMPETITION={slug}", "MSG=seedlings")
        assert [s.content for s in emu.submissions] == [submission.read_bytes()]
        ledger = pd.read_csv(repo / "submissions" / slug / "ledger.csv")
        assert ledger["file"].tolist() == [f"submissions/{slug}/cpu.csv"]
        local = fileio.read_json(submission.with_suffix(".json"))["local_score"]
        assert ledger["metric"].tolist() == ["f1_micro"] and ledger["local_score"].iloc[0] == pytest.approx(local, abs=1e-6)
        assert not (repo / "submissions" / "cpu.csv").exists() and not (repo / "runs" / "cpu").exists(), \
            "Redux's files are not another competition's"

        user.make("kernels", f"COMPETITION={slug}")
        pushed = user.make("kernel-push", "KERNEL=cpu", f"COMPETITION={slug}")
        ref = f"{USER}/dvc-kit-{slug}-cpu"
        assert f"pushed {ref} (version 1)" in pushed.stdout
        assert emu.kernel(ref).pushes[-1].request["competitionDataSources"] == [slug]
        working = play_kernel(emu.kernel(ref).pushes[-1].text, competition, tmp_path / "kaggle-run", slug)
        layout.check_file(working / "submission.csv", task, layout.read_sample(repo / "data" / slug, task))

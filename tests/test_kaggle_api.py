"""fetch (download), submit and the ledger, driving the real kaggle client against tests/kaggle_emulator.py.

Two ways in: in-process (`emu.in_process` points the client at the emulator and skips its retry
back-off) for the cases that need a close look at files and requests, and `python -m kit ...` /
`make ...` in a subprocess, exactly as a user runs them, for everything a user sees. Every test
ends with a scan of its output and of every file it wrote for the API key.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import importlib.util
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO
from kaggle_emulator import (
    FAULT_CORRUPT_ARCHIVE,
    FAULT_CREATE_SUBMISSION_500,
    FAULT_DROP_DOWNLOAD,
    FAULT_RULES_NOT_ACCEPTED,
    FAULT_STALL_DOWNLOAD,
    FAULT_UPLOAD_500,
    KaggleEmulator,
)
from kit import COMPETITION, fetch, fileio
from kit.config import Config
from kit.data import synthetic, synthetic_layouts
from kit.errors import KitError
from kit.kaggle import download, kaggle_api, ledger, submit

pytestmark = pytest.mark.skipif(importlib.util.find_spec("kaggle") is None,
                                reason="the official kaggle client is not installed")

KEY = "f00dfeed5ecre7f00dfeed5ecre7f00d"     # the emulator's key: must never show up anywhere
WRONG_KEY = "0badc0de0badc0de0badc0de0badc0de"
WRONG_TOKEN = "KGAT_5ca1ab1e5ca1ab1e5ca1ab1e"
USER = "emulated-user"
SECRETS = (KEY, WRONG_KEY, WRONG_TOKEN, base64.b64encode(f"{USER}:{KEY}".encode()).decode())
DATA = Path("data") / COMPETITION     # the default data_dir, relative to the working directory
PADDING = random.Random(7).randbytes(3 * 1024 * 1024)   # > the client's 1 MiB chunk: a real resume


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return synthetic.make_competition(tmp_path_factory.mktemp("kaggle-source"), n_train=20, n_test=6, planted=False)


@pytest.fixture
def seen(tmp_path):
    """Everything a test printed or raised; after the test, it and every file written must hold no secret."""
    texts: list[str] = []
    yield texts
    for text in texts:
        assert not any(secret in text for secret in SECRETS), "a secret in the output (not shown here)"
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "kaggle.json":   # kaggle.json is where a test put the key
            data = path.read_bytes()
            assert not any(secret.encode() in data for secret in SECRETS), f"a secret in {path}"


@pytest.fixture
def emu(source):
    with KaggleEmulator(files=source, username=USER, key=KEY) as emulator:
        yield emulator


@pytest.fixture
def work(tmp_path) -> Path:
    """The user's working directory: data/, runs/ and submissions/ go here."""
    path = tmp_path / "work"
    path.mkdir()
    return path


class Kit:
    """`python -m kit ARGS` or `make ARGS` in `work`, with the environment `emu.cli_env` builds."""

    def __init__(self, emu, tmp_path, work, seen):
        self.emu, self.work, self.seen = emu, work, seen
        self.env = emu.cli_env(tmp_path / "home", fast_sleep=True)
        self.env["PYTHONPATH"] += os.pathsep + str(REPO)

    def __call__(self, *args, env=None):
        return self._run([sys.executable, "-m", "kit", *map(str, args)], env)

    def make(self, *args, env=None):
        # The venv is this interpreter's; STAMP= keeps make from (re)building one in `work`.
        venv_python = Path(sys.executable)
        return self._run(["make", "-f", str(REPO / "Makefile"), f"PY={venv_python}", "STAMP=", *args], env)

    def _run(self, command, env):
        result = subprocess.run(command, cwd=self.work, env=env or self.env, capture_output=True, text=True,
                                timeout=120)
        self.seen += [result.stdout, result.stderr]
        return result


@pytest.fixture
def kit(emu, tmp_path, work, seen):
    return Kit(emu, tmp_path, work, seen)


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def fetched(work: Path, source: Path) -> Path:
    """A data directory as `fetch --from` leaves it, for the submission tests."""
    return fetch.fetch_from(source, work / DATA, log=lambda *_: None)


def predicted(path: Path, local=0.1234567, clip=(0.005, 0.995), n=6) -> Path:
    """A submission file with the sidecar `predict` writes beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,label\n" + "".join(f"{i},{0.2 + i / 10:.6f}\n" for i in range(1, n + 1)))
    config = Config(run=path.stem, epochs=3).to_dict()
    fileio.write_json(path.with_suffix(".json"), {"file": path.name, "sha256": fileio.file_digest(path),
                                                  "clip": list(clip), "local_log_loss": local, "config": config})
    return path


def ledger_rows(work: Path) -> list[dict]:
    path = work / "submissions" / "ledger.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- import hygiene and secrets ---------------------------------------------------------------

def test_importing_kit_does_not_import_the_client():
    code = "import kit, kit.cli, kit.kaggle.kaggle_api, kit.kaggle.download, kit.kaggle.submit, kit.kaggle.ledger, sys; " \
           "assert 'kaggle' not in sys.modules, 'kaggle imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr


def test_scrub_removes_every_form_of_the_key(monkeypatch, seen):
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    basic = base64.b64encode(f"{USER}:{KEY}".encode()).decode()
    text = kaggle_api.scrub(f"401 for http://proxy-user:proxy-pass@proxy:3128/v1?key={KEY} "
                            f"headers={{'Authorization': 'Basic {basic}'}}")
    seen.append(text)
    assert "proxy-pass" not in text and text.count("***") == 3


# --- fetch ------------------------------------------------------------------------------------

def test_fetch_downloads_checks_and_indexes_then_stays_offline(emu, tmp_path, seen):
    data, lines = tmp_path / "data", []
    with emu.in_process(tmp_path / "home"):
        download.fetch_from_kaggle(emu.competition, data, log=lines.append)
        assert [r.rpc or r.kind for r in emu.requests] == ["DownloadDataFiles", "download"]
        index = pd.read_csv(data / "index" / "train.csv")
        assert len(index) == 20 and sorted(index.label.value_counts()) == [10, 10]
        assert len(pd.read_csv(data / "index" / "test.csv")) == 6
        assert fetch.is_complete(data)
        assert sorted(p.name for p in (data / "download" / "files").iterdir()) == \
            ["sample_submission.csv", "test.zip", "train.zip"]
        stamp = (data / "fetch.json").stat().st_mtime_ns

        emu.clear_requests()
        lines.clear()
        download.fetch_from_kaggle(emu.competition, data, log=lines.append)
        assert emu.requests == []          # not even DownloadDataFiles
        assert "not contacting Kaggle" in lines[0] and "up to date" in lines[1]
        assert (data / "fetch.json").stat().st_mtime_ns == stamp

        download.fetch_from_kaggle(emu.competition, data, force=True, log=lines.append)
        assert [r.rpc or r.kind for r in emu.requests] == ["DownloadDataFiles", "download"]
    seen += lines


def test_make_fetch_of_a_second_competition_downloads_it_beside_redux(tmp_path, work, seen):
    """`make fetch COMPETITION=aerial-cactus-identification`: the client downloads that slug's one archive
    (its pictures in train/ and test/ folders, labels in train.csv), the task is read from it, and Redux's
    data folder is left as it was."""
    slug = "aerial-cactus-identification"
    files = synthetic_layouts.make(tmp_path / "cactus", slug, n_train=12, n_test=4, seed=1)
    redux = work / DATA
    redux.mkdir(parents=True)
    (redux / "fetch.json").write_text("{}")
    with KaggleEmulator(files=files, competition=slug, username=USER, key=KEY) as emu:
        result = Kit(emu, tmp_path, work, seen).make("fetch", f"COMPETITION={slug}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert [c.json["competitionName"] for c in emu.calls("DownloadDataFiles")] == [slug]
    data = work / "data" / slug
    task = fetch.read_task(data)
    assert (task.slug, task.metric, task.label_source, task.labels_file, task.id_with_extension) == (
        slug, "roc_auc", "csv", "train.csv", True)
    labels = pd.read_csv(files / "train.csv").set_index("id")["has_cactus"]
    train = fetch.read_index(data, "train")
    assert len(train) == 12 and (train["label"].to_numpy() == labels.loc[train["id"]].to_numpy()).all()
    assert sorted(fetch.read_index(data, "test")["id"]) == sorted(pd.read_csv(files / "sample_submission.csv")["id"])
    assert [p.name for p in redux.iterdir()] == ["fetch.json"] and (redux / "fetch.json").read_text() == "{}"


NEW_SLUG = "leaf-photos-2026"   # no competition the kit's registry knows: its metric comes from Kaggle


@pytest.mark.parametrize("kaggle_name, metric", [("Categorization Accuracy", "accuracy"),
                                                 ("Micro-averaged F1-Score", "f1_micro")])
def test_fetch_of_an_unknown_competition_reads_its_metric_from_kaggle(kaggle_name, metric, tmp_path, work, seen):
    """The registry knows a few competitions; for any other, Kaggle's own name for the metric
    (ApiCompetition.evaluation_metric) chooses the registry's entry, with nothing to set."""
    files = synthetic_layouts.make(tmp_path / "leaf", "plant-seedlings-classification", n_train=12, n_test=4, seed=1)
    with KaggleEmulator(files=files, competition=NEW_SLUG, username=USER, key=KEY,
                        evaluation_metric=kaggle_name) as emu:
        result = Kit(emu, tmp_path, work, seen).make("fetch", f"COMPETITION={NEW_SLUG}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert [c.json["search"] for c in emu.calls("ListCompetitions")] == [NEW_SLUG]
    assert f"Kaggle names the metric of {NEW_SLUG} {kaggle_name!r}: scoring on {metric}" in result.stdout
    assert fetch.read_task(work / "data" / NEW_SLUG).metric == metric
    with KaggleEmulator(files=files, competition=NEW_SLUG, username=USER, key=KEY,
                        evaluation_metric=kaggle_name) as emu:
        again = Kit(emu, tmp_path, work, seen).make("fetch", f"COMPETITION={NEW_SLUG}")
        assert again.returncode == 0, again.stdout + again.stderr
        assert emu.requests == [], "a second fetch of the same download does not contact Kaggle, for the metric either"


def test_a_metric_kaggle_names_in_words_the_kit_lacks_is_one_line_naming_the_setting(tmp_path, work, seen):
    files = synthetic_layouts.make(tmp_path / "leaf", "plant-seedlings-classification", n_train=12, n_test=4, seed=1)
    with KaggleEmulator(files=files, competition=NEW_SLUG, username=USER, key=KEY,
                        evaluation_metric="Mean Average Precision @ 5") as emu:
        kit = Kit(emu, tmp_path, work, seen)
        line = one_error_line(kit("fetch", "--set", f"competition={NEW_SLUG}"))
        assert line.startswith(f"error: competition {NEW_SLUG!r} is not one the kit knows and Kaggle names its "
                               "metric 'Mean Average Precision @ 5': set metric (one of: log_loss,")
        assert not (work / "data" / NEW_SLUG / "fetch.json").exists()
        chosen = kit.make("fetch", f"COMPETITION={NEW_SLUG}", "SET=metric=accuracy")
        assert chosen.returncode == 0, chosen.stdout + chosen.stderr
        assert len(emu.calls("ListCompetitions")) == 1, "a metric the user set is not asked of Kaggle"
    assert fetch.read_task(work / "data" / NEW_SLUG).metric == "accuracy"


def test_rules_not_accepted_is_one_line_with_the_rules_page(kit, emu, work):
    emu.inject(FAULT_RULES_NOT_ACCEPTED)
    line = one_error_line(kit("fetch"))
    assert line == (f"error: Kaggle refused downloading {COMPETITION} (403: You must accept this competition's "
                    "rules before you'll be able to download files.): accept the competition rules at "
                    f"https://www.kaggle.com/c/{COMPETITION}/rules with this account, then rerun `python -m kit fetch`")
    assert not (work / DATA / "fetch.json").exists()
    assert not (work / DATA / "download" / f"{COMPETITION}.zip").exists()


def test_unknown_competition_names_the_config_key(emu, tmp_path, seen):
    with emu.in_process(tmp_path / "home"), pytest.raises(KitError) as caught:
        download.fetch_from_kaggle("no-such-competition", tmp_path / "data", log=seen.append)
    seen.append(str(caught.value))
    assert str(caught.value).startswith("competition 'no-such-competition' not found on Kaggle (404)")
    assert "--set competition=" in str(caught.value)


def test_dropped_connection_keeps_the_partial_and_a_rerun_resumes(source, tmp_path, seen):
    files = {p.name: p.read_bytes() for p in source.iterdir()} | {"padding.bin": PADDING}
    data = tmp_path / "data"
    archive = data / "download" / f"{COMPETITION}.zip"
    with KaggleEmulator(files=files, username=USER, key=KEY) as emu, emu.in_process(tmp_path / "home"):
        emu.inject(FAULT_DROP_DOWNLOAD, times=None)
        with pytest.raises(KitError) as caught:
            download.fetch_from_kaggle(emu.competition, data, log=seen.append)
        assert str(caught.value) == (f"network failure while downloading {COMPETITION} (ChunkedEncodingError, "
                                     "after the client's retries): rerun `python -m kit fetch` to resume")
        partial = archive.stat().st_size
        assert 0 < partial < len(emu.all_files_archive())
        assert archive.with_name(archive.name + ".kaggle-partial").exists()
        assert not fetch.is_complete(data)

        emu.clear_faults()
        emu.clear_requests()
        download.fetch_from_kaggle(emu.competition, data, log=seen.append)
        assert [r.headers.get("Range") for r in emu.requests_of_kind("download")] == [None, f"bytes={partial}-"]
        assert archive.read_bytes() == emu.all_files_archive()
        assert fetch.is_complete(data) and len(pd.read_csv(data / "index" / "test.csv")) == 6


@pytest.mark.fault
def test_fetch_killed_mid_download_then_rerun_resumes_with_a_range_request(source, tmp_path, work, seen):
    """A SIGKILL while the client is streaming the archive: no cleanup runs, the next fetch finishes it."""
    files = {p.name: p.read_bytes() for p in source.iterdir()} | {"padding.bin": PADDING}
    archive = work / DATA / "download" / f"{COMPETITION}.zip"
    with KaggleEmulator(files=files, username=USER, key=KEY) as emulator:
        kit = Kit(emulator, tmp_path, work, seen)
        emulator.inject(FAULT_STALL_DOWNLOAD)
        process = subprocess.Popen([sys.executable, "-m", "kit", "fetch"], cwd=work, env=kit.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not (archive.is_file() and archive.stat().st_size > 0) and time.monotonic() < deadline:
                assert process.poll() is None, "fetch ended before the stalled download could be killed"
                time.sleep(0.05)
            assert archive.is_file() and archive.stat().st_size > 0, "the client never wrote a byte"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        partial = archive.stat().st_size
        assert 0 < partial < len(emulator.all_files_archive())
        assert not fetch.is_complete(work / DATA)

        emulator.clear_faults()
        emulator.clear_requests()
        result = kit("fetch")

        assert result.returncode == 0, result.stderr
        # The client's first GET only reads the headers; the bytes come from the Range request.
        assert [r.headers.get("Range") for r in emulator.requests_of_kind("download")] == [None, f"bytes={partial}-"]
        assert archive.read_bytes() == emulator.all_files_archive()
        assert fetch.is_complete(work / DATA) and len(pd.read_csv(work / DATA / "index" / "test.csv")) == 6


def test_corrupt_archive_is_deleted_nothing_indexed_and_a_rerun_downloads_again(emu, tmp_path, seen):
    data = tmp_path / "data"
    archive = data / "download" / f"{COMPETITION}.zip"
    with emu.in_process(tmp_path / "home"):
        emu.inject(FAULT_CORRUPT_ARCHIVE)
        with pytest.raises(KitError) as caught:
            download.fetch_from_kaggle(emu.competition, data, log=seen.append)
        assert str(caught.value) == (f"the downloaded {COMPETITION}.zip is corrupt (File is not a zip file); "
                                     "deleted it: rerun `python -m kit fetch` to download it again")
        assert sorted(p.name for p in data.rglob("*")) == ["download"]   # no archive, marker, files or index

        download.fetch_from_kaggle(emu.competition, data, log=seen.append)
        assert fetch.is_complete(data) and archive.read_bytes() == emu.all_files_archive()


# --- credentials ------------------------------------------------------------------------------

def test_missing_credentials_is_one_line_naming_every_option(kit, emu):
    env = {k: v for k, v in kit.env.items() if k not in ("KAGGLE_USERNAME", "KAGGLE_KEY")}
    result = kit("fetch", env=env)
    assert one_error_line(result) == (
        "error: no Kaggle API credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or save the kaggle.json from "
        "https://www.kaggle.com/settings/api as ~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_API_TOKEN")
    assert result.stdout == "" and emu.requests == []


@pytest.mark.parametrize("credentials, origin", [
    ({"KAGGLE_KEY": WRONG_KEY}, "KAGGLE_USERNAME/KAGGLE_KEY"),
    ({"KAGGLE_USERNAME": None, "KAGGLE_KEY": None, "KAGGLE_API_TOKEN": WRONG_TOKEN}, "KAGGLE_API_TOKEN"),
])
def test_rejected_credentials_are_one_line_401(credentials, origin, kit, emu):
    env = {k: v for k, v in {**kit.env, **credentials}.items() if v is not None}
    result = kit("fetch", env=env)
    assert one_error_line(result) == (f"error: Kaggle rejected the credentials from {origin} (401 Unauthenticated): "
                                      f"create a new token at https://www.kaggle.com/settings/api and update {origin}")
    assert "Authentication required" not in result.stdout   # the client's help page stays out of sight
    assert emu.requests and {r.status for r in emu.requests} == {401}


def test_kaggle_json_readable_by_others_is_warned_about_once(kit, emu, tmp_path, work):
    config = Path(kit.env["KAGGLE_CONFIG_DIR"]) / "kaggle.json"
    config.write_text(json.dumps({"username": USER, "key": KEY}))
    config.chmod(0o644)
    env = {k: v for k, v in kit.env.items() if k not in ("KAGGLE_USERNAME", "KAGGLE_KEY")}

    result = kit("fetch", env=env)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: ~/.kaggle/kaggle.json is readable by other users; "
                        "run `chmod 600 ~/.kaggle/kaggle.json`"]
    assert emu.calls("DownloadDataFiles")[0].auth_user == USER

    config.chmod(stat.S_IRUSR | stat.S_IWUSR)
    result = kit("fetch", "--force", env=env)
    assert result.returncode == 0 and "warning" not in result.stderr


# --- submit and the ledger --------------------------------------------------------------------

def test_submit_uploads_and_records_every_ledger_column(kit, emu, work, source):
    fetched(work, source)
    path = predicted(work / "submissions" / "baseline.csv")
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

    result = kit("submit", "submissions/baseline.csv", "-m", "first, with a comma")

    assert result.returncode == 0, result.stderr
    (stored,) = emu.submissions
    assert stored.content == path.read_bytes() and stored.description == "first, with a comma"
    assert f"as submission {stored.ref} (local log loss 0.12346)" in result.stdout
    (row,) = ledger_rows(work)
    assert list(row) == list(ledger.COLUMNS)
    created = dt.datetime.fromisoformat(row.pop("created"))
    assert before <= created <= dt.datetime.now(dt.timezone.utc)
    assert row == {
        "file": "submissions/baseline.csv", "competition": "dogs-vs-cats-redux-kernels-edition",
        "sha256": fileio.file_digest(path), "local_log_loss": "0.123457",
        "clip_low": "0.005", "clip_high": "0.995", "config": '{"epochs":3,"run":"baseline"}',
        "message": "first, with a comma", "ref": str(stored.ref), "status": "PENDING", "public_score": "",
        "metric": "log_loss", "local_score": "0.123457",
    }


def test_upload_500_is_a_failure_with_no_ledger_row(kit, emu, work, source):
    fetched(work, source)
    predicted(work / "submissions" / "baseline.csv")
    emu.inject(FAULT_UPLOAD_500)

    result = kit("submit", "submissions/baseline.csv", "-m", "m")

    assert one_error_line(result) == ("error: Kaggle did not take baseline.csv: Could not submit to competition; "
                                      "nothing was submitted, try again later")
    assert emu.submissions == [] and ledger_rows(work) == []


def test_create_submission_500_is_a_failure_with_no_ledger_row(emu, tmp_path, work, source, seen):
    fetched(work, source)
    path = predicted(work / "submissions" / "baseline.csv")
    config = Config(data_dir=str(work / DATA), submissions_dir=str(work / "submissions"))
    emu.inject(FAULT_CREATE_SUBMISSION_500)
    with emu.in_process(tmp_path / "home"), pytest.raises(KitError) as caught:
        submit.submit(path, "m", config, log=seen.append)
    assert str(caught.value) == ("Kaggle answered 500 (Internal server error) while submitting baseline.csv to "
                                 f"{COMPETITION}: check `python -m kit submissions` before submitting again")
    assert ledger_rows(work) == []


@pytest.mark.parametrize("damage, message", [
    ("no-sample", "no sample_submission.csv in"),
    ("missing-id", "ids do not match the sample submission's: 1 missing (first '6')"),
    ("no-sidecar", "has no local score (baseline.json not found or unreadable): submit a file written by "
                   "`python -m kit predict`, or pass --force"),
    ("edited", "has changed since baseline.json was written (sha256 differs)"),
])
def test_refused_files_cost_no_network_call(damage, message, emu, tmp_path, work, source, seen):
    if damage != "no-sample":
        fetched(work, source)
    path = predicted(work / "submissions" / "baseline.csv")
    if damage == "missing-id":
        path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    elif damage == "no-sidecar":
        path.with_suffix(".json").unlink()
    elif damage == "edited":
        path.write_text(path.read_text().replace("0.3", "0.4"))
    config = Config(data_dir=str(work / DATA), submissions_dir=str(work / "submissions"))
    with emu.in_process(tmp_path / "home"), pytest.raises(KitError) as caught:
        submit.submit(path, "m", config, log=seen.append)
    assert message in str(caught.value)
    assert emu.requests == [] and ledger_rows(work) == []


def test_force_submits_a_file_without_local_score(emu, tmp_path, work, source, seen):
    fetched(work, source)
    path = predicted(work / "submissions" / "baseline.csv")
    path.with_suffix(".json").unlink()
    config = Config(data_dir=str(work / DATA), submissions_dir=str(work / "submissions"))
    with emu.in_process(tmp_path / "home"):
        row = submit.submit(path, "no score", config, force=True, log=seen.append)
    assert (row["local_log_loss"], row["clip_low"], row["config"], row["status"]) == ("", "", "", "PENDING")
    assert [r["ref"] for r in ledger_rows(work)] == [str(emu.submissions[0].ref)]


def test_submissions_refreshes_public_scores_then_stays_offline(kit, emu, work, source):
    fetched(work, source)
    predicted(work / "submissions" / "baseline.csv", local=0.05)
    assert kit("submit", "submissions/baseline.csv", "-m", "one").returncode == 0
    predicted(work / "submissions" / "other.csv", local=0.2)
    assert kit("submit", "submissions/other.csv", "-m", "two").returncode == 0
    first, second = (s.ref for s in emu.submissions)
    emu.score_submission(first, "0.0412")
    emu.fail_submission(second, "Submission must have 12500 rows")

    result = kit("submissions")

    assert result.returncode == 0, result.stderr
    table = result.stdout.splitlines()
    assert table[0] == f"submissions: {second} failed on Kaggle: Submission must have 12500 rows"
    assert table[1].split() == ["ref", "created", "file", "local", "public", "public-local", "status", "message"]
    assert table[2].split()[0] == str(first) and table[2].split()[3:] == \
        ["submissions/baseline.csv", "0.05000", "0.04120", "-0.00880", "COMPLETE", "one"]
    assert table[3].split()[0] == str(second) and table[3].split()[3:] == \
        ["submissions/other.csv", "0.20000", "ERROR", "two"]
    assert table[2].index("0.04120") == table[1].index("public")   # aligned columns
    rows = ledger_rows(work)
    assert [(r["status"], r["public_score"]) for r in rows] == [("COMPLETE", "0.0412"), ("ERROR", "")]

    emu.clear_requests()
    assert kit("submissions").returncode == 0
    assert emu.requests == []     # nothing can change any more: no call to Kaggle


def test_submissions_asks_kaggle_only_about_this_competitions_rows(kit, emu, work, source):
    fetched(work, source)
    predicted(work / "submissions" / "baseline.csv", local=0.05)
    assert kit("submit", "submissions/baseline.csv", "-m", "one").returncode == 0
    rows = ledger_rows(work)
    rows.append({**rows[0], "competition": "another-competition", "ref": "999"})
    ledger.write(work / "submissions" / ledger.NAME, rows)
    (ref,) = (s.ref for s in emu.submissions)
    emu.score_submission(ref, "0.0412")
    assert kit("submissions").returncode == 0
    assert [(r["ref"], r["status"]) for r in ledger_rows(work)] == [(str(ref), "COMPLETE"), ("999", "PENDING")]

    emu.clear_requests()
    assert kit("submissions").returncode == 0
    assert emu.requests == []    # the other competition's pending row is not this competition's business


def test_make_fetch_then_make_submit_as_a_user_runs_them(kit, emu, work):
    result = kit.make("fetch")
    assert result.returncode == 0, result.stderr
    assert fetch.is_complete(work / DATA) and len(emu.calls("DownloadDataFiles")) == 1

    emu.clear_requests()
    again = kit("fetch")
    assert again.returncode == 0 and "nothing to do" in again.stdout and emu.requests == []

    # A finished run and the submission predict wrote from it (so `kit predict`, which make asks first, finds
    # it up to date), older than now and newer than the data. tests/test_acceptance.py trains a real one.
    metrics = work / "runs" / "baseline" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("{}")
    run_config = Config(run="baseline").to_dict()
    fileio.write_json(metrics.parent / "config.json", run_config)
    path = predicted(work / "submissions" / "baseline.csv")
    sidecar = fileio.read_json(path.with_suffix(".json"))
    fileio.write_json(path.with_suffix(".json"), {**sidecar, "config": run_config,
                                                  "run_metrics_sha256": fileio.file_digest(metrics)})
    now = dt.datetime.now().timestamp()
    for age, target in ((300, work / DATA / "fetch.json"), (200, metrics), (100, path)):
        os.utime(target, (now - age, now - age))

    message = """it's "v2" from make"""     # quotes reach Kaggle as typed
    result = kit.make("submit", f"MSG={message}")

    assert result.returncode == 0, result.stderr
    assert "-m kit submit submissions/baseline.csv -m \"$MSG\"" in result.stdout
    (stored,) = emu.submissions
    assert stored.description == message
    assert [(r["file"], r["message"], r["ref"]) for r in ledger_rows(work)] == \
        [("submissions/baseline.csv", message, str(stored.ref))]

"""Drive the REAL official Kaggle client (kaggle 2.2.x) against tests/kaggle_emulator.py.

These tests pin down two things at once: that the emulator speaks the wire protocol the client expects,
and how the client itself behaves on the paths the kit depends on (where a broken download is left,
whether it resumes, what a failed upload returns, what the CLI prints and exits with).  If a client
upgrade changes any of that, these tests are where it shows first.

Nothing here leaves 127.0.0.1: the in-process client has its endpoints patched to the emulator, and the
CLI runs in a subprocess whose HTTP(S) proxy is the emulator (which refuses CONNECT tunnels).
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
import os
import random
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kaggle_emulator import (  # noqa: E402  (path set up just above)
    FAULT_COMPETITION_NOT_FOUND,
    FAULT_CORRUPT_ARCHIVE,
    FAULT_CREATE_SUBMISSION_500,
    FAULT_DROP_DOWNLOAD,
    FAULT_RULES_NOT_ACCEPTED,
    FAULT_UPLOAD_500,
    RULES_NOT_ACCEPTED_MESSAGE,
    KaggleEmulator,
    make_redux_files,
)

# Importing kaggle authenticates and creates a config dir, so never import it at collection time;
# only check that it is installed.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("kaggle") is None or importlib.util.find_spec("kagglesdk") is None,
    reason="the official kaggle client is not installed",
)

KAGGLE_CLI = Path(sys.executable).with_name("kaggle")

# Above the client's 1 MiB streaming chunk: only then does a dropped connection leave bytes on disk
# and make the retry ask for a non-zero Range.
BIG_TRAIN_ZIP = random.Random(20160901).randbytes(3 * 1024 * 1024)


@pytest.fixture
def emu():
    with KaggleEmulator(files=make_redux_files()) as emulator:
        yield emulator


@pytest.fixture
def big_emu():
    files = make_redux_files()
    files["train.zip"] = BIG_TRAIN_ZIP
    with KaggleEmulator(files=files) as emulator:
        yield emulator


@pytest.fixture
def api(emu, tmp_path):
    with emu.in_process(tmp_path / "home") as client:
        yield client


@pytest.fixture
def big_api(big_emu, tmp_path):
    with big_emu.in_process(tmp_path / "home") as client:
        yield client


def write_submission(path: Path, rows: int = 2) -> bytes:
    content = ("id,label\n" + "".join(f"{i},0.{i}\n" for i in range(1, rows + 1))).encode()
    path.write_bytes(content)
    return content


def run_cli(emu: KaggleEmulator, home: Path, *args: str, **env_kwargs) -> subprocess.CompletedProcess:
    if not KAGGLE_CLI.exists():
        pytest.skip(f"no kaggle CLI next to {sys.executable}")
    return subprocess.run(
        [str(KAGGLE_CLI), *args],
        env=emu.cli_env(home, **env_kwargs),
        cwd=str(home.parent),
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_download(emu: KaggleEmulator, tmp_path: Path, dest: str, **env_kwargs) -> subprocess.CompletedProcess:
    """``kaggle competitions download -c <slug> -p tmp_path/dest``"""
    args = ("competitions", "download", "-c", emu.competition, "-p", str(tmp_path / dest))
    return run_cli(emu, tmp_path / "home", *args, **env_kwargs)


def cli_submit(emu: KaggleEmulator, tmp_path: Path, message: str) -> subprocess.CompletedProcess:
    """``kaggle competitions submit -c <slug> -f tmp_path/submission.csv -m MESSAGE``"""
    args = ("competitions", "submit", "-c", emu.competition, "-f", str(tmp_path / "submission.csv"), "-m", message)
    return run_cli(emu, tmp_path / "home", *args)


# ------------------------------------------------------------------------------------------------
# The emulator on its own


def test_emulator_refuses_missing_and_wrong_credentials(emu):
    """Kaggle answers bad credentials with 401 and a JSON body; the client relies on that shape."""
    url = emu.url + "/v1/competitions.CompetitionApiService/ListSubmissions"
    body = json.dumps({"competitionName": emu.competition}).encode()
    wrong = base64.b64encode(f"{emu.username}:not-the-key".encode()).decode()
    for headers in ({}, {"Authorization": "Basic " + wrong}, {"Authorization": "Bearer some-token"}):
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 401
        assert json.loads(caught.value.read()) == {"code": 401, "message": "Unauthenticated"}
    assert [r.status for r in emu.requests] == [401, 401, 401]
    assert "not-the-key" not in repr(emu.requests)


def test_emulator_refuses_to_tunnel(emu):
    """HTTPS_PROXY points at the emulator so a stray https call fails here instead of leaving the host."""
    import requests

    session = requests.Session()
    session.trust_env = False  # an outer NO_PROXY must not turn this into a real network call
    with pytest.raises(requests.exceptions.ProxyError):
        session.get("https://www.kaggle.com/", proxies={"https": emu.url}, timeout=5)
    assert [r.kind for r in emu.requests] == ["connect"]


def test_fault_injection_counts_and_validates(emu):
    emu.inject(FAULT_UPLOAD_500, times=2)
    assert emu._take_fault(FAULT_UPLOAD_500) and emu._take_fault(FAULT_UPLOAD_500)
    assert not emu._take_fault(FAULT_UPLOAD_500)
    assert emu.fault_hits(FAULT_UPLOAD_500) == 2
    emu.inject(FAULT_UPLOAD_500, times=None)
    assert all(emu._take_fault(FAULT_UPLOAD_500) for _ in range(10))
    emu.clear_faults()
    assert not emu._take_fault(FAULT_UPLOAD_500)
    with pytest.raises(ValueError):
        emu.inject("no_such_fault")


def test_files_can_come_from_a_directory(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name, data in make_redux_files().items():
        (source / name).write_bytes(data)
    with KaggleEmulator(files=source) as emulator:
        assert emulator.files == make_redux_files()
        with zipfile.ZipFile(io.BytesIO(emulator.all_files_archive())) as archive:
            assert sorted(archive.namelist()) == ["sample_submission.csv", "test.zip", "train.zip"]


# ------------------------------------------------------------------------------------------------
# In-process: kaggle.api.kaggle_api_extended.KaggleApi


def test_download_all_files_gives_the_served_archive(emu, api, tmp_path):
    data = tmp_path / "data"
    api.competition_download_files(emu.competition, path=str(data), quiet=True)

    saved = data / emu.archive_name
    assert sorted(p.name for p in data.iterdir()) == [emu.archive_name]  # 2.2.x does not unzip
    assert saved.read_bytes() == emu.all_files_archive()
    with zipfile.ZipFile(saved) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == make_redux_files()
    assert saved.stat().st_mtime == emu.last_modified  # the client stamps Last-Modified on the file

    rpc, download = emu.requests
    assert (rpc.method, rpc.service, rpc.rpc) == ("POST", "competitions.CompetitionApiService", "DownloadDataFiles")
    # /v1/... normally; /api/v1/... if kaggle was first imported with KAGGLE_API_ENVIRONMENT=LOCALHOST.
    assert rpc.path.endswith("/v1/competitions.CompetitionApiService/DownloadDataFiles") and not rpc.via_proxy
    assert rpc.json == {"competitionName": emu.competition} and rpc.status == 302
    assert rpc.auth_user == emu.username and rpc.headers["Authorization"] == "Basic <redacted>"
    assert (download.method, download.kind, download.status) == ("GET", "download", 200)
    assert emu.key not in repr(emu.requests)


def test_second_download_is_skipped_by_the_client(emu, api, tmp_path, capsys):
    """The client still calls DownloadDataFiles and follows the redirect (requests does that before
    the client looks at the headers), then skips because its copy is not older than Last-Modified."""
    data = tmp_path / "data"
    api.competition_download_files(emu.competition, path=str(data), quiet=True)
    saved = data / emu.archive_name
    saved.write_bytes(b"x" * saved.stat().st_size)  # same size, marked so a re-download would show
    os.utime(saved, (emu.last_modified, emu.last_modified))
    capsys.readouterr()

    api.competition_download_files(emu.competition, path=str(data), quiet=False)

    assert saved.read_bytes() == b"x" * len(emu.all_files_archive())
    assert "Skipping, found more recently modified local copy" in capsys.readouterr().out
    assert len(emu.calls("DownloadDataFiles")) == 2
    assert len(emu.requests_of_kind("download")) == 2


def test_newer_remote_data_is_downloaded_again(emu, api, tmp_path):
    data = tmp_path / "data"
    api.competition_download_files(emu.competition, path=str(data), quiet=True)
    emu.set_files(make_redux_files(n_train=5))

    api.competition_download_files(emu.competition, path=str(data), quiet=True)

    assert (data / emu.archive_name).read_bytes() == emu.all_files_archive()
    assert (data / emu.archive_name).stat().st_mtime == emu.last_modified


def test_download_single_file(emu, api, tmp_path):
    api.competition_download_file(emu.competition, "sample_submission.csv", path=str(tmp_path), quiet=True)
    assert (tmp_path / "sample_submission.csv").read_bytes() == emu.files["sample_submission.csv"]
    expected = {"competitionName": emu.competition, "fileName": "sample_submission.csv"}
    assert emu.calls("DownloadDataFile")[0].json == expected


def test_rules_not_accepted_raises_http_error_403(emu, api, tmp_path):
    import requests

    emu.inject(FAULT_RULES_NOT_ACCEPTED)
    with pytest.raises(requests.exceptions.HTTPError) as caught:
        api.competition_download_files(emu.competition, path=str(tmp_path / "data"), quiet=True)
    assert caught.value.response.status_code == 403
    assert str(caught.value) == RULES_NOT_ACCEPTED_MESSAGE
    assert not (tmp_path / "data").exists()
    assert emu.requests_of_kind("download") == []

    # One-shot: the next attempt goes through.
    api.competition_download_files(emu.competition, path=str(tmp_path / "data"), quiet=True)
    assert (tmp_path / "data" / emu.archive_name).read_bytes() == emu.all_files_archive()


def test_unknown_competition_raises_http_error_404(emu, api, tmp_path):
    import requests

    with pytest.raises(requests.exceptions.HTTPError) as caught:
        api.competition_download_files("no-such-competition", path=str(tmp_path), quiet=True)
    assert caught.value.response.status_code == 404

    emu.inject(FAULT_COMPETITION_NOT_FOUND)
    with pytest.raises(requests.exceptions.HTTPError) as caught:
        api.competition_submissions(emu.competition)
    assert caught.value.response.status_code == 404


def test_dropped_connection_is_retried_with_a_range_request(big_emu, big_api, tmp_path):
    """One drop: the client keeps the whole 1 MiB chunks it got and asks for the rest with Range/If-Range."""
    big_emu.inject(FAULT_DROP_DOWNLOAD)
    big_api.competition_download_file(big_emu.competition, "train.zip", path=str(tmp_path), quiet=True)

    assert (tmp_path / "train.zip").read_bytes() == BIG_TRAIN_ZIP
    assert not (tmp_path / "train.zip.kaggle-partial").exists()
    first, retry = big_emu.requests_of_kind("download")
    assert (first.status, first.fault, first.bytes_sent) == (200, FAULT_DROP_DOWNLOAD, len(BIG_TRAIN_ZIP) // 2)
    assert retry.headers["Range"] == f"bytes={1024 * 1024}-"
    assert retry.headers["If-Range"].startswith('"')  # the ETag, preferred over Last-Modified
    assert (retry.status, retry.bytes_sent) == (206, len(BIG_TRAIN_ZIP) - 1024 * 1024)


def test_persistent_drop_leaves_partial_file_and_marker_then_resumes(big_emu, big_api, tmp_path):
    """After 1 + 5 attempts the client raises; the partial sits under the FINAL name next to a
    ``.kaggle-partial`` marker, and the next call resumes it with a Range request."""
    import requests

    big_emu.inject(FAULT_DROP_DOWNLOAD, times=None)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        big_api.competition_download_files(big_emu.competition, path=str(tmp_path), quiet=True)

    saved = tmp_path / big_emu.archive_name
    archive = big_emu.all_files_archive()
    assert big_emu.fault_hits(FAULT_DROP_DOWNLOAD) == 6
    assert 0 < saved.stat().st_size < len(archive)
    marker = json.loads((tmp_path / (big_emu.archive_name + ".kaggle-partial")).read_text())
    assert marker["size"] == len(archive)

    big_emu.clear_faults()
    big_emu.clear_requests()
    partial_size = saved.stat().st_size
    big_api.competition_download_files(big_emu.competition, path=str(tmp_path), quiet=True)

    assert saved.read_bytes() == archive
    assert not (tmp_path / (big_emu.archive_name + ".kaggle-partial")).exists()
    assert [r.headers.get("Range") for r in big_emu.requests_of_kind("download")] == [None, f"bytes={partial_size}-"]


def test_corrupt_archive_is_saved_without_complaint(emu, api, tmp_path):
    """The client checks only the length, so a bad archive is the caller's problem to detect."""
    emu.inject(FAULT_CORRUPT_ARCHIVE)
    api.competition_download_files(emu.competition, path=str(tmp_path), quiet=True)
    saved = tmp_path / emu.archive_name
    assert saved.stat().st_size == len(emu.all_files_archive())
    assert not zipfile.is_zipfile(saved)


def test_submit_records_uploaded_bytes_and_lists_scores(emu, api, tmp_path):
    content = write_submission(tmp_path / "submission.csv")
    result = api.competition_submit(str(tmp_path / "submission.csv"), "first try", emu.competition, quiet=True)

    assert result.message == "Successfully submitted to Dogs vs. Cats Redux: Kernels Edition"
    stored = emu.submission(result.ref)
    assert (stored.content, stored.file_name, stored.description) == (content, "submission.csv", "first try")
    start = emu.calls("StartSubmissionUpload")[0].json
    assert (start["fileName"], start["contentLength"]) == ("submission.csv", len(content))
    assert [r.kind for r in emu.requests] == ["rpc", "upload", "rpc"]

    pending = api.competition_submissions(emu.competition)
    # An unset score reads back as "".
    assert [(s.ref, s.status.name, s.public_score) for s in pending] == [(result.ref, "PENDING", "")]

    emu.score_submission(result.ref, "0.0412")
    second = api.competition_submit(str(tmp_path / "submission.csv"), "second", emu.competition, quiet=True)
    emu.fail_submission(second.ref, "Submission must have 12500 rows")
    listed = {s.ref: s for s in api.competition_submissions(emu.competition)}
    assert (listed[result.ref].status.name, listed[result.ref].public_score) == ("COMPLETE", "0.0412")
    assert (listed[second.ref].status.name, listed[second.ref].error_description) == (
        "ERROR",
        "Submission must have 12500 rows",
    )
    assert list(listed) == [second.ref, result.ref]  # newest first, as Kaggle lists them


def test_upload_500_returns_could_not_submit_and_ref_0(emu, api, tmp_path):
    """A failed upload does not raise: the result says so, and CreateSubmission is never called."""
    write_submission(tmp_path / "submission.csv")
    emu.inject(FAULT_UPLOAD_500)
    result = api.competition_submit(str(tmp_path / "submission.csv"), "m", emu.competition, quiet=True)

    assert (result.message, result.ref) == ("Could not submit to competition", 0)
    assert emu.calls("CreateSubmission") == [] and emu.submissions == []
    assert [r.status for r in emu.requests_of_kind("upload")] == [500]  # no retry of the PUT


def test_create_submission_500_raises(emu, api, tmp_path):
    import requests

    write_submission(tmp_path / "submission.csv")
    emu.inject(FAULT_CREATE_SUBMISSION_500)
    with pytest.raises(requests.exceptions.HTTPError) as caught:
        api.competition_submit(str(tmp_path / "submission.csv"), "m", emu.competition, quiet=True)
    assert caught.value.response.status_code == 500
    assert emu.submissions == []


def test_wrong_key_is_refused_in_process(emu, tmp_path):
    import requests

    with emu.in_process(tmp_path / "home", key="wrong-key") as bad_api:
        with pytest.raises(requests.exceptions.HTTPError) as caught:
            bad_api.competition_submissions(emu.competition)
    assert caught.value.response.status_code == 401
    assert str(caught.value) == "Unauthenticated"


def test_kernels_push_status_and_output(emu, api, tmp_path):
    ref = f"{emu.username}/redux-training"
    folder = tmp_path / "kernel"
    folder.mkdir()
    source = "import os\nprint(os.listdir('/kaggle/input'))\n"
    (folder / "train.py").write_text(source)
    metadata = {
        "id": ref,
        "title": "Redux Training",
        "code_file": "train.py",
        "language": "python",
        "kernel_type": "script",
        "competition_sources": [emu.competition],
        "enable_gpu": True,
        "enable_internet": False,
    }
    (folder / "kernel-metadata.json").write_text(json.dumps(metadata))

    pushed = api.kernels_push(str(folder))
    assert (pushed.ref, pushed.version_number, pushed.error) == (f"/code/{ref}", 1, "")  # error is "" on success
    latest = emu.kernel(ref).latest
    assert latest.text == source
    assert latest.request["competitionDataSources"] == [emu.competition]
    assert (latest.request["enableGpu"], latest.request["enableInternet"]) == (True, False)
    assert api.kernels_push(str(folder)).version_number == 2

    assert api.kernels_status(ref).status.name == "QUEUED"
    emu.set_kernel_status(ref, "ERROR", "CUDA out of memory")
    status = api.kernels_status(ref)
    assert (status.status.name, status.failure_message) == ("ERROR", "CUDA out of memory")

    emu.set_kernel_output(ref, {"submission.csv": b"id,label\n1,0.9\n"}, log='[{"data": "epoch 1"}]')
    paths, _token = api.kernels_output(ref, str(tmp_path / "out"))
    assert sorted(Path(p).name for p in paths) == ["redux-training.log", "submission.csv"]
    assert (tmp_path / "out" / "submission.csv").read_bytes() == b"id,label\n1,0.9\n"
    assert (tmp_path / "out" / "redux-training.log").read_text() == '[{"data": "epoch 1"}]'


def test_unknown_kernel_status_is_a_value_error(emu, api):
    """Kaggle answers an unknown kernel with 403; the client turns 401/403 into ValueError."""
    with pytest.raises(ValueError, match="Cannot access kernel"):
        api.kernels_status("someone/unknown-kernel")


def test_in_process_restores_environment_and_endpoints(emu, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", "must-not-be-used")
    monkeypatch.setenv("HTTP_PROXY", "http://192.0.2.1:9")
    before = dict(os.environ)
    import kagglesdk.kaggle_env as kaggle_env

    endpoints_before = dict(kaggle_env._env_to_endpoint)
    with emu.in_process(tmp_path / "home") as client:
        assert "KAGGLE_API_TOKEN" not in os.environ and "HTTP_PROXY" not in os.environ
        assert os.environ["HOME"] == str(tmp_path / "home")
        client.competition_submissions(emu.competition)
    assert dict(os.environ) == before
    assert kaggle_env._env_to_endpoint == endpoints_before


# ------------------------------------------------------------------------------------------------
# The kaggle CLI in a subprocess (KAGGLE_API_ENVIRONMENT=LOCALHOST + HTTP_PROXY)


def test_cli_download(emu, tmp_path):
    result = cli_download(emu, tmp_path, "d")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / emu.archive_name).read_bytes() == emu.all_files_archive()
    rpc = emu.calls("DownloadDataFiles")[0]
    assert rpc.via_proxy
    assert rpc.target == "http://localhost/api/v1/competitions.CompetitionApiService/DownloadDataFiles"


# The CLI tests below check that the emulator's replies reach the real CLI as they reach the client
# in-process. The kit never runs the CLI, so its exit codes and wording are not pinned: a failure only
# has to exit non-zero (or, for an upload, say so), and the messages asserted are the emulator's own.


def test_cli_download_403_fails_with_kaggle_message(emu, tmp_path):
    emu.inject(FAULT_RULES_NOT_ACCEPTED)
    result = cli_download(emu, tmp_path, "d")

    assert result.returncode != 0
    assert RULES_NOT_ACCEPTED_MESSAGE in result.stderr
    assert not (tmp_path / "d").exists()


def test_cli_dropped_connection_retries_or_fails_with_partial(emu, tmp_path):
    """One drop: the CLI retries and succeeds (exit 0).  Persistent: a failure, the partial marker left
    (the kit's resume depends on that marker, not on how much of the file the client kept)."""
    emu.inject(FAULT_DROP_DOWNLOAD)
    ok = cli_download(emu, tmp_path, "a", fast_sleep=True)
    assert ok.returncode == 0, ok.stderr
    assert "Connection error: ChunkedEncodingError" in ok.stdout
    assert (tmp_path / "a" / emu.archive_name).read_bytes() == emu.all_files_archive()

    emu.inject(FAULT_DROP_DOWNLOAD, times=None)
    bad = cli_download(emu, tmp_path, "b", fast_sleep=True)
    assert bad.returncode != 0
    assert "Download failed" in bad.stdout
    assert (tmp_path / "b" / emu.archive_name).stat().st_size < len(emu.all_files_archive())
    assert (tmp_path / "b" / (emu.archive_name + ".kaggle-partial")).exists()


def test_cli_submit_and_list_submissions(emu, tmp_path):
    content = write_submission(tmp_path / "submission.csv")
    submitted = cli_submit(emu, tmp_path, "cli run")
    assert submitted.returncode == 0, submitted.stderr
    assert "Successfully submitted to Dogs vs. Cats Redux: Kernels Edition" in submitted.stdout
    assert "4 submissions remaining today." in submitted.stdout  # from GetSubmissionLimits
    (stored,) = emu.submissions
    assert (stored.content, stored.description) == (content, "cli run")

    emu.score_submission(stored.ref, "0.0412")
    listed = run_cli(emu, tmp_path / "home", "competitions", "submissions", "-c", emu.competition, "-v")
    assert listed.returncode == 0, listed.stderr
    (row,) = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert (row["ref"], row["fileName"], row["publicScore"]) == (str(stored.ref), "submission.csv", "0.0412")
    assert row["status"].endswith("COMPLETE")  # 2.2.x prints the enum's repr, SubmissionStatus.COMPLETE


def test_cli_upload_500_prints_could_not_submit(emu, tmp_path):
    """The CLI's exit code here changed within 2.2.x (0 up to 2.2.4, 1 from 2.2.5), so both are accepted:
    the kit never reads it (test_kaggle_api.py asserts the kit's outcome: a failure, no ledger row)."""
    write_submission(tmp_path / "submission.csv")
    emu.inject(FAULT_UPLOAD_500)
    result = cli_submit(emu, tmp_path, "m")

    assert result.returncode in (0, 1)
    assert "Could not submit to competition" in result.stdout + result.stderr  # stdout up to 2.2.4, stderr in 2.2.5
    assert emu.calls("CreateSubmission") == [] and emu.calls("GetSubmissionLimits") == []


def test_cli_create_submission_500_fails(emu, tmp_path):
    write_submission(tmp_path / "submission.csv")
    emu.inject(FAULT_CREATE_SUBMISSION_500)
    result = cli_submit(emu, tmp_path, "m")

    assert result.returncode != 0
    assert "Internal server error" in result.stderr
    assert emu.submissions == []


def test_cli_wrong_key_is_refused(emu, tmp_path):
    result = run_cli(emu, tmp_path / "home", "competitions", "submissions", "-c", emu.competition, key="wrong-key")

    assert result.returncode != 0
    assert "Authentication required" in result.stdout + result.stderr
    assert [r.status for r in emu.requests] == [401]
    assert "wrong-key" not in repr(emu.requests)

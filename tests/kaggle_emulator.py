"""A loopback emulator of the Kaggle public API, for tests that drive the real ``kaggle`` client.

Why this exists: the kit talks to Kaggle through the official client (``kaggle`` 2.2.x on top of
``kagglesdk``).  Mocking that client's Python objects would only test our assumptions about it; running
the *real* client against a server that speaks Kaggle's wire protocol tests what actually happens
(redirects, ``Content-Length`` checks, resume markers, retries, the CLI's exit codes).  The server is
standard library only, binds 127.0.0.1 on a free port, and runs in a background thread.

Wire protocol emulated (read from kagglesdk 0.1.37 / kaggle 2.2.4):

* RPC calls are ``POST {base}/v1/{service}/{Method}`` (``/api/v1/...`` when the client is in its
  LOCALHOST environment), camelCase JSON in and out, enums as their NAME strings.  Errors are a
  non-2xx status with a JSON body ``{"code": N, "message": "..."}``; the client turns them into
  ``requests.HTTPError(message)``.
* ``DownloadDataFiles`` / ``DownloadDataFile`` answer 302 to a file URL (a stand-in for a signed GCS URL,
  so it needs no ``Authorization``).  The file is served with ``Content-Length``, ``Last-Modified``,
  ``ETag`` and ``Accept-Ranges: bytes``, and honours ``Range`` / ``If-Range`` because the client resumes
  interrupted downloads that way.
* Submitting is ``StartSubmissionUpload`` -> ``PUT createUrl`` with the raw bytes -> ``CreateSubmission``
  with the upload token.

Two ways of pointing the client here (see ``cli_env`` and ``in_process``): through an HTTP proxy (the
CLI in a subprocess; requests then arrive in absolute form, ``POST http://localhost/api/v1/...``), or by
patching kagglesdk's endpoint table in-process (requests arrive as ``/v1/...``).

Usage::

    with KaggleEmulator(files=make_redux_files()) as emu:
        with emu.in_process(tmp_path / "home") as api:
            api.competition_download_files(emu.competition, path=str(tmp_path / "data"))
        emu.inject(FAULT_RULES_NOT_ACCEPTED)            # one-shot 403 on the next download
        env = emu.cli_env(tmp_path / "home2")
        subprocess.run([".venv/bin/kaggle", "competitions", "download", "-c", emu.competition], env=env)
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import io
import json
import os
import secrets
import socket
import sys
import threading
import time
import types
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Union

DEFAULT_COMPETITION = "dogs-vs-cats-redux-kernels-edition"
DEFAULT_TITLE = "Dogs vs. Cats Redux: Kernels Edition"
DEFAULT_USERNAME = "emulated-user"
DEFAULT_KEY = "0123456789abcdef0123456789abcdef"

# The Redux data went up in 2016; a fixed, old Last-Modified makes the client's "is my local copy newer?"
# check deterministic (a freshly downloaded file gets exactly this mtime from the client).
DEFAULT_LAST_MODIFIED = datetime(2016, 9, 1, tzinfo=timezone.utc).timestamp()

COMPETITION_SERVICE = "competitions.CompetitionApiService"
KERNELS_SERVICE = "kernels.KernelsApiService"

# Fault names accepted by KaggleEmulator.inject().
FAULT_RULES_NOT_ACCEPTED = "rules_not_accepted"  # 403 on DownloadDataFiles / DownloadDataFile
FAULT_COMPETITION_NOT_FOUND = "competition_not_found"  # 404 on every competition RPC for our slug
FAULT_DROP_DOWNLOAD = "drop_download"  # full Content-Length sent, part of the body, then the socket closes
FAULT_CORRUPT_ARCHIVE = "corrupt_archive"  # a ``.zip`` download serves bytes that are not a zip
FAULT_STALL_DOWNLOAD = "stall_download"  # part of the body, then silence until clear_faults(): a client to kill
FAULT_UPLOAD_500 = "upload_500"  # HTTP 500 on the submission-upload PUT
FAULT_CREATE_SUBMISSION_500 = "create_submission_500"  # HTTP 500 on CreateSubmission
FAULTS = frozenset(
    {
        FAULT_RULES_NOT_ACCEPTED,
        FAULT_COMPETITION_NOT_FOUND,
        FAULT_DROP_DOWNLOAD,
        FAULT_CORRUPT_ARCHIVE,
        FAULT_STALL_DOWNLOAD,
        FAULT_UPLOAD_500,
        FAULT_CREATE_SUBMISSION_500,
    }
)

# Messages as Kaggle sends them (the 403 text is what api.kaggle.com returns for unaccepted rules).
RULES_NOT_ACCEPTED_MESSAGE = "You must accept this competition's rules before you'll be able to download files."
NOT_FOUND_MESSAGE = "Not found"
UNAUTHENTICATED_MESSAGE = "Unauthenticated"
INTERNAL_ERROR_MESSAGE = "Internal server error"

SUBMISSION_STATUSES = ("PENDING", "COMPLETE", "ERROR")
KERNEL_STATUSES = (
    "QUEUED",
    "RUNNING",
    "COMPLETE",
    "ERROR",
    "CANCEL_REQUESTED",
    "CANCEL_ACKNOWLEDGED",
    "NEW_SCRIPT",
)

# Environment variables that would redirect, re-authenticate or re-configure the client.  The env
# helpers drop all of them before setting their own, so an outer shell cannot leak into a test.
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_PROXY_VARS_ALL = _PROXY_VARS + tuple(v.lower() for v in _PROXY_VARS)

FileSource = Union[Mapping[str, bytes], str, "os.PathLike[str]", None]


# --------------------------------------------------------------------------------------------------
# Fixture data


def make_redux_files(
    n_train: int = 4, n_test: int = 2, image_factory: Optional[Callable[[str], bytes]] = None
) -> dict[str, bytes]:
    """Build a miniature Redux data set: ``train.zip``, ``test.zip`` and ``sample_submission.csv``.

    The layout mirrors the real competition (``train/cat.0.jpg``, ``train/dog.0.jpg``, ...,
    ``test/1.jpg``, ... and ``id,label`` rows) so code under test sees the same names.  Image bytes are
    placeholders unless ``image_factory(name)`` supplies real ones (e.g. JPEGs encoded by the test).
    """
    make_image = image_factory or (lambda name: b"\xff\xd8\xff\xe0placeholder:" + name.encode() + b"\xff\xd9")

    def archive(names: list[str]) -> bytes:
        return _deterministic_zip({name: make_image(name) for name in names})

    train = [f"train/{animal}.{i}.jpg" for i in range(n_train) for animal in ("cat", "dog")]
    test = [f"test/{i}.jpg" for i in range(1, n_test + 1)]
    sample = "id,label\n" + "".join(f"{i},0.5\n" for i in range(1, n_test + 1))
    return {
        "train.zip": archive(train),
        "test.zip": archive(test),
        "sample_submission.csv": sample.encode(),
    }


def _deterministic_zip(members: Mapping[str, bytes]) -> bytes:
    """Zip ``members`` with fixed timestamps, so the same input always gives the same bytes (and ETag)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(2016, 9, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, members[name])
    return buffer.getvalue()


def _load_files(files: FileSource) -> dict[str, bytes]:
    """Accept a ``name -> bytes`` mapping or a directory of files; files in its folders (aerial cactus's
    ``train/``) are named by their "/"-separated path, as Kaggle lists them."""
    if files is None:
        return make_redux_files()
    if isinstance(files, Mapping):
        return {str(name): bytes(data) for name, data in files.items()}
    directory = Path(files)
    if not directory.is_dir():
        raise ValueError(f"not a directory: {directory}")
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------
# Recorded state


@dataclass
class RecordedRequest:
    """One request as the emulator saw it.  ``headers`` has credentials redacted.

    ``kind`` is ``rpc``, ``download``, ``upload``, ``kernel_output``, ``connect`` or ``unknown``.
    ``rpc`` is the method name (``DownloadDataFiles``) for RPC calls.  ``status`` and ``bytes_sent``
    are filled in once the reply is written; ``bytes_sent`` counts body bytes handed to the socket,
    which is NOT proof that the client read them (a client that decides not to download may close the
    stream after the headers while small bodies sit in kernel buffers).
    """

    method: str
    target: str
    path: str
    kind: str
    via_proxy: bool
    headers: dict[str, str]
    json: Any = None
    body_size: int = 0
    service: Optional[str] = None
    rpc: Optional[str] = None
    auth_user: Optional[str] = None
    status: Optional[int] = None
    bytes_sent: int = 0
    fault: Optional[str] = None


@dataclass
class Submission:
    """A submission as the emulator stores it; ``content`` is exactly what the client uploaded."""

    ref: int
    competition: str
    file_name: str
    description: str
    content: bytes
    date: datetime
    submitted_by: str
    status: str = "PENDING"
    public_score: Optional[str] = None
    private_score: Optional[str] = None
    error_description: Optional[str] = None

    def to_api(self) -> dict[str, Any]:
        """Serialise as kagglesdk's ApiSubmission (camelCase, enum as name, scores as strings)."""
        data: dict[str, Any] = {
            "ref": self.ref,
            "totalBytes": len(self.content),
            "date": self.date.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.date.microsecond // 1000:03d}Z",
            "description": self.description,
            "fileName": self.file_name,
            "status": self.status,
            "submittedBy": self.submitted_by,
            "teamName": self.submitted_by,
        }
        for key, value in (
            ("publicScore", self.public_score),
            ("privateScore", self.private_score),
            ("errorDescription", self.error_description),
        ):
            if value is not None:
                data[key] = value
        return data


@dataclass
class KernelPush:
    """One ``SaveKernel`` call: the source text and the full request as sent."""

    version: int
    text: str
    request: dict[str, Any]


@dataclass
class Kernel:
    """A kernel known to the emulator: its pushes, its session status and its output files."""

    owner: str
    slug: str
    kernel_id: int
    pushes: list[KernelPush] = field(default_factory=list)
    status: str = "QUEUED"
    failure_message: Optional[str] = None
    outputs: dict[str, bytes] = field(default_factory=dict)
    log: Optional[str] = None
    outputs_modified: float = field(default_factory=time.time)

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.slug}"

    @property
    def latest(self) -> Optional[KernelPush]:
        return self.pushes[-1] if self.pushes else None


@dataclass
class _Fault:
    remaining: Optional[int]  # None = persistent
    hits: int = 0


class _RpcError(Exception):
    """Raised by RPC handlers to answer with Kaggle's JSON error shape."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Redirect:
    location: str


# --------------------------------------------------------------------------------------------------
# The emulator


class KaggleEmulator:
    """An in-thread HTTP server speaking the subset of Kaggle's API the kit uses.

    Args:
        files: the competition's files, as ``name -> bytes`` or a directory (default:
            ``make_redux_files()``).
        competition: the one competition slug that exists; any other slug gets 404.
        username, key: the legacy API credentials accepted (HTTP Basic); anything else gets 401.
        competition_title: used in CreateSubmission's success message, as Kaggle does.
        evaluation_metric: the competition's ``evaluationMetric`` in ListCompetitions (Kaggle's own words).
        last_modified: epoch seconds sent as the files' ``Last-Modified``.
        daily_submission_limit: reported by GetSubmissionLimits (not enforced).
        host: interface to bind; keep 127.0.0.1.
    """

    def __init__(
        self,
        files: FileSource = None,
        *,
        competition: str = DEFAULT_COMPETITION,
        username: str = DEFAULT_USERNAME,
        key: str = DEFAULT_KEY,
        competition_title: str = DEFAULT_TITLE,
        evaluation_metric: str = "",
        last_modified: float = DEFAULT_LAST_MODIFIED,
        daily_submission_limit: int = 5,
        host: str = "127.0.0.1",
    ):
        self.competition = competition
        self.competition_title = competition_title
        self.evaluation_metric = evaluation_metric
        self.username = username
        self.key = key
        self.daily_submission_limit = daily_submission_limit
        self._host = host
        self._lock = threading.RLock()
        self._unstall = threading.Event()   # set: stalled downloads may finish their (dropped) reply
        self._idle = threading.Condition()
        self._in_flight = 0
        self._files = _load_files(files)
        self._last_modified = float(int(last_modified))
        self._archive_cache: Optional[bytes] = None
        self._faults: dict[str, _Fault] = {}
        self._requests: list[RecordedRequest] = []
        self._uploads: dict[str, dict[str, Any]] = {}
        self._submissions: list[Submission] = []
        self._kernels: dict[str, Kernel] = {}
        self._next_ref = 40_000_001
        self._next_kernel_id = 1_000
        # Stands in for the signature of a signed storage URL: file/upload URLs need no
        # Authorization header (the client does not send one to storage), only this.
        self._signature = secrets.token_hex(8)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "KaggleEmulator":
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        if self._server is not None:
            return self
        server = _Server((self._host, 0), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="kaggle-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        server, self._server = self._server, None
        self._unstall.set()
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "KaggleEmulator":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:45678``; also the proxy URL for ``cli_env``."""
        return f"http://{self._host}:{self.port}"

    # -- competition data ----------------------------------------------------------------------------

    @property
    def files(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._files)

    def set_files(self, files: FileSource, last_modified: Optional[float] = None) -> None:
        """Replace the competition's files.  ``Last-Modified`` moves forward (at least one second) so the
        client, which skips a download when its local copy is not older, sees the data as new."""
        with self._lock:
            self._files = _load_files(files)
            self._archive_cache = None
            if last_modified is None:
                last_modified = max(time.time(), self._last_modified + 1)
            self._last_modified = float(int(last_modified))

    @property
    def last_modified(self) -> float:
        return self._last_modified

    @property
    def archive_name(self) -> str:
        """Name the client saves "download all" as: ``<slug>.zip``."""
        return f"{self.competition}.zip"

    def all_files_archive(self) -> bytes:
        """The ``<slug>.zip`` served for "download all files": one zip holding every competition file
        (for Redux: train.zip, test.zip, sample_submission.csv), built on first use."""
        with self._lock:
            if self._archive_cache is None:
                self._archive_cache = _deterministic_zip(self._files)
            return self._archive_cache

    # -- faults --------------------------------------------------------------------------------------

    def inject(self, fault: str, times: Optional[int] = 1) -> None:
        """Switch a fault on for the next ``times`` matching requests (``times=None``: until cleared)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if fault == FAULT_STALL_DOWNLOAD:
            self._unstall.clear()
        with self._lock:
            self._faults[fault] = _Fault(remaining=times)

    def clear_faults(self, fault: Optional[str] = None) -> None:
        self._unstall.set()
        with self._lock:
            if fault is None:
                self._faults.clear()
            else:
                self._faults.pop(fault, None)

    def fault_hits(self, fault: str) -> int:
        """How many requests the fault has fired on since it was (last) injected."""
        with self._lock:
            state = self._faults.get(fault)
            return state.hits if state else 0

    def _take_fault(self, fault: str) -> bool:
        with self._lock:
            state = self._faults.get(fault)
            if state is None or state.remaining == 0:
                return False
            state.hits += 1
            if state.remaining is not None:
                state.remaining -= 1
            return True

    # -- recorded requests ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, oldest first.

        Waits (briefly) for replies still being written: a client can finish reading a body
        before the server thread has counted the bytes it sent.
        """
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=5)
        with self._lock:
            return list(self._requests)

    def _begin_request(self) -> None:
        with self._idle:
            self._in_flight += 1

    def _end_request(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def calls(self, rpc: str) -> list[RecordedRequest]:
        """Recorded RPC calls of one method, e.g. ``emu.calls("CreateSubmission")``."""
        return [r for r in self.requests if r.rpc == rpc]

    def requests_of_kind(self, kind: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.kind == kind]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    # -- submissions ---------------------------------------------------------------------------------

    @property
    def submissions(self) -> list[Submission]:
        """Submissions in the order they were created."""
        with self._lock:
            return list(self._submissions)

    @property
    def uploads(self) -> dict[str, bytes]:
        """Upload token -> bytes received by the PUT (including uploads never turned into submissions)."""
        with self._lock:
            return {token: up["content"] for token, up in self._uploads.items() if up["content"] is not None}

    def submission(self, ref: Union[int, str]) -> Submission:
        with self._lock:
            for sub in self._submissions:
                if sub.ref == int(ref):
                    return sub
        raise KeyError(f"no submission with ref {ref}")

    def score_submission(
        self, ref: Union[int, str], public_score: str, private_score: Optional[str] = None
    ) -> Submission:
        """Mark a submission COMPLETE with the given scores (strings, as Kaggle reports them)."""
        return self.set_submission_status(ref, "COMPLETE", public_score=public_score, private_score=private_score)

    def fail_submission(self, ref: Union[int, str], error_description: str) -> Submission:
        return self.set_submission_status(ref, "ERROR", error_description=error_description)

    def set_submission_status(
        self,
        ref: Union[int, str],
        status: str,
        *,
        public_score: Optional[str] = None,
        private_score: Optional[str] = None,
        error_description: Optional[str] = None,
    ) -> Submission:
        if status not in SUBMISSION_STATUSES:
            raise ValueError(f"status must be one of {SUBMISSION_STATUSES}")
        with self._lock:
            sub = self.submission(ref)
            sub.status = status
            sub.public_score = public_score
            sub.private_score = private_score
            sub.error_description = error_description
            return sub

    # -- kernels -------------------------------------------------------------------------------------

    @property
    def kernels(self) -> dict[str, Kernel]:
        """``"owner/slug"`` -> Kernel."""
        with self._lock:
            return dict(self._kernels)

    def kernel(self, ref: str) -> Kernel:
        with self._lock:
            return self._kernels[ref]

    def _ensure_kernel(self, ref: str) -> Kernel:
        with self._lock:
            if ref not in self._kernels:
                owner, _, slug = ref.partition("/")
                if not owner or not slug:
                    raise ValueError(f"kernel ref must be owner/slug, got {ref!r}")
                self._kernels[ref] = Kernel(owner=owner, slug=slug, kernel_id=self._next_kernel_id)
                self._next_kernel_id += 1
            return self._kernels[ref]

    def set_kernel_status(self, ref: str, status: str, failure_message: Optional[str] = None) -> Kernel:
        """Set what GetKernelSessionStatus reports (creates the kernel if it was never pushed)."""
        if status not in KERNEL_STATUSES:
            raise ValueError(f"status must be one of {KERNEL_STATUSES}")
        with self._lock:
            kernel = self._ensure_kernel(ref)
            kernel.status = status
            kernel.failure_message = failure_message
            return kernel

    def set_kernel_output(self, ref: str, files: Mapping[str, bytes], log: Optional[str] = None) -> Kernel:
        """Set what ListKernelSessionOutput lists; the files are then served by the emulator."""
        with self._lock:
            kernel = self._ensure_kernel(ref)
            kernel.outputs = {name: bytes(data) for name, data in files.items()}
            kernel.log = log
            kernel.outputs_modified = time.time()
            return kernel

    # -- pointing the real client here ---------------------------------------------------------------

    def cli_env(
        self,
        home: Union[str, "os.PathLike[str]"],
        *,
        base: Optional[Mapping[str, str]] = None,
        username: Optional[str] = None,
        key: Optional[str] = None,
        fast_sleep: bool = False,
    ) -> dict[str, str]:
        """Environment for running the ``kaggle`` CLI in a subprocess against this emulator.

        kagglesdk has no variable for the host, so: ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` makes the client
        call ``http://localhost/api/v1/...`` and ``HTTP_PROXY`` routes that here.  ``HTTPS_PROXY`` also
        points here, so a stray ``https://`` call (e.g. to kaggle.com) fails on our CONNECT refusal
        instead of reaching the network.  ``HOME`` and ``KAGGLE_CONFIG_DIR`` are confined to ``home``;
        every other ``KAGGLE_*`` variable and any token are removed, because the client copies every
        ``KAGGLE_*`` variable into its config and prefers tokens to keys.

        ``fast_sleep=True`` puts a ``sitecustomize`` on ``PYTHONPATH`` that caps ``time.sleep`` at 10 ms in
        that process: the client backs off ``2**n + random()`` seconds between download retries, which
        would make fault tests slow.
        """
        home_path = Path(home)
        config_dir = home_path / ".kaggle"
        config_dir.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in (os.environ if base is None else base).items()
            if not k.startswith("KAGGLE_") and k not in _PROXY_VARS_ALL and k != "PYTHONPATH"
        }
        env.update(
            {
                "HOME": str(home_path),
                "XDG_CONFIG_HOME": str(home_path / ".config"),
                "KAGGLE_CONFIG_DIR": str(config_dir),
                "KAGGLE_USERNAME": self.username if username is None else username,
                "KAGGLE_KEY": self.key if key is None else key,
                "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
                "PYTHONIOENCODING": "utf-8",
            }
        )
        for var in ("HTTP_PROXY", "HTTPS_PROXY"):
            env[var] = env[var.lower()] = self.url
        if fast_sleep:
            hook_dir = home_path / ".emulator-site"
            hook_dir.mkdir(exist_ok=True)
            (hook_dir / "sitecustomize.py").write_text(_FAST_SLEEP_SITECUSTOMIZE)
            env["PYTHONPATH"] = str(hook_dir)
        return env

    @contextlib.contextmanager
    def in_process(
        self,
        home: Union[str, "os.PathLike[str]"],
        *,
        username: Optional[str] = None,
        key: Optional[str] = None,
        fast_retries: bool = True,
    ) -> Iterator[Any]:
        """Yield an authenticated ``KaggleApi`` that talks to this emulator, restoring everything after.

        It sets ``HOME``/``KAGGLE_CONFIG_DIR`` to ``home``, the credentials (the emulator's unless given),
        removes tokens, other ``KAGGLE_*`` and proxy variables, and points kagglesdk's PROD and LOCAL
        endpoints at ``self.url`` (which one the client uses was fixed when ``kaggle`` was first
        imported).  ``kaggle`` is imported lazily here because importing it authenticates and creates a
        config directory.  ``fast_retries`` replaces the module's ``time`` with one whose ``sleep`` returns
        at once, so download retry backoff (2-3 s and up per retry) does not slow tests.
        """
        home_path = Path(home)
        config_dir = home_path / ".kaggle"
        config_dir.mkdir(parents=True, exist_ok=True)
        wanted = {
            "HOME": str(home_path),
            "XDG_CONFIG_HOME": str(home_path / ".config"),
            "KAGGLE_CONFIG_DIR": str(config_dir),
            "KAGGLE_USERNAME": self.username if username is None else username,
            "KAGGLE_KEY": self.key if key is None else key,
            # Anything https is foreign here: send it to our CONNECT refusal, not the network.
            "HTTPS_PROXY": self.url,
            "https_proxy": self.url,
        }
        removed = [k for k in os.environ if (k.startswith("KAGGLE_") or k in _PROXY_VARS_ALL) and k not in wanted]
        saved = {k: os.environ.get(k) for k in list(wanted) + removed}
        import kagglesdk.kaggle_env as kaggle_env

        saved_endpoints = dict(kaggle_env._env_to_endpoint)
        module = None
        saved_time = None
        try:
            for k in removed:
                del os.environ[k]
            os.environ.update(wanted)
            for env_name in (kaggle_env.KaggleEnv.PROD, kaggle_env.KaggleEnv.LOCAL):
                kaggle_env._env_to_endpoint[env_name] = self.url
            from kaggle.api import kaggle_api_extended as module

            if fast_retries:
                saved_time = module.time
                module.time = _NoSleepTime(saved_time)
            api = module.KaggleApi()
            # The class fixed its config paths at import time; pin this instance to the temp home.
            api.config_dir = str(config_dir)
            api.config = str(config_dir / "kaggle.json")
            api.authenticate()
            yield api
        finally:
            if module is not None and saved_time is not None:
                module.time = saved_time
            kaggle_env._env_to_endpoint.clear()
            kaggle_env._env_to_endpoint.update(saved_endpoints)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # -- request handling (called from server threads) ----------------------------------------------

    def _handle(self, handler: "_Handler") -> None:
        """Parse, record and answer one request."""
        target = handler.path
        split = urllib.parse.urlsplit(target)
        via_proxy = bool(split.scheme and split.netloc)
        path = split.path or "/"
        query = urllib.parse.parse_qs(split.query)
        body = handler.read_body()
        auth_header = handler.headers.get("Authorization")
        record = RecordedRequest(
            method=handler.command,
            target=target,
            path=path,
            kind="unknown",
            via_proxy=via_proxy,
            headers=_redacted_headers(handler.headers.items()),
            body_size=len(body),
            auth_user=_basic_user(auth_header),
        )
        self._record(record)
        handler.record = record
        # URLs we hand out must come back to us the same way the request came (through the proxy as
        # http://localhost/..., or directly as http://127.0.0.1:PORT/...).
        base = f"{split.scheme}://{split.netloc}" if via_proxy else f"http://{handler.headers.get('Host', self._host)}"

        if handler.command == "CONNECT":
            record.kind = "connect"
            handler.send_json(502, {"code": 502, "message": "kaggle emulator: refusing to tunnel to " + target})
            return

        rpc = _parse_rpc_path(path)
        if rpc is not None:
            record.kind = "rpc"
            record.service, record.rpc = rpc
            record.json = _parse_json(body)
            if handler.command != "POST":
                handler.send_json(405, {"code": 405, "message": "RPC calls must be POST"})
                return
            self._handle_rpc(handler, record, base, auth_header)
            return

        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        signed = query.get("sig", [""])[0] == self._signature
        if parts[:1] == ["download"] and handler.command == "GET" and len(parts) == 4:
            record.kind = "download"
            self._serve_download(handler, record, signed, parts[1], parts[2], parts[3])
        elif parts[:1] == ["upload"] and handler.command == "PUT" and len(parts) == 2:
            record.kind = "upload"
            self._receive_upload(handler, record, signed, parts[1], body)
        elif parts[:1] == ["kernel-output"] and handler.command == "GET" and len(parts) == 4:
            record.kind = "kernel_output"
            self._serve_kernel_output(handler, signed, f"{parts[1]}/{parts[2]}", parts[3])
        else:
            handler.send_json(404, {"code": 404, "message": NOT_FOUND_MESSAGE})

    def _handle_rpc(self, handler: "_Handler", record: RecordedRequest, base: str, auth_header: Optional[str]) -> None:
        if not self._authorized(auth_header):
            handler.send_json(401, {"code": 401, "message": UNAUTHENTICATED_MESSAGE})
            return
        method = self._rpc_methods().get((record.service, record.rpc))
        if method is None:
            handler.send_json(
                404, {"code": 404, "message": f"kaggle emulator: no handler for {record.service}/{record.rpc}"}
            )
            return
        request = record.json if isinstance(record.json, dict) else {}
        try:
            result = method(request, base, record)
        except _RpcError as error:
            handler.send_json(error.code, {"code": error.code, "message": error.message})
            return
        if isinstance(result, _Redirect):
            handler.send_redirect(result.location)
        else:
            handler.send_json(200, result)

    def _authorized(self, header: Optional[str]) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        expected = base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
        return secrets.compare_digest(header[len("Basic ") :].strip(), expected)

    def _rpc_methods(self) -> dict[tuple[str, str], Callable[[dict, str, RecordedRequest], Any]]:
        return {
            (COMPETITION_SERVICE, "ListCompetitions"): self._rpc_list_competitions,
            (COMPETITION_SERVICE, "DownloadDataFiles"): self._rpc_download_data_files,
            (COMPETITION_SERVICE, "DownloadDataFile"): self._rpc_download_data_file,
            (COMPETITION_SERVICE, "StartSubmissionUpload"): self._rpc_start_submission_upload,
            (COMPETITION_SERVICE, "CreateSubmission"): self._rpc_create_submission,
            (COMPETITION_SERVICE, "ListSubmissions"): self._rpc_list_submissions,
            (COMPETITION_SERVICE, "GetSubmissionLimits"): self._rpc_get_submission_limits,
            (KERNELS_SERVICE, "SaveKernel"): self._rpc_save_kernel,
            (KERNELS_SERVICE, "GetKernelSessionStatus"): self._rpc_get_kernel_session_status,
            (KERNELS_SERVICE, "ListKernelSessionOutput"): self._rpc_list_kernel_session_output,
        }

    # -- competition RPCs ----------------------------------------------------------------------------

    def _check_competition(self, request: dict, record: RecordedRequest) -> None:
        name = request.get("competitionName", "")
        if name != self.competition:
            raise _RpcError(404, NOT_FOUND_MESSAGE)
        if self._take_fault(FAULT_COMPETITION_NOT_FOUND):
            record.fault = FAULT_COMPETITION_NOT_FOUND
            raise _RpcError(404, NOT_FOUND_MESSAGE)

    def _check_rules(self, record: RecordedRequest) -> None:
        if self._take_fault(FAULT_RULES_NOT_ACCEPTED):
            record.fault = FAULT_RULES_NOT_ACCEPTED
            raise _RpcError(403, RULES_NOT_ACCEPTED_MESSAGE)

    def _signed_url(self, base: str, *segments: str) -> str:
        path = "/".join(urllib.parse.quote(s, safe="") for s in segments)
        return f"{base}/{path}?sig={self._signature}"

    def _rpc_list_competitions(self, request: dict, base: str, record: RecordedRequest) -> dict:
        # Kaggle's search matches words of titles and slugs; the one competition here matches its own slug.
        search = (request.get("search") or "").strip()
        if search and search not in self.competition:
            return {"competitions": []}
        return {"competitions": [{"id": 1, "ref": f"https://www.kaggle.com/competitions/{self.competition}",
                                  "title": self.competition_title, "evaluationMetric": self.evaluation_metric}]}

    def _rpc_download_data_files(self, request: dict, base: str, record: RecordedRequest) -> _Redirect:
        self._check_competition(request, record)
        self._check_rules(record)
        return _Redirect(self._signed_url(base, "download", self.competition, "all", self.archive_name))

    def _rpc_download_data_file(self, request: dict, base: str, record: RecordedRequest) -> _Redirect:
        self._check_competition(request, record)
        self._check_rules(record)
        name = request.get("fileName", "")
        if name not in self.files:
            raise _RpcError(404, NOT_FOUND_MESSAGE)
        return _Redirect(self._signed_url(base, "download", self.competition, "file", name))

    def _rpc_start_submission_upload(self, request: dict, base: str, record: RecordedRequest) -> dict:
        self._check_competition(request, record)
        token = "blob-" + secrets.token_hex(6)
        with self._lock:
            self._uploads[token] = {
                "file_name": request.get("fileName", ""),
                "content_length": int(request.get("contentLength", 0)),
                "content": None,
            }
        return {"token": token, "createUrl": self._signed_url(base, "upload", token)}

    def _rpc_create_submission(self, request: dict, base: str, record: RecordedRequest) -> dict:
        self._check_competition(request, record)
        if self._take_fault(FAULT_CREATE_SUBMISSION_500):
            record.fault = FAULT_CREATE_SUBMISSION_500
            raise _RpcError(500, INTERNAL_ERROR_MESSAGE)
        token = request.get("blobFileTokens", "")
        with self._lock:
            upload = self._uploads.get(token)
            if upload is None or upload["content"] is None:
                raise _RpcError(400, "The submission file was not uploaded")
            sub = Submission(
                ref=self._next_ref,
                competition=self.competition,
                file_name=upload["file_name"],
                description=request.get("submissionDescription", ""),
                content=upload["content"],
                date=datetime.now(timezone.utc).replace(tzinfo=None),
                submitted_by=self.username,
            )
            self._next_ref += 1
            self._submissions.append(sub)
        return {"message": f"Successfully submitted to {self.competition_title}", "ref": sub.ref}

    def _rpc_list_submissions(self, request: dict, base: str, record: RecordedRequest) -> dict:
        self._check_competition(request, record)
        newest_first = list(reversed(self.submissions))
        page_size = int(request.get("pageSize") or 20)
        token = request.get("pageToken") or ""
        start = int(token) if token.isdigit() else (max(int(request.get("page") or 1), 1) - 1) * page_size
        page = newest_first[start : start + page_size]
        reply: dict[str, Any] = {"submissions": [s.to_api() for s in page]}
        if start + page_size < len(newest_first):
            reply["nextPageToken"] = str(start + page_size)
        return reply

    def _rpc_get_submission_limits(self, request: dict, base: str, record: RecordedRequest) -> dict:
        self._check_competition(request, record)
        today = datetime.now(timezone.utc).date()
        subs = self.submissions
        num_today = sum(1 for s in subs if s.date.date() == today)
        return {
            "numToday": num_today,
            "numTotal": len(subs),
            "numAllowedNow": max(0, self.daily_submission_limit - num_today),
        }

    # -- kernel RPCs ---------------------------------------------------------------------------------

    def _kernel_from_request(self, request: dict) -> Kernel:
        ref = f"{request.get('userName', '')}/{request.get('kernelSlug', '')}"
        with self._lock:
            kernel = self._kernels.get(ref)
        if kernel is None:
            # Kaggle answers an unknown (or private) kernel with a permission error, not 404.
            raise _RpcError(403, "Permission 'kernels.get' was denied")
        return kernel

    def _rpc_save_kernel(self, request: dict, base: str, record: RecordedRequest) -> dict:
        with self._lock:
            if request.get("slug"):
                kernel = self._ensure_kernel(request["slug"])
            else:
                matches = [k for k in self._kernels.values() if k.kernel_id == request.get("id")]
                if not matches:
                    raise _RpcError(404, NOT_FOUND_MESSAGE)
                kernel = matches[0]
            push = KernelPush(version=len(kernel.pushes) + 1, text=request.get("text", ""), request=dict(request))
            kernel.pushes.append(push)
            kernel.status = "QUEUED"
            kernel.failure_message = None
        return {
            "ref": f"/code/{kernel.ref}",
            "url": f"{base}/code/{kernel.ref}",
            "versionNumber": push.version,
            "kernelId": kernel.kernel_id,
        }

    def _rpc_get_kernel_session_status(self, request: dict, base: str, record: RecordedRequest) -> dict:
        kernel = self._kernel_from_request(request)
        reply: dict[str, Any] = {"status": kernel.status}
        if kernel.failure_message:
            reply["failureMessage"] = kernel.failure_message
        return reply

    def _rpc_list_kernel_session_output(self, request: dict, base: str, record: RecordedRequest) -> dict:
        kernel = self._kernel_from_request(request)
        files = [
            {"url": self._signed_url(base, "kernel-output", kernel.owner, kernel.slug, name), "fileName": name}
            for name in sorted(kernel.outputs)
        ]
        reply: dict[str, Any] = {"files": files}
        if kernel.log is not None:
            reply["log"] = kernel.log
        return reply

    # -- plain HTTP endpoints ------------------------------------------------------------------------

    def _serve_download(
        self, handler: "_Handler", record: RecordedRequest, signed: bool, slug: str, scope: str, name: str
    ) -> None:
        if not signed or slug != self.competition:
            handler.send_json(403, {"code": 403, "message": "Invalid signature"})
            return
        files = self.files
        if scope == "all" and name == self.archive_name:
            content = self.all_files_archive()
        elif scope == "file" and name in files:
            content = files[name]
        else:
            handler.send_json(404, {"code": 404, "message": NOT_FOUND_MESSAGE})
            return
        if name.endswith(".zip") and self._take_fault(FAULT_CORRUPT_ARCHIVE):
            record.fault = FAULT_CORRUPT_ARCHIVE
            content = _corrupt_bytes(len(content))
        drop = self._take_fault(FAULT_DROP_DOWNLOAD)
        if drop:
            record.fault = FAULT_DROP_DOWNLOAD
        stall = self._take_fault(FAULT_STALL_DOWNLOAD)
        if stall:
            record.fault = FAULT_STALL_DOWNLOAD
        handler.send_file(content, self._last_modified, _content_type(name), drop=drop or stall,
                          stall=self._unstall if stall else None)

    def _receive_upload(
        self, handler: "_Handler", record: RecordedRequest, signed: bool, token: str, body: bytes
    ) -> None:
        if not signed:
            handler.send_json(403, {"code": 403, "message": "Invalid signature"})
            return
        if self._take_fault(FAULT_UPLOAD_500):
            record.fault = FAULT_UPLOAD_500
            handler.send_json(500, {"code": 500, "message": INTERNAL_ERROR_MESSAGE})
            return
        with self._lock:
            upload = self._uploads.get(token)
            if upload is None:
                handler.send_json(404, {"code": 404, "message": NOT_FOUND_MESSAGE})
                return
            upload["content"] = body
        handler.send_json(200, {})

    def _serve_kernel_output(self, handler: "_Handler", signed: bool, ref: str, name: str) -> None:
        with self._lock:
            kernel = self._kernels.get(ref)
            content = kernel.outputs.get(name) if kernel else None
            modified = kernel.outputs_modified if kernel else 0.0
        if not signed:
            handler.send_json(403, {"code": 403, "message": "Invalid signature"})
            return
        if content is None:
            handler.send_json(404, {"code": 404, "message": NOT_FOUND_MESSAGE})
            return
        handler.send_file(content, modified, _content_type(name))


# --------------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: KaggleEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client drops a keep-alive connection (requests does this routinely);
        report anything else, which would be a bug in the emulator."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Thin HTTP layer: body reading, response writing, Range and the mid-body drop."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real service; every reply has a length
    timeout = 10  # idle keep-alive connections must not pin threads forever
    server: _Server
    record: Optional[RecordedRequest] = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from base class
        """Silence per-request logging; tests inspect ``emulator.requests`` instead."""

    def _dispatch(self) -> None:
        self.record = None
        emulator = self.server.emulator
        emulator._begin_request()
        try:
            emulator._handle(self)
        except (BrokenPipeError, ConnectionResetError):
            # The client hung up, e.g. it decided not to read a download it already has.
            self.close_connection = True
        finally:
            emulator._end_request()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_CONNECT = _dispatch

    def read_body(self) -> bytes:
        """Read the request body (Content-Length or chunked) so keep-alive stays in step."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _finish_record(self, status: int, sent: int) -> None:
        if self.record is not None:
            self.record.status = status
            self.record.bytes_sent += sent

    def send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._finish_record(status, 0)
        if self.command != "HEAD":
            self.wfile.write(body)
            self._finish_record(status, len(body))

    def send_redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self._finish_record(302, 0)

    def send_file(self, content: bytes, modified: float, content_type: str, drop: bool = False,
                  stall: Optional[threading.Event] = None) -> None:
        """Serve bytes the way a storage bucket does: validators, byte ranges, exact length.

        With ``drop`` the headers promise the full length but only half of the body is written before
        the socket is shut down, which is what a connection lost mid-download looks like to the client.
        With ``stall`` it waits for that event (at most a minute) between the half and the shutdown.
        """
        total = len(content)
        etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
        last_modified = email.utils.formatdate(modified, usegmt=True)
        status, start, end = 200, 0, total
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if range_header and (if_range is None or if_range in (etag, last_modified)):
            parsed = _parse_range(range_header, total)
            if parsed is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{total}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._finish_record(416, 0)
                return
            status, start, end = 206, parsed[0], parsed[1]
        body = content[start:end]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", last_modified)
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{total}")
        self.end_headers()
        self._finish_record(status, 0)
        if self.command == "HEAD":
            return
        if not drop:
            self.wfile.write(body)
            self._finish_record(status, len(body))
            return
        partial = body[: len(body) // 2]
        self.wfile.write(partial)
        self.wfile.flush()
        self._finish_record(status, len(partial))
        if stall is not None:
            stall.wait(timeout=60)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


_FAST_SLEEP_SITECUSTOMIZE = '''\
"""Written by tests/kaggle_emulator.py: cap time.sleep so the kaggle client's retry backoff is quick."""
import time as _time

_real_sleep = _time.sleep


def _short_sleep(seconds):
    _real_sleep(min(seconds, 0.01))


_time.sleep = _short_sleep
'''


class _NoSleepTime:
    """Stands in for the ``time`` module inside the client: everything real except ``sleep``."""

    def __init__(self, real: types.ModuleType):
        self._real = real

    def sleep(self, seconds: float) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


# --------------------------------------------------------------------------------------------------
# Small helpers


def _parse_rpc_path(path: str) -> Optional[tuple[str, str]]:
    """``/v1/<service>/<Method>`` or ``/api/v1/<service>/<Method>`` -> (service, Method)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        parts = parts[1:]
    if len(parts) == 3 and parts[0] == "v1":
        return parts[1], parts[2]
    return None


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _redacted_headers(items: Any) -> dict[str, str]:
    """Copy headers, keeping only the scheme of credentials (``Basic <redacted>``)."""
    out = {}
    for name, value in items:
        if name.lower() in ("authorization", "proxy-authorization"):
            scheme = value.split(" ", 1)[0] if " " in value else ""
            value = f"{scheme} <redacted>".strip()
        out[name] = value
    return out


def _basic_user(header: Optional[str]) -> Optional[str]:
    """The user name from a Basic header (never the key), for assertions about who called."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[len("Basic ") :].strip()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0]


def _parse_range(header: str, total: int) -> Optional[tuple[int, int]]:
    """Parse a single ``bytes=`` range into [start, end); None when unsatisfiable or malformed."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            length = int(last)
            start, end = max(0, total - length), total
        else:
            start = int(first)
            end = min(int(last) + 1, total) if last else total
    except ValueError:
        return None
    if start >= total or start >= end:
        return None
    return start, end


def _corrupt_bytes(length: int) -> bytes:
    """Same length as the real archive (so size checks pass) but no zip signatures anywhere."""
    pattern = b"corrupt: this is not a zip archive\n"
    return (pattern * (length // len(pattern) + 1))[:length]


def _content_type(name: str) -> str:
    if name.endswith(".zip"):
        return "application/zip"
    if name.endswith(".csv"):
        return "text/csv"
    if name.endswith(".log") or name.endswith(".txt"):
        return "text/plain"
    return "application/octet-stream"

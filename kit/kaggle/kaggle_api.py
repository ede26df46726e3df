"""The official Kaggle client behind one narrow door.

The client is awkward to call from a tool that promises one-line errors: importing it
authenticates and prints a page of help on stdout when it finds no credentials,
`authenticate()` then raises SystemExit, a failed upload returns a message instead of
raising, and an error string can carry a URL or header with a secret in it. So this
module looks for credentials itself before the client is imported, keeps the client's
stdout chatter aside, turns its errors into KitError lines that name the way out, and
scrubs every secret it knows of from anything it reports.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import stat
import sys
from pathlib import Path

from kit import COMPETITION
from kit.errors import KitError

TOKEN_PAGE = "https://www.kaggle.com/settings/api"
UPLOAD_FAILED = "Could not submit to competition"   # what kaggle 2.2.x returns instead of raising
SUBMISSIONS_PAGE_SIZE = 50
SUBMISSIONS_MAX_PAGES = 20   # 1000 submissions: more than five a day for the life of a competition

NO_CREDENTIALS = (
    "no Kaggle API credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or save the kaggle.json from "
    f"{TOKEN_PAGE} as {{config}} (chmod 600), or set KAGGLE_API_TOKEN"
)


def rules_url(slug: str) -> str:
    return f"https://www.kaggle.com/c/{slug}/rules"


# --- credentials, found without importing the client ------------------------------------------

def config_file() -> Path:
    """Where the client looks for kaggle.json (its own rule, which it fixes at import)."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured) / "kaggle.json"
    legacy = Path.home() / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(xdg) / "kaggle" / "kaggle.json"
    return legacy / "kaggle.json"


def check_credentials() -> str:
    """Where the client will find credentials (for messages); a KitError naming every option when nowhere.

    Mirrors the client's order: an access token, then username + key (environment over
    kaggle.json), then OAuth credentials saved by `kaggle auth login`.
    """
    stored = _read_json(config_file())
    _warn_if_readable(config_file())
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        if _read_text(Path.home() / ".kaggle" / name):
            return f"~/.kaggle/{name}"
    username = os.environ.get("KAGGLE_USERNAME") or stored.get("username")
    key = os.environ.get("KAGGLE_KEY") or stored.get("key")
    if username and key:
        return "KAGGLE_USERNAME/KAGGLE_KEY" if os.environ.get("KAGGLE_KEY") else _display(config_file())
    if (Path.home() / ".kaggle" / "credentials.json").is_file():
        return "~/.kaggle/credentials.json"
    raise KitError(NO_CREDENTIALS.format(config=_display(config_file())))


def known_secrets() -> list[str]:
    """Every credential this process could send, in every form it could be printed in."""
    found = [os.environ.get("KAGGLE_KEY", ""), os.environ.get("KAGGLE_API_TOKEN", "")]
    token_file = os.environ.get("KAGGLE_API_TOKEN", "")
    if token_file and Path(token_file).is_file():
        found.append(_read_text(Path(token_file)))
    for name in ("access_token", "access_token.txt"):
        found.append(_read_text(Path.home() / ".kaggle" / name))
    stored = _read_json(config_file())
    found.append(str(stored.get("key", "")))
    oauth = _read_json(Path.home() / ".kaggle" / "credentials.json")
    found += [value for value in oauth.values() if isinstance(value, str)]
    username = os.environ.get("KAGGLE_USERNAME") or str(stored.get("username", ""))
    for key in (os.environ.get("KAGGLE_KEY", ""), str(stored.get("key", ""))):
        if key:
            found.append(base64.b64encode(f"{username}:{key}".encode()).decode())   # a Basic header
    # Short values (a username-like oauth field, "true") are not secrets and would mangle text.
    return sorted({s for s in found if len(s) >= 8}, key=len, reverse=True)


def scrub(text: str) -> str:
    """`text` with known secrets and URL passwords (user:pass@host, e.g. a proxy) replaced by ***."""
    text = re.sub(r"(://)[^/\s@]+@", r"\1***@", text)
    for secret in known_secrets():
        text = text.replace(secret, "***")
    return text


_warned: set[Path] = set()   # once per file and process, however many calls check credentials


def _warn_if_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if os.name != "nt" and mode & (stat.S_IRGRP | stat.S_IROTH) and path not in _warned:
        _warned.add(path)
        print(f"warning: {_display(path)} is readable by other users; run `chmod 600 {_display(path)}`",
              file=sys.stderr)


def _display(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if text.startswith(home + os.sep) else text


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- the client -----------------------------------------------------------------------------

@contextlib.contextmanager
def _client(slug: str, action: str, rerun: str, way_out: str):
    """An authenticated KaggleApi and a buffer holding what it printed; its errors end as one KitError.

    `action` completes "while ..." in messages; `rerun` is the command to repeat once the user
    has fixed something; `way_out` is what to do after a failure that is nobody's mistake.
    """
    source = check_credentials()
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
            yield api, chatter
    except KitError:
        raise
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("kaggle"):
            raise
        raise KitError("the kaggle client is not installed: run `make venv` "
                       "(or pip install -r requirements.txt)") from None
    except SystemExit:
        raise KitError(f"the kaggle client could not authenticate with the credentials from {source}: check "
                       f"them, or create a new token at {TOKEN_PAGE}") from None
    except Exception as error:
        translated = _translate(error, slug, action, rerun, way_out, source)
        if translated is None:
            raise
        raise translated from None


def _translate(error: Exception, slug: str, action: str, rerun: str, way_out: str, source: str) -> KitError | None:
    """The one line a user needs for a client error; None for errors that are bugs."""
    import requests
    from urllib3 import exceptions as urllib3_errors

    detail = scrub(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
    if isinstance(error, requests.HTTPError):
        status = getattr(error.response, "status_code", None)
        if status == 401:
            return KitError(f"Kaggle rejected the credentials from {source} (401 {detail}): create a new token "
                            f"at {TOKEN_PAGE} and update {source}")
        if status == 403:
            return KitError(f"Kaggle refused {action} (403: {detail}): accept the competition rules at "
                            f"{rules_url(slug)} with this account, then rerun `{rerun}`")
        if status == 404:
            return KitError(f"competition {slug!r} not found on Kaggle (404): check the slug, config key "
                            f"`competition` (--set competition=SLUG; this competition is {COMPETITION})")
        return KitError(f"Kaggle answered {status} ({detail}) while {action}: {way_out}")
    network = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
               urllib3_errors.HTTPError)
    if isinstance(error, network):
        return KitError(f"network failure while {action} ({type(error).__name__}, after the client's retries): "
                        f"{way_out}")
    if isinstance(error, OSError):
        return KitError(f"{action} failed: {detail}")
    return None


def _said(chatter: io.StringIO) -> str:
    """The client's last printed line, scrubbed: its only explanation for some failures."""
    lines = [line.strip() for line in chatter.getvalue().splitlines() if line.strip()]
    return scrub(lines[-1]) if lines else ""


# --- the competition calls the kit makes ----------------------------------------------------

def download(slug: str, folder: Path, force: bool = False) -> Path:
    """Download every competition file as `folder/<slug>.zip`; an interrupted download resumes on the next call."""
    way_out = "rerun `python -m kit fetch` to resume"
    with _client(slug, f"downloading {slug}", "python -m kit fetch", way_out) as (api, _):
        try:
            api.competition_download_files(slug, path=str(folder), force=force, quiet=True)
        except ValueError as error:
            # The client's own length check, after its retries: the bytes stopped short.
            if "does not match expected size" not in str(error):
                raise
            raise KitError(f"the download of {slug} ended early ({scrub(str(error))}): {way_out}") from None
    return Path(folder) / f"{slug}.zip"


def submit(path: Path, message: str, slug: str) -> int:
    """Upload a submission file; its Kaggle ref, or a KitError when Kaggle did not take it."""
    way_out = "check `python -m kit submissions` before submitting again"
    with _client(slug, f"submitting {path.name} to {slug}", "python -m kit submit", way_out) as (api, chatter):
        result = api.competition_submit(str(path), message, slug, quiet=True)
    ref = int(getattr(result, "ref", 0) or 0)
    answer = getattr(result, "message", "") or ""
    if ref == 0 or answer == UPLOAD_FAILED:
        said = _said(chatter)
        raise KitError(f"Kaggle did not take {path.name}: {scrub(answer) or 'no submission ref'}"
                       f"{' (' + said + ')' if said else ''}; nothing was submitted, try again later")
    return ref


def submission_states(slug: str, refs) -> dict[int, dict]:
    """ref -> {status, public_score, error} for the submissions in `refs` that Kaggle lists."""
    wanted, found = {int(r) for r in refs}, {}
    way_out = "rerun `python -m kit submissions`"
    with _client(slug, "listing your submissions", "python -m kit submissions", way_out) as (api, _):
        for page in range(1, SUBMISSIONS_MAX_PAGES + 1):
            batch = api.competition_submissions(slug, page_number=page, page_size=SUBMISSIONS_PAGE_SIZE) or []
            for sub in batch:
                if sub is not None and int(sub.ref) in wanted:
                    found[int(sub.ref)] = {
                        "status": getattr(sub.status, "name", str(sub.status)),
                        "public_score": sub.public_score or "",
                        "error": sub.error_description or "",
                    }
            if len(batch) < SUBMISSIONS_PAGE_SIZE or wanted <= found.keys():
                break
    return found


def evaluation_metric(slug: str) -> str:
    """Kaggle's name for the competition's metric (ApiCompetition.evaluation_metric); "" where it lists none."""
    way_out = "set the metric yourself (--set metric=NAME, or SET='metric=NAME' for make)"
    with _client(slug, f"reading the metric of {slug}", "python -m kit fetch", way_out) as (api, _):
        listed = api.competitions_list(search=slug)
    for competition in getattr(listed, "competitions", None) or []:
        if str(competition.ref).rstrip("/").split("/")[-1] == slug:   # ref is the slug or the page's URL
            return competition.evaluation_metric or ""
    return ""


# --- kernels ----------------------------------------------------------------------------------

KERNEL_FINAL = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")


def username() -> str:
    """The Kaggle user the credentials belong to: from the environment or kaggle.json without the client,
    else (an access token) as the client learns it when it authenticates."""
    stored = _read_json(config_file())
    known = os.environ.get("KAGGLE_USERNAME") or stored.get("username")
    if known:
        return str(known)
    with _client(COMPETITION, "finding your Kaggle username", "python -m kit kernels push", "try again") as (api, _):
        found = api.get_config_value("username")
    if not found:
        raise KitError("the Kaggle credentials name no user: set KAGGLE_USERNAME to your Kaggle username")
    return str(found)


@contextlib.contextmanager
def _kernel_client(ref: str, action: str, rerun: str):
    """_client, with the kernel calls' own failures (the client raises ValueError when Kaggle denies a
    kernel, and Kaggle denies rather than 404s a kernel it does not show you) in kernel terms."""
    import requests

    with _client(COMPETITION, action, rerun, f"rerun `{rerun}` in a while") as (api, chatter):
        try:
            yield api, chatter
        except ValueError as error:
            if "Cannot access kernel" in str(error):
                raise KitError(f"Kaggle denied access to kernel {ref}: push it first (`make kernel-push`), or check "
                               "that the credentials are for the account that pushed it") from None
            raise KitError(f"{action} failed: {scrub(str(error).strip().splitlines()[0])}") from None
        except requests.HTTPError as error:
            status = getattr(error.response, "status_code", None)
            if status in (403, 404):
                detail = scrub(str(error).strip().splitlines()[0]) if str(error).strip() else status
                raise KitError(f"Kaggle refused {action} ({status}: {detail}): check that kernel {ref} belongs to "
                               "these credentials' account, and that the account may use GPUs and internet "
                               "(phone verification)") from None
            raise


def push_kernel(folder: Path, ref: str) -> dict:
    """Push a kernel folder (its metadata already naming the owner); the new version and where to see it."""
    rerun = "python -m kit kernels push"
    with _kernel_client(ref, f"pushing kernel {ref}", rerun) as (api, chatter):
        result = api.kernels_push(str(folder))
    error = getattr(result, "error", "") if result is not None else "no answer"
    if error:
        said = _said(chatter)
        raise KitError(f"Kaggle did not take kernel {ref}: {scrub(str(error))}{' (' + said + ')' if said else ''}")
    invalid = [f"{kind} {', '.join(map(str, items))}" for kind, items in (
        ("datasets", getattr(result, "invalid_dataset_sources", None)),
        ("competitions", getattr(result, "invalid_competition_sources", None))) if items]
    return {"url": getattr(result, "url", "") or "", "version": getattr(result, "version_number", None),
            "invalid_sources": invalid}


def kernel_status(ref: str) -> tuple[str, str]:
    """(status name, failure message) of the kernel's latest version."""
    with _kernel_client(ref, f"asking for the status of kernel {ref}", "python -m kit kernels status") as (api, _):
        result = api.kernels_status(ref)
    status = getattr(result, "status", None)
    return getattr(status, "name", str(status)), scrub(getattr(result, "failure_message", "") or "")


def kernel_log(ref: str) -> str:
    """The latest session's log, as Kaggle keeps it (client 2.x `kernels logs`); credentials scrubbed."""
    with _kernel_client(ref, f"reading the log of kernel {ref}", "python -m kit kernels status") as (api, _):
        return scrub(api.kernels_logs(ref) or "")


def kernel_output(ref: str, folder: Path) -> list[Path]:
    """Download the latest version's output files and log into folder."""
    with _kernel_client(ref, f"downloading the output of kernel {ref}", "python -m kit kernels output") as (api, _):
        paths, _token = api.kernels_output(ref, str(folder), force=True, quiet=True)
    return [Path(p) for p in paths]

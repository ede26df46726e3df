"""`python -m kit submit` and `python -m kit submissions`: spend a daily submission only on a
file that passes the same checks as prediction and has a local score to compare against.

Every check happens before the first network call, so a refused file costs nothing.
"""

from __future__ import annotations

from pathlib import Path

from kit import fileio, provenance, score
from kit.config import Config
from kit.errors import KitError
from kit.fetch import TASK, read_task
from kit.kaggle import kaggle_api, ledger
from kit.score import SAMPLE
from kit.task import layout
from kit.task.spec import Task


def submit(path: str | Path, message: str, config: Config, force: bool = False, log=print,
           task: Task | None = None) -> dict:
    """Check, upload and record one submission file; returns its ledger row. `task` is for a sample that
    is not a fetched competition's (a kernel's output folder keeps its own task.json beside it)."""
    path = Path(path)
    check_file(path, Path(config.data_dir), task)
    sidecar = read_sidecar(path)
    if sidecar.get("local_log_loss") is None and sidecar.get("local_score") is None:
        if not force:
            raise KitError(f"{sidecar['why']}: submit a file written by `python -m kit predict`, "
                           "or pass --force to spend a submission on it anyway")
        log(f"submit: {sidecar['why']}; submitting anyway (--force)")

    kaggle_api.check_credentials()
    log(f"submit: uploading {path} to {config.competition}")
    ref = kaggle_api.submit(path, message, config.competition)
    row = ledger_row(path, message, ref, sidecar, config.competition)
    ledger.append(ledger_path(config), row)
    local = f"local log loss {float(row['local_log_loss']):.5f}" if row["local_log_loss"] else "no local score"
    if sidecar.get("local_score") is not None and not row["local_log_loss"]:
        local = f"local {sidecar['metric']} {float(sidecar['local_score']):.5f}"
    log(f"submit: Kaggle accepted {path} as submission {ref} ({local}); "
        "`python -m kit submissions` shows the public score once Kaggle has it")
    return row


def check_file(path: Path, data_dir: Path, task: Task | None = None) -> None:
    """The checks `predict` applies before writing: the sample's header, every test id once in its form,
    values of the task's kind (finite probabilities in [0, 1] summing to 1 across one-hot columns, a
    class as the labels write it). A data dir fetched with its task (task.json) is checked on the task's
    layout; one without (Dogs vs. Cats Redux as fetched before) as `id,label`."""
    if task is None and (data_dir / TASK).is_file():
        task = read_task(data_dir)
    if task is not None:
        layout.check_file(path, task, layout.read_sample(data_dir, task))
        return
    sample_path = data_dir / SAMPLE
    if not sample_path.is_file():
        raise KitError(f"no {SAMPLE} in {data_dir} to check {path} against: run `python -m kit fetch` first, "
                       "or pass the preset / --set data_dir= the competition was fetched with")
    sample = score.read_csv(sample_path, "sample submission")
    score.validate_submission(score.read_csv(path, "submission"), sample["id"], source=str(path))


def read_sidecar(path: Path) -> dict:
    """What predict recorded about this exact file; without a local score, `why` says what is missing."""
    sidecar = path.with_suffix(".json")
    data = fileio.read_json(sidecar)
    if not data:
        return {"why": f"{path} has no local score ({sidecar.name} not found or unreadable)"}
    if data.get("sha256") != fileio.file_digest(path):
        return {"why": f"{path} has changed since {sidecar.name} was written (sha256 differs), so its local "
                       "score does not apply"}
    if data.get("local_score") is not None and data.get("local_log_loss") is None:
        return data   # a task's submission: its local score is on the task's metric (sidecar `metric`)
    if data.get("local_log_loss") is None:
        return {**data, "why": f"{sidecar.name} records no local log loss for {path}"}
    return {**data, "local_log_loss": float(data["local_log_loss"])}


def ledger_row(path: Path, message: str, ref: int, sidecar: dict, competition: str) -> dict:
    clip = sidecar.get("clip") or ["", ""]
    local = sidecar.get("local_log_loss")
    return {
        "file": _shown(path),
        "competition": competition,
        "sha256": fileio.file_digest(path),
        "created": provenance.now(),
        "local_log_loss": _score_text(local),
        "clip_low": str(clip[0]),
        "clip_high": str(clip[1]),
        "config": ledger.compact_config(sidecar.get("config"), Config().to_dict()),
        "message": message,
        "ref": str(ref),
        "status": "PENDING",
        "public_score": "",
        "metric": sidecar.get("metric") or ("log_loss" if local is not None else ""),
        "local_score": _score_text(sidecar.get("local_score", local)),
    }


def _score_text(value) -> str:
    return "" if value is None else f"{float(value):.6f}"


def show(config: Config, log=print) -> list[dict]:
    """Refresh the rows Kaggle may still change, save them, and print the ledger."""
    path = ledger_path(config)
    rows = ledger.read(path)
    pending = ledger.open_refs(rows, config.competition)
    if pending:
        states = kaggle_api.submission_states(config.competition, pending)
        for ref, state in sorted(states.items()):
            if state["error"]:
                log(f"submissions: {ref} failed on Kaggle: {state['error']}")
        refreshed = ledger.update(rows, states)
        if refreshed != rows:
            ledger.write(path, refreshed)
        rows = refreshed
    if not rows:
        log(f"submissions: {path} has no submissions yet; `python -m kit submit FILE -m MESSAGE` adds one")
        return rows
    log(ledger.format_table(rows))
    return rows


def ledger_path(config: Config) -> Path:
    return Path(config.submissions_dir) / ledger.NAME


def _shown(path: Path) -> str:
    """The path relative to the working directory when it is inside it: rows stay short and portable."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)

"""submissions/ledger.csv: every submission Kaggle accepted, its local score and, later, its public one.

The ledger is tracked in git, so it is plain CSV with one row per submission and columns a
person can read. Only submissions that got a Kaggle ref are recorded: a failed upload
counts against nothing and has no score to come, so it leaves no row. `competition` is the
slug the file went to, so one ledger can serve several competitions. `created` is when
the submission was made. `config` is the producing run's config as compact JSON holding
only the values that differ from the defaults (the sidecar beside the file has all of it).
`metric` and `local_score` are the competition's metric and the file's local score on it (for
Dogs vs. Cats Redux, log loss again); rows written before those columns read them as empty.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from kit import fileio

NAME = "ledger.csv"
COLUMNS = ("file", "competition", "sha256", "created", "local_log_loss", "clip_low", "clip_high", "config", "message",
           "ref", "status", "public_score", "metric", "local_score")
FINAL = ("COMPLETE", "ERROR")   # Kaggle statuses that do not change any more


def read(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{column: row.get(column) or "" for column in COLUMNS} for row in csv.DictReader(f)]


def write(path: str | Path, rows: list[dict]) -> None:
    """Replace the ledger atomically: a crash leaves the old ledger or the new one."""
    with fileio.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def append(path: str | Path, row: dict) -> None:
    write(path, read(path) + [row])


def open_refs(rows: list[dict], competition: str) -> list[int]:
    """This competition's refs whose status may still change (rows from before the column count as its)."""
    return [int(row["ref"]) for row in rows if row["ref"].isdigit() and row["status"] not in FINAL
            and row["competition"] in ("", competition)]


def update(rows: list[dict], states: dict[int, dict]) -> list[dict]:
    """Rows with status and public score taken from Kaggle where Kaggle listed them."""
    out = []
    for row in rows:
        state = states.get(int(row["ref"])) if row["ref"].isdigit() else None
        if state:
            row = {**row, "status": state["status"], "public_score": state["public_score"]}
        out.append(row)
    return out


def compact_config(config: dict | None, defaults: dict) -> str:
    """The run name and every value that differs from the defaults, as one-line JSON."""
    if not config:
        return ""
    changed = {key: value for key, value in config.items() if key == "run" or defaults.get(key, object()) != value}
    return json.dumps(changed, sort_keys=True, separators=(",", ":"))


def format_table(rows: list[dict]) -> str:
    """An aligned table, newest last: local against public score (on the competition's metric) and their difference."""
    header = ("ref", "created", "file", "local", "public", "public-local", "status", "message")
    lines = [header]
    for row in rows:
        local, public = _number(row["local_score"] or row["local_log_loss"]), _number(row["public_score"])
        diff = f"{public - local:+.5f}" if local is not None and public is not None else ""
        lines.append((row["ref"], row["created"][:16].replace("T", " "), row["file"],
                      _fixed(local), _fixed(public), diff, row["status"], " ".join(row["message"].split())))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _fixed(value: float | None) -> str:
    return "" if value is None else f"{value:.5f}"

"""A competition CSV (zipped or not) read as text, or one line saying what is wrong with it.

Text, because ids are names: "007" and "7" are different images, and an id column of numbers must
come back as the sample submission writes it. pandas reads a `.csv.zip` holding one CSV as a CSV.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

from kit.errors import KitError


def is_csv(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".csv") or name.endswith(".csv.zip")


def read(path: str | Path, what: str, nrows: int | None = None) -> pd.DataFrame:
    """Every column as text; an empty cell is "" (callers say what a missing value means)."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{what} not found: {path}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, nrows=nrows)
    except pd.errors.EmptyDataError:
        raise KitError(f"{what} {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise KitError(f"{what} {path} is not a readable CSV: {str(e).splitlines()[0]}") from None


def columns(path: Path, what: str) -> list[str]:
    return list(read(path, what, nrows=0).columns)

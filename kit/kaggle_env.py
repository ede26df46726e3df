"""Where a Kaggle kernel finds its inputs and leaves its outputs: the one module that knows.

Kaggle mounts a kernel's competition and datasets read-only under /kaggle/input/<slug>/ and
keeps whatever the kernel writes to /kaggle/working/ as its output (downloaded later, so
only results belong there: extracted images and model checkpoints go to a scratch folder
in the temp dir instead). `KIT_KAGGLE_ROOT` moves /kaggle, so tests and a user's dry run
can play a kernel on an ordinary machine with a fake input folder.

Nothing here imports TensorFlow or the kaggle client, so a blend of downloaded kernel outputs
(kit/predict/blend_outputs.py) can tell one from a run folder without the Kaggle-facing package.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kit import COMPETITION
from kit.errors import KitError
from kit.fetch import is_competition
from kit.task.read import SAMPLE_NAME

RUN_TYPE_ENV = "KAGGLE_KERNEL_RUN_TYPE"   # set by Kaggle in every kernel session (Batch, Interactive)
ROOT_ENV = "KIT_KAGGLE_ROOT"
DEFAULT_ROOT = "/kaggle"
SESSION_LIMIT_S = 12 * 3600     # Kaggle kills a session after 12 hours; a killed kernel leaves no output
# What a kernel gives itself, from its start: the hour left over covers predicting and writing the
# outputs after training, and an epoch slower than the slowest one measured.
TIME_BUDGET_S = 11 * 3600
# What a kernel writes to the working folder besides the run's own files (RUN_OUTPUTS in kit/run/rundir.py)
# and the sample submission: the submission with its sidecar, the log, and, last, the summary whose
# presence marks a finished kernel.
SUBMISSION, SIDECAR = "submission.csv", "submission.json"
LOG_NAME = "kit.log"
DONE_NAME = "kernel.json"


def inside_kaggle() -> bool:
    return bool(os.environ.get(RUN_TYPE_ENV))


def root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def input_root() -> Path:
    return root() / "input"


def working_dir() -> Path:
    return root() / "working"


def scratch_dir() -> Path:
    """Big intermediate files (extracted images, feature cache, checkpoints): not kept as output."""
    return Path(tempfile.gettempdir()) / "kit"


def competition_dir(slug: str = COMPETITION) -> Path:
    """The mounted competition: its files (zips or extracted folders), as `fetch --from` takes them.

    Kaggle has moved mount points before, so when <input>/<slug> is absent, any folder a few
    levels down that holds a sample submission is taken instead.
    """
    expected = input_root() / slug
    if is_competition(expected):
        return expected
    found = sorted({path.parent for depth in ("*/", "*/*/", "*/*/*/") for path in input_root().glob(depth + "*")
                    if SAMPLE_NAME.match(path.name) and is_competition(path.parent)})
    if found:
        return found[0]
    raise KitError(f"no competition files in {expected} (nor anywhere under {input_root()}): "
                   f"add the competition {slug} as the kernel's input"
                   + ("" if inside_kaggle() else f", or set {ROOT_ENV} to a folder holding input/{slug}/"))


def dataset_dir(dataset: str) -> Path:
    """An attached dataset ("owner/slug", "owner/slug/version" or "slug"), mounted as <input>/<slug>."""
    parts = dataset.strip("/").split("/")
    slug = parts[1] if len(parts) > 1 else parts[0]
    path = input_root() / slug
    if not path.is_dir():
        raise KitError(f"the weights dataset {dataset} is not attached: no {path}; add it to the kernel's "
                       "inputs (dataset_sources in kernel-metadata.json) or rebuild without --weights-dataset")
    return path


def describe() -> str:
    where = "inside Kaggle" if inside_kaggle() else f"outside Kaggle ({ROOT_ENV}={root()})"
    return f"{where}; input {input_root()}, output {working_dir()}, scratch {scratch_dir()}"

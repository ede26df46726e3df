"""What a kernel built by kit.kernels runs on Kaggle: fetch -> train -> predict, results to the working folder.

The big intermediate files (extracted images, feature cache, fold checkpoints) go to a
scratch folder, because everything in /kaggle/working is kept and downloaded as output;
the run's small files are copied there at the end, and kernel.json is written last, so a
working folder with kernel.json is a finished kernel. Every log line carries the time
since the kernel started and goes to kit.log as well as to Kaggle's own log.

`KIT_KERNEL_OVERRIDES` (a JSON object of config values) shrinks a kernel for tests; it is
honoured only outside Kaggle, so a real run always uses the preset it was built for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

from kit import COMPETITION, fileio, kaggle_env, provenance
from kit.errors import KitError

TEST_OVERRIDES_ENV = "KIT_KERNEL_OVERRIDES"
LOG_NAME = "kit.log"
DONE_NAME = "kernel.json"
SUBMISSION = "submission.csv"
RUN_FILES = ("oof.csv", "test_predictions.csv", "metrics.json", "config.json", "skipped.csv", "skipped_test.csv")
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


def main(kernel: dict, kit_dir: Path) -> dict:
    """The kernel's entry point; a KitError ends it with one line and exit status 2 (Kaggle shows ERROR)."""
    log = KernelLog(kaggle_env.working_dir() / LOG_NAME)
    try:
        return run(kernel, Path(kit_dir), log)
    except KitError as error:
        log(f"error: {error}")
        sys.exit(2)


def run(kernel: dict, kit_dir: Path, log) -> dict:
    _check_kit_origin(kit_dir)
    log(f"kernel {kernel['name']}: preset {kernel['preset']}, kit sources {kernel['sources_sha256'][:16]} "
        f"unpacked in {kit_dir}")
    log(kaggle_env.describe())
    extra = test_overrides(os.environ.get(TEST_OVERRIDES_ENV), kaggle_env.inside_kaggle(), log)
    config = kernel_config(kernel, extra)
    log(f"config: method {config.method}, backbones {config.backbones}, {config.folds} folds, "
        f"weights {config.weights}, batch {config.batch_size}, {config.workers} loader threads")
    devices = describe_devices(config)
    log(devices["line"])

    working = kaggle_env.working_dir()
    stages = []
    with stage("fetch", log, stages):
        from kit import fetch

        fetch.fetch_from(kaggle_env.competition_dir(config.competition), config.data_dir, log)
    config = budget_left(config, log)
    with stage("train", log, stages):
        from kit import train

        train.train(config, log)
    with stage("predict", log, stages):
        from kit import predict

        predict.predict(config, log, path=working / SUBMISSION)
    published = publish(config, working)
    summary = {
        "kernel": kernel["name"], "preset": kernel["preset"], "overrides": kernel["overrides"],
        "test_overrides": extra, "sources_sha256": kernel["sources_sha256"], "kit_dir": str(kit_dir),
        "inside_kaggle": kaggle_env.inside_kaggle(), "gpus": devices["gpus"], "precision": devices["precision"],
        "stages": stages, "seconds": round(log.elapsed(), 1), "outputs": published + [SUBMISSION, "submission.json", LOG_NAME],
        "finished": provenance.now(),
    }
    fileio.write_json(working / DONE_NAME, summary)
    log(f"kernel {kernel['name']}: finished in {duration(log.elapsed())}; {working / SUBMISSION} and "
        f"{len(published)} more files in {working}")
    return summary


def budget_left(config, log):
    """The time budget counts from the kernel's start: training gets what fetching left of it."""
    if config.time_budget_s <= 0:
        return config
    # Never 0, which would mean no budget at all.
    left = max(config.time_budget_s - log.elapsed(), 1.0)
    log(f"time budget: {duration(left)} of {duration(config.time_budget_s)} left for training "
        f"(Kaggle stops a session at {SESSION_LIMIT_H} h)")
    return dataclasses.replace(config, time_budget_s=round(left, 1))


def kernel_config(kernel: dict, extra: dict | None = None):
    """The kernel's preset with Kaggle's paths and the kernel's own overrides, then any test overrides."""
    from kit import config

    scratch = kaggle_env.scratch_dir()
    overrides = {
        "data_dir": str(scratch / "data" / COMPETITION), "cache_dir": str(scratch / "cache"),
        "pixel_cache_dir": str(scratch / "pixels"),
        "runs_dir": str(scratch / "runs"), "submissions_dir": str(kaggle_env.working_dir()),
        "workers": max(2, min(8, os.cpu_count() or 2)),
        **kernel["overrides"],
    }
    extra = extra or {}
    if "weights" not in extra:   # only look for the dataset when its weights are used
        dataset = kernel.get("weights_dataset")
        overrides["weights"] = str(kaggle_env.dataset_dir(dataset)) if dataset else "imagenet"
    return config.resolve(kernel["preset"], {**overrides, **extra})


def test_overrides(text: str | None, inside_kaggle: bool, log=print) -> dict:
    if not text:
        return {}
    if inside_kaggle:
        log(f"{TEST_OVERRIDES_ENV} is ignored inside Kaggle: the kernel runs the preset it was built for")
        return {}
    try:
        extra = json.loads(text)
    except json.JSONDecodeError as error:
        raise KitError(f"{TEST_OVERRIDES_ENV} is not valid JSON: {error}") from None
    if not isinstance(extra, dict):
        raise KitError(f"{TEST_OVERRIDES_ENV} must be a JSON object of config values")
    log(f"test overrides from {TEST_OVERRIDES_ENV}: {json.dumps(extra, sort_keys=True)}")
    return extra


def describe_devices(config) -> dict:
    from kit import accel

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
    from kit.fetch import SAMPLE
    from kit.train import run_dir

    copies = [(run_dir(config) / name, name) for name in RUN_FILES] + [(Path(config.data_dir) / SAMPLE, SAMPLE)]
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

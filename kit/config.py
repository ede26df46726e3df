"""One typed config with defaults, named presets, and strict overrides.

Every artifact (model, submission) is written with the resolved config beside it, so a
score can always be traced back to the exact settings that produced it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path

from kit import COMPETITION
from kit.errors import KitError

# The training methods by name, and the module in kit/methods/ whose train(config, log) runs each: named
# here, below the methods, so that checking a config imports none of them.
METHODS = {
    "cnn": "kit.methods.cnn",
    "features": "kit.methods.features",
    "finetune": "kit.methods.finetune",
    "frozen": "kit.methods.finetune",
}


@dataclass(frozen=True)
class Config:
    competition: str = COMPETITION
    data_dir: str = "data/" + COMPETITION   # where `fetch` extracts and indexes
    runs_dir: str = "runs"
    submissions_dir: str = "submissions"
    run: str = "baseline"                   # name of the run directory and submission
    method: str = "cnn"                     # cnn | features (cached features + heads) | finetune | frozen
    model: str = "baseline-cnn"
    backbones: str = ""                     # features: "name@size[+layer...]" comma-separated
    weights: str = "imagenet"               # imagenet | none | a weights file | a folder of weights files
    views: str = "orig,flip"                # test-time views cached and averaged; also zoom, zoom-flip
    heads: str = "logreg,dense"             # heads trained by K-fold on the features, then blended
    folds: int = 5
    head_epochs: int = 30
    head_learning_rate: float = 1e-3        # the dense head (seed 004's Dropout + Dense on the features)
    head_dropout: float = 0.5
    head_batch_size: int = 64
    warmup_epochs: int = 1                  # end to end: epochs training only the new head
    unfreeze: float = 0.0                   # finetune: fraction of backbone layers trained, from the top
    finetune_lr: float = 1e-4
    patience: int = 3                       # early stopping on validation loss
    mixed_precision: str = "auto"           # auto (on GPUs) | mixed | off
    time_budget_s: float = 0.0              # finetune/frozen: start no fold or epoch that would end later (0: none)
    clip_mode: str = "oof"                  # oof: clip chosen on held-out predictions (kit/predict/blend.py) | fixed
    cache_dir: str = "cache/features"
    pixel_cache_dir: str = "cache/pixels"   # finetune/frozen: training images decoded once, uint8, per size
    image_size: int = 150                   # seed 003 trained its CNN at 150 x 150
    width: int = 32                         # filters in the first conv block; doubles per block, capped at 4x
    dense: int = 512
    dropout: float = 0.5
    augment: bool = True
    augment_scale: float = 1.0              # finetune/frozen: every augmentation range times this (the mirror aside)
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-4
    val_fraction: float = 0.2
    seed: int = 42
    deterministic: bool = True              # TensorFlow op determinism: repeatable bytes, slower input pipelines
    use_exclusions: bool = True            # leave out <data_dir>/exclusions.csv (written by `kit clean`)
    label_noise_c: float = 30.0             # clean: C of the logistic regression whose OOF the label-noise check reads
    limit: int = 0                          # use at most this many training images (0 = all)
    clip_low: float = 0.005                 # the fixed clip: submitted with clip_mode=fixed, reported always
    clip_high: float = 0.995
    min_side: int = 16                      # images smaller than this are skipped as degenerate
    workers: int = 2
    # The competition's facts are read from its files (kit.task.read); these override what they say,
    # "" reads it from the files. An unknown or ambiguous layout's error names the one to set.
    metric: str = ""                        # a metric name in kit.task.metrics (an unknown competition needs it)
    id_column: str = ""                     # the sample submission's id column (default: its first)
    labels_from: str = ""                   # folders | file-names | the labels CSV's name
    label_column: str = ""                  # the labels CSV's class column
    group_column: str = ""                  # images sharing its value stay in one fold
    train_images: str = ""                  # the folder or zip of the training pictures
    test_images: str = ""
    flip: bool = True                       # a mirrored picture is the same class (false for digits or text)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            expected = _TYPES[f.type]
            ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                ok = True
            if not ok:
                raise KitError(f"config: {f.name} must be {f.type}, got {value!r}")
        if not 0.0 <= self.clip_low < 0.5 < self.clip_high <= 1.0:
            raise KitError(f"config: need 0 <= clip_low < 0.5 < clip_high <= 1, got {self.clip_low}, {self.clip_high}")
        if not 0.0 < self.val_fraction < 1.0:
            raise KitError(f"config: val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("image_size", "width", "dense", "epochs", "batch_size", "head_batch_size", "workers"):
            if getattr(self, name) < 1:
                raise KitError(f"config: {name} must be at least 1, got {getattr(self, name)}")
        _check_choice("method", self.method, METHODS)
        _check_choice("clip_mode", self.clip_mode, ("oof", "fixed"))
        _check_choice("mixed_precision", self.mixed_precision, ("auto", "mixed", "off"))
        if self.time_budget_s < 0:
            raise KitError(f"config: time_budget_s must be 0 (no budget) or a number of seconds, got {self.time_budget_s}")
        if self.augment_scale < 0:
            raise KitError(f"config: augment_scale must be 0 or more, got {self.augment_scale}")
        if self.label_noise_c <= 0:
            raise KitError(f"config: label_noise_c must be above 0, got {self.label_noise_c}")
        if not 0.0 <= self.unfreeze <= 1.0:
            raise KitError(f"config: unfreeze must be a fraction in [0, 1], got {self.unfreeze}")
        from kit.data.generators import VIEWS
        from kit.models.heads import HEADS

        for head in _split(self.heads):
            _check_choice("heads", head, HEADS)
        for view in _split(self.views):
            _check_choice("views", view, VIEWS)
        if self.method != "cnn" and not _split(self.backbones):
            raise KitError(f"config: method={self.method} needs backbones, e.g. backbones=squeezenet@227")
        self.extractors()   # validates backbone names and sizes, whatever the method

    def extractors(self):
        """The `backbones` string as feature extractors, checked against the registry."""
        from kit.models import backbones
        from kit.models.features import Extractor

        out = []
        for token in _split(self.backbones):
            name, _, rest = token.partition("@")
            size_text, *layers = rest.split("+") if rest else ("",)
            entry = backbones.get(name)   # unknown name -> KitError listing the valid ones
            try:
                size = int(size_text) if size_text else entry.default_input_size
            except ValueError:
                raise KitError(f"config: backbones entry {token!r}: size must be a number") from None
            if size < entry.min_input_size:
                raise KitError(f"config: {entry.name} needs inputs of at least {entry.min_input_size} px, got {size}")
            weights = None if self.weights.lower() == "none" else self.weights
            out.append(Extractor(entry.name, size, weights, tuple(layers), self.view_names()))
        return out

    def view_names(self) -> tuple[str, ...]:
        """The test-time views, less the mirrored ones where flip=false (a mirrored digit is another class)."""
        views = tuple(v for v in _split(self.views) if self.flip or "flip" not in v)
        return views or ("orig",)

    def task_overrides(self) -> dict:
        """The task keys the user set (kit.task.read.OVERRIDES), for read_task."""
        from kit.task.read import OVERRIDES

        return {key: getattr(self, key) for key in OVERRIDES if getattr(self, key)}

    def head_names(self) -> list[str]:
        return _split(self.heads)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise KitError(f"config: {key} {value!r} is not one of: {', '.join(choices)}")

# Presets are partial overrides of the defaults, nothing more.
PRESETS: dict[str, dict] = {
    "baseline": {},
    "demo": {
        "data_dir": "data/demo", "run": "demo", "image_size": 64, "width": 16, "dense": 64,
        "epochs": 12, "batch_size": 32, "learning_rate": 1e-3, "dropout": 0.3,
    },
    # EfficientNet-Lite2 and Lite1, each above its native size, flip-averaged, one logistic regression on
    # both blocks; weights from pip, runs on 2 CPU cores (bench/lite_levers.py chose it; see the README).
    "cpu": {
        "run": "cpu", "method": "features", "backbones": "efficientnet_lite2@320,efficientnet_lite1@300",
        "heads": "logreg", "folds": 5,
    },
    # Seed 004's trio as cached features + heads: about 0.041 was public with this recipe.
    "gpu-classic": {
        "run": "gpu-classic", "method": "features",
        "backbones": "xception@299,inception_v3@299,resnet50@224", "heads": "logreg,dense", "folds": 5,
        "batch_size": 64, "head_epochs": 30,
    },
    # Modern backbones fine-tuned whole at a low learning rate, each by 5-fold, then blended on OOF.
    "gpu-modern": {
        "run": "gpu-modern", "method": "finetune", "backbones": "efficientnetv2_s@384,convnext_small@288",
        "folds": 5, "warmup_epochs": 1, "epochs": 6, "unfreeze": 1.0, "learning_rate": 1e-3,
        "finetune_lr": 3e-5, "batch_size": 32, "augment": True, "patience": 2, "dropout": 0.3,
    },
    "cnn-cpu": {
        "run": "cnn-cpu", "image_size": 96, "width": 32, "dense": 128, "epochs": 15,
        "learning_rate": 1e-3,
    },
}


def competition_paths(slug: str) -> dict:
    """Where a competition's data, runs, submissions and caches go unless set: Dogs vs. Cats Redux's are the
    defaults above; every other competition's sit under its slug, so no two competitions share a file."""
    if slug == COMPETITION:
        return {}
    return {"data_dir": f"data/{slug}", "runs_dir": f"runs/{slug}", "submissions_dir": f"submissions/{slug}",
            "cache_dir": f"cache/features/{slug}", "pixel_cache_dir": f"cache/pixels/{slug}"}


def resolve(preset: str = "baseline", overrides: dict | None = None, config_file: str | None = None,
            overrides_from: str = "--set") -> Config:
    """Defaults <- preset <- config file <- overrides, each layer checked for unknown keys (an error names
    the layer: the overrides are `overrides_from`); paths no layer set follow the competition."""
    if preset not in PRESETS:
        raise KitError(f"unknown preset {preset!r}; choose one of: {', '.join(sorted(PRESETS))}")
    values: dict = {}
    for source, layer in ((f"preset {preset}", PRESETS[preset]),
                          (config_file, _read_config_file(config_file) if config_file else {}),
                          (overrides_from, overrides or {})):
        _check_keys(layer, source)
        values.update(layer)
    return Config(**{**competition_paths(values.get("competition", COMPETITION)), **values})


def parse_overrides(pairs: list[str]) -> dict:
    """Turn ["epochs=3", "augment=false"] into typed values, using the field's declared type."""
    types = {f.name: _TYPES[f.type] for f in fields(Config)}
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise KitError(f"--set expects key=value, got {pair!r}")
        _check_keys({key: None}, "--set")
        out[key] = _parse_value(key, raw, types[key])
    return out


def load_saved(path: Path) -> Config:
    """Read a config.json written beside an artifact."""
    data = _read_json_object(path, f"no saved config at {path}: run `python -m kit train` first")
    _check_keys(data, str(path))
    return Config(**data)


def _read_config_file(path: str) -> dict:
    return _read_json_object(path, f"config file not found: {path}")


def _read_json_object(path, missing: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise KitError(missing) from None
    except json.JSONDecodeError as e:
        raise KitError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise KitError(f"{path} must hold a JSON object")
    return data


def _check_keys(layer: dict, source: str) -> None:
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(layer) - known)
    if unknown:
        raise KitError(f"unknown config key {unknown[0]!r} in {source}; valid keys: {', '.join(sorted(known))}")


def _parse_value(key: str, raw: str, kind: type):
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise KitError(f"--set {key}: expected true or false, got {raw!r}")
    try:
        return kind(raw)
    except ValueError:
        raise KitError(f"--set {key}: expected {kind.__name__}, got {raw!r}") from None

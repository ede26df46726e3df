"""End-to-end training by K-fold: seed 004's frozen multi-backbone model, and fine-tuning.

- method=frozen: every backbone of the preset, frozen, their pooled outputs concatenated,
  Dropout + the task's output layer on top (kit/models/outputs.py), trained end to end (what seed 004 did; each epoch pays
  for every backbone's forward pass, which is why `features` exists).
- method=finetune: one model per backbone; a warm-up with the backbone frozen, then the
  top `unfreeze` fraction of its layers trained at `finetune_lr`, with augmentation.

Each fold keeps its model and early-stopping state after every epoch (see PhaseCheckpoint),
so a killed run resumes from its last finished epoch and ends as an uninterrupted run
does; a fold with predictions.npz is finished and skipped. A fold folder's identity.json
says what shaped its work (kit/run/resume.py): work shaped otherwise is set aside, not reused.
Out-of-fold and test predictions average the config's test-time views (`views`); folds keep each of
the task's groups in one fold, and augmentation mirrors only where the task allows it (`flip`).
Folds run fold by fold across the models, under `time_budget_s` when one is set
(kit/run/time_budget.py); training reads its images from kit/data/train_input.py's pixel cache.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kit import faults, fileio
from kit.config import Config
from kit.data import dataset, train_input
from kit.data.generators import Augment, ImageBatches, predicted, view_of
from kit.errors import KitError
from kit.fetch import read_index, read_task
from kit.models import backbones, heads, inference, outputs
from kit.plots import redraw_curves_callback
from kit.predict.finish import finish_run, guess_unreadable
from kit.run import accel, resume, seeding, time_budget
from kit.run.rundir import CURVES, PHASES, fold_dir, phase_history, run_dir, start_run
from kit.run.stages import Stages
from kit.task import metrics
from kit.tfquiet import import_keras, keras_verbosity

WARMUP, FINETUNE = PHASES


def build_model(extractors, config: Config, n_classes: int, trainable_fraction: float = 0.0):
    """Inputs (one per extractor) -> backbones -> concatenated pooled features -> Dropout -> the task's top."""
    keras = import_keras()
    inputs, pooled = [], []
    for i, ex in enumerate(extractors):
        inp = keras.Input((ex.size, ex.size, 3), name=f"image_{i}_{ex.size}")
        net = backbones.build(ex.backbone, weights=ex.weights, input_size=ex.size)
        net.name = f"{ex.backbone}_{i}"   # two entries may share a backbone; names must be unique
        set_trainable(net, trainable_fraction)
        # training=False keeps BatchNormalization in inference mode even while fine-tuning.
        pooled.append(net(inp, training=False))
        inputs.append(inp)
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate()(pooled)
    x = keras.layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, outputs.top(n_classes)(x))


def set_trainable(net, fraction: float) -> None:
    """Train the top `fraction` of the layers; BatchNormalization always stays frozen."""
    keras = import_keras()
    layers = net.layers
    cutoff = len(layers) - int(round(fraction * len(layers)))
    net.trainable = fraction > 0
    for i, layer in enumerate(layers):
        layer.trainable = i >= cutoff and not isinstance(layer, keras.layers.BatchNormalization)


def _batches(extractors, frame, config: Config) -> ImageBatches:
    """The files decoded in order, for predictions (training reads the pixel cache: kit/data/train_input.py)."""
    return ImageBatches(frame["path"], frame["label"] if "label" in frame else None,
                        sizes=[ex.size for ex in extractors], preprocess=_preprocessing(extractors),
                        batch_size=config.batch_size, seed=config.seed, min_side=config.min_side,
                        workers=config.workers)


def _preprocessing(extractors) -> list:
    """Each input's preprocessing, from the backbone registry."""
    return [functools.partial(backbones.preprocess, ex.backbone) for ex in extractors]


def predict_tta(model, extractors, frame, config: Config, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the predictions on the config's test-time views; ok[i] False where the file was unusable."""
    views = extractors[0].views
    predict = inference.predictor(model)

    def mean_of_views(inputs):
        mean = outputs.empty(len(inputs[0]), n_classes)
        for view in views:
            shown = [view_of(x, view) for x in inputs]
            mean += outputs.probabilities(predict(shown[0] if len(shown) == 1 else tuple(shown)), n_classes) / len(views)
        return mean

    total = outputs.empty(len(frame), n_classes)
    ok = np.zeros(len(frame), bool)
    for kept, mean in predicted(_batches(extractors, frame, config), mean_of_views):
        total[kept], ok[kept] = mean, True
    return guess_unreadable(total, ok), ok


def state_path(folder: Path, phase: str) -> Path:
    """The file that commits a phase's progress (PhaseCheckpoint): present once its first epoch is saved."""
    return folder / f"state-{phase}.json"


class PhaseCheckpoint:
    """One phase's epochs on disk: the model and early-stopping state after every epoch.

    Each epoch writes last-<phase>-<n>.keras (and best-<phase>-<n>.npz when it is the best so
    far), then state-<phase>.json naming them: the state file is the commit, so a kill at any
    moment leaves a state that names files from one and the same epoch.
    """

    def __init__(self, folder: Path, phase: str):
        self.folder, self.phase = folder, phase
        self.path = state_path(folder, phase)
        self.state = fileio.read_json(self.path)

    def stopping(self, patience: int):
        """EarlyStopping that starts from the saved state instead of from scratch."""
        keras = import_keras()
        state, best = self.state, self.best_weights()

        class _Stopping(keras.callbacks.EarlyStopping):
            def on_train_begin(self, logs=None):
                super().on_train_begin(logs)
                self.wait, self.best_epoch = state.get("wait", 0), state.get("best_epoch", 0)
                self.best, self.best_weights = state.get("best"), best

        return _Stopping(patience=patience, restore_best_weights=True)

    def callback(self, stopping):
        keras = import_keras()
        checkpoint = self

        class _Save(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                checkpoint.save(self.model, epoch + 1, stopping, logs or {})
                faults.point("train-epoch")

        return _Save()

    def save(self, model, epoch: int, stopping, logs: dict) -> None:
        name = f"last-{self.phase}-{epoch}.keras"
        with fileio.atomic_path(self.folder / name) as tmp:
            model.save(tmp)
        best = None
        if stopping.best_weights is not None:
            best = f"best-{self.phase}-{stopping.best_epoch + 1}.npz"
            if not (self.folder / best).exists():
                fileio.write_npz(self.folder / best, *stopping.best_weights)
        self._commit({"epoch": epoch, "model": name, "best_weights": best, "wait": stopping.wait,
                      "best": None if stopping.best is None else float(stopping.best),
                      "best_epoch": stopping.best_epoch, "stopped": bool(model.stop_training),
                      "logs": {k: float(v) for k, v in logs.items()}})

    def best_weights(self):
        if not self.state.get("best_weights"):
            return None
        with np.load(self.folder / self.state["best_weights"]) as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]

    def finish(self, model) -> None:
        """The phase's result (the best epoch's weights) as final-<phase>.keras."""
        name = f"final-{self.phase}.keras"
        with fileio.atomic_path(self.folder / name) as tmp:
            model.save(tmp)
        self._commit({**self.state, "model": name, "best_weights": None, "done": True})

    def _commit(self, state: dict) -> None:
        fileio.write_json(self.path, state)
        self.state = state
        keep = {state.get("model"), state.get("best_weights")}
        for old in [*self.folder.glob(f"last-{self.phase}-*.keras"), *self.folder.glob(f"best-{self.phase}-*.npz")]:
            if old.name not in keep:
                old.unlink()


def reseed_dropout_callback(seed: int, key: tuple):
    """Before each epoch, the model's dropout seeds derived from (seed, key, epoch), whatever ran in
    this process before. (The training input seeds its order and augmentation by epoch itself.)"""
    keras = import_keras()

    class _EpochSeeds(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seeding.reseed_model(self.model, seed, *key, epoch)

    return _EpochSeeds()


def fit_phase(model, folder: Path, phase: str, data, epochs: int, learning_rate: float,
              config: Config, n_classes: int, log=print, guard=None, first_epoch: int = 0):
    """Train one phase with early stopping, resuming from its last finished epoch if any.

    `data(start_epoch, epochs)` gives model.fit's data arguments for those epochs; `guard`
    (time_budget.epoch_guard) stops the phase before an epoch the time budget cannot hold.
    A resumed phase ends with the weights an uninterrupted one ends with: the optimizer comes
    back with the model, early stopping with its state, and every epoch is seeded by its number
    (`first_epoch` + the phase's epoch, so the fine-tuning phase does not replay the warm-up's draws).
    """
    keras = import_keras()
    checkpoint = PhaseCheckpoint(folder, phase)
    state = checkpoint.state
    if state.get("done"):
        return keras.models.load_model(folder / state["model"])
    start = state.get("epoch", 0)
    unfinished = start < epochs and not state.get("stopped")
    if start:
        model = keras.models.load_model(folder / state["model"])
        if unfinished:
            log(f"finetune: resuming {folder.parent.name} {folder.name} {phase} at epoch {start + 1}")
    else:
        # Weighted: the input's padding rows (kit/data/train_input.py) weigh 0 in accuracy as in the loss.
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=outputs.loss(n_classes),
                      weighted_metrics=["accuracy"])
    if unfinished:
        stopping = checkpoint.stopping(config.patience)
        callbacks = [keras.callbacks.CSVLogger(str(folder / phase_history(phase)), append=True),
                     reseed_dropout_callback(config.seed, (folder.parent.name, folder.name, phase)),
                     stopping, checkpoint.callback(stopping),
                     redraw_curves_callback([folder / phase_history(p) for p in PHASES], folder.parents[1] / CURVES,
                                            f"{folder.parent.name} {folder.name}")]
        callbacks += [guard] if guard is not None else []
        # The data arguments carry shuffle=False: the input orders each epoch from its seed; Keras would
        # reorder the batches from Python's global generator, which a resumed run has drawn from differently.
        model.fit(**data(first_epoch + start, first_epoch + epochs), epochs=epochs, initial_epoch=start,
                  callbacks=callbacks, verbose=keras_verbosity())
    elif (best := checkpoint.best_weights()) is not None:   # killed after the last epoch: as EarlyStopping ends
        model.set_weights(best)
    checkpoint.finish(model)
    return model


def train_fold(name, extractors, config: Config, fold: int, train_part, val_part, test, identity: dict,
               n_classes: int, log=print, budget: time_budget.Budget | None = None,
               source: train_input.TrainInput | None = None):
    """One fold of one model: (held-out predictions, test predictions, test readable), reused when finished.

    Work saved under another identity (config, data, weights) is set aside. `source` holds the training
    images, cached in the order of the frame `train_part` and `val_part` were cut from (their index),
    and feeds model.fit; predictions decode the files again, with TTA.
    """
    folder = fold_dir(config, name, fold)
    resume.claim(folder, identity, run_dir(config), f"finetune: {name} fold {fold + 1}", log)
    done = folder / "predictions.npz"
    if done.exists():
        with np.load(done) as saved:
            return saved["val"], saved["test"], saved["test_ok"]
    budget = budget or time_budget.Budget(0)
    started, fresh = time.monotonic(), not state_path(folder, WARMUP).exists()
    log(f"finetune: {name} fold {fold + 1}/{config.folds}: {len(train_part)} train, {len(val_part)} validation images")

    def tail() -> float:
        return budget.tail_estimate(name, len(train_part), len(extractors[0].views) * (len(val_part) + len(test)))

    seeding.seed_work(config.seed, name, fold)   # the same initial weights whether earlier folds ran here or not
    with accel.strategy().scope():
        model = build_model(extractors, config, n_classes, trainable_fraction=0.0)

        def data(start: int, epochs: int) -> dict:
            return source.fit_args(train_part.index, val_part.index, config.batch_size, start, epochs)

        model = fit_phase(model, folder, WARMUP, data, config.warmup_epochs if config.method == "finetune"
                          else config.epochs, config.learning_rate, config, n_classes, log,
                          guard=time_budget.epoch_guard(budget, name, WARMUP, tail, log))
        if config.method == "finetune" and config.unfreeze > 0:
            if budget.may_start_epoch(name, FINETUNE, tail()) or state_path(folder, FINETUNE).exists():
                keras = import_keras()
                for net in (layer for layer in model.layers if isinstance(layer, keras.Model)):
                    set_trainable(net, config.unfreeze)
                model = fit_phase(model, folder, FINETUNE, data, config.epochs, config.finetune_lr, config, n_classes, log,
                                  guard=time_budget.epoch_guard(budget, name, FINETUNE, tail, log),
                                  first_epoch=config.warmup_epochs)
            else:
                log(budget.refused[-1] + f"; {name} fold {fold + 1} keeps its warm-up model")
    predicting = time.monotonic()
    val_pred, _ = predict_tta(model, extractors, val_part, config, n_classes)
    test_pred, test_ok = predict_tta(model, extractors, test, config, n_classes)
    budget.record_tail(name, time.monotonic() - predicting)
    if fresh:   # a fold resumed halfway would understate what a whole fold costs
        budget.record_fold(name, time.monotonic() - started)
    fileio.write_npz(done, val=val_pred, test=test_pred, test_ok=test_ok)
    faults.point("fold")
    return val_pred, test_pred, test_ok


def train(config: Config, log=print) -> dict:
    """The finetune and frozen methods (see the module's docstring)."""
    with accel.precision(config.mixed_precision) as policy:
        return _train_folds(config, policy, log)


def _train_folds(config: Config, policy: str, log) -> dict:
    budget = time_budget.Budget(config.time_budget_s)
    replicas = accel.strategy().num_replicas_in_sync
    log(f"finetune: {replicas} replica(s), precision policy {policy}")
    stages = Stages(log)
    start_run(config)
    train = dataset.training_index(config, log)
    test = read_index(config.data_dir, "test")
    usable = _usable(train, config, log)
    train = train[usable].reset_index(drop=True)
    y = train["label"].to_numpy()
    n_classes = read_task(config.data_dir).n_classes
    stages.done("index")

    extractors = config.extractors()
    identity = resume.run_identity(config, train, test, extractors)
    groups = ([(ex.label, [ex]) for ex in extractors] if config.method == "finetune"
              else [("frozen-" + "+".join(ex.label for ex in extractors), extractors)])
    if budget.limited:
        log(f"finetune: time budget {budget.seconds:.0f} s: no fold or epoch starts that the pace so far says "
            "would not finish inside it")
    # Fold by fold across the models, rather than model by model, so that a run the budget stops early
    # still has every model, each over the same held-out images.
    sources = {name: _train_source(train, group, config, replicas, log) for name, group in groups}
    finished = {name: [] for name, _ in groups}   # name -> [(val rows, val predictions, test predictions)]
    seconds = {name: 0.0 for name, _ in groups}
    test_ok, started = np.ones(len(test), bool), time.time()
    for fold, (tr, va) in enumerate(heads.folds(y, config.folds, config.seed, dataset.fold_groups(train))):
        if not budget.may_start_round(list(finished), first_of_run=not any(finished.values())):
            log(budget.refused[-1])
            break
        for name, group in groups:
            fold_started = time.time()
            val_pred, fold_test, ok = train_fold(name, group, config, fold, train.iloc[tr], train.iloc[va], test,
                                                 resume.fold_identity(identity, group, fold), n_classes, log,
                                                 budget, sources[name])
            finished[name].append((va, val_pred, fold_test))
            seconds[name] += time.time() - fold_started
            test_ok &= ok
        spent = time.time() - started   # hours-long on Kaggle: say when this run will be done
        log(f"finetune: {fold + 1}/{config.folds} folds of {len(groups)} model(s) in {spent:.0f} s, "
            f"about {spent / (fold + 1) * (config.folds - fold - 1):.0f} s to go")
    covered, results = _fold_results(finished, seconds, y, config)
    for result in results:
        log(f"finetune: {result.name}: OOF log loss {result.oof_log_loss:.4f} over {len(covered)} images")
    stages.done("models")
    completed = len(next(iter(finished.values())))
    if completed < config.folds:
        log(f"finetune: {completed} of {config.folds} folds finished inside the time budget; the OOF score covers "
            f"the {len(covered)} images they held out, and the test predictions average those folds")
    extra = {"replicas": replicas, "precision": policy, "folds": config.folds, "folds_completed": completed,
             "time_budget_s": config.time_budget_s, "stopped_by_time_budget": completed < config.folds,
             "time_budget_refused": budget.refused}
    return finish_run(config, train.iloc[covered].reset_index(drop=True), test, test_ok, results, stages, log,
                      extra=extra)


def _train_source(train: pd.DataFrame, group, config: Config, replicas: int, log) -> train_input.TrainInput:
    cache = train_input.pixel_cache(train["path"], [ex.size for ex in group], config.pixel_cache_dir,
                                    config.min_side, config.workers, log)
    if not cache.ok.all():   # _usable screened these files already; a file changed since then
        raise KitError(f"{len(cache.skips)} training images became unreadable while caching, e.g. "
                       f"{cache.skips[0].path} ({cache.skips[0].reason}): fetch again")
    return train_input.TrainInput(cache, [ex.size for ex in group], _preprocessing(group), train["label"].to_numpy(),
                                  config.seed, augmentation(config),
                                  replicas)


def augmentation(config: Config) -> Augment | None:
    """The training augmentation, mirroring only where the task allows it (`flip`)."""
    if not config.augment:
        return None
    return dataclasses.replace(Augment().scaled(config.augment_scale), flip=config.flip)


def _fold_results(finished: dict, seconds: dict, y: np.ndarray, config: Config):
    """Each model's OOF over the images its finished folds held out, and its test predictions averaged over them.

    Folds run in the same order for every model and stop together, so every model finished the same folds.
    """
    covered = np.sort(np.concatenate([va for va, _, _ in next(iter(finished.values()))]))
    results = []
    for name, folds_done in finished.items():
        oof = np.zeros((len(y), *folds_done[0][1].shape[1:]))
        for va, val_pred, _ in folds_done:
            oof[va] = val_pred
        test_pred = np.mean([fold_test for _, _, fold_test in folds_done], axis=0)
        results.append(heads.HeadResult(name, oof[covered], test_pred, metrics.log_loss(y[covered], oof[covered]),
                                        {"unfreeze": config.unfreeze, "epochs": config.epochs,
                                         "folds_completed": len(folds_done)}, seconds[name]))
    return covered, results


def _usable(train: pd.DataFrame, config: Config, log) -> np.ndarray:
    """Screen out unusable files before K-fold, so every fold's OOF covers exactly these images."""
    from kit.data import images

    skips = images.unusable(train, config.min_side)
    log(images.summarize_skips(list(skips.values()), "training"))
    return ~train["id"].isin(set(skips)).to_numpy()

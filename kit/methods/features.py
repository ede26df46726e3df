"""Transfer learning on cached features: extract -> heads by K-fold -> blend -> clip.

The run directory gets oof.csv (every training image's out-of-fold prediction per model
and blended), test_predictions.csv, and metrics.json (written last; kit/predict/finish.py)
with each stage's time and peak memory, each model's OOF log loss, the blend weights and the chosen clip.
"""

from __future__ import annotations

import numpy as np

from kit.config import Config
from kit.data import dataset, images
from kit.fetch import read_index, read_task
from kit.models import features, heads
from kit.predict.finish import finish_run
from kit.run.rundir import SKIPPED, start_run, write_skips
from kit.run.stages import Stages


def train(config: Config, log=print) -> dict:
    """The features method: cached backbone features, heads by K-fold, blended on OOF."""
    stages = Stages(log)
    out = start_run(config)

    train = dataset.training_index(config, log)
    test = read_index(config.data_dir, "test")
    stages.done("index")

    task = read_task(config.data_dir)
    blocks_train, blocks_test, skips = [], [], []
    for extractor in config.extractors():
        for frame, blocks in ((train, blocks_train), (test, blocks_test)):
            feats = features.extract(frame["path"], extractor, config.cache_dir, config.batch_size,
                                     config.workers, config.min_side, log)
            blocks.append(feats)
            skips.extend(feats.skips)
        stages.done(f"features {extractor.label}")
    train_ok = np.logical_and.reduce([b.ok for b in blocks_train])
    test_ok = np.logical_and.reduce([b.ok for b in blocks_test])
    skips = list({s.path: s for s in skips}.values())   # one row per file, not per extractor
    log(images.summarize_skips(skips, "train and test"))
    write_skips(out / SKIPPED, skips)

    x = features.image_vectors([b.features for b in blocks_train])[train_ok]
    x_test = features.image_vectors([b.features for b in blocks_test])
    y = train["label"].to_numpy()[train_ok]
    groups = dataset.fold_groups(train[train_ok])
    log(f"heads: {len(y)} training images, {x.shape[1]} features (views averaged), {config.folds} folds"
        + (f", each of the {len(set(groups))} groups in one fold" if groups is not None else ""))

    results = []
    for name in config.head_names():
        if name == "dense":
            results.append(heads.dense(x, y, x_test, config.folds, config.seed, config.head_epochs,
                                       config.head_learning_rate, config.head_dropout, config.head_batch_size, log=log,
                                       groups=groups))
        else:
            results.append(heads.HEADS[name](x, y, x_test, config.folds, config.seed, log=log, metric=task.metric,
                                             groups=groups))
        stages.done(f"head {name}")

    return finish_run(config, train[train_ok].reset_index(drop=True), test, test_ok, results, stages, log,
                      extra={"folds": config.folds, "folds_completed": config.folds})

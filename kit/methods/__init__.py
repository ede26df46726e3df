"""The training methods, by the name `config.method` takes: each module's `train(config, log)`
trains a whole run and returns its metrics.

- cnn: seed 003's network from scratch, on a validation split;
- features: cached backbone features, heads by K-fold, blended on out-of-fold predictions;
- finetune / frozen: backbones trained end to end by K-fold (one module, two ways).

Modules are imported when their method runs, so naming the methods (the config does, to
check its own values) loads nothing.
"""

from __future__ import annotations

import importlib

METHODS = {
    "cnn": "kit.methods.cnn",
    "features": "kit.methods.features",
    "finetune": "kit.methods.finetune",
    "frozen": "kit.methods.finetune",
}


def trainer(name: str):
    return importlib.import_module(METHODS[name]).train

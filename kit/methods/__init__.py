"""The training methods, by the name `config.method` takes: each module's `train(config, log)`
trains a whole run, and `train` here runs the config's method (kit/config.py's METHODS names the
module of each):

- cnn: seed 003's network from scratch, on a validation split;
- features: cached backbone features, heads by K-fold, blended on out-of-fold predictions;
- finetune / frozen: backbones trained end to end by K-fold (one module, two ways).

Modules are imported when their method runs, so importing the package loads nothing.
"""

from __future__ import annotations

import importlib

from kit.config import METHODS, Config


def train(config: Config, log=print) -> dict:
    """Train one run with the config's method; its metrics (kit/run/rundir.py holds the run's folder)."""
    return importlib.import_module(METHODS[config.method]).train(config, log)

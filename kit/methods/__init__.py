"""The training methods, by the name `config.method` takes: each module's `train(config, log)`
trains a whole run, and `train` here runs the config's method (kit/config.py's METHODS names the
module of each):

- cnn: seed 003's network from scratch, on a validation split;
- features: cached backbone features, heads by K-fold, blended on out-of-fold predictions;
- finetune / frozen: backbones trained end to end by K-fold (one module, two ways).

A method's module is imported when it runs, so importing the package loads none of them. A finished
run is trained again only when something that shapes it changed (resume.requested_identity): `make
train` asks every time, and the answer for a finished run comes before TensorFlow loads.
"""

from __future__ import annotations

import importlib

from kit import fileio
from kit.config import METHODS, Config
from kit.errors import KitError
from kit.run import resume, rundir


def train(config: Config, log=print) -> dict:
    """Train one run with the config's method (kit/run/rundir.py holds its folder); its metrics."""
    finished = finished_metrics(config, log)
    if finished is not None:
        return finished
    from kit.tfquiet import import_keras

    import_keras()
    return importlib.import_module(METHODS[config.method]).train(config, log)


def finished_metrics(config: Config, log=print) -> dict | None:
    """The run's metrics when it is finished with exactly these settings; else None, having said why it trains."""
    if not rundir.is_finished(config):
        return None
    try:
        saved = rundir.saved_metrics(config)
    except KitError as why:   # unreadable, or written before the one schema: nothing to reuse
        log(f"train: {why}; training it now")
        return None
    wanted = resume.requested_identity(config)
    if saved.get("digest") == fileio.digest(wanted):
        cut = saved.get("folds_completed", config.folds) < saved.get("folds", config.folds)
        budget = fileio.read_json(rundir.run_dir(config) / rundir.CONFIG).get("time_budget_s")
        if cut and budget != config.time_budget_s:
            # The budget shapes no fold, so it is not in the identity; but a new one may let the rest finish.
            log(f"train: run {config.run} stopped at its time budget after {saved['folds_completed']} of "
                f"{saved['folds']} folds: training the rest under time_budget_s={config.time_budget_s:g}")
            return None
        log(f"train: run {config.run} is finished with these settings ({rundir.run_dir(config)}); nothing to train")
        return saved
    changed = "; ".join(resume.differences(saved.get("identity", {}), wanted))
    log(f"train: run {config.run} was finished under other settings ({changed}): training it again")
    return None

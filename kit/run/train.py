"""`train`: the config's method trains one run (kit/methods/ holds them; kit/run/rundir.py its folder).

A finished run is trained again only when something that shapes it changed (resume.requested_identity):
`make train` asks every time, and the answer for a finished run comes before TensorFlow loads.
"""

from __future__ import annotations

from kit import methods
from kit.config import Config
from kit.run import resume, rundir


def train(config: Config, log=print) -> dict:
    finished = finished_metrics(config, log)
    if finished is not None:
        return finished
    from kit.tfquiet import import_keras

    import_keras()
    return methods.trainer(config.method)(config, log)


def finished_metrics(config: Config, log=print) -> dict | None:
    """The run's metrics when it is finished with exactly these settings; else None, having said why it trains."""
    if not rundir.is_finished(config):
        return None
    saved = rundir.saved_metrics(config)
    wanted = resume.requested_identity(config)
    if saved.get("digest") == resume.digest(wanted):
        log(f"train: run {config.run} is finished with these settings ({rundir.run_dir(config)}); nothing to train")
        return saved
    changed = "; ".join(resume.differences(saved.get("identity", {}), wanted))
    log(f"train: run {config.run} was finished under other settings ({changed}): training it again")
    return None

"""`train`: the config's method trains one run (kit/methods/ holds them; kit/run/rundir.py its folder)."""

from __future__ import annotations

from kit import methods
from kit.config import Config


def train(config: Config, log=print) -> dict:
    return methods.trainer(config.method)(config, log)

"""A wall-clock budget for end-to-end training: start no fold or epoch the measured pace says would not end in time.

Kaggle kills a session at 12 hours and a killed kernel leaves no output at all, so a run that
could overrun must stop early on its own, keep the folds it finished and still write a
submission. Decisions are taken at the two places work can stop cleanly: before a fold and
before an epoch. Each is judged by the longest such unit already measured for that model
(the longest rather than the mean, because one slow epoch is what crosses the line), plus what
the fold still has to do afterwards (predicting its held-out and test images).

A unit never measured has no pace to judge it by, so it runs; the first fold of a run always
runs, because a submission needs at least one. `seconds <= 0` means no budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Training the whole network costs about three frozen-backbone epochs (a backward pass through the
# backbone is about twice its forward pass): the guess for a model's first fine-tuning epoch.
UNFROZEN_OVER_FROZEN = 3.0


@dataclass
class Budget:
    seconds: float
    clock: object = time.monotonic
    started: float = field(default=None)
    epochs: dict = field(default_factory=dict)       # (model, phase) -> longest epoch, seconds
    tails: dict = field(default_factory=dict)        # model -> longest end of fold (predictions), seconds
    folds: dict = field(default_factory=dict)        # model -> longest whole fold, seconds
    refused: list = field(default_factory=list)      # what was not started, as log lines

    def __post_init__(self):
        if self.started is None:
            self.started = self.clock()

    @property
    def limited(self) -> bool:
        return self.seconds > 0

    def left(self) -> float:
        return self.seconds - (self.clock() - self.started) if self.limited else float("inf")

    def spent(self) -> bool:
        return self.left() <= 0

    # --- measurements ---------------------------------------------------------------------------

    def record_epoch(self, model: str, phase: str, seconds: float) -> None:
        _keep_longest(self.epochs, (model, phase), seconds)

    def record_tail(self, model: str, seconds: float) -> None:
        _keep_longest(self.tails, model, seconds)

    def record_fold(self, model: str, seconds: float) -> None:
        _keep_longest(self.folds, model, seconds)

    # --- estimates ------------------------------------------------------------------------------

    def epoch_estimate(self, model: str, phase: str) -> float | None:
        if (model, phase) in self.epochs:
            return self.epochs[(model, phase)]
        if phase == "finetune" and (model, "warmup") in self.epochs:
            return self.epochs[(model, "warmup")] * UNFROZEN_OVER_FROZEN
        return None

    def tail_estimate(self, model: str, images_per_epoch: int, images_to_predict: int) -> float:
        """The fold's predictions; before one was measured, as many images as an epoch trains cost as much.

        That overestimates (inference is cheaper than a training step), which is the safe side.
        """
        if model in self.tails:
            return self.tails[model]
        longest = max((s for (m, _), s in self.epochs.items() if m == model), default=0.0)
        return longest * images_to_predict / max(images_per_epoch, 1)

    # --- decisions ------------------------------------------------------------------------------

    def may_start_round(self, models: list[str], first_of_run: bool) -> bool:
        """The next fold of every model, one after the other."""
        if not self.limited or first_of_run:
            return True
        measured = [self.folds[m] for m in models if m in self.folds]
        estimate = sum(measured) if len(measured) == len(models) else None
        ok = not self.spent() if estimate is None else estimate <= self.left()
        if not ok:
            self._refuse("the next fold" + (f" of {len(models)} models" if len(models) > 1 else ""), estimate)
        return ok

    def may_start_epoch(self, model: str, phase: str, tail: float) -> bool:
        if not self.limited:
            return True
        estimate = self.epoch_estimate(model, phase)
        ok = not self.spent() if estimate is None else estimate + tail <= self.left()
        if not ok:
            self._refuse(f"a {phase} epoch of {model} (then {tail:.0f} s of predictions)", estimate)
        return ok

    def _refuse(self, what: str, estimate: float | None) -> None:
        pace = "the budget is spent" if estimate is None else f"it would take about {estimate:.0f} s"
        self.refused.append(f"time budget: not starting {what}: {pace}, {max(self.left(), 0):.0f} s of "
                            f"{self.seconds:.0f} s left")


def _keep_longest(table: dict, key, seconds: float) -> None:
    table[key] = max(table.get(key, 0.0), seconds)


def epoch_guard(budget: Budget, model: str, phase: str, tail, log=print):
    """Keras callback: time each epoch, and stop before one the budget cannot hold.

    `tail` is a function giving the seconds the fold still needs after this phase.
    """
    from kit.tfquiet import import_keras

    keras = import_keras()

    class _EpochGuard(keras.callbacks.Callback):
        cut = False

        def on_epoch_begin(self, epoch, logs=None):
            self._began = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            budget.record_epoch(model, phase, time.monotonic() - self._began)
            last = epoch + 1 >= self.params.get("epochs", 0)
            if not last and not self.model.stop_training and not budget.may_start_epoch(model, phase, tail()):
                log(budget.refused[-1])
                self.model.stop_training = True
                self.cut = True

    return _EpochGuard()

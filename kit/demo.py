"""The whole pipeline on a synthetic competition: offline, no credentials, a few minutes."""

from __future__ import annotations

from pathlib import Path

from kit import fetch, methods, score
from kit.config import Config
from kit.data import synthetic
from kit.predict import submission

SOURCE = Path("data/demo-source")   # the synthetic "Kaggle download"


def run(config: Config, source: Path = SOURCE, n_train: int = 1000, n_test: int = 300, log=print) -> dict:
    labels = source / "test_labels.csv"
    if not labels.is_file():   # written last by make_competition, so it marks a complete set
        log(f"demo: generating a synthetic competition in {source}")
        synthetic.make_competition(source, n_train=n_train, n_test=n_test, seed=config.seed)
    fetch.fetch_from(source / "competition", config.data_dir, log)
    metrics = methods.train(config, log)
    path = submission.predict(config, log)
    result = score.score_file(path, labels)
    log(f"demo: test log loss {result['log_loss']:.4f}, accuracy {result['accuracy']:.3f} "
        f"on {result['n']} images (all-0.5 scores 0.6931)")
    log(f"demo: submission {path}")
    return {**metrics, "test_log_loss": result["log_loss"], "test_accuracy": result["accuracy"],
            "submission": str(path)}

"""The network a run report explains, and the score its heat maps are computed against.

A cnn run is explained by its own saved model and its own output. The other methods blend
heads fitted on pooled features of one or more backbones, a computation no single Keras
model performs; they are explained by their first backbone, against the logit of a logistic
regression fitted on that backbone's pooled features for a small sample of training images.
That regression is a stand-in for the run's heads (which see every backbone and view), fitted
on the very network instance being explained, so it stays consistent even with random
weights; its cross-validated accuracy goes on the page so a weak stand-in is visible. With too
few images of a class to fit one, the maps fall back to the sum of the pooled features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kit.config import Config
from kit.data import dataset, images
from kit.fetch import read_index
from kit.models import backbones, inference
from kit.report import gradcam
from kit.run.rundir import MODEL

SAMPLE_IMAGES = 256       # for the stand-in regression: seconds on a CPU for SqueezeNet
MIN_PER_CLASS = 10


@dataclass
class Subject:
    model: object                                    # a Keras functional model
    size: int
    prepare: Callable[[np.ndarray], np.ndarray]      # uint8 RGB batch -> the model's input
    description: str
    direction: tuple[np.ndarray, float] | None = None
    target: str | None = None                        # what Grad-CAM is computed against, if not the default
    bgr: bool = False                                # the first convolution sees BGR (caffe preprocessing)

    def load(self, path: str) -> np.ndarray | None:
        """A picture as the model sees it (stretched square, uint8 RGB), or None if unreadable."""
        picture = images.load_image(path, target=self.size)
        return None if isinstance(picture, images.Skip) else images.resize_square(picture, self.size)

    def cam(self, pictures: np.ndarray, sides=None) -> gradcam.Cam:
        return gradcam.gradcam(self.model, self.prepare(pictures), direction=self.direction, target=self.target,
                               sides=sides)


def subject_for(run_dir: Path, config: Config, log=print) -> Subject:
    from kit.tfquiet import import_keras

    import_keras()   # before backbones.build imports it, so TensorFlow's start-up notices stay quiet
    if config.method == "cnn":
        return _saved_cnn(run_dir, config)
    return _first_backbone(config, log)


def _saved_cnn(run_dir: Path, config: Config) -> Subject:
    from kit.tfquiet import import_keras

    keras = import_keras()
    model = keras.models.load_model(run_dir / MODEL)
    return Subject(model, config.image_size, lambda batch: np.asarray(batch, np.uint8),
                   f"the run's own network ({run_dir / MODEL}, best epoch)")


def _first_backbone(config: Config, log) -> Subject:
    extractor = config.extractors()[0]
    net = backbones.build(extractor.backbone, weights=extractor.weights, input_size=extractor.size)
    prepare = lambda batch: backbones.preprocess(extractor.backbone, batch)
    weights = "random" if extractor.weights is None else extractor.weights
    subject = Subject(net, extractor.size, prepare, f"backbone {extractor.label} (the run's first), weights: {weights}",
                      bgr=backbones.get(extractor.backbone).preprocessing == "caffe")
    fitted = logistic_direction(subject, config, log)
    if fitted is not None:
        subject.direction, n, accuracy = fitted
        subject.target = (f"the logit of a logistic regression on {extractor.label}'s pooled features, fitted on "
                          f"{n} training images (3-fold accuracy {accuracy:.3f}); a stand-in for the run's heads; "
                          f"positive = dog")
    return subject


def logistic_direction(subject: Subject, config: Config, log=print):
    """((w, b), n, cv accuracy) with logit = features @ w + b, or None without enough images.

    Fitted on standardised features, then folded back so it applies to raw network output.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sample = dataset.limit_index(read_index(config.data_dir, "train"), SAMPLE_IMAGES, config.seed)
    pictures, ok, _ = dataset.load_arrays(sample["path"], subject.size, config.min_side, config.workers,
                                          desc="decode sample")
    labels = sample["label"].to_numpy()[ok]
    if np.bincount(labels.astype(int), minlength=2).min() < MIN_PER_CLASS:
        return None
    log(f"report: fitting a logistic direction on {len(labels)} images' pooled features")
    feats = inference.predict(subject.model, subject.prepare(pictures), config.batch_size).astype(np.float64)
    feats = feats.reshape(len(labels), -1)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    accuracy = float(cross_val_score(pipeline, feats, labels, cv=3).mean())
    pipeline.fit(feats, labels)
    scaler, regression = pipeline[0], pipeline[1]
    w = regression.coef_[0] / scaler.scale_
    b = float(regression.intercept_[0] - np.dot(scaler.mean_, w))
    return (w, b), len(labels), accuracy

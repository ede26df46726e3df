"""The report's sections for more than two classes: the score on the task's metric, the confusion
matrix, per-class precision, recall and F1, and the costliest confusions (true class -> predicted).

The binary page's probability sections (reliability, clip curve, costliest single pictures) read
P(class 1); with per-class probabilities a picture's mistake is a pair of classes, so these tables
take their place.
"""

from __future__ import annotations

import html

import numpy as np

from kit.task import metrics as metric_registry

TOP_CONFUSIONS = 10


def summary(metrics: dict, labels: np.ndarray, probs: np.ndarray, kind: str, method: str) -> str:
    entry = metric_registry.get(metrics.get("metric", "multi_log_loss"))
    predicted = np.argmax(probs, axis=1)
    return (f"<p>method <b>{_e(method)}</b>; {kind} {_e(entry.name)} <b>{metrics['oof_score']:.4f}</b> "
            f"({_e(entry.description)}, {entry.direction}), log loss {metrics['log_loss_raw']:.4f} raw, "
            f"accuracy {float(np.mean(predicted == labels)):.4f}, on {len(labels)} images in "
            f"{probs.shape[1]} classes.</p>")


def confusion_section(labels: np.ndarray, probs: np.ndarray, classes, table) -> str:
    """The confusion matrix (rows: true class; columns: most probable class) and per-class scores."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    k = probs.shape[1]
    predicted = np.argmax(probs, axis=1)
    counts = confusion_matrix(labels, predicted, labels=list(range(k)))
    names = [_e(str(c)) for c in classes]
    matrix = table(["true \\ predicted", *names], [(names[i], *map(int, counts[i])) for i in range(k)])
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=list(range(k)),
                                                                     zero_division=0)
    scores = table(["class", "precision", "recall", "F1", "images"],
                   [(names[i], f"{precision[i]:.3f}", f"{recall[i]:.3f}", f"{f1[i]:.3f}", int(support[i]))
                    for i in range(k)])
    pairs = sorted(((int(counts[i, j]), i, j) for i in range(k) for j in range(k) if i != j and counts[i, j]),
                   reverse=True)[:TOP_CONFUSIONS]
    costliest = (table(["true class", "taken for", "images"], [(names[i], names[j], n) for n, i, j in pairs])
                 if pairs else "<p>No held-out image was taken for another class.</p>")
    return ("<h2>Where the model fails, by class</h2><h3>Confusion matrix</h3>" + matrix
            + "<h3>Per-class scores</h3>" + scores + "<h3>The most frequent confusions</h3>" + costliest)


def _e(text: str) -> str:
    return html.escape(str(text))

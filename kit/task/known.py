"""What a competition's files cannot say about it: its metric, and the column that groups its images
for folds. One entry per competition the kit has been told about (from each one's data and
evaluation pages). Any other competition takes its metric from Kaggle's name for it when it is
downloaded (kit/kaggle/download.py, metrics.from_kaggle), or from `metric` when set or fetched
from a folder, and needs `group_column` where folds must be grouped.
"""

from __future__ import annotations

from dataclasses import dataclass

from kit import COMPETITION


@dataclass(frozen=True)
class Known:
    slug: str
    metric: str                 # a name in kit.task.metrics
    group_column: str = ""      # images sharing a value stay in one fold
    groups_file: str = ""       # the CSV holding group_column beside the id column
    classes: tuple = ()         # every class there is, where stray files could look like another one


KNOWN: dict[str, Known] = {k.slug: k for k in (
    # A stray `horse.1.jpg` in train.zip is a picture to report, not a third class.
    Known(COMPETITION, "log_loss", classes=("cat", "dog")),
    Known("aerial-cactus-identification", "roc_auc"),
    Known("histopathologic-cancer-detection", "roc_auc"),
    Known("plant-seedlings-classification", "f1_micro"),
    Known("dog-breed-identification", "multi_log_loss"),
    Known("aptos2019-blindness-detection", "quadratic_kappa"),
    # The same driver in training and validation folds leaks: the test drivers are all new.
    Known("state-farm-distracted-driver-detection", "multi_log_loss", "subject", "driver_imgs_list.csv"),
    Known("cassava-leaf-disease-classification", "accuracy"),
)}


def lookup(slug: str) -> Known | None:
    return KNOWN.get(slug)

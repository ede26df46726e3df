"""Fine-tuning EfficientNet-Lite0 on the CPU, one fold, against logistic regression on pooled features.

The fine-tuning runs through kit.methods.finetune.train_fold, the code the `gpu-modern` recipe runs on
Kaggle's GPUs (warm-up of the new head with the backbone frozen, then the top `unfreeze`
fraction of layers at `finetune_lr`, augmentation, early stopping, flip-averaged predictions),
with gpu-modern's settings unless given. It is measured on the first of the 5 folds that
bench/lite_levers.py uses (seed 0), against logistic regression on Lite0@224 features and the
`cpu` preset's features for the same 600 validation photos, and reports training throughput.

    python bench/lite_finetune.py [--epochs 3] [--unfreeze 1.0] [--lr 3e-5] [--size 224]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time

import numpy as np

from common import DATA, REPO, fetched_real
from lite_levers import load_blocks, x_of

from kit import config, score  # noqa: E402
from kit.fetch import read_index  # noqa: E402
from kit.methods import finetune  # noqa: E402
from kit.models import heads  # noqa: E402
from kit.predict import blend  # noqa: E402
from kit.run import resume, rundir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=str(REPO / "cache" / "features"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs after the warm-up")
    parser.add_argument("--unfreeze", type=float, default=1.0, help="fraction of Lite0's layers trained, from the top")
    parser.add_argument("--lr", type=float, default=3e-5, help="fine-tuning learning rate (gpu-modern's)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    fetched_real()
    train = read_index(DATA, "train")
    y = train["label"].to_numpy()
    tr, va = heads.folds(y, 5, 0)[0]

    with tempfile.TemporaryDirectory() as runs:
        cfg = config.resolve("gpu-modern", {
            "run": "lite0-finetune", "backbones": f"efficientnet_lite0@{args.size}", "runs_dir": runs,
            "epochs": args.epochs, "unfreeze": args.unfreeze, "finetune_lr": args.lr,
            "batch_size": args.batch_size, "workers": 2, "mixed_precision": "off"})
        started = time.time()
        log = lambda m: print(m, file=sys.stderr)
        group, test = cfg.extractors(), train.iloc[va[:8]]
        identity = resume.fold_identity(resume.run_identity(cfg, train, test, group), group, 0)
        source = finetune._train_source(train, group, cfg, 1, log)   # the training input train_fold feeds to fit
        val_pred, _, _ = finetune.train_fold("lite0", group, cfg, 0, train.iloc[tr], train.iloc[va], test, identity,
                                             2, log=log, source=source)
        seconds = time.time() - started
        fold = rundir.fold_dir(cfg, "lite0", 0)
        epochs_run = sum(len(open(fold / rundir.phase_history(p)).read().splitlines()) - 1
                         for p in rundir.PHASES if (fold / rundir.phase_history(p)).is_file())

    blocks = load_blocks(train["path"], [f"lite0@{args.size}", "lite2@320", "lite1@300"], args.cache_dir)
    rows = [("fine-tuned " + _what(args, cfg), val_pred, seconds)]
    for name, spec in ((f"logistic regression on Lite0@{args.size} features", f"lite0@{args.size}:flip"),
                       ("the cpu preset (Lite2@320 + Lite1@300, logistic regression)", "lite2@320:flip+lite1@300:flip")):
        x = x_of(blocks, spec)
        rows.append((name, heads.logreg(x, y, x[:1], 5, 0, log=lambda *_: None).oof[va], 0.0))
    print(f"\n## Lite0@{args.size} fine-tuned on the CPU, fold 1 of 5 ({len(tr)} training, {len(va)} validation photos)")
    print("variant | log loss | chosen clip | accuracy | seconds")
    print("--- | --- | --- | --- | ---")
    for name, pred, s in rows:
        (clip, _), chosen = blend.choose_clip(pred, y[va])
        print(f"{name} | {score.log_loss(y[va], pred):.4f} | {chosen:.4f} @ {clip:g} | "
              f"{score.accuracy(y[va], pred):.4f} | {s:.0f}")
    print(f"\ntraining throughput: {epochs_run} epochs (warm-up included) of {len(tr)} photos plus "
          f"flip-averaged prediction of {len(va) + 8} in {seconds:.0f} s: "
          f"{epochs_run * len(tr) / seconds:.1f} training photos/s overall")
    print(f"peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def _what(args, cfg) -> str:
    return (f"({cfg.warmup_epochs} warm-up epoch, then {args.epochs} at {args.lr:g} with the top "
            f"{args.unfreeze:.0%} of layers trainable, augmented)")


if __name__ == "__main__":
    main()

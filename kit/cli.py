"""`python -m kit <command>`: the pipeline's steps in the order they run.

A user mistake ends as one line on stderr and exit status 2; a bug keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from kit import COMPETITION
from kit.errors import KitError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise KitError(f"{message} (see `{self.prog} --help`)")


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="baseline", help="named preset (default: baseline)")
    parser.add_argument("--config", dest="config_file", metavar="FILE", help="JSON file of config overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value (repeatable), e.g. --set epochs=5")


def _resolve(args):
    from kit import config

    return config.resolve(args.preset, config.parse_overrides(args.overrides), args.config_file)


def cmd_fetch(args):
    from kit import fetch

    cfg = _resolve(args)
    if args.source is None:
        from kit.kaggle import download

        download.fetch_from_kaggle(cfg.competition, args.data_dir or cfg.data_dir, force=args.force,
                                   overrides=cfg.task_overrides())
        return
    if args.force:
        raise KitError("--force downloads from Kaggle again; with --from there is nothing to download")
    fetch.fetch_from(args.source, args.data_dir or cfg.data_dir, competition=cfg.competition,
                     overrides=cfg.task_overrides())


def cmd_synth(args):
    from kit.data import synthetic_layouts

    competition = synthetic_layouts.make(args.out, args.layout, args.train, args.test, args.seed)
    print(f"synth: wrote {competition} and {Path(args.out) / 'test_labels.csv'}")


def cmd_train(args):
    from kit import methods

    methods.train(_resolve(args))


def cmd_predict(args):
    from kit.predict import submission

    submission.predict(_saved_run_config(args))


def _saved_run_config(args):
    """The config a run was trained with, plus this command's --set overrides (clip bounds, say)."""
    import dataclasses

    from kit import config
    from kit.run import resume, rundir

    requested = _resolve(args)
    saved = config.load_saved(rundir.run_dir(requested) / rundir.CONFIG)
    wanted = dataclasses.replace(saved, **config.parse_overrides(args.overrides))
    before, after = resume.shaping_config(saved), resume.shaping_config(wanted)
    changed = sorted(k for k in after if before.get(k) != after[k])
    if changed:
        was = ", ".join(f"{k}={before.get(k)}" for k in changed)
        raise KitError(f"run {saved.run} was trained with {was}, and {', '.join(changed)} shapes what it learns: "
                       f"train with the new value first (make train SET=...); predict takes only settings such as "
                       f"the clip")
    return wanted


def cmd_score(args):
    from kit import score

    if args.task or args.metric or args.competition:
        return _score_with_metric(args)
    fetched_task = _fetched_task()
    if fetched_task is not None:
        from kit.predict import task_score

        print(task_score.summary(task_score.score_file(args.submission, args.labels, fetched_task)))
        return
    result = score.score_file(args.submission, args.labels)
    print(f"log loss {result['log_loss']:.5f}  accuracy {result['accuracy']:.4f}  ({result['n']} images)")


def _fetched_task():
    """The fetched competition's task where the data dir has one (task.json) and it is not Dogs vs. Cats
    Redux's `id,label` layout, which keeps its log loss and accuracy line; else None."""
    from kit import config
    from kit.fetch import TASK, read_task
    from kit.predict.submission import is_redux_layout

    data_dir = Path(config.Config().data_dir)
    if not (data_dir / TASK).is_file():
        return None
    task = read_task(data_dir)
    return None if is_redux_layout(task) else task


def _score_with_metric(args):
    """`score --task` (a saved task or a competition folder) or `--metric`: any layout, any metric."""
    from kit.predict import task_score
    from kit.task import read

    if args.task is None:
        if args.competition:
            raise KitError("--competition names the competition of --task FOLDER; give --task too")
        result = task_score.score_binary_file(args.submission, args.labels, args.metric)
    else:
        reading = Path(args.task).is_dir() and args.metric
        task = read.task_from(args.task, args.competition, {"metric": args.metric} if reading else None)
        result = task_score.score_file(args.submission, args.labels, task, args.metric)
    print(task_score.summary(result))


def cmd_submit(args):
    from kit.kaggle import submit

    submit.submit(args.file, args.message, _resolve(args), force=args.force)


def cmd_submissions(args):
    from kit.kaggle import submit

    submit.show(_resolve(args))


def cmd_clean(args):
    from kit import clean

    split = lambda text: tuple(t.strip() for t in text.split(",") if t.strip())
    clean.run_clean(_resolve(args), checks=split(args.checks), known_lists=split(args.known_lists),
                    imagenet_backbones=split(args.imagenet_backbones),
                    k_dog=args.k_dog or clean.DEFAULT_K, k_cat=args.k_cat or clean.DEFAULT_K,
                    big_cats=args.big_cats, noise_run=args.noise_run, noise_threshold=args.noise_threshold,
                    max_distance=args.max_distance, rebalance_classes=args.rebalance, report_dir=args.report_dir)


def cmd_report(args):
    from kit import report

    report.build(report.find_run(args.run, args.runs_dir), args.reports_dir, layer=args.layer)


def cmd_runs(args):
    from kit import report
    from kit.run import rundir

    if args.latest:
        try:
            print(report.find_run(None, args.runs_dir).name)
        except KitError:
            pass   # no finished run: print nothing, so `make` falls back to its default preset
        return
    finished = [path.name for path in rundir.finished_runs(args.runs_dir)]
    if args.name is not None:
        if args.name not in finished:
            listed = ", ".join(finished) if finished else "none yet"
            raise KitError(f"no finished run named {args.name!r} (finished runs: {listed}); "
                           f"`make train RUN={args.name}` makes a new one")
        print(args.name)
        return
    for name in finished:
        print(name)


def cmd_kernels(args):
    from kit.kaggle import kernel_remote, kernels

    config = _resolve(args)
    options = kernels.BuildOptions(args.weights_dataset, args.machine_shape, config.competition)
    kernels_dir = args.kernels_dir or str(kernels.kernels_dir(config.competition))
    kernel_remote.run_command(args.action, args.name, config, kernels_dir, options=options,
                              check=args.check, wait=args.wait, interval=args.interval, message=args.message,
                              force=args.force, only=args.only)


def cmd_blend(args):
    from kit.predict import blend_outputs

    blend_outputs.blend_dirs(args.dirs, _resolve(args), args.name)


def cmd_demo(args):
    from kit import demo

    demo.run(_resolve_demo(args))


def _resolve_demo(args):
    from kit import config

    return config.resolve("demo", config.parse_overrides(args.overrides), args.config_file)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m kit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("fetch", help="download (or take --from DIR), extract and index the competition files")
    p.add_argument("--from", dest="source", metavar="DIR", help="the competition's folder: its sample submission, pictures (zips or folders) and labels")
    p.add_argument("--data-dir", help="where to extract (default: the config's data_dir)")
    p.add_argument("--force", action="store_true", help="download from Kaggle again, even when complete")
    _config_options(p)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("synth", help="write a synthetic mini competition (for demos and tests)")
    p.add_argument("out", help="output folder")
    p.add_argument("--train", type=int, default=600, help="training images (default 600)")
    p.add_argument("--test", type=int, default=200, help="test images (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", default=COMPETITION, metavar="NAME",
                   help=f"the file layout of this competition, by its slug (default {COMPETITION}); "
                        "an unknown name lists the layouts")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train a model; prints validation log loss")
    _config_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict the test set; writes a clipped submission")
    _config_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("score", help="log loss and accuracy of a submission against known labels (or another metric)")
    p.add_argument("submission")
    p.add_argument("--labels", required=True, metavar="CSV", help="id,label file of true labels (with --task: the id "
                                                                  "column and a class column)")
    p.add_argument("--task", metavar="PATH", help="score with this task's layout and metric: a saved task.json or a "
                                                  "competition folder")
    p.add_argument("--competition", metavar="SLUG", help="with --task FOLDER: the competition (default: the folder's name)")
    p.add_argument("--metric", metavar="NAME", help="score with this metric (e.g. roc_auc, multi_log_loss, "
                                                   "quadratic_kappa); an unknown name lists them")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("submit", help="check a submission file, upload it to Kaggle, record it in the ledger")
    p.add_argument("file", help="submission CSV (id,label), e.g. submissions/baseline.csv")
    p.add_argument("-m", "--message", required=True, help="description shown on Kaggle")
    p.add_argument("--force", action="store_true", help="submit even without a local score (no or stale sidecar)")
    _config_options(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("submissions", help="refresh Kaggle status and public scores; print the ledger")
    _config_options(p)
    p.set_defaults(func=cmd_submissions)

    p = sub.add_parser("clean", help="flag anomalous training images; write a report, a contact sheet and exclusions")
    p.add_argument("--checks", default="files,known,imagenet,label-noise,duplicates",
                   help="comma-separated: files, known, imagenet, label-noise, duplicates")
    p.add_argument("--known-lists", default="seed004,consensus,mislabelled", help="published lists to apply")
    p.add_argument("--imagenet-backbones", default="",
                   help="classifiers for the imagenet check, name[@size] (they vote; default: the preset's "
                        "backbones that have an ImageNet top)")
    p.add_argument("--k-dog", type=int, help="top-K for dog images (default: clean.DEFAULT_K, 20)")
    p.add_argument("--k-cat", type=int, help="top-K for cat images (default: clean.DEFAULT_K, 20)")
    p.add_argument("--big-cats", action="store_true", help="count cougar and lynx as cat classes")
    p.add_argument("--noise-run", help="take OOF predictions from runs/RUN/oof.csv instead of the feature cache")
    p.add_argument("--noise-threshold", type=float, default=0.05,
                   help="flag when OOF gives the label less than this (default 0.05)")
    p.add_argument("--max-distance", type=int, default=4, help="perceptual-hash bits for a duplicate (default 4)")
    p.add_argument("--rebalance", action="store_true", help="replace each excluded image by an augmented copy")
    p.add_argument("--report-dir", default="reports/clean")
    _config_options(p)
    p.set_defaults(func=cmd_clean, preset="cpu")

    p = sub.add_parser("report", help="write reports/RUN/index.html: curves, calibration, mistakes, heat maps")
    p.add_argument("run", nargs="?", help="run name or folder (default: the latest finished run)")
    p.add_argument("--runs-dir", default="runs", help="where runs are (default: runs)")
    p.add_argument("--reports-dir", default="reports", help="where reports go (default: reports)")
    p.add_argument("--layer", help="layer whose activations are shown (default: a convolution a third of the way in)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("runs", help="list the finished runs, oldest first (with NAME: check that it is one)")
    p.add_argument("name", nargs="?", help="a run that must be finished: an error listing the finished runs if not")
    p.add_argument("--latest", action="store_true", help="print only the most recently finished run (or nothing)")
    p.add_argument("--runs-dir", default="runs", help="where runs are (default: runs)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("kernels", help="Kaggle GPU kernels built from the kit: build, list, push, status, output, submit")
    p.add_argument("action", choices=("build", "list", "push", "status", "output", "submit"))
    p.add_argument("name", nargs="?", help="the kernel (`kernels list` names them)")
    p.add_argument("--kernels-dir", help="where the kernels are built (default: kernels, or kernels/<competition> "
                                         "for another competition than Dogs vs. Cats Redux)")
    p.add_argument("--weights-dataset", metavar="OWNER/SLUG", help="build: weights from this Kaggle dataset, internet off")
    p.add_argument("--machine-shape", default="NvidiaTeslaT4", help="build: Kaggle machine (default: NvidiaTeslaT4)")
    p.add_argument("--check", action="store_true", help="build: only check that the kernels match the kit")
    p.add_argument("--only", metavar="BACKBONE", help="push: the kernel narrowed to one of its backbones, made now "
                                                       "(e.g. --only convnext_small)")
    p.add_argument("--wait", action="store_true", help="status: poll until the kernel has finished")
    p.add_argument("--interval", type=float, default=60.0, help="status --wait: seconds between polls (default 60)")
    p.add_argument("-m", "--message", help="submit: description shown on Kaggle (default: kernel NAME)")
    p.add_argument("--force", action="store_true", help="output: even from a kernel that failed; submit: as submit --force")
    _config_options(p)
    p.set_defaults(func=cmd_kernels)

    p = sub.add_parser("blend", help="blend the OOF and test predictions of kernel outputs or runs into one submission")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="folders with oof.csv and test_predictions.csv "
                                                          "(submissions/kernels/<kernel>/ or runs/<run>/)")
    p.add_argument("--name", default="blend", help="writes submissions/NAME.csv and its sidecar (default: blend)")
    _config_options(p)
    p.set_defaults(func=cmd_blend)

    p = sub.add_parser("demo", help="synthetic competition -> fetch -> train -> predict -> score, offline")
    p.add_argument("--config", dest="config_file", metavar="FILE", help="JSON file of config overrides")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_demo)
    return parser


def _data_lock(args):
    """Commands that write into a data directory hold its lock; the others need none."""
    import contextlib

    from kit import lock

    if args.command == "demo":
        return lock.exclusive(_resolve_demo(args).data_dir)
    if args.command in ("fetch", "train", "predict", "clean"):
        return lock.exclusive(getattr(args, "data_dir", None) or _resolve(args).data_dir)
    return contextlib.nullcontext()


def main(argv=None) -> int:
    # Quiet TensorFlow's C++ start-up chatter; users still see Keras progress and warnings.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.time()
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 2
        # The lock resolves the config first, so a bad option fails before TensorFlow loads.
        with _data_lock(args):
            # train and predict load it themselves, only when there is something to compute.
            if args.command in ("demo", "clean"):
                from kit.tfquiet import import_keras

                import_keras()
            args.func(args)
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept, rerun the command to continue", file=sys.stderr)
        return 130
    if args.command in ("train", "predict", "demo"):
        print(f"done in {time.time() - started:.0f} s")
    return 0

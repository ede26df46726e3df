"""`python -m kit <command>`: the pipeline's steps in the order they run.

A user mistake ends as one line on stderr and exit status 2; a bug keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

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
        raise KitError("downloading from Kaggle is not available yet: pass --from DIR with the competition files")
    fetch.fetch_from(args.source, args.data_dir or cfg.data_dir)


def cmd_synth(args):
    from kit import synthetic

    competition = synthetic.make_competition(args.out, args.train, args.test, args.seed)
    print(f"synth: wrote {competition} and {Path(args.out) / 'test_labels.csv'}")


def cmd_train(args):
    from kit import train

    train.train(_resolve(args))


def cmd_predict(args):
    from kit import predict

    predict.predict(_saved_run_config(args))


def _saved_run_config(args):
    """The config a run was trained with, plus this command's --set overrides (clip bounds, say)."""
    import dataclasses

    from kit import config, train

    requested = _resolve(args)
    saved = config.load_saved(train.run_dir(requested) / "config.json")
    return dataclasses.replace(saved, **config.parse_overrides(args.overrides))


def cmd_score(args):
    from kit import score

    result = score.score_file(args.submission, args.labels)
    print(f"log loss {result['log_loss']:.5f}  accuracy {result['accuracy']:.4f}  ({result['n']} images)")


def cmd_demo(args):
    from kit import demo

    demo.run(_resolve_demo(args))


def _resolve_demo(args):
    from kit import config

    return config.resolve("demo", config.parse_overrides(args.overrides), args.config_file)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m kit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("fetch", help="extract and index the competition files")
    p.add_argument("--from", dest="source", metavar="DIR", help="folder with train.zip, test.zip, sample_submission.csv")
    p.add_argument("--data-dir", help="where to extract (default: the config's data_dir)")
    _config_options(p)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("synth", help="write a synthetic mini competition (for demos and tests)")
    p.add_argument("out", help="output folder")
    p.add_argument("--train", type=int, default=600, help="training images (default 600)")
    p.add_argument("--test", type=int, default=200, help="test images (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train a model; prints validation log loss")
    _config_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict the test set; writes a clipped submission")
    _config_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("score", help="log loss and accuracy of a submission against known labels")
    p.add_argument("submission")
    p.add_argument("--labels", required=True, metavar="CSV", help="id,label file of true labels")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("demo", help="synthetic competition -> fetch -> train -> predict -> score, offline")
    p.add_argument("--config", dest="config_file", metavar="FILE", help="JSON file of config overrides")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    # Quiet TensorFlow's C++ start-up chatter; users still see Keras progress and warnings.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.time()
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 2
        if args.command in ("train", "predict", "demo"):
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

"""Every competition layout the kit knows, as a user meets it: `kit synth --layout SLUG` writes a small
synthetic competition in that layout (bright shapes and colours, not photos: the scores say the pipeline
runs and scores each metric, not how well it generalises; bench/real_layouts.py has real photos), then
fetch -> train -> predict -> score with the `cpu` preset at its real settings and ImageNet weights.

    python bench/every_layout.py [--train 60] [--test 20]
"""

from __future__ import annotations

import argparse
import shutil

from common import REPO
from real_layouts import kit, print_table, run_layout

from kit.data import synthetic_layouts

BENCH = REPO / "data" / "bench-every-layout"
# What no file says about a competition outside the registry (the kit's own test layout).
SETTINGS = {"grayscale-shapes": ("--set", "metric=accuracy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--test", type=int, default=20)
    args = parser.parse_args()
    shutil.rmtree(BENCH, ignore_errors=True)
    rows = []
    for slug in synthetic_layouts.NAMES:
        source = BENCH / slug / "source"
        kit("synth", str(source), "--layout", slug, "--train", str(args.train), "--test", str(args.test), "--seed", "0")
        rows.append(run_layout(slug, source / "competition", source / synthetic_layouts.TEST_LABELS,
                               str(BENCH / "cache"), BENCH / slug / "work", SETTINGS.get(slug, ())))
        print(f"{slug}: {rows[-1]['metric']} OOF {rows[-1]['oof']:.4f}, held out {rows[-1]['held_out']}", flush=True)
    print_table(f"the cpu preset on every layout, synthetic ({args.train} training, {args.test} test images each)", rows)


if __name__ == "__main__":
    main()

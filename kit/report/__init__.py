"""`python -m kit report [RUN]`: one static page per run, reports/<run>/index.html, PNGs beside it.

The page opens from disk with no server and no network (no external CSS, scripts or fonts)
and answers, in order: how did training go (curves), can the probabilities be trusted
(reliability, histogram, log loss at each clip), where does the model fail (costliest
held-out mistakes, least certain test pictures), what does the network look at (Grad-CAM,
activations, first-layer filters), what did cleaning find, and what exactly ran (config,
timings, scores).

The report is built in a hidden `.partial` folder and swapped into place, so an interrupted
build leaves the previous report whole and never mixes PNGs from two builds.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit import fileio, plots, score
from kit.config import Config, load_saved
from kit.data import images
from kit.errors import KitError
from kit.fetch import read_index, read_task
from kit.predict import blend
from kit.predict.submission import submission_path
from kit.report import classes
from kit.run.rundir import (BLEND, CONFIG, HELD_OUT, HISTORY, METRICS, PHASES, TEST_PREDICTIONS, finished_runs,
                            fold_dirs, model_columns, phase_history, read_metrics, read_probabilities)
from kit.task import metrics as metric_registry

GRID = 12           # pictures per grid
CAMS = 4            # pictures per Grad-CAM group
THUMB = 256         # longest side of a grid picture, pixels
CLEAN = "clean"     # reports/clean/ belongs to `python -m kit clean`
HELD_OUT_WORDS = {"oof": "out-of-fold", "validation": "validation"}   # by metrics.json's scored_on
NO_CLIP = (0.0, 1.0)   # what a run of a metric that does not clip (AUC, F1, ...) is shown at


@dataclass
class Run:
    path: Path
    config: Config
    metrics: dict
    held_out: pd.DataFrame        # id, label, prob (the blend), per-model columns, path
    held_out_kind: str            # "out-of-fold" or "validation"
    models: list[str]
    test: pd.DataFrame            # id, prob, path
    test_source: str
    sidecar: dict
    probs: np.ndarray | None = None   # more than two classes: the held-out blend per class (no "prob" column)

    @property
    def fixed_clip(self) -> tuple[float, float]:
        return tuple(self.metrics["clip_fixed"])

    @property
    def chosen_clip(self) -> tuple[float, float]:
        chosen = self.metrics["clip_chosen"]
        return NO_CLIP if chosen is None else tuple(chosen)

    @property
    def applied_clip(self) -> tuple[float, float]:
        """The bounds the submission used: its sidecar says; else the rule predict follows."""
        if self.sidecar.get("clip"):
            return tuple(self.sidecar["clip"])
        if self.metrics["clip_chosen"] is None:
            return NO_CLIP
        return blend.clip_bounds(self.config, self.chosen_clip)


# --------------------------------------------------------------------------- finding and reading a run


def find_run(name: str | None, runs_dir: str | Path = "runs") -> Path:
    """A run folder by name (or path); without a name, the most recently finished run."""
    runs_dir = Path(runs_dir)
    if name is None:
        finished = finished_runs(runs_dir)
        if not finished:
            raise KitError(f"no finished run under {runs_dir}/: run `python -m kit train` first")
        return finished[-1]
    path = Path(name) if Path(name).is_dir() and (Path(name) / CONFIG).is_file() else runs_dir / name
    if not (path / METRICS).is_file():
        raise KitError(f"run {name!r} is not finished ({path / METRICS} is missing): "
                       f"run `python -m kit train` first")
    if path.name == CLEAN:
        raise KitError(f"a run named {CLEAN!r} would overwrite the cleaning report in reports/{CLEAN}/; rename the run")
    return path


def load_run(path: Path) -> Run:
    config = load_saved(path / CONFIG)
    metrics = read_metrics(path)
    index = read_index(config.data_dir, "train")[["id", "path"]]
    frame = pd.read_csv(path / HELD_OUT[metrics["scored_on"]])
    probs = None if BLEND in frame.columns else read_probabilities(frame, BLEND)
    held_out = frame.rename(columns={BLEND: "prob"}).merge(index, on="id", how="left")
    test = pd.read_csv(path / TEST_PREDICTIONS)
    test = (test[["id", BLEND]].rename(columns={BLEND: "prob"}) if probs is None else test[["id"]]).merge(
        read_index(config.data_dir, "test")[["id", "path"]], on="id", how="left")
    sub = submission_path(config)
    # A submission older than the run was made by an earlier training of it: not this model's.
    current = sub.is_file() and sub.stat().st_mtime >= (path / METRICS).stat().st_mtime
    return Run(path, config, metrics, held_out, HELD_OUT_WORDS[metrics["scored_on"]], model_columns(frame), test,
               f"{path / TEST_PREDICTIONS} (blend, before clipping)",
               fileio.read_json(sub.with_suffix(".json")) if current else {}, probs)


def training_histories(run: Path) -> list[tuple[str, list[tuple[str, list[Path]]]]]:
    """[(model, [(fold, [csv logs in phase order])])]: what each curve figure plots. A run trained in one
    piece (the cnn) has its history beside the model; end-to-end runs one per fold and phase."""
    if (run / HISTORY).is_file():
        return [("model", [("training", [run / HISTORY])])]
    out = []
    for model in sorted(p for p in run.iterdir() if p.is_dir()):
        logs = [(f.name, [f / phase_history(phase) for phase in PHASES]) for f in fold_dirs(model)]
        logs = [(name, paths) for name, paths in logs if any(p.is_file() for p in paths)]
        if logs:
            out.append((model.name, logs))
    return out


# --------------------------------------------------------------------------- the page


def build(run_path: Path, reports_dir: str | Path = "reports", layer: str | None = None, log=print) -> Path:
    run = load_run(run_path)
    reports_dir = Path(reports_dir)
    final = reports_dir / run.path.name
    log(f"report: building the page for run {run.path.name} ({run.config.method})")
    if run.probs is not None:
        return _build_classes(run, final, reports_dir, log)
    with fileio.atomic_dir(final) as partial:
        body = [_summary(run),
                _curves(run, partial),
                _calibration(run, partial),
                *_pictures_and_maps(run, partial, layer, log),
                _cleaning(reports_dir),
                _tables(run)]
        fileio.write_text(partial / "index.html", _page(f"run {run.path.name}", "\n".join(body)))
    log(f"report: {final / 'index.html'}")
    return final / "index.html"


def _build_classes(run: Run, final: Path, reports_dir: Path, log=print) -> Path:
    """The page of a run of more than two classes: its metric, the confusions by class, cleaning, tables."""
    y = run.held_out["label"].to_numpy()
    task = read_task(run.config.data_dir)
    with fileio.atomic_dir(final) as partial:
        body = [classes.summary(run.metrics, y, run.probs, run.held_out_kind, run.config.method),
                _curves(run, partial),
                classes.confusion_section(y, run.probs, task.classes, _table),
                _cleaning(reports_dir),
                _tables(run)]
        fileio.write_text(partial / "index.html", _page(f"run {run.path.name}", "\n".join(body)))
    log(f"report: {final / 'index.html'}")
    return final / "index.html"


def _summary(run: Run) -> str:
    m, y, p = run.metrics, run.held_out["label"].to_numpy(), run.held_out["prob"].to_numpy()
    low, high = run.applied_clip
    loss = score.log_loss(y, score.clip(p, low, high))
    entry = metric_registry.get(m.get("metric", "log_loss"))
    if entry.clips:
        scored = f"log loss <b>{loss:.4f}</b> at the submission's clip [{low:g}, {high:g}]"
    else:   # another binary competition (ROC AUC, F1, ...): its metric first, the unclipped log loss beside it
        scored = (f"{_e(entry.name)} <b>{m['oof_score']:.4f}</b> ({_e(entry.description)}, {entry.direction}; "
                  f"not clipped), log loss {loss:.4f}")
    text = (f"method <b>{_e(run.config.method)}</b>; {run.held_out_kind} {scored}, "
            f"accuracy {score.accuracy(y, p):.4f}, on {len(y)} images. "
            f"Finished {_e(m.get('finished', '?'))}, commit <code>{_e(str(m.get('git_commit', '?'))[:12])}</code>.")
    return f"<p>{text}</p>"


def _curves(run: Run, out: Path) -> str:
    head = "<h2>Training curves</h2>"
    if run.config.method == "features":
        return (head + "<p class=note>No curves: a features run has no training epochs. Its heads are fitted "
                "on cached pooled features in seconds (logistic regression, a small dense head); their "
                "out-of-fold scores are in the tables below.</p>")
    histories = training_histories(run.path)
    if not histories:
        return head + "<p class=note>No CSV training logs found in the run folder.</p>"
    phases = "; a dotted line, where fine-tuning starts after the warm-up" if run.config.method == "finetune" else ""
    parts = [head, "<p>Training (solid) against validation (dashed), per model and fold. The green line marks the "
                   f"epoch with the lowest validation loss (the weights the run kept){phases}.</p>"]
    for model, folds in histories:
        panels = [(f"{model} {fold}" if model != "model" else run.path.name, *plots.read_history(paths))
                  for fold, paths in folds]
        name = f"curves-{_slug(model)}.png"
        plots.curves(panels, out / name)
        parts.append(_figure(name, f"{model}: loss and accuracy per epoch"))
    return "\n".join(parts)


def _calibration(run: Run, out: Path) -> str:
    y = run.held_out["label"].to_numpy()
    raw = run.held_out["prob"].to_numpy()
    name = "blend" if len(run.models) > 1 else "model"
    probs = {name: raw, **({m: run.held_out[m].to_numpy() for m in run.models} if len(run.models) > 1 else {})}
    fixed, chosen = run.fixed_clip, run.chosen_clip
    plots.calibration(y, probs, {"fixed": fixed, "chosen": chosen}, out / "calibration.png")
    rows = [("raw (Kaggle clips at 1e-15)", score.log_loss(y, raw)),
            (f"fixed clip [{fixed[0]:g}, {fixed[1]:g}]", score.log_loss(y, score.clip(raw, *fixed))),
            (f"chosen clip [{chosen[0]:g}, {chosen[1]:g}]", score.log_loss(y, score.clip(raw, *chosen)))]
    table = _table(["log loss on " + run.held_out_kind + " predictions", "value"],
                   [(label, f"{value:.4f}") for label, value in rows])
    return ("<h2>Calibration</h2><p>Are the probabilities honest? Points on the diagonal are; the log loss "
            "punishes confident mistakes without bound, which is what clipping trades against.</p>"
            + _figure("calibration.png", f"{run.held_out_kind} predictions of {len(y)} training images")
            + table)


def _pictures_and_maps(run: Run, out: Path, layer: str | None, log) -> list[str]:
    mistakes = _costly_mistakes(run)
    uncertain, unreadable = _least_certain(run)
    parts = [_mistakes_section(run, mistakes, out), _uncertain_section(run, uncertain, unreadable, out)]
    picks = [(row["path"], f"{Path(row['path']).name} · {_label(row['label'])}", row["prob"])
             for _, row in mistakes.head(CAMS).iterrows()]
    picks += [(row["path"], f"{Path(row['path']).name} · test", row["prob"]) for _, row in uncertain.head(CAMS).iterrows()]
    try:
        from kit.report import explain

        subject = explain.subject_for(run.path, run.config, log)
    except KitError as exc:
        parts.append(f"<h2>What the network looks at</h2><p class=note>Left out: {_e(str(exc))}</p>")
        return parts
    parts.append(_gradcam_section(subject, picks, out))
    parts.append(_inside_section(subject, picks[:1], layer, out))
    return parts


def _costly_mistakes(run: Run) -> pd.DataFrame:
    """Wrong-side held-out predictions, costliest first, with their loss at the submission's clip."""
    frame = run.held_out.dropna(subset=["path"]).copy()
    low, high = run.applied_clip
    p = score.clip(frame["prob"], low, high)
    y = frame["label"].to_numpy()
    frame["loss"] = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    frame["share"] = frame["loss"] / max(frame["loss"].sum(), 1e-12)
    wrong = (frame["prob"] >= 0.5) != (frame["label"] >= 0.5)
    return frame[wrong].sort_values("loss", ascending=False).head(GRID)


def _least_certain(run: Run) -> tuple[pd.DataFrame, int]:
    """Readable test pictures nearest 0.5; unreadable ones (predicted 0.5 by rule) are counted apart."""
    order = run.test.dropna(subset=["path"]).assign(doubt=lambda f: (f["prob"] - 0.5).abs()).sort_values("doubt")
    kept, unreadable = [], 0
    for _, row in order.iterrows():
        if len(kept) == GRID:
            break
        if isinstance(images.load_image(row["path"], target=64, min_side=run.config.min_side), images.Skip):
            unreadable += 1
        else:
            kept.append(row)
    return pd.DataFrame(kept, columns=order.columns), unreadable


def _mistakes_section(run: Run, mistakes: pd.DataFrame, out: Path) -> str:
    head = "<h2>Costliest mistakes</h2>"
    n_wrong = int(((run.held_out["prob"] >= 0.5) != (run.held_out["label"] >= 0.5)).sum())
    if mistakes.empty:
        return head + f"<p class=note>No {run.held_out_kind} prediction is on the wrong side of 0.5.</p>"
    low, high = run.applied_clip
    tiles = [(_thumbnail(row["path"]), f"{Path(row['path']).name} (label {_label(row['label'])})\np(dog) {row['prob']:.3f}\n"
              f"loss {row['loss']:.2f} = {row['share']:.1%} of the total") for _, row in mistakes.iterrows()]
    plots.image_grid(tiles, out / "mistakes.png")
    return (head + f"<p>{n_wrong} of {len(run.held_out)} {run.held_out_kind} predictions are on the wrong side of "
            f"0.5; the {len(tiles)} costliest, with each one's log loss at the submission's clip [{low:g}, {high:g}] "
            f"and its share of the summed loss.</p>" + _figure("mistakes.png", "costliest held-out mistakes"))


def _uncertain_section(run: Run, uncertain: pd.DataFrame, unreadable: int, out: Path) -> str:
    head = "<h2>Least certain test predictions</h2>"
    if uncertain.empty:
        return head + "<p class=note>No readable test picture to show.</p>"
    tiles = [(_thumbnail(row["path"]), f"{Path(row['path']).name}\np(dog) {row['prob']:.3f}\n"
              f"loss {-np.log(row['prob']):.2f} if dog, {-np.log(1 - row['prob']):.2f} if cat")
             for _, row in uncertain.iterrows()]
    plots.image_grid(tiles, out / "uncertain.png")
    skipped = (f" {unreadable} unreadable test files (predicted 0.5 by rule, listed in the run's skipped files) "
               f"are left out." if unreadable else "")
    return (head + f"<p>The {len(tiles)} test pictures predicted nearest 0.5, from {_e(run.test_source)}, with what "
            f"each would cost either way.{skipped}</p>" + _figure("uncertain.png", "least certain test predictions"))


def _gradcam_section(subject, picks, out: Path) -> str:
    loaded = [(subject.load(path), caption, prob) for path, caption, prob in picks if isinstance(path, str)]
    loaded = [item for item in loaded if item[0] is not None]
    head = "<h2>What the network looks at (Grad-CAM)</h2>"
    if not loaded:
        return head + "<p class=note>No readable picture to explain.</p>"
    answers = np.array([1.0 if prob >= 0.5 else -1.0 for _, _, prob in loaded])
    cam = subject.cam(np.stack([picture for picture, _, _ in loaded]), sides=answers)
    items = [(picture, heat, f"{caption}\nrun p(dog) {prob:.3f}: map of {_label(prob)} evidence\n"
                             f"explained score {s:+.2f}")
             for (picture, caption, prob), heat, s in zip(loaded, cam.heat, cam.score)]
    plots.heatmaps(items, out / "gradcam.png")
    return (head + f"<p>Network: {_e(subject.description)}. Layer: <code>{_e(cam.layer)}</code>, the last spatial "
            f"feature map. Computed against <b>{_e(cam.target)}</b>. Each map shows the evidence for the class the run "
            f"answered (p(dog) at least 0.5: dog), on the {subject.size}px square picture the network sees; the "
            f"explained score is that network's own (positive = dog), which may disagree with the run. The first "
            f"{min(CAMS, len(items))} are the costliest mistakes, then the least certain test pictures.</p>"
            + _figure("gradcam.png", "Grad-CAM heat maps"))


def _inside_section(subject, picks, layer: str | None, out: Path) -> str:
    from kit.report import gradcam

    head = "<h2>Inside the network</h2>"
    parts = [head]
    picture = next((p for p in (subject.load(path) for path, _, _ in picks if isinstance(path, str)) if p is not None), None)
    if picture is not None:
        chosen = gradcam.layer_named(subject.model, layer) if layer else gradcam.default_activation_layer(subject.model)
        maps = gradcam.activations(subject.model, subject.prepare(picture[None]), chosen)[0]
        plots.channel_grid(maps, out / "activations.png",
                           f"{chosen.name}: {maps.shape[2]} channels at {maps.shape[0]}x{maps.shape[1]}, most active first")
        parts.append(_figure("activations.png", f"activations of {chosen.name} for {picks[0][1]}")
                     + f"<p>Layer <code>{_e(chosen.name)}</code> (choose another with <code>--layer NAME</code>) "
                       f"for the first picture above, the most active channels first, each on its own colour scale.</p>")
    name, kernel = gradcam.first_conv_kernel(subject.model)
    if subject.bgr:
        kernel = kernel[:, :, ::-1]   # shown as RGB: this network's first layer reads BGR
    plots.filter_grid(kernel, out / "filters.png", f"{name}: {kernel.shape[3]} filters of {kernel.shape[0]}x{kernel.shape[1]}")
    parts.append(_figure("filters.png", f"first convolution layer {name}")
                 + f"<p>The first convolution's filters, each stretched to its own range"
                   f"{' (colour where the layer reads RGB)' if kernel.shape[2] == 3 else ''}.</p>")
    return "\n".join(parts)


def _cleaning(reports_dir: Path) -> str:
    sheet, table = reports_dir / CLEAN / "contact_sheet.png", reports_dir / CLEAN / "report.csv"
    head = "<h2>Cleaning</h2>"
    if not sheet.is_file() and not table.is_file():
        return head + "<p class=note>No cleaning report yet (<code>python -m kit clean</code> writes one in reports/clean/).</p>"
    parts = [head]
    if table.is_file():
        try:
            rows = f" ({len(pd.read_csv(table))} rows)"
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            rows = ""
        parts.append(f'<p>The cleaning report: <a href="../{CLEAN}/report.csv">report.csv</a>{rows}.</p>')
    if sheet.is_file():
        parts.append(_figure(f"../{CLEAN}/contact_sheet.png", "cleaning contact sheet"))
    return "\n".join(parts)


def _tables(run: Run) -> str:
    m = run.metrics
    parts = ["<h2>The run</h2>"]
    if m.get("models"):
        rows = [(name, f"{v['log_loss']:.4f}", f"{v['accuracy']:.4f}", f"{m['blend_weights'][name]:.3f}",
                 v["seconds"], _e(str(v["params"]))) for name, v in m["models"].items()]
        parts.append(_table(["model", f"{run.held_out_kind} log loss", f"{run.held_out_kind} accuracy", "blend weight",
                             "seconds", "parameters"], rows))
    if m.get("stages"):
        parts.append("<h3>Timings</h3>" + _table(["stage", "seconds", "peak memory (MB)"],
                                                  [(s["stage"], s["seconds"], s["peak_rss_mb"]) for s in m["stages"]]))
    scores = {k: v for k, v in m.items() if k not in ("models", "stages", "blend_weights")}
    parts.append("<h3>Scores and counts</h3>" + _table(["metrics.json", "value"],
                                                       [(k, _value(v)) for k, v in sorted(scores.items())]))
    if run.sidecar:
        keep = ("file", "clip", "clip_mode", "local_score_kind", "local_log_loss", "local_log_loss_raw", "created")
        parts.append("<h3>Submission</h3>" + _table(["sidecar", "value"],
                                                    [(k, _value(run.sidecar[k])) for k in keep if k in run.sidecar]))
    parts.append("<h3>Config</h3>" + _table(["key", "value"], [(k, _value(v)) for k, v in run.config.to_dict().items()]))
    return "\n".join(parts)


# --------------------------------------------------------------------------- small helpers


def _thumbnail(path: str) -> np.ndarray | None:
    import cv2

    picture = images.load_image(path, target=THUMB)
    if isinstance(picture, images.Skip):
        return None
    scale = THUMB / max(picture.shape[:2])
    if scale < 1:
        picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return picture


def _label(value) -> str:
    return "dog" if float(value) >= 0.5 else "cat"


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.5g}"
    if isinstance(v, list):
        return ", ".join(_value(x) for x in v)
    return _e(str(v))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _e(text: str) -> str:
    return html.escape(str(text))


def _figure(src: str, caption: str) -> str:
    return (f'<figure><a href="{_e(src)}"><img src="{_e(src)}" alt="{_e(caption)}"></a>'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _table(header: list[str], rows) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #666; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } .note { color: #8a5a00; background: #fff8e6; padding: .5em .8em; }
code { background: #f3f3f3; padding: 0 .2em; }
"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body><h1>{_e(title)}</h1>\n{body}\n</body></html>\n")

"""Figures for run reports, drawn with matplotlib's Agg canvas and written atomically as PNGs.

Figures are built as `matplotlib.figure.Figure` objects on an Agg canvas, never through
pyplot: nothing opens a window or needs a display, and no global pyplot state (a figure
left open, a backend chosen by an earlier import) can leak between plots or threads.
matplotlib is imported inside the functions, so `import kit.plots` stays light enough for
train.py to import at the top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from kit import fileio

DPI = 100
CAT, DOG = "#3b75af", "#d9772b"


def figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: str | Path) -> Path:
    """PNG, atomically: a page or a watcher reloading mid-write never sees half an image."""
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


# --------------------------------------------------------------------------- training curves


def read_history(paths: Sequence[str | Path]) -> tuple[pd.DataFrame, list[int]]:
    """Concatenate CSV logs of consecutive phases (warm-up, fine-tune) into one epoch axis.

    Returns the frame (a running `step` column from 1) and the steps where a new phase starts,
    so a plot can mark where the learning rate and trainable layers changed. Missing or empty
    files are skipped: a phase may not have started yet.
    """
    frames, starts, offset = [], [], 0
    for path in paths:
        try:
            frame = pd.read_csv(path)
        except (FileNotFoundError, pd.errors.EmptyDataError):
            continue
        if frame.empty:
            continue
        if frames:
            starts.append(offset + 1)
        frames.append(frame.assign(step=np.arange(offset + 1, offset + len(frame) + 1)))
        offset += len(frame)
    if not frames:
        return pd.DataFrame(columns=["step"]), []
    return pd.concat(frames, ignore_index=True), starts


def curves(panels: Sequence[tuple[str, pd.DataFrame, list[int]]], path: str | Path) -> Path:
    """Loss (top) and accuracy (bottom), training against validation, one column per panel."""
    from matplotlib.ticker import MaxNLocator

    fig = figure(max(4.0, 3.2 * len(panels)), 5.2)
    axes = fig.subplots(2, len(panels), squeeze=False, sharex="col")
    for col, (title, frame, starts) in enumerate(panels):
        for row, metric in enumerate(("loss", "accuracy")):
            ax = axes[row][col]
            _plot_metric(ax, frame, metric)
            for start in starts:
                ax.axvline(start - 0.5, color="grey", linestyle=":", linewidth=1)
            if row == 0:
                ax.set_title(title, fontsize=9)
            if col == 0:
                ax.set_ylabel(metric)
            if row == 1:
                ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=8)
    return save(fig, path)


def _plot_metric(ax, frame: pd.DataFrame, metric: str) -> None:
    drawn = False
    for column, style, label in ((metric, "-", "training"), (f"val_{metric}", "--", "validation")):
        if column in frame and frame[column].notna().any():
            ax.plot(frame["step"], frame[column], style, marker="o", markersize=3, label=label)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, f"no {metric} logged", ha="center", va="center", transform=ax.transAxes, fontsize=8)
    if "val_loss" in frame and frame["val_loss"].notna().any():
        ax.axvline(frame.loc[frame["val_loss"].idxmin(), "step"], color="green", alpha=0.4, linewidth=1,
                   label="lowest validation loss")
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)


def redraw_curves_callback(csv_paths: Sequence[str | Path], png_path: str | Path, title: str = ""):
    """A Keras callback that redraws `png_path` from the CSV logs after every epoch.

    Keras calls callbacks in list order, so put it after the CSVLogger (which writes and
    flushes its row in its own on_epoch_end). A failed redraw never stops training: a plot is
    not worth a lost run, and the next epoch tries again.
    """
    from kit.tfquiet import import_keras

    keras = import_keras()
    paths = [Path(p) for p in ([csv_paths] if isinstance(csv_paths, (str, Path)) else csv_paths)]

    class _WatchCurves(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            try:
                frame, starts = read_history(paths)
                if len(frame):
                    curves([(title or paths[0].parent.name, frame, starts)], png_path)
            except (OSError, ValueError) as exc:
                print(f"curves: could not redraw {png_path}: {exc}")

    return _WatchCurves()


# --------------------------------------------------------------------------- calibration


def calibration(labels: np.ndarray, probs: dict[str, np.ndarray], clips: dict[str, tuple[float, float]],
                path: str | Path, bins: int = 10) -> Path:
    """Reliability diagram (left) and the predicted-probability histogram per class (right).

    `probs` maps a name to predictions; the first is drawn boldest (the blend, or the only
    model). `clips` maps a label to clip bounds (low, high), each drawn as a line.
    """
    from matplotlib.ticker import NullFormatter, StrMethodFormatter

    fig = figure(10, 4.2)
    left, right = fig.subplots(1, 2)
    labels = np.asarray(labels, float)
    edges = np.linspace(0, 1, bins + 1)
    left.plot([0, 1], [0, 1], color="grey", linewidth=1, label="perfectly calibrated")
    for i, (name, p) in enumerate(probs.items()):
        centre, observed, count = _reliability(labels, np.asarray(p, float), edges)
        left.plot(centre, observed, marker="o", markersize=4 if i else 6, linewidth=2.2 if i == 0 else 1,
                  alpha=1 if i == 0 else 0.6, label=name)
        if i == 0:
            for x, y, n in zip(centre, observed, count):
                left.annotate(str(n), (x, y), textcoords="offset points", xytext=(0, 6), fontsize=7, ha="center")
    left.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted p(dog) in bin", ylabel="fraction of dogs in bin",
             title="reliability (numbers: images per bin)")
    left.legend(fontsize=8, loc="upper left")
    left.grid(alpha=0.3)

    first = np.asarray(next(iter(probs.values())), float)
    hist_edges = np.linspace(0, 1, 41)
    for value, colour, name in ((0, CAT, "cats"), (1, DOG, "dogs")):
        right.hist(first[labels == value], bins=hist_edges, histtype="step", linewidth=1.6, color=colour,
                   label=f"{name} ({int((labels == value).sum())})")
    for (name, (low, high)), style in zip(clips.items(), (":", "--", "-.")):
        right.axvline(low, color="black", linestyle=style, linewidth=1, label=f"{name} clip [{low:g}, {high:g}]")
        right.axvline(high, color="black", linestyle=style, linewidth=1)
    right.set_yscale("log")
    right.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    right.yaxis.set_minor_formatter(NullFormatter())
    right.set(xlim=(0, 1), xlabel=f"predicted p(dog) ({next(iter(probs))})", ylabel="images (log scale)",
              title="predicted probabilities per class")
    right.legend(fontsize=8, loc="upper center")
    return save(fig, path)


def _reliability(labels, probs, edges):
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, len(edges) - 2)
    centre, observed, count = [], [], []
    for b in range(len(edges) - 1):
        inside = which == b
        if inside.any():
            centre.append(probs[inside].mean())
            observed.append(labels[inside].mean())
            count.append(int(inside.sum()))
    return np.array(centre), np.array(observed), count


# --------------------------------------------------------------------------- image grids


def image_grid(tiles: Sequence[tuple[np.ndarray | None, str]], path: str | Path, cols: int = 4,
               tile: float = 2.4) -> Path:
    """Pictures with a caption under each; a None picture is a grey tile (the caption says why)."""
    cols = max(1, min(cols, len(tiles)))
    rows = max(1, -(-len(tiles) // cols))
    fig = figure(cols * tile, rows * (tile + 0.55))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (picture, caption) in zip(axes, tiles):
        ax.imshow(picture if picture is not None else np.full((8, 8, 3), 200, np.uint8))
        ax.set_xlabel(caption, fontsize=7.5)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(tiles):]:
        ax.set_axis_off()
    return save(fig, path)


def heatmaps(items: Sequence[tuple[np.ndarray, np.ndarray, str]], path: str | Path, pairs_per_row: int = 3,
             tile: float = 2.1) -> Path:
    """Each picture as the model sees it, then its heat map laid over it; a few pairs per row."""
    per_row = max(1, min(pairs_per_row, len(items)))
    rows = max(1, -(-len(items) // per_row))
    fig = figure(2 * per_row * tile + 0.8, rows * (tile + 0.75))
    axes = fig.subplots(rows, 2 * per_row, squeeze=False)
    shown = None
    for i, (picture, heat, caption) in enumerate(items):
        plain, overlay = axes[i // per_row][2 * (i % per_row)], axes[i // per_row][2 * (i % per_row) + 1]
        plain.imshow(picture)
        plain.set_xlabel(caption, fontsize=7)
        overlay.imshow(picture)
        shown = overlay.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        overlay.set_xlabel("Grad-CAM", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[2 * len(items):]:
        ax.set_axis_off()
    if shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.5, label="relative importance")
    return save(fig, path)


def channel_grid(activation: np.ndarray, path: str | Path, title: str, max_channels: int = 32) -> Path:
    """The most active channels of one image's activation map (H, W, C), each on its own scale."""
    activation = np.asarray(activation, float)
    order = np.argsort(-activation.mean(axis=(0, 1)))[:max_channels]
    cols = min(8, len(order))
    rows = -(-len(order) // cols)
    fig = figure(cols * 1.3, rows * 1.45 + 0.4)
    fig.suptitle(title, fontsize=9)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, channel in zip(axes, order):
        ax.imshow(activation[:, :, channel], cmap="viridis")
        ax.set_title(f"#{channel}", fontsize=7)
    for ax in axes:
        ax.set_axis_off()
    return save(fig, path)


def filter_grid(kernel: np.ndarray, path: str | Path, title: str) -> Path:
    """First-layer filters (kh, kw, in, out): as colour patches when they see RGB, else averaged.

    Each filter is stretched to its own [0, 1] range: the pattern is the information, not
    the scale, which differs by orders of magnitude between filters.
    """
    kernel = np.asarray(kernel, float)
    if kernel.shape[2] != 3:
        kernel = kernel.mean(axis=2, keepdims=True)
    n = kernel.shape[3]
    cols = min(16, n)
    rows = -(-n // cols)
    fig = figure(cols * 0.7, rows * 0.75 + 0.4)
    fig.suptitle(title, fontsize=9)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, index in zip(axes, range(n)):
        patch = kernel[:, :, :, index]
        span = patch.max() - patch.min()
        patch = (patch - patch.min()) / span if span > 0 else np.zeros_like(patch)
        ax.imshow(patch if patch.shape[2] == 3 else patch[:, :, 0], cmap=None if patch.shape[2] == 3 else "gray",
                  interpolation="nearest")
    for ax in axes:
        ax.set_axis_off()
    return save(fig, path)

"""PNG plots of the evaluation results: the accuracy matrix of a continual run and a fusion's
attention over its members (matplotlib, imported only when a plot is drawn)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from registry.errors import InvalidInput

if TYPE_CHECKING:
    from .evaluate import AccuracyMatrix


def _heatmap_png(
    data: npt.NDArray[np.float64],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: Path,
    title: str,
    *,
    xlabel: str,
    ylabel: str,
    vmin: float,
    vmax: float,
    annotate: bool,
    colorbar_label: str,
    split_after: int | None = None,
) -> Path:
    """Draw ``data`` as an annotated heatmap into a PNG at ``path`` (Agg canvas, no pyplot)."""
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows, n_cols = data.shape
    # At least 800 × 500 px; the constrained layout keeps the title, tick labels and the
    # colorbar's label inside the canvas (a long title wraps rather than running off it).
    width = min(16.0, 3.0 + 0.9 * n_cols)
    height = min(16.0, 2.0 + 0.45 * n_rows)
    fig = Figure(figsize=(max(8.0, width), max(5.0, height)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    masked = np.ma.masked_invalid(data)
    cmap = "viridis"
    im = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels(list(col_labels), rotation=30, ha="right")
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(list(row_labels))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("\n".join(textwrap.wrap(title, width=int(7 * max(8.0, width)))))
    if annotate:
        mid = (vmin + vmax) / 2.0
        for i in range(n_rows):
            for j in range(n_cols):
                v = float(data[i, j])
                text = f"{v:.2f}" if math.isfinite(v) else "–"
                color = "black" if math.isfinite(v) and v > mid else "white"
                if not math.isfinite(v):
                    color = "gray"
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    if split_after is not None and split_after < n_rows:  # rows below the line are apart
        ax.axhline(split_after - 0.5, color="red", linewidth=2)
    fig.colorbar(im, ax=ax, label=colorbar_label)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    except OSError as exc:
        raise InvalidInput(
            f"Cannot write {path}: {exc.strerror or exc}.",
            hint="Pick a folder you can write to, e.g. --out ./report",
        ) from exc
    return path


def plot_matrix_png(
    matrix: AccuracyMatrix,
    path: Path,
    title: str,
    refused: Sequence[tuple[str, Sequence[float | None]]] = (),
) -> Path:
    """Write the accuracy matrix as an annotated heatmap PNG and return its path.

    ``refused``: (label, accuracy per column) of candidates the gate refused, drawn under a red
    line after the production rows.
    """
    extra = np.array(
        [[math.nan if v is None else v for v in values] for _, values in refused],
        dtype=np.float64,
    ).reshape(len(refused), matrix.values.shape[1])
    return _heatmap_png(
        np.vstack([matrix.values, extra]),
        [f"after {s}" for s in matrix.step_names] + [f"refused {label}" for label, _ in refused],
        matrix.task_names,
        Path(path),
        title,
        xlabel="evaluated on task",
        ylabel="training step",
        vmin=0.0,
        vmax=1.0,
        annotate=True,
        colorbar_label="accuracy",
        split_after=matrix.n_steps if refused else None,
    )


def plot_attention_png(
    weights: npt.ArrayLike, member_names: Sequence[str], path: Path, title: str
) -> Path:
    """Write fusion attention (layers × members) as a heatmap PNG and return its path.

    Args:
        weights: mean attention per layer (rows) and member adapter (columns).
        member_names: one name per column.
        path: output file.
        title: figure title.
    """
    arr = np.asarray(weights, dtype=np.float64)
    if arr.ndim != 2:
        raise InvalidInput(
            f"attention weights must be layers × members, got shape {arr.shape}",
            hint="Pass the fusion attention as layers x members with one name per member.",
        )
    if arr.shape[1] != len(member_names):
        raise InvalidInput(
            f"{arr.shape[1]} weight columns but {len(member_names)} member names",
            hint="Pass the fusion attention as layers x members with one name per member.",
        )
    finite = arr[np.isfinite(arr)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    vmin, vmax = (0.0, 1.0) if lo >= 0.0 and hi <= 1.0 else (lo, hi if hi > lo else lo + 1.0)
    return _heatmap_png(
        arr,
        [f"layer {i}" for i in range(arr.shape[0])],
        list(member_names),
        Path(path),
        title,
        xlabel="member adapter",
        ylabel="layer",
        vmin=vmin,
        vmax=vmax,
        annotate=arr.size <= 400,
        colorbar_label="attention",
    )

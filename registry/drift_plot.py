"""``drift show``'s picture: each test's statistic against the distribution it has under no drift.

- ``embedding_mmd``: the recorded quantiles of the permutation null (reports from before they
  were recorded say so in the panel);
- ``label_shift``: the chi-square distribution with the test's degrees of freedom;
- ``length``: the two-sample Kolmogorov-Smirnov distribution at the effective sample size;
- ``vocabulary_coverage``: a threshold rule, drawn as the coverage against its threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

WIDTH_PER_PANEL = 4.2
HEIGHT = 3.6


def _mmd_panel(ax: Any, test: Mapping[str, Any]) -> None:
    qs = test.get("details", {}).get("null_quantiles") or []
    if qs:
        ax.hist(qs, bins=30, density=True, color="#9ab", label="permutation null")
    else:
        ax.text(0.5, 0.6, "null not recorded\n(report predates it)", ha="center",
                transform=ax.transAxes)  # fmt: skip
    ax.set_xlabel("MMD²")


def _chi2_panel(ax: Any, test: Mapping[str, Any]) -> None:
    from scipy import stats

    dof = int(test.get("details", {}).get("dof", 1)) or 1
    stat = test["statistic"] or 0.0
    hi = max(stats.chi2.ppf(0.999, dof), stat * 1.1)
    xs = np.linspace(1e-6, hi, 300)
    ax.plot(xs, stats.chi2.pdf(xs, dof), color="#468", label=f"chi² ({dof} dof)")
    ax.set_xlabel("chi-square statistic")


def _ks_panel(ax: Any, test: Mapping[str, Any]) -> None:
    from scipy import stats

    d = test.get("details", {})
    n, m = int(d.get("n_ref", 0)), int(d.get("n_new", 0))
    if n and m:
        eff = max(1, round(n * m / (n + m)))
        xs = np.linspace(1e-4, 1.0, 300)
        ax.plot(xs, stats.kstwo.pdf(xs, eff), color="#468", label=f"KS null (n≈{eff})")
    ax.set_xlabel("KS statistic (token lengths)")


def _coverage_panel(ax: Any, test: Mapping[str, Any]) -> None:
    d = test.get("details", {})
    ax.axvspan(0.0, d.get("threshold", 0.0), color="#f3d6d6", label="drift zone")
    ax.axvline(d.get("expected_coverage", 0.0), color="#468", linestyle=":", label="expected")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("vocabulary coverage (threshold rule)")


_PANELS = {
    "embedding_mmd": _mmd_panel,
    "label_shift": _chi2_panel,
    "length": _ks_panel,
    "vocabulary_coverage": _coverage_panel,
}


def plot_drift_png(tests: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    """Write one panel per test (statistic as a red line against its null) and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [t for t in tests if t.get("name") in _PANELS]
    fig = Figure(figsize=(max(1, len(shown)) * WIDTH_PER_PANEL, HEIGHT), dpi=100)
    FigureCanvasAgg(fig)
    for i, test in enumerate(shown, start=1):
        ax = fig.add_subplot(1, len(shown), i)
        _PANELS[test["name"]](ax, test)
        if test.get("statistic") is not None:
            ax.axvline(test["statistic"], color="#c22", linewidth=2, label="observed")
        p = test.get("p_value")
        verdict = "drift" if test.get("drift") else "no drift"
        ax.set_title(
            f"{test['name']}\n{verdict}" + ("" if p is None else f", p = {p:.3g}"), fontsize=10
        )
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path))
    return path

"""Step 6: the promotion gate: beat the current model on the new data, lose little elsewhere.

The gate compares one metric, chosen per run and reported with its reason (``update
--gate-metric``): ``accuracy``, ``macro_f1``, or ``auto`` (the default), which takes macro-F1
when the new data's validation classes are imbalanced and accuracy otherwise. Imbalanced means
that the largest class holds more than :data:`IMBALANCE_RATIO` times the rows of the smallest,
or that a class of the task is missing: there a model that always answers the majority class
has a high accuracy and a low macro-F1 (80% vs 44% on an 80%-positive split).

How much an earlier split may drop is ``--tolerance`` or, when larger, ``--gate-noise``
standard errors of the current model's score on that split: ``sqrt(p (1 - p) / n)`` for a
score ``p`` on ``n`` validation rows. On 100 rows at 80% that is 0.04, so a 2-point dip, which
such a split shows between two equally good models, is not taken for forgetting; on 5,000 rows
it is 0.006 and the tolerance rules. The default (1 standard error) was chosen on dev splits of
the domain stream (benchmarks/PROTOCOL.md).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from ..errors import InvalidInput
from .common import pct
from .evaluate import Score

GATE_METRICS = ("accuracy", "macro_f1")
#: ``auto`` picks macro-F1 when largest class / smallest class exceeds this on the new data.
IMBALANCE_RATIO = 1.5


def check_gate_metric(name: str) -> str:
    """Return ``name`` if it is ``auto`` or a gate metric, else raise InvalidInput."""
    if name not in ("auto", *GATE_METRICS):
        raise InvalidInput(
            f"The gate metric must be auto, accuracy or macro_f1, not {name!r}.",
            hint="e.g. --gate-metric macro_f1",
        )
    return name


def choose_gate_metric(
    requested: str, labels: Iterable[str | None], label_names: Sequence[str]
) -> tuple[str, str]:
    """Return (metric, why) for a run: the requested one, or with ``auto`` by class balance.

    ``labels``: the labels of the new data's validation rows; ``label_names``: the task's.
    """
    check_gate_metric(requested)
    if requested != "auto":
        return requested, "asked for (--gate-metric)"
    counts = Counter(label for label in labels if label is not None)
    shares = [counts.get(name, 0) for name in label_names]
    if not shares or sum(shares) == 0:
        return "accuracy", "auto: no labelled validation rows to judge the class balance"
    low, high = min(shares), max(shares)
    spread = ", ".join(f"{n} {c}" for n, c in zip(label_names, shares, strict=True))
    if low == 0 or high / low > IMBALANCE_RATIO:
        return "macro_f1", (
            f"auto: the new validation classes are imbalanced ({spread}; largest/smallest "
            f"above {IMBALANCE_RATIO})"
        )
    return "accuracy", (
        f"auto: the new validation classes are balanced ({spread}; largest/smallest at most "
        f"{IMBALANCE_RATIO})"
    )


def allowed_drop(score: Score, tolerance: float, noise: float) -> float:
    """Return the largest drop the gate lets ``score``'s split take: ``tolerance``, or ``noise``
    standard errors of the incumbent's value on the split's rows when that is larger."""
    if noise <= 0 or not score.rows or score.incumbent is None:
        return tolerance
    p = min(max(float(score.incumbent), 0.0), 1.0)
    return max(tolerance, noise * math.sqrt(p * (1.0 - p) / score.rows))


def gate(
    scores: list[Score], tolerance: float, metric: str = "accuracy", noise: float = 0.0
) -> tuple[bool, str]:
    """Return (promote?, why): beat the incumbent on the new data, lose little elsewhere.

    ``scores`` hold values of ``metric``; ``tolerance`` is in the same unit (an absolute drop).
    ``noise``: an earlier split may also drop by that many standard errors of its incumbent
    score (:func:`allowed_drop`); 0 means ``tolerance`` alone.
    """
    new = [s for s in scores if s.new]
    if not new or new[0].candidate is None:
        return False, "the new data's validation split could not be evaluated"
    s = new[0]
    if s.incumbent is not None and not s.candidate > s.incumbent:  # type: ignore[operator]
        return False, (
            f"does not beat the current model on the new data "
            f"({metric} {pct(s.candidate)} vs {pct(s.incumbent)})"
        )
    for o in scores:
        if o.new or o.candidate is None or o.incumbent is None:
            continue
        limit = allowed_drop(o, tolerance, noise)
        if o.candidate < o.incumbent - limit:
            if limit > tolerance:
                what = (
                    f"more than the allowed {limit:.3f}: {noise:g} standard error of its "
                    f"{o.rows} validation rows"
                )
            else:
                what = f"more than the tolerance {tolerance:.3f}"
            return False, (
                f"{o.column} would regress from {pct(o.incumbent)} to {pct(o.candidate)} "
                f"{metric} ({what})"
            )
    beyond = (
        f"{tolerance:.3f} or {noise:g} standard error of its validation rows"
        if noise > 0
        else f"{tolerance:.3f}"
    )
    return True, f"beats the current model on the new data ({metric} {pct(s.candidate)} vs " + (
        f"{pct(s.incumbent)}) and no earlier split regresses beyond {beyond}"
    )

"""Step 6: the promotion gate: beat the current model on the new data, lose little elsewhere."""

from __future__ import annotations

from .common import pct
from .evaluate import Score


def gate(scores: list[Score], tolerance: float) -> tuple[bool, str]:
    """Return (promote?, why): beat the incumbent on the new data, lose ≤ tolerance elsewhere."""
    new = [s for s in scores if s.new]
    if not new or new[0].candidate is None:
        return False, "the new data's validation split could not be evaluated"
    s = new[0]
    if s.incumbent is not None and not s.candidate > s.incumbent:  # type: ignore[operator]
        return False, (
            f"does not beat the current model on the new data "
            f"({pct(s.candidate)} vs {pct(s.incumbent)})"
        )
    for o in scores:
        if o.new or o.candidate is None or o.incumbent is None:
            continue
        if o.candidate < o.incumbent - tolerance:
            return False, (
                f"{o.column} would regress from {pct(o.incumbent)} to {pct(o.candidate)} "
                f"(more than the tolerance {tolerance:.3f})"
            )
    return True, f"beats the current model on the new data ({pct(s.candidate)} vs " + (
        f"{pct(s.incumbent)}) and no earlier split regresses beyond {tolerance:.3f}"
    )

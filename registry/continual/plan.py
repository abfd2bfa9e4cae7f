"""Step 2: the plan: what this update will train, fuse, evaluate and promote (``--dry-run``)."""

from __future__ import annotations

from .. import entities as E
from ..errors import InvalidInput
from ..store import Registry
from .common import MEMBER_POLICIES

#: The new adapter version's id while it does not exist yet.
NEW = -1


def check_policy(policy: str) -> None:
    """Refuse an unknown member policy."""
    if policy not in MEMBER_POLICIES:
        raise InvalidInput(
            f"Unknown member policy {policy!r}; valid: {', '.join(MEMBER_POLICIES)}.",
            hint="Use --members replace or --members append.",
        )


def plan_members(
    registry: Registry,
    task: str,
    incumbent: E.Entity | None,
    reference: E.AdapterVersion,
    new_id: int,
    policy: str,
) -> tuple[list[int], str] | None:
    """Return (member ids, fusion name) of the re-fused model, or None when no fusion is made.

    ``replace``: the production fusion's members with the task's own old version swapped for the
    new one (no fusion when production is a single adapter). ``append``: the production fusion's
    members (or the production adapter) plus the new version, so earlier knowledge stays in.
    """
    check_policy(policy)
    if isinstance(incumbent, E.Fusion):
        ids = list(incumbent.member_ids)
        if policy == "replace" and reference.id in ids:
            ids[ids.index(reference.id)] = new_id
        elif new_id not in ids:
            ids.append(new_id)
        return ids, incumbent.name
    if policy == "append":
        base = incumbent.id if incumbent is not None else reference.id
        return [base, new_id], f"{task}-fusion"
    return None


def plan_lines(
    registry: Registry,
    task: str,
    *,
    reference: E.AdapterVersion,
    production: E.Entity | None,
    incumbent: E.Entity,
    source: str,
    train_rows: int,
    epochs: int,
    validation_how: str,
    warm_start: bool,
    replay: bool = True,
    select_on: str = "new",
    replay_ratio: float = 1.0,
    policy: str,
    alias: str,
    tolerance: float,
    gate_noise: float = 0.0,
    adapter_name: str | None = None,
) -> list[str]:
    """Return the plan, one line per step, as ``update`` prints it (``adapter_name``: the
    new adapter's name when it is not the reference's)."""
    start = f", starting from {reference.ref}'s weights" if warm_start else ""
    mixed = (
        f" plus replayed rows of the task's earlier data ({replay_ratio:g} per new row)"
        if replay
        else ""
    )
    what = (
        f"adapter {adapter_name!r} (current: {reference.ref})"
        if adapter_name and adapter_name != reference.name
        else f"a new version of adapter {reference.name!r}"
    )
    chosen = (
        "; best epoch chosen on the new and every earlier validation split"
        if replay and select_on == "task"
        else ""
    )
    lines = [
        f"train {what} on {source}{mixed} "
        f"({train_rows} rows, {epochs} epochs, validation: {validation_how}{chosen}"
        f"{start}), after this drift report"
    ]
    planned = plan_members(registry, task, production, reference, NEW, policy)
    if planned is not None:
        names = ["NEW" if i == NEW else registry.get_adapter_version(i).ref for i in planned[0]]
        lines.append(
            f"fuse {planned[1]!r} over [{', '.join(names)}] on the new data"
            + (" (with the same replayed rows)" if replay else "")
        )
    else:
        lines.append("no fusion (production is a single adapter; --members replace)")
    lines.append(
        f"evaluate the candidate and {incumbent.ref} on every validation split of {task!r}"
    )
    lines.append(
        f"promote to {task}:{alias} if it beats {incumbent.ref} on the new data and no earlier "
        f"split drops by more than {tolerance:.3f}"
        + (f" (or {gate_noise:g} standard error of its validation rows)" if gate_noise else "")
    )
    return lines

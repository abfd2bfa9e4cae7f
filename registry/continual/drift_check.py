"""Step 1: does the new data drift from what the task's current adapter was trained on?"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import entities as E
from ..data import DataBundle, Example, fingerprint, label_distribution, load_spec
from ..drift import DriftResult, DriftTest, ReferenceProfile, detect_drift
from ..errors import InvalidInput
from ..runtime import pick_device
from ..store import Registry
from .common import current_reference, data_source, production_entity


@dataclass
class DriftCheck:
    """The outcome of a drift check: what was compared, the tests, and the recorded report."""

    task: str
    reference: E.AdapterVersion
    split: str
    rows: int
    fingerprint: str
    result: DriftResult
    dataset: E.Dataset | None = None
    report: E.DriftReport | None = None
    reused: bool = False
    #: The versions whose training data the reference profile covers (a fusion: every member).
    covers: tuple[str, ...] = ()

    @property
    def drift(self) -> bool:
        """Return the overall decision."""
        return self.result.drift

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "task": self.task,
            "drift": self.drift,
            "reference": self.reference.ref,
            "reference_covers": list(self.covers or (self.reference.ref,)),
            "split": self.split,
            "rows": self.rows,
            "fingerprint": self.fingerprint,
            "report_id": self.report.id if self.report else None,
            "dataset_id": self.dataset.id if self.dataset else None,
            "reused": self.reused,
            **{k: v for k, v in self.result.to_dict().items() if k != "drift"},
        }


def new_split(bundle: DataBundle) -> tuple[str, list[Example]]:
    """Return the split of new data that drift is tested on: ``train``, or the only split."""
    if "train" in bundle.splits:
        return "train", bundle.splits["train"]
    if len(bundle.splits) == 1:
        name, rows = next(iter(bundle.splits.items()))
        return name, rows
    raise InvalidInput(
        f"{bundle.source} has no train split (splits: {', '.join(bundle.splits)}).",
        hint="Give a file, or a folder with train.jsonl.",
    )


def _max_length(registry: Registry, version: E.AdapterVersion) -> int:
    if version.training_run_id is None:
        return 256
    run = registry.training_run(version.training_run_id)
    return int(run.hyperparams.get("max_length", 256))


def check_drift(
    registry: Registry,
    task: str,
    data: Any,
    *,
    alpha: float = 0.05,
    seed: int = 0,
    n_permutations: int = 500,
    reference: str | None = None,
    record: bool = True,
    text_fields: tuple[str, ...] | None = None,
    label_field: str = "label",
    bundle: DataBundle | None = None,
    device: str = "auto",
) -> DriftCheck:
    """Compare new data of ``task`` with the reference profile of its current adapter.

    The new data's ``train`` split (or its only split) is profiled on the frozen base encoder the
    same way the reference was, on ``device`` (``auto``: a GPU when there is one). With
    ``record`` the data snapshot and the report are stored. ``bundle``: ``data`` already loaded.

    Raises:
        NotFound: the task or its adapter does not exist.
        InvalidInput: the reference adapter has no profile, or the data is unusable.
    """
    from ..loader import load_backbone_for
    from ..profiles import build_profile

    if not 0.0 < alpha < 1.0:
        raise InvalidInput(f"alpha must be in (0, 1), got {alpha}.", hint="e.g. --alpha 0.05")
    device = pick_device(device)  # refuse a missing GPU before reading any data
    task_row = registry.get_task(task)
    ref = current_reference(registry, task, reference)
    references = _reference_profiles(registry, task, ref, reference)
    covers = tuple(v.ref for v, _ in references)
    if bundle is None:
        bundle = load_spec(data, text_fields=text_fields, label_field=label_field)
    split, rows = new_split(bundle)
    if not rows:
        raise InvalidInput(
            f"The {split} split of {bundle.source} is empty.",
            hint="Give new data with rows in its train split.",
        )
    fp = fingerprint(rows)
    backbone = load_backbone_for(registry, ref, device)
    new_profile = build_profile(
        backbone, rows, dataset_fingerprint=fp, seed=seed, max_length=_max_length(registry, ref)
    )
    ref, result = closest_member(
        [
            (v, detect_drift(p, new_profile, alpha=alpha, seed=seed, n_permutations=n_permutations))
            for v, p in references
        ]
    )
    check = DriftCheck(task, ref, split, len(rows), fp, result, covers=covers)
    if record:
        labelled = [e for e in rows if e.label is not None]
        check.dataset = registry.record_dataset(
            task_row.id, data_source(data), split, len(rows), fp, label_distribution(labelled)
        )
        check.report = registry.record_drift_report(
            task=task,
            reference_adapter_version_id=ref.id,
            new_dataset_id=check.dataset.id,
            alpha=alpha,
            tests=[
                {
                    **t.to_dict(),
                    "seed": seed,
                    "per_test_alpha": result.per_test_alpha,
                    "reference_covers": list(covers),
                }
                for t in result.tests
            ],
            drift=result.drift,
        )
    return check


def _reference_profiles(
    registry: Registry, task: str, ref: E.AdapterVersion, reference: str | None
) -> list[tuple[E.AdapterVersion, ReferenceProfile]]:
    """Return the profiles new data is compared with: one, or every member's of a fusion.

    A fusion in production (or named as ``reference``) answers for the data of all its
    members, so each member's profile is a reference (see :func:`closest_member`).
    """
    from ..profiles import load_profile

    entity = registry.resolve(reference) if reference else production_entity(registry, task)
    versions = [ref]
    if isinstance(entity, E.Fusion):
        members = [registry.get_adapter_version(i) for i in entity.member_ids]
        with_profile = [v for v in members if v.profile_sha256 is not None]
        if ref.id in {v.id for v in with_profile}:
            versions = with_profile
    out = []
    for v in versions:
        folder = registry.profile_path(v)
        if folder is None:
            raise InvalidInput(
                f"{v.ref} has no reference profile to compare new data with.",
                hint=f"Train a new version: adapter-registry train {task} --data SPEC --base MODEL",
            )
        out.append((v, load_profile(folder)))
    return out


def closest_member(
    results: list[tuple[E.AdapterVersion, DriftResult]],
) -> tuple[E.AdapterVersion, DriftResult]:
    """Return the reference the new data fits best: no drift if it fits any member's data.

    Data is drift for a fusion only when it drifts from every member's data. One pooled profile
    would not do: a member's own data differs from the mixture of all members' data, and MMD
    finds that difference. Among members that all flag drift (or all do not), the one with the
    highest smallest decisive p-value is reported.
    """

    def fit(item: tuple[E.AdapterVersion, DriftResult]) -> tuple[bool, float]:
        ps = [t.p_value for t in item[1].tests if t.decisive and t.p_value is not None]
        return item[1].drift, -min(ps, default=1.0)

    return min(results, key=fit)


def existing_report(
    registry: Registry, task: str, ref: E.AdapterVersion, ds: E.Dataset | None, alpha: float
) -> E.DriftReport | None:
    """Return the drift report an interrupted run recorded for this data, if it found drift."""
    if ds is None:
        return None
    hits = [
        r
        for r in registry.drift_reports(task)
        if r.drift
        and r.new_dataset_id == ds.id
        and r.reference_adapter_version_id == ref.id
        and math.isclose(r.alpha, alpha)
    ]
    return hits[-1] if hits else None


def reused_check(
    task: str,
    reference: E.AdapterVersion,
    split: str,
    rows: list[Example],
    ds: E.Dataset | None,
    report: E.DriftReport,
) -> DriftCheck:
    """Return the :class:`DriftCheck` a recorded report stands for (no test is re-run)."""
    tests = [
        DriftTest(
            t["name"],
            math.nan if t["statistic"] is None else t["statistic"],
            t["p_value"],
            t["drift"],
            t["decisive"],
            t.get("details", {}),
        )
        for t in report.tests
    ]
    per_test = report.tests[0].get("per_test_alpha", report.alpha) if report.tests else report.alpha
    result = DriftResult(True, report.alpha, per_test, tests, 0, len(rows))
    check = DriftCheck(task, reference, split, len(rows), fingerprint(rows), result, ds, report)
    check.reused = True
    return check

"""The continual step: drift check → new adapter → re-fuse → evaluate → gate → promote.

Nothing here changes a registered adapter. New data that drifted from the task's current adapter
gets a NEW adapter version (``trained_after_drift``); the task's fusion is re-trained over the
members with that version swapped in (or appended); the candidate and the current production model
are scored on every validation split the task has seen; and ``TASK:production`` moves only when
the candidate wins on the new data and no earlier split loses more than ``tolerance`` (or, if
more, ``gate_noise`` standard errors of its score on its validation rows).

One module per step: :mod:`.drift_check`, :mod:`.plan`, :mod:`.train_step`, :mod:`.fuse_step`,
:mod:`.evaluate`, :mod:`.gate`, :mod:`.promote` and :mod:`.report`; :mod:`.update` runs them in
order. The history is kept so ``report`` can rebuild the accuracy matrix: ``accuracy`` metric
rows per (entity, validation snapshot), and the ``promotions`` table (one row per promoted
model, step 0 being the production model before the first update).
"""

from __future__ import annotations

from .common import (
    MATRIX_METRIC,
    MATRIX_SPLIT,
    MEMBER_POLICIES,
    PRODUCTION,
    current_reference,
    data_source,
    domain_name,
    production_entity,
)
from .drift_check import DriftCheck, check_drift
from .evaluate import Column, Score, evaluate_entity, recorded_scores, task_columns
from .fuse_step import replay_mix
from .gate import gate
from .plan import plan_members
from .promote import Step, production_history
from .recipe import inherited_train_config
from .report import TaskReport, build_report, routed_matrix
from .update import UpdateOptions, UpdateResult, update

__all__ = [
    "MATRIX_METRIC",
    "MATRIX_SPLIT",
    "MEMBER_POLICIES",
    "PRODUCTION",
    "Column",
    "DriftCheck",
    "Score",
    "Step",
    "TaskReport",
    "UpdateOptions",
    "UpdateResult",
    "build_report",
    "check_drift",
    "current_reference",
    "data_source",
    "domain_name",
    "evaluate_entity",
    "gate",
    "inherited_train_config",
    "plan_members",
    "production_entity",
    "production_history",
    "recorded_scores",
    "replay_mix",
    "routed_matrix",
    "task_columns",
    "update",
]

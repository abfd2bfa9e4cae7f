"""The recipe a new adapter version of ``update`` starts from: the current adapter's own."""

from __future__ import annotations

from collections.abc import Collection

from ..configs import TrainConfig
from ..errors import InvalidInput, RegistryError
from ..store import Registry
from .common import current_reference


def inherited_train_config(
    registry: Registry, task: str, config: TrainConfig, given: Collection[str]
) -> TrainConfig:
    """Return ``config`` with its recipe fields taken from the current adapter's recorded run.

    Fields named in ``given`` (set by the user) keep their value, and so do the machine's
    (device, precision, batch size, token budget, threads, compile: see
    :meth:`~registry.configs.FitConfig.recipe_fields`) and the seed, which ``update`` also
    draws its drift tests from. A task without a trained adapter, or an adapter without a
    recorded run, leaves ``config`` as it is.
    """
    try:
        reference = current_reference(registry, task)
    except RegistryError:
        return config
    if reference.training_run_id is None:
        return config
    recorded = registry.training_run(reference.training_run_id).hyperparams
    keep = set(given) | {"seed"}
    inherited = {
        k: recorded[k] for k in TrainConfig.recipe_fields() if k in recorded and k not in keep
    }
    if not inherited:
        return config
    try:
        return TrainConfig(**{**config.to_dict(), **inherited})
    except (InvalidInput, TypeError):
        return config  # a recorded recipe this version cannot read: the defaults then

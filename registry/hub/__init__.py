"""Push to and pull from the Hugging Face Hub, pinned by commit: the only package that imports
``huggingface_hub``.

A pushed repository holds, at its root, exactly the files the ``adapters`` library reads (the
artifact folder as :mod:`registry.backbone` saved it: ``adapter_config.json``,
``adapter.safetensors``, ``head_config.json``, ``model_head.safetensors``; for a fusion its fusion
config and weights, head and any other files of its artifact), plus:

* ``registry.json``: what the registry knows (entity, task and labels, base model and revision,
  artifact file listing with sha256, metrics, dataset fingerprints, training run, lineage graph,
  and for a fusion its members with the Hub commits they were pushed to);
* ``README.md``: a model card whose front matter ``huggingface_hub.ModelCardData`` writes
  (``library_name: adapters``, ``pipeline_tag``, ``license``, ``base_model`` with
  ``base_model_relation: adapter`` when the base's Hub id is known, Hub ``datasets``, and a
  ``model-index`` entry per dataset and split), with metrics, lineage and, for a fusion, links
  to each member's repo and commit.

Nothing pushed names a path of the pushing machine: a local base model and local data are
named by their folder's name, and :func:`push` refuses if a staged file still holds the
registry home, the base folder, a data path or the temp folder. On pull a local base model is
found by ``base=`` or by a base model here with the same weights (sha256 of the weight files),
and a fusion's missing members are pulled with it (``recursive``), in the same transaction.

The artifact's ``.artifact.json`` integrity manifest is *not* uploaded: it is the local store's
bookkeeping, and ``registry.json`` carries the same listing, which :func:`pull` checks every
downloaded byte against (and which reproduces the same artifact id in the pulling registry).

:func:`pull` resolves a branch, tag or sha to a full commit sha first and downloads at that sha
only, so a moving branch cannot change what is registered. It trusts nothing the server says:
file names are checked before any download, files land in a private folder under names chosen
here and are hashed here, bytes are capped, JSON documents are checked against schemas, pickles
load only with ``torch.load(weights_only=True)``, and the adapter is loaded on its base model
before anything is written. Registering is one transaction, so a failure leaves the registry as
it was. A pulled version is linked to a ``hub`` lineage node (its ``hub_links`` row)
by a ``pulled_from_hub`` edge; the lineage graph it had in the pushing registry is kept in its
training run's ``hyperparams["hub_origin"]["lineage"]`` (those nodes do not exist here), and its
metrics are re-recorded, pointing at re-recorded dataset snapshots (same fingerprints).

The endpoint and token are found the usual ``huggingface_hub`` way (``HF_ENDPOINT``, ``HF_TOKEN``
or ``huggingface-cli login``); nothing here sets global state, stores or prints the token.

Files: :mod:`.common` (names, results, error translation), :mod:`.cards` (``registry.json`` and
the model card), :mod:`.push`, :mod:`.pull` (resolve, check, register in one transaction),
:mod:`.stage` (download and convert a repo's files), :mod:`.safety` (checks on everything a
server sends: commit ids, file names, JSON schemas, byte caps, pickles).
"""

from .card_text import model_card
from .cards import build_metadata
from .common import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    CARD_FILE,
    FORMAT,
    FUSION_CONFIG,
    FUSION_MANIFEST,
    FUSION_WEIGHTS,
    HEAD_CONFIG,
    HEAD_WEIGHTS,
    PICKLE_TO_SAFETENSORS,
    REGISTRY_FILE,
    PullResult,
    PushResult,
    parse_repo_spec,
    printable,
    validate_repo_id,
)
from .pull import pull
from .push import push, stage_push
from .safety import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_S, parse_size

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "CARD_FILE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT_S",
    "FORMAT",
    "FUSION_CONFIG",
    "FUSION_MANIFEST",
    "FUSION_WEIGHTS",
    "HEAD_CONFIG",
    "HEAD_WEIGHTS",
    "PICKLE_TO_SAFETENSORS",
    "REGISTRY_FILE",
    "PullResult",
    "PushResult",
    "build_metadata",
    "model_card",
    "parse_repo_spec",
    "parse_size",
    "printable",
    "pull",
    "push",
    "stage_push",
    "validate_repo_id",
]

"""Command-line commands for the hub capability (registered on the group in registry.cli).

huggingface_hub is imported inside the commands (through :mod:`registry.hub`), so the rest of
the command line stays fast. The token comes from ``HF_TOKEN`` or ``huggingface-cli login``
and is never accepted on the command line.
"""

from __future__ import annotations

import warnings

import click

from .options import output_options
from .output import echo_json, open_registry


@click.command("push")
@click.argument("ref")
@click.option("--repo", "repo_id", required=True, help="Hub repository OWNER/NAME.")
@click.option("--private", is_flag=True, help="Create the repository as private (if new).")
@click.option(
    "--branch", default="main", show_default=True, help="Branch to commit to (made if missing)."
)
@click.option(
    "--license",
    "license_id",
    help="Licence of the model card (a Hub licence id: apache-2.0, mit, cc-by-4.0, other).",
)
@output_options()
@click.pass_context
def push(
    ctx: click.Context,
    ref: str,
    repo_id: str,
    private: bool,
    branch: str,
    license_id: str | None,
    as_json: bool,
) -> None:
    """Upload an adapter version or fusion to the Hugging Face Hub, pinned by commit.

    The repo gets the files the `adapters` library loads (safetensors), registry.json
    (task, labels, base model, metrics, datasets, lineage) and a model card (Hub metadata:
    library_name, pipeline_tag, license, base_model when its Hub id is known, datasets,
    model-index; metrics, lineage and, for a fusion, its members' repos and commits). No
    path of this machine is published. Pushing an unchanged artifact again is a no-op. The
    token comes from HF_TOKEN or `huggingface-cli login`; HF_ENDPOINT selects another Hub.

    \b
    Example:
      adapter-registry push sentiment-books@2 --repo my-org/sentiment-books
      adapter-registry push sentiment:production --repo my-org/sentiment --branch staging
      adapter-registry push books-fusion@1 --repo my-org/books-fusion --license apache-2.0
    """
    from .. import hub

    registry = open_registry(ctx)
    result = hub.push(registry, ref, repo_id, private=private, branch=branch, license_id=license_id)
    if as_json:
        echo_json(result.to_dict())
    elif result.noop:
        click.echo(
            f"{result.entity.ref} is already at {repo_id}@{branch} "
            f"(commit {result.commit_sha}): nothing to push."
        )
    else:
        click.echo(f"Pushed {result.entity.ref} to {repo_id}@{branch}: commit {result.commit_sha}.")
        click.echo(f"Pull it pinned with: adapter-registry pull {repo_id}@{result.commit_sha}")
    if result.members_not_on_hub and not as_json:
        click.echo(
            f"Note: members {', '.join(result.members_not_on_hub)} are not on the Hub, so the "
            "card cannot link them and pull cannot fetch them with the fusion; push them, "
            "then push this fusion again."
        )


@click.command("pull")
@click.argument("spec", metavar="OWNER/NAME[@REVISION]")
@click.option("--name", "name", help="Register under this name (default: the pushed name).")
@click.option("--as", "as_name", hidden=True, help="Deprecated spelling of --name.")
@click.option("--task", help="Task to register under (needed for a headless adapter).")
@click.option(
    "--base",
    help="Base model folder or Hub id (default: the recorded Hub model, or a base model this "
    "registry knows with the recorded weights).",
)
@click.option(
    "--recursive/--no-recursive",
    default=True,
    show_default=True,
    help="Pull a fusion's missing members too, at the commits it records.",
)
@click.option(
    "--max-size",
    default="1GiB",
    show_default=True,
    help="Refuse a pull that downloads or decompresses more than this (e.g. 4GiB, 500MB).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the Hub to answer.",
)
@output_options()
@click.pass_context
def pull(
    ctx: click.Context,
    spec: str,
    name: str | None,
    as_name: str | None,
    task: str | None,
    base: str | None,
    recursive: bool,
    max_size: str,
    timeout: float,
    as_json: bool,
) -> None:
    """Register an adapter or fusion from the Hugging Face Hub as a new version.

    REVISION (a branch, tag or commit sha; default main) is resolved to a commit sha, and
    that commit is what gets downloaded, verified and recorded. Pulling the same commit again
    changes nothing. Repos published with the `adapters` library (AdapterHub) pull too; pickle
    weights are accepted only if they load with torch.load(weights_only=True), and are stored
    as safetensors. A fusion's missing members are pulled with it (each at the commit the
    fusion records) and the lineage between them is imported, all in one transaction. A base
    model that was a local folder where it was pushed must be given with --base unless this
    registry knows one with the same weights. The adapter is loaded on its base model before
    it is registered; downloads are capped by --max-size.

    \b
    Example:
      adapter-registry pull my-org/sentiment-books
      adapter-registry pull my-org/big-fusion --max-size 4GiB --timeout 120
      adapter-registry pull my-org/books --base ./minilm
      adapter-registry pull my-org/sentiment-books@v2 --name books-from-hub
      adapter-registry pull some-user/bert-sst2-adapter --task sst2 --base bert-base-uncased
    """
    from .. import hub

    if as_name is not None:
        if name is not None and name != as_name:
            raise click.UsageError("Give the name once: --name (--as is its old spelling).")
        warnings.warn("--as is deprecated; use --name.", FutureWarning, stacklevel=1)
        name = as_name
    max_bytes = hub.parse_size(max_size)
    registry = open_registry(ctx)
    result = hub.pull(
        registry,
        spec,
        name=name,
        task=task,
        base=base,
        max_bytes=max_bytes,
        timeout=timeout,
        recursive=recursive,
    )
    if as_json:
        echo_json(result.to_dict())
    elif result.noop:
        click.echo(
            hub.printable(
                f"{result.repo_id} at commit {result.commit_sha} was already pulled as "
                f"{result.entity.ref} ({result.entity.uid}): nothing to do."
            )
        )
    else:
        for ref in result.members:
            click.echo(f"Pulled member {ref} with the fusion.")
        click.echo(
            hub.printable(
                f"Pulled {result.repo_id}@{result.revision} (commit {result.commit_sha}) as "
                f"{result.entity.ref} ({result.entity.kind} {result.entity.uid}, "
                f"task {result.entity.task})."
            )
        )


COMMANDS: list[click.Command] = [push, pull]

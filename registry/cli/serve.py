"""The ``serve`` command: production aliases over HTTP, hot-swapped on promotion."""

from __future__ import annotations

import json
import os

import click

from ..serve.config import PRECISIONS, TOKEN_ENV, ServeConfig
from .options import machine_options, quiet_option
from .output import open_registry


# long: a click command whose lines are mostly its --help text and the options handed on
@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="TCP port (0: a free one).")
@click.option(
    "--alias",
    default="production",
    show_default=True,
    help="Serve TASK:ALIAS for every task that has it.",
)
@click.option(
    "--poll-interval",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between alias checks: a promotion is noticed within this time.",
)
@click.option(
    "--max-batch",
    type=int,
    default=32,
    show_default=True,
    help="Most texts in one forward pass, gathered across concurrent requests.",
)
@click.option(
    "--max-wait-ms",
    type=float,
    default=5.0,
    show_default=True,
    help="How long a request waits for others to share its forward pass.",
)
@click.option(
    "--max-request-texts",
    type=int,
    default=64,
    show_default=True,
    help="Most texts in one request (larger batches get 413).",
)
@click.option("--max-length", type=int, default=256, show_default=True, help="Tokens per text.")
@machine_options()
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="Inference precision (bf16 autocast on CPU or GPU; fp16 on GPU only).",
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    help=f"Require 'Authorization: Bearer TOKEN' on everything but /health (or set {TOKEN_ENV}).",
)
@click.option("--ui", is_flag=True, help="Also serve the read-only web UI under /ui.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line when ready.")
@quiet_option()
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    alias: str,
    poll_interval: float,
    max_batch: int,
    max_wait_ms: float,
    max_request_texts: int,
    max_length: int,
    device: str,
    precision: str,
    threads: int | None,
    token: str | None,
    ui: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Serve every task's production model over HTTP, hot-swapped when the alias moves.

    One process loads each base model once; adapters and fusions share it. Endpoints:
    POST /v1/predict, GET /v1/models, /health, /metrics (Prometheus), /docs (OpenAPI),
    and /ui with --ui.

    \b
    Example:
      adapter-registry serve --port 8000 --ui
      curl -s localhost:8000/v1/predict -H 'content-type: application/json' \\
           -d '{"task": "sentiment", "text": "a warm, funny film"}'
    """
    from ..serve.runner import Server

    config = ServeConfig(
        host=host,
        port=port,
        alias=alias,
        poll_interval=poll_interval,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_request_texts=max_request_texts,
        max_length=max_length,
        device=device,
        precision=precision,
        threads=threads,
        token=token,
        ui=ui,
    ).check()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    registry = open_registry(ctx)

    def ready(url: str, pool: object) -> None:
        from ..serve.pool import ModelPool

        assert isinstance(pool, ModelPool)
        served = {t: s.entity.ref for t, s in sorted(pool.serving().items())}
        failed = pool.failures()
        if as_json:  # with --quiet too: it is the ready signal scripts wait for
            click.echo(
                json.dumps(
                    {
                        "url": url,
                        "served": served,
                        "failed": failed,
                        "ui": f"{url}/ui" if ui else None,
                        "memory": pool.memory(),
                    }
                ),
            )
        elif not quiet:
            click.echo(f"Serving on {url} (docs: {url}/docs{', UI: ' + url + '/ui' if ui else ''})")
            for task, ref in served.items():
                click.echo(f"  {task}:{alias} → {ref}")
            for task, event in failed.items():
                click.echo(f"  {task}:{alias} → {event['to']} FAILED to load: {event['error']}")
            if not served:
                click.echo(
                    f"  No task has a {alias!r} alias yet; requests may name a ref. "
                    f"Promote with: adapter-registry alias TASK {alias} REF"
                )
            click.echo(f"Watching the aliases every {poll_interval:g} s. Ctrl-C stops.")

    server = Server(registry, config, on_ready=ready)
    if not (as_json or quiet):
        click.echo(f"Loading models for {server.url} …", err=True)
    server.load()
    server.run()


COMMANDS: list[click.Command] = [serve]

"""The read-only web UI under ``/ui``: server-rendered pages, inline SVG, no JavaScript.

Pages: tasks and what serves them (``/ui``); a task's versions with metrics by dataset and
split, its accuracy matrix, forgetting and drift reports (``/ui/tasks/NAME``); one adapter
version or fusion with its lineage graph, members and Hub links (``/ui/models/ID``); one drift
report with each test's statistics (``/ui/drift/ID``). Nothing here writes to the registry.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .. import entities as E
from ..errors import NotFound, RegistryError
from .config import ServeConfig
from .pool import ModelPool
from .svg import bars_svg, heatmap_svg, lineage_svg

TEMPLATES = Path(__file__).parent / "templates"
SHOWN_METRICS = ("accuracy", "macro_f1")


def hub_url(link: E.HubLink) -> str:
    """Return the web address of a Hub commit (``HF_ENDPOINT`` when set)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return f"{endpoint}/{link.repo_id}/tree/{link.commit_sha}"


def node_link(node: dict[str, Any]) -> str | None:
    """Return the UI page of a lineage node, where the UI has one."""
    if node["kind"] == "adapter":
        return f"/ui/models/a{node['id']}"
    if node["kind"] == "fusion":
        return f"/ui/models/f{node['id']}"
    if node["kind"] == "drift":
        return f"/ui/drift/{node['id']}"
    return None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.4g}"
    return "–" if v is None else str(v)


class Pages:
    """Reads the registry and renders each page; one instance per app."""

    def __init__(self, registry: Any, pool: ModelPool, config: ServeConfig) -> None:
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        self.registry = registry
        self.pool = pool
        self.config = config
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES)),
            autoescape=select_autoescape(["html"]),
        )
        self.env.filters["fmt"] = _fmt
        self.env.filters["short"] = lambda s: (s or "")[:12]

    def render(self, template: str, **context: Any) -> str:
        """Render a template with the common context."""
        return self.env.get_template(template).render(alias=self.config.alias, **context)

    # ------------------------------------------------------------------ data
    def _metric_rows(self, entity: E.Entity) -> list[dict[str, Any]]:
        """Return the entity's metrics grouped by (dataset, split), newest value of each."""
        groups: dict[tuple[int | None, str | None], dict[str, Any]] = {}
        for m in self.registry.metrics(entity):
            key = (m.dataset_id, m.split)
            row = groups.setdefault(key, {"dataset_id": m.dataset_id, "split": m.split})
            row[m.name] = m.value
        out = []
        for (dataset_id, _), row in sorted(
            groups.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1] or "")
        ):
            if dataset_id is not None:
                ds = self.registry.get_dataset(dataset_id)
                row.update(source=ds.source, rows=ds.row_count, fingerprint=ds.fingerprint)
            out.append(row)
        return out

    # ------------------------------------------------------------------ pages
    def index(self) -> str:
        serving = self.pool.serving()
        failures = self.pool.failures()
        aliases: dict[str, dict[str, E.Alias]] = {}
        for a in self.registry.aliases():
            aliases.setdefault(a.task, {})[a.alias] = a
        tasks = []
        for t in self.registry.list_tasks():
            entities = self.registry.list_entities(task=t.name)
            alias = aliases.get(t.name, {}).get(self.config.alias)
            drifts = self.registry.drift_reports(task=t.name)
            tasks.append(
                {
                    "task": t,
                    "alias": alias,
                    "served": serving.get(t.name),
                    "failed": failures.get(t.name),
                    "adapters": sum(1 for e in entities if e.kind == "adapter"),
                    "fusions": sum(1 for e in entities if e.kind == "fusion"),
                    "last_drift": drifts[-1] if drifts else None,
                }
            )
        return self.render("index.html", tasks=tasks, memory=self.pool.memory())

    def task(self, name: str) -> str:
        from ..continual import build_report

        task = self.registry.get_task(name)
        entities = self.registry.list_entities(task=name)
        versions = [{"entity": e, "metrics": self._metric_rows(e)} for e in entities]
        report = build_report(self.registry, name)[name]
        matrix_svg = forgetting_svg = None
        bwt = mean_forgetting = None
        if report.matrix is not None:
            m = report.matrix
            matrix_svg = heatmap_svg(m.values.tolist(), list(m.step_names), list(m.task_names))
            forgetting = m.forgetting()
            forgetting_svg = bars_svg(forgetting, "forgetting per split (max earlier − last)")
            bwt, mean_forgetting = m.bwt(), m.mean_forgetting()
        drifts = list(reversed(self.registry.drift_reports(task=name)))
        aliases = self.registry.aliases(name)
        return self.render(
            "task.html",
            task=task,
            versions=versions,
            report=report,
            matrix_svg=matrix_svg,
            forgetting_svg=forgetting_svg,
            bwt=bwt,
            mean_forgetting=mean_forgetting,
            drifts=drifts,
            aliases=aliases,
            served=self.pool.serving().get(name),
            failed=self.pool.failures().get(name),
            shown=SHOWN_METRICS,
        )

    def model(self, uid: str) -> str:
        entity = self.registry.resolve(uid)
        graph = self.registry.lineage(entity)
        members = []
        if isinstance(entity, E.Fusion):
            members = [self.registry.get_adapter_version(i) for i in entity.member_ids]
        run = self.registry.training_run(entity.training_run_id) if entity.training_run_id else None
        aliases = [a for a in self.registry.aliases(entity.task) if a.target_ref == entity.ref]
        links = [(h, hub_url(h)) for h in self.registry.hub_links(entity)]
        served_for = [t for t, s in self.pool.serving().items() if s.uid == entity.uid]
        return self.render(
            "model.html",
            entity=entity,
            base=self.registry.get_base_model(entity.base_model_id),
            metrics=self._metric_rows(entity),
            lineage_svg=lineage_svg(graph, node_link),
            graph=graph,
            node_link=node_link,
            members=members,
            run=run,
            aliases=aliases,
            hub_links=links,
            served_for=served_for,
            shown=SHOWN_METRICS,
        )

    def drift(self, report_id: int) -> str:
        report = self.registry.get_drift_report(report_id)
        task = self.registry.get_task_by_id(report.task_id)
        reference = (
            self.registry.get_adapter_version(report.reference_adapter_version_id)
            if report.reference_adapter_version_id
            else None
        )
        dataset = (
            self.registry.get_dataset(report.new_dataset_id) if report.new_dataset_id else None
        )
        return self.render(
            "drift.html", report=report, task=task, reference=reference, dataset=dataset
        )

    def error(self, status: int, err: RegistryError) -> str:
        return self.render("error.html", status=status, message=err.message, hint=err.hint)


def add_ui(app: FastAPI, registry: Any, pool: ModelPool, config: ServeConfig) -> None:
    """Add the ``/ui`` pages to ``app``."""
    pages = Pages(registry, pool, config)

    async def page(render: Any, *args: Any) -> Response:
        try:
            html = await run_in_threadpool(render, *args)
        except NotFound as err:
            return HTMLResponse(pages.error(404, err), status_code=404)
        except RegistryError as err:
            return HTMLResponse(pages.error(422, err), status_code=422)
        return HTMLResponse(html)

    @app.get("/ui", include_in_schema=False)
    async def ui_root(request: Request) -> Response:
        token = request.query_params.get("token")
        if token:  # log in once: the token moves into a cookie, out of the address bar
            response = RedirectResponse("/ui/", status_code=303)
            response.set_cookie("adapter_registry_token", token, httponly=True, samesite="strict")
            return response
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/ui/", include_in_schema=False)
    async def ui_index() -> Response:
        return await page(pages.index)

    @app.get("/ui/tasks/{name}", include_in_schema=False)
    async def ui_task(name: str) -> Response:
        return await page(pages.task, name)

    @app.get("/ui/models/{uid}", include_in_schema=False)
    async def ui_model(uid: str) -> Response:
        return await page(pages.model, uid)

    @app.get("/ui/drift/{report_id}", include_in_schema=False)
    async def ui_drift(report_id: int) -> Response:
        return await page(pages.drift, report_id)

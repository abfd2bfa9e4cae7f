"""`serve`: real uvicorn on 127.0.0.1 over a registry of tiny BERT adapters and fusions.

The template registry (built once per module) has a single-text task ``sentiment`` with two
adapter versions and two fusions over the *same* members, and a pair task ``nli``. Tests that
move aliases work on a copy of it, each with its own server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.composer import FuseConfig, fuse
from registry.errors import RegistryError
from registry.serve import ServeConfig
from registry.serve.client import Client
from registry.serve.runner import Server
from registry.store import Registry
from registry.trainer import TrainConfig, train
from tests._util import sentiment_data
from tests.test_composer import write_pairs

REPO = Path(__file__).resolve().parents[1]
CFG = TrainConfig(epochs=1, batch_size=16, max_length=32, device="cpu")
FUSE = FuseConfig(epochs=1, batch_size=16, max_length=32, device="cpu")
NLI = ["contradiction", "entailment", "neutral"]
TEXTS = ["a good movie", "the plot was awful and slow", "i love this story", "boring book"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tiny_base_dir: Path) -> dict[str, Any]:
    """A registry home with adapters, same-member fusions and aliases; tests copy it."""
    root = tmp_path_factory.mktemp("serve")
    sent = sentiment_data(root / "sent", seed=0)
    sent2 = sentiment_data(root / "sent2", seed=5)
    nli = write_pairs(root / "nli", NLI, seed=1)
    reg = Registry.init(root / "home")
    try:
        train(reg, "sentiment", sent, str(tiny_base_dir), config=CFG, progress=False)
        cfg2 = TrainConfig(epochs=1, batch_size=16, max_length=32, device="cpu", seed=3)
        train(reg, "sentiment", sent2, str(tiny_base_dir), config=cfg2, progress=False)
        train(reg, "nli", nli, str(tiny_base_dir), config=CFG, progress=False)
        members = ["sentiment@1", "nli@1"]
        fuse(reg, "sentiment", members, sent, name="sentfuse", config=FUSE, progress=False)
        fuse2 = FuseConfig(epochs=1, batch_size=16, max_length=32, device="cpu", seed=7)
        fuse(reg, "sentiment", members, sent2, name="sentfuse", config=fuse2, progress=False)
        reg.set_alias("sentiment", "production", "sentiment@1")
        reg.set_alias("nli", "production", "nli@1")
    finally:
        reg.close()
    return {"home": root / "home", "root": root}


def _copy(template: dict[str, Any], tmp_path: Path) -> Registry:
    home = tmp_path / "home-copy"
    shutil.copytree(template["home"], home)
    return Registry.open(home)


@pytest.fixture
def reg(template: dict[str, Any], tmp_path: Path) -> Iterator[Registry]:
    r = _copy(template, tmp_path)
    yield r
    r.close()


def _start(reg: Registry, **kw: Any) -> Server:
    config = ServeConfig(**{"port": 0, "poll_interval": 0.1, "max_wait_ms": 2.0, **kw})
    return Server(reg, config).start_in_thread()


@pytest.fixture
def server(reg: Registry) -> Iterator[Server]:
    srv = _start(reg)
    yield srv
    srv.stop()


def _offline(reg: Registry, ref: str, texts: list[str], text_b: list[str] | None = None) -> list:
    """What the library's own predict path answers, for comparison."""
    from registry.inference import predict

    pairs = list(zip(texts, text_b or [None] * len(texts), strict=True))
    return predict(reg, ref, texts=pairs)


def _wait(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# ---------------------------------------------------------------------------- predict
def test_predict_answers_like_the_library_and_names_the_version(
    server: Server, reg: Registry
) -> None:
    client = Client(server.url)
    status, one = client.predict({"task": "sentiment", "text": TEXTS[0]})
    assert status == 200
    v1 = reg.resolve("sentiment@1")
    assert one["model"] == {
        "ref": "sentiment@1",
        "id": v1.uid,
        "kind": "adapter",
        "task": "sentiment",
        "sha256": v1.artifact_sha256,
    }
    status, batch = client.predict({"task": "sentiment", "text": TEXTS})
    assert status == 200
    expected = _offline(reg, "sentiment@1", TEXTS)
    assert [p["label"] for p in batch["predictions"]] == [p["label"] for p in expected]
    for got, want in zip(batch["predictions"], expected, strict=True):
        for label, score in want["scores"].items():
            assert got["scores"][label] == pytest.approx(score, abs=1e-5)
    assert batch["predictions"][0]["scores"] == pytest.approx(one["predictions"][0]["scores"])
    _, headers, _ = client.request("POST", "/v1/predict", {"task": "sentiment", "text": "fun"})
    assert headers["x-model-ref"] == "sentiment@1"
    assert headers["x-model-sha256"] == v1.artifact_sha256


def test_pairs_and_refs(server: Server, reg: Registry) -> None:
    client = Client(server.url)
    a, b = ["the man sat on the mat", "a dog runs"], ["a man sat yes", "the cat is slow no"]
    status, out = client.predict({"task": "nli", "text": a, "text_b": b})
    assert status == 200, out
    assert out["model"]["ref"] == "nli@1"
    assert [p["label"] for p in out["predictions"]] == [
        p["label"] for p in _offline(reg, "nli@1", a, b)
    ]
    status, single = client.predict({"task": "nli", "text": a[0], "text_b": b[0]})
    assert status == 200 and single["predictions"][0]["label"] in NLI
    # Any REF, loaded on first use beside the production models: the other adapter version,
    # and both fusions over the same members, which must not overwrite each other.
    answers = {}
    for ref in ("sentiment@2", "sentfuse@1", "sentfuse@2", "sentiment:production"):
        status, out = client.predict({"ref": ref, "text": TEXTS})
        assert status == 200, out
        answers[ref] = out
        want = _offline(reg, ref, TEXTS)
        for got, exp in zip(out["predictions"], want, strict=True):
            assert got["scores"] == pytest.approx(exp["scores"], abs=1e-5), ref
    assert answers["sentfuse@1"]["model"]["kind"] == "fusion"
    assert answers["sentfuse@1"]["predictions"] != answers["sentfuse@2"]["predictions"]
    assert answers["sentiment:production"]["model"]["ref"] == "sentiment@1"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"task": "nope", "text": "a good movie"}, 404, "not_found"),
        ({"ref": "nope@9", "text": "a good movie"}, 404, "not_found"),
        ({"task": "sentiment", "text": ""}, 422, "empty_text"),
        ({"task": "sentiment", "text": ["fine", "   "]}, 422, "empty_text"),
        ({"task": "sentiment", "text": []}, 422, "empty_batch"),
        ({"task": "sentiment", "text": ["a"] * 65}, 413, "batch_too_large"),
        ({"task": "sentiment", "text": "x" * 10_001}, 413, "text_too_long"),
        ({"task": "sentiment", "text": "a movie", "text_b": "b"}, 422, "pair_shape"),
        ({"task": "nli", "text": "a premise"}, 422, "pair_shape"),
        ({"task": "nli", "text": ["a", "b"], "text_b": ["c"]}, 422, "pair_shape"),
        ({"task": "nli", "text": ["a"], "text_b": "c"}, 422, "pair_shape"),
        ({"task": "sentiment", "ref": "sentiment@1", "text": "a"}, 422, "invalid_request"),
        ({"text": "a"}, 422, "invalid_request"),
        ({"task": "sentiment"}, 422, "invalid_request"),
        ({"task": "sentiment", "text": 5}, 422, "invalid_request"),
        ({"ref": "  ", "text": "a"}, 422, "invalid_input"),
    ],
)
def test_bad_requests_get_4xx_json_with_a_hint(
    server: Server, body: dict[str, Any], status: int, code: str
) -> None:
    got, out = Client(server.url).predict(body)
    assert (got, out["error"]) == (status, code), out
    assert out["message"] and out["hint"]


def test_malformed_bodies_and_unknown_routes_are_4xx(server: Server) -> None:
    client = Client(server.url)
    status, out = client.json("POST", "/v1/predict", raw=b'{"task": "sentiment", ')
    assert status == 422 and "not valid JSON" in out["message"] and out["hint"]
    status, out = client.json("POST", "/v1/predict", raw=b"[1, 2]")
    assert status == 422 and out["hint"]
    status, out = client.json("GET", "/v1/nothing")
    assert status == 404 and out["hint"]
    status, out = client.json("GET", "/v1/predict")
    assert status == 405 and out["error"] == "http_error"
    # None of the above counted as a server error.
    metrics = client.request("GET", "/metrics")[2].decode()
    assert 'status="500"' not in metrics


# ---------------------------------------------------------------------------- models, health
def test_models_health_metrics_and_docs(server: Server, reg: Registry) -> None:
    client = Client(server.url)
    status, models = client.json("GET", "/v1/models")
    assert status == 200
    by_task = {m["task"]: m for m in models["models"]}
    assert set(by_task) == {"sentiment", "nli"}
    assert by_task["sentiment"]["sha256"] == reg.resolve("sentiment@1").artifact_sha256
    assert by_task["nli"]["alias"] == "nli:production"
    status, graph = client.json("GET", by_task["sentiment"]["lineage"])
    assert status == 200 and graph["ref"] == "sentiment@1"
    labels = {n["label"] for n in graph["graph"]["nodes"]}
    assert {"sentiment@1", "sentfuse@1", "sentfuse@2"} <= labels  # fused_from descendants
    assert models["memory"]["extra_bytes"] > 0
    assert models["memory"]["base_bytes"] > models["memory"]["extra_bytes"]

    status, health = client.json("GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["served"] == ["nli", "sentiment"]

    for _ in range(3):
        client.predict({"task": "sentiment", "text": TEXTS})
    text = client.request("GET", "/metrics")[2].decode()
    assert 'adapter_registry_requests_total{endpoint="/v1/predict",status="200"} 3.0' in text
    assert "adapter_registry_request_seconds_bucket" in text
    assert "adapter_registry_batch_size_count 3.0" in text
    assert 'adapter_registry_texts_total{model="sentiment@1",task="sentiment"} 12.0' in text
    assert 'adapter_registry_model_swaps_total{result="ok",task="sentiment"} 1.0' in text
    status, spec = client.json("GET", "/openapi.json")
    assert status == 200 and "/v1/predict" in spec["paths"]
    status, _, page = client.request("GET", "/docs")
    assert status == 200 and b"/docs/static/swagger-ui-bundle.js" in page
    assert client.request("GET", "/docs/static/swagger-ui-bundle.js")[0] == 200


def test_concurrent_requests_share_forward_passes(reg: Registry) -> None:
    # The collector holds the first request until max_batch texts have arrived (the wait is far
    # longer than any scheduling delay), so the 8 single-text requests make exactly one batch.
    srv = _start(reg, max_batch=8, max_wait_ms=120_000)
    try:
        results: list[Any] = [None] * 8

        def one(i: int) -> None:
            results[i] = Client(srv.url).predict({"task": "sentiment", "text": TEXTS[i % 4]})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r[0] == 200 for r in results)
        client = Client(srv.url)
        text = client.request("GET", "/metrics")[2].decode()
        assert "adapter_registry_batch_size_count 1.0" in text
        assert 'adapter_registry_batch_size_bucket{le="8.0"} 1.0' in text
        assert 'adapter_registry_batch_size_bucket{le="4.0"} 0.0' in text
        # Each answer is its own text's answer, although it ran in a batch of eight.
        alone = client.predict({"task": "sentiment", "text": TEXTS * 2})[1]["predictions"]
        for i, (_, out) in enumerate(results):
            assert out["predictions"][0]["scores"] == pytest.approx(
                alone[i % 4]["scores"], abs=1e-5
            )
    finally:
        srv.stop()


# ---------------------------------------------------------------------------- hot-swap
def _hammer(url: str, stop: threading.Event, log: list[Any], task: str = "sentiment") -> None:
    client = Client(url)
    while not stop.is_set():
        try:
            status, out = client.predict({"task": task, "text": TEXTS})
        except Exception as err:  # a dropped connection is a failed request too
            log.append(("exception", repr(err)))
            continue
        log.append((status, out))


def test_hot_swap_under_load_fails_no_request(reg: Registry) -> None:
    srv = _start(reg)
    stop = threading.Event()
    try:
        refs = ["sentiment@1", "sentfuse@1", "sentiment@2", "sentfuse@2", "sentiment@1"]
        expected = {ref: _offline(reg, ref, TEXTS) for ref in refs}
        log: list[Any] = []
        clients = [
            threading.Thread(target=_hammer, args=(srv.url, stop, log), daemon=True)
            for _ in range(4)
        ]
        for t in clients:
            t.start()
        client = Client(srv.url)
        for ref in refs[1:]:
            reg.set_alias("sentiment", "production", ref)
            _wait(lambda r=ref: _answering(client) == r)
        stop.set()
        for t in clients:
            t.join()
        assert log and all(status == 200 for status, _ in log), [e for e in log if e[0] != 200]
        seen = set()
        for _, out in log:
            ref = out["model"]["ref"]
            seen.add(ref)
            # Exactly one version answered the whole request: its scores are that version's.
            for got, want in zip(out["predictions"], expected[ref], strict=True):
                assert got["scores"] == pytest.approx(want["scores"], abs=1e-5), ref
            assert out["model"]["sha256"] == reg.resolve(ref).artifact_sha256
        assert len(seen) >= 2
        _, models = client.json("GET", "/v1/models")
        assert [m["ref"] for m in models["models"] if m["task"] == "sentiment"] == ["sentiment@1"]
        oks = [e for e in models["swaps"] if e["task"] == "sentiment" and e["ok"]]
        assert [e["to"] for e in oks] == refs  # start-up, then each promotion, in order
    finally:
        stop.set()
        srv.stop()


def test_replaced_models_are_unloaded_and_memory_stays_flat(reg: Registry) -> None:
    """Ten promotions later the process holds what it held after the first one, no more."""
    srv = _start(reg)
    try:
        client = Client(srv.url)
        refs = ["sentfuse@1", "sentfuse@2", "sentiment@2", "sentfuse@1", "sentiment@1"] * 2
        sizes = []
        for ref in refs:
            reg.set_alias("sentiment", "production", ref)
            _wait(lambda r=ref: _answering(client) == r)
            # one poll later the replaced target is gone; only the served ones stay loaded
            _wait(lambda: not client.json("GET", "/v1/models")[1]["loaded"])
            sizes.append(client.json("GET", "/v1/models")[1]["memory"]["parameter_bytes"])
            out = client.predict({"task": "sentiment", "text": TEXTS})[1]
            want = _offline(reg, ref, TEXTS)
            for got, exp in zip(out["predictions"], want, strict=True):
                assert got["scores"] == pytest.approx(exp["scores"], abs=1e-5), ref
        _, models = client.json("GET", "/v1/models")
        assert models["unloaded"] == len(refs)  # the start-up model, then each replaced one
        # the same target costs the same bytes on every lap: nothing accumulates
        assert sizes[5:] == sizes[:5], sizes
        text = client.request("GET", "/metrics")[2].decode()
        assert f"adapter_registry_unloaded_models {float(len(refs))}" in text
        # a REF asked for directly after its unload is reloaded, verified, and answers
        status, out = client.predict({"ref": "sentfuse@2", "text": TEXTS})
        assert status == 200 and out["model"]["ref"] == "sentfuse@2"
    finally:
        srv.stop()


def test_a_request_holding_an_unloaded_model_gets_it_reloaded(reg: Registry) -> None:
    """The race the grace period makes rare: a batch for a model unloaded while it waited."""
    from registry.data import Example
    from registry.serve.pool import ModelPool

    pool = ModelPool(reg, ServeConfig(port=0, preload=False))
    pool.start()
    held = pool.resolve("sentfuse@1")
    pool._retired[held.uid] = 0.0  # retired long ago
    assert pool._unload_retired() == ["sentfuse@1"]
    assert "head_sentfuse_v1" not in held.loaded.backbone.head_names
    got = pool.predict(held, [Example(t, None, None) for t in TEXTS])
    want = _offline(reg, "sentfuse@1", TEXTS)
    for g, w in zip(got, want, strict=True):
        assert g["scores"] == pytest.approx(w["scores"], abs=1e-5)


def _answering(client: Client, task: str = "sentiment") -> str:
    return str(client.predict({"task": task, "text": "a"})[1]["model"]["ref"])


def _damage(reg: Registry, ref: str) -> None:
    """Flip a byte in an artifact's weights, as disk rot or tampering would."""
    folder = reg.artifacts.path_for(reg.resolve(ref).artifact_sha256)
    target = next(p for p in sorted(folder.rglob("*.safetensors")))
    os.chmod(folder, 0o755)
    os.chmod(target, 0o644)
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))


def test_failed_load_keeps_the_old_model_and_reports_it(reg: Registry) -> None:
    srv = _start(reg)
    try:
        client = Client(srv.url)
        _damage(reg, "sentiment@2")
        reg.set_alias("sentiment", "production", "sentiment@2")
        _wait(lambda: client.json("GET", "/health")[1]["status"] == "degraded")
        status, out = client.predict({"task": "sentiment", "text": TEXTS})
        assert status == 200 and out["model"]["ref"] == "sentiment@1"
        _, models = client.json("GET", "/v1/models")
        failed = models["failed_swaps"]["sentiment"]
        assert failed["to"] == "sentiment@2" and failed["from"] == "sentiment@1"
        assert "sha256" in failed["error"] and failed["hint"]
        text = client.request("GET", "/metrics")[2].decode()
        assert 'adapter_registry_model_swaps_total{result="failed",task="sentiment"} 1.0' in text
        # Asking for the damaged version directly is refused, not answered.
        status, out = client.predict({"ref": "sentiment@2", "text": "a"})
        assert status == 409 and out["error"] == "integrity_error"
        # Promoting a good version clears the failure.
        reg.set_alias("sentiment", "production", "sentfuse@1")
        _wait(lambda: client.json("GET", "/health")[1]["status"] == "ok")
        assert _answering(client) == "sentfuse@1"
    finally:
        srv.stop()


def test_bearer_token(reg: Registry) -> None:
    srv = _start(reg, token="s3cret")
    try:
        anonymous = Client(srv.url)
        status, out = anonymous.predict({"task": "sentiment", "text": "a"})
        assert status == 401 and out["error"] == "unauthorized" and "Bearer" in out["hint"]
        assert anonymous.json("GET", "/v1/models")[0] == 401
        assert anonymous.request("GET", "/metrics")[0] == 401
        assert Client(srv.url, token="wrong").predict({"task": "sentiment", "text": "a"})[0] == 401
        assert anonymous.json("GET", "/health")[0] == 200
        status, out = Client(srv.url, token="s3cret").predict({"task": "sentiment", "text": "a"})
        assert status == 200 and out["model"]["ref"] == "sentiment@1"
    finally:
        srv.stop()


# ---------------------------------------------------------------------------- the command
def test_serve_command_end_to_end(template: dict[str, Any], tmp_path: Path) -> None:
    home = tmp_path / "home-cli"
    shutil.copytree(template["home"], home)
    env = {**os.environ, "ADAPTER_REGISTRY_HOME": str(home), "ADAPTER_REGISTRY_SERVE_TOKEN": "t"}
    # --quiet keeps --json's ready line (what scripts wait for)
    cmd = [sys.executable, "-m", "registry", "serve", "--port", "0", "--json", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        ready = json.loads(line)
        assert ready["served"] == {"nli": "nli@1", "sentiment": "sentiment@1"}
        client = Client(ready["url"], token="t")
        status, out = client.predict({"task": "sentiment", "text": "a good movie"})
        assert status == 200 and out["model"]["ref"] == "sentiment@1"
        assert Client(ready["url"]).predict({"task": "sentiment", "text": "a"})[0] == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_quiet_prints_nothing_and_serves(template: dict[str, Any], tmp_path: Path) -> None:
    from registry.serve.runner import bind

    home = tmp_path / "home-quiet"
    shutil.copytree(template["home"], home)
    free = bind("127.0.0.1", 0)
    port = free.getsockname()[1]
    free.close()
    env = {**os.environ, "ADAPTER_REGISTRY_HOME": str(home)}
    cmd = [sys.executable, "-m", "registry", "serve", "--port", str(port), "-q", "--threads", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = Client(f"http://127.0.0.1:{port}", timeout=5.0)
        for _ in range(1200):  # until it answers (or exits); no time is asserted
            if proc.poll() is not None:
                break
            try:
                status, out = client.predict({"task": "sentiment", "text": "a good movie"})
                break
            except OSError:
                client.close()
                time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        assert status == 200 and out["model"]["ref"] == "sentiment@1"
    finally:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=30)
    assert stdout == ""
    assert "Loading models" not in stderr and "Serving on" not in stderr, stderr


def test_serve_refuses_a_busy_port_and_bad_settings(template: dict[str, Any]) -> None:
    from click.testing import CliRunner

    from registry.cli import cli
    from registry.serve.runner import bind

    assert CliRunner().invoke(cli, ["init"]).exit_code == 0
    busy = bind("127.0.0.1", 0)
    try:
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--port", str(port)])
        assert result.exit_code == 1
        assert "Cannot listen on" in result.output and "Hint:" in result.output
    finally:
        busy.close()
    result = CliRunner().invoke(cli, ["serve", "--max-batch", "0"])
    assert result.exit_code == 1 and "--max-batch" in result.output
    result = CliRunner().invoke(cli, ["serve", "--token", " "])
    assert result.exit_code == 1 and "token is empty" in result.output
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output


def test_hot_swap_on_each_backend(
    backend_url: str | None, tmp_path: Path, tiny_base_dir: Path
) -> None:
    """The watcher follows an alias moved by another process's writes, on SQLite and PostgreSQL."""
    reg = Registry.init(tmp_path / "home-backend", backend_url)
    try:
        data = sentiment_data(tmp_path / "data-backend")
        train(reg, "sentiment", data, str(tiny_base_dir), config=CFG, progress=False)
        cfg2 = TrainConfig(epochs=1, batch_size=16, max_length=32, device="cpu", seed=3)
        train(reg, "sentiment", data, str(tiny_base_dir), config=cfg2, progress=False)
        reg.set_alias("sentiment", "production", "sentiment@1")
        srv = _start(reg)
        try:
            client = Client(srv.url)
            assert _answering(client) == "sentiment@1"
            # A second registry handle, as the `alias` command would open.
            other = Registry.open(tmp_path / "home-backend", backend_url)
            other.set_alias("sentiment", "production", "sentiment@2")
            other.close()
            _wait(lambda: _answering(client) == "sentiment@2")
        finally:
            srv.stop()
    finally:
        reg.close()


def test_bf16_precision_answers_close_to_fp32(server: Server, reg: Registry) -> None:
    fp32 = Client(server.url).predict({"task": "sentiment", "text": TEXTS})[1]
    srv = _start(reg, precision="bf16")
    try:
        status, bf16 = Client(srv.url).predict({"task": "sentiment", "text": TEXTS})
        assert status == 200 and bf16["model"] == fp32["model"]
        for got, want in zip(bf16["predictions"], fp32["predictions"], strict=True):
            assert got["scores"] == pytest.approx(want["scores"], abs=0.02)
    finally:
        srv.stop()
    with pytest.raises(RegistryError, match="fp16 inference needs a GPU"):
        _start(reg, precision="fp16", device="cpu")


def test_a_server_fault_is_a_json_500_and_the_server_keeps_serving(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.pool is not None
    real = server.pool.predict
    monkeypatch.setattr(server.pool, "predict", lambda *a: (_ for _ in ()).throw(OSError("disk")))
    status, out = Client(server.url).predict({"task": "sentiment", "text": "a"})
    assert status == 500 and out["error"] == "internal_error" and "disk" in out["message"]
    monkeypatch.setattr(server.pool, "predict", real)
    assert Client(server.url).predict({"task": "sentiment", "text": "a"})[0] == 200


def test_ui_login_with_a_token_sets_a_cookie(reg: Registry) -> None:
    srv = _start(reg, token="s3cret", ui=True)
    try:
        anonymous = Client(srv.url)
        assert anonymous.request("GET", "/ui/")[0] == 401
        assert anonymous.request("GET", "/ui?token=wrong")[0] == 401
        status, headers, _ = anonymous.request("GET", "/ui?token=s3cret")
        assert status == 303 and headers["location"] == "/ui/"
        cookie = headers["set-cookie"].split(";")[0]
        assert cookie == "adapter_registry_token=s3cret" and "HttpOnly" in headers["set-cookie"]
        status, _, page = anonymous.request("GET", "/ui/", headers={"cookie": cookie})
        assert status == 200 and b"sentiment@1" in page and b"nli@1" in page
        status, _, page = anonymous.request(
            "GET", "/ui/models/sentiment@1", headers={"cookie": cookie}
        )
        assert status == 200 and b"svg" in page and b"fused_from" in page
    finally:
        srv.stop()


def test_named_fusions_over_the_same_members_share_a_backbone_exactly(reg: Registry) -> None:
    """Two fusion versions over one member set, on one backbone, each equal to its own model."""
    from registry.data import Example
    from registry.inference import predict_examples
    from registry.loader import load_entity

    rows = [Example(t, None, None) for t in TEXTS]
    f1, f2 = reg.resolve("sentfuse@1"), reg.resolve("sentfuse@2")
    shared = load_entity(reg, f1, named=True)
    second = load_entity(reg, f2, backbone=shared.backbone, named=True)
    for named, entity in ((shared, f1), (second, f2)):
        named.activate()
        got = predict_examples(named, rows)
        alone = predict_examples(load_entity(reg, entity), rows)  # a fresh, unnamed load
        assert [g["scores"] for g in got] == [a["scores"] for a in alone]  # exact
    # Without names the second fusion over the same members cannot be loaded beside the first.
    with pytest.raises(RegistryError, match="already loaded"):
        load_entity(reg, f2, backbone=load_entity(reg, f1).backbone)

"""Push to and pull from a local Hub-compatible server: pinned, verified, AdapterHub-ready."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from registry import entities as E
from registry import hub
from registry.artifacts import MANIFEST, file_sha256
from registry.cli import cli
from registry.errors import HubError, IntegrityError, InvalidInput, NotFound, RegistryError
from registry.store import Registry
from tests.hubserver import HubServer

ModelCard = pytest.importorskip("huggingface_hub").ModelCard

TABLES = (
    "base_models",
    "tasks",
    "datasets",
    "training_runs",
    "adapters",
    "adapter_versions",
    "fusions",
    "fusion_members",
    "lineage",
    "metrics",
    "drift_reports",
    "aliases",
    "hub_links",
)
WORDS = ["good", "great", "fun", "happy", "bad", "awful", "boring", "sad"]
TEXTS = ["a good movie", "the plot was awful", "i love this book", "boring and sad story"]


# ---------------------------------------------------------------------- fixtures & helpers
def _write_data(folder: Path, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    import random

    rng = random.Random(seed)
    for split, n in (("train", 48), ("validation", 16), ("test", 16)):
        rows = []
        for _ in range(n):
            label = rng.choice(["negative", "positive"])
            word = rng.choice(WORDS[:4] if label == "positive" else WORDS[4:])
            rows.append({"text": f"the {rng.choice(['movie', 'book'])} was {word}", "label": label})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _make_fusion(reg: Registry, members: list[E.AdapterVersion], tmp: Path) -> E.Fusion:
    """Register a fusion over two trained adapters (random fusion layer: no composer needed)."""
    from registry.loader import attach_adapter, load_backbone_for

    backbone = load_backbone_for(reg, members[0])
    names = [attach_adapter(reg, backbone, m) for m in members]
    config = backbone.add_fusion(names)
    backbone.add_head("fusion_head", ["negative", "positive"])
    folder = tmp / "fusion-artifact"
    backbone.save_fusion(names, folder, "fusion_head")
    return reg.register_fusion(
        name="sentiment-fusion",
        task=members[1].task,
        base_model_id=members[0].base_model_id,
        member_ids=[m.id for m in members],
        config=config,
        head={"label_names": ["negative", "positive"], "layers": 2},
        artifact_dir=folder,
        trainable_params=backbone.count_parameters(),
        training_run={"seed": 0, "hyperparams": {"kind": "test fusion"}},
    )


@pytest.fixture(scope="module")
def source_home(tmp_path_factory: pytest.TempPathFactory, tiny_base_dir: Path) -> Path:
    """A registry with two trained adapters (books, movies) and a fusion over them."""
    from registry.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("hub-source")
    home = root / "home"
    reg = Registry.init(home)
    try:
        cfg = TrainConfig(epochs=1, batch_size=16)
        books = train(reg, "books", _write_data(root / "books", 1), str(tiny_base_dir),
                      config=cfg, progress=False).version  # fmt: skip
        movies = train(reg, "movies", _write_data(root / "movies", 2), str(tiny_base_dir),
                       config=cfg, progress=False).version  # fmt: skip
        try:
            from registry.composer import FuseConfig, fuse
        except ImportError:  # the composer is not there yet: register one directly
            _make_fusion(reg, [books, movies], root)
        else:
            fuse(reg, "movies", [books.ref, movies.ref], root / "movies", name="sentiment-fusion",
                 config=FuseConfig(epochs=1, batch_size=16), progress=False)  # fmt: skip
    finally:
        reg.close()
    return home


@pytest.fixture
def src(source_home: Path, tmp_path: Path) -> Iterator[Registry]:
    """A private copy of the source registry for one test."""
    home = tmp_path / "src-home"
    shutil.copytree(source_home, home)
    reg = Registry.open(home)
    yield reg
    reg.close()


def know_base(reg: Registry, folder: Path) -> E.BaseModel:
    """Register the base model in ``folder`` (as a teammate's registry would already have it)."""
    from registry.backbone import resolve_base

    info = resolve_base(str(folder))
    return reg.ensure_base_model(
        info.name, info.revision, info.architecture, info.hidden_size, info.num_layers
    )


@pytest.fixture
def dst(tmp_path: Path, tiny_base_dir: Path) -> Iterator[Registry]:
    """A second registry that knows the base model and nothing else."""
    reg = Registry.init(tmp_path / "dst-home")
    know_base(reg, tiny_base_dir)
    yield reg
    reg.close()


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[Registry]:
    """An empty registry: it does not know the base model either."""
    reg = Registry.init(tmp_path / "empty-home")
    yield reg
    reg.close()


def snapshot(reg: Registry) -> dict[str, Any]:
    """Row counts of every table plus the artifact ids on disk: equal means untouched."""
    with reg.db.engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}
    return {"rows": counts, "artifacts": reg.artifacts.all_ids()}


def weight_digests(reg: Registry, entity: E.Entity) -> dict[str, str]:
    folder = reg.artifact_path(entity)
    return {p.name: file_sha256(p) for p in sorted(folder.glob("*.safetensors"))}


def logits(reg: Registry, entity: E.Entity) -> Any:
    from registry.loader import load_entity

    loaded = load_entity(reg, entity)
    batch = loaded.backbone.tokenizer(TEXTS, padding=True, return_tensors="pt")
    return loaded.backbone.logits(dict(batch))


def free_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: nothing listens there


def run_cli(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], env=env)
    return result.exit_code, result.output


# ---------------------------------------------------------------------- round trip
def test_push_and_pull_adapter_and_fusion_round_trip(
    hub_server: HubServer, src: Registry, dst: Registry
) -> None:
    books, movies = src.resolve("books@1"), src.resolve("movies@1")
    fusion = src.resolve("sentiment-fusion@1")
    pushed = {e.ref: hub.push(src, e.ref, f"test-user/{e.name}") for e in (books, movies, fusion)}
    for ref, result in pushed.items():
        assert not result.noop and result.commit_sha == hub_server.head(result.repo_id)
        links = src.hub_links(src.resolve(ref))
        assert [(h.direction, h.commit_sha, h.revision) for h in links] == [
            ("push", result.commit_sha, "main")
        ]

    # The repo holds adapters' own files, registry.json and a card; never the local manifest.
    files = hub_server.files_at("test-user/books", "main")
    assert set(files) == {
        ".gitattributes",
        "adapter_config.json",
        "adapter.safetensors",
        "head_config.json",
        "model_head.safetensors",
        "registry.json",
        "README.md",
    }
    assert MANIFEST not in files
    card = ModelCard(files["README.md"].decode()).data.to_dict()
    assert card["library_name"] == "adapters"
    assert card["pipeline_tag"] == "text-classification"
    assert {"adapters", "adapter-registry", "books", "seq_bn"} <= set(card["tags"])
    assert "base_model" not in card  # a local base model without a known Hub id
    names = {r["metrics"][0]["name"] for r in card["model-index"][0]["results"]}
    assert "validation accuracy" in names
    fusion_files = set(hub_server.files_at("test-user/sentiment-fusion", "main"))
    assert {
        "adapter_fusion_config.json",
        "model_adapter_fusion.safetensors",
        "head_config.json",
        "model_head.safetensors",
        "registry.json",
        "README.md",
    } <= fusion_files
    assert MANIFEST not in fusion_files
    meta = json.loads(files["registry.json"])
    assert meta["task"]["label_names"] == ["negative", "positive"]
    assert meta["artifact"]["sha256"] == books.artifact_sha256
    assert {d["split"] for d in meta["datasets"]} == {"train", "validation", "test"}

    # Pushing unchanged content again is a no-op that says so.
    again = hub.push(src, "books@1", "test-user/books")
    assert again.noop and again.commit_sha == pushed["books@1"].commit_sha
    assert len(src.hub_links(books)) == 1

    # A fusion whose members are missing is refused, naming the member repos; nothing changes.
    before = snapshot(dst)
    with pytest.raises(NotFound) as missing:
        hub.pull(dst, "test-user/sentiment-fusion", recursive=False)
    assert "books@1" in missing.value.message and "movies@1" in missing.value.message
    assert f"test-user/books@{pushed['books@1'].commit_sha}" in (missing.value.hint or "")
    assert "--no-recursive" in (missing.value.hint or "")
    assert snapshot(dst) == before

    pulled = {}
    for e in (books, movies, fusion):
        result = hub.pull(dst, f"test-user/{e.name}")
        assert not result.noop and result.source == "adapter-registry"
        assert result.commit_sha == pushed[e.ref].commit_sha
        pulled[e.ref] = result.entity

    for ref, original in (("books@1", books), ("movies@1", movies), ("sentiment-fusion@1", fusion)):
        copy = pulled[ref]
        assert copy.ref == ref and copy.kind == original.kind
        assert copy.artifact_sha256 == original.artifact_sha256
        assert weight_digests(dst, copy) == weight_digests(src, original)

        # metrics carried over and re-recorded on the new version
        def key(m: E.Metric) -> tuple[Any, ...]:
            return (m.name, m.split, m.step, m.value)

        assert sorted(map(key, dst.metrics(copy)), key=repr) == sorted(
            map(key, src.metrics(original)), key=repr
        )
        # the commit sha is recorded, and the new version hangs off a hub node
        (link,) = dst.hub_links(copy)
        assert (link.direction, link.repo_id, link.commit_sha) == (
            "pull",
            f"test-user/{original.name}",
            pushed[ref].commit_sha,
        )
        edges = [(e.parent_kind, e.parent_id, e.relation) for e in dst.edges_of(copy.kind, copy.id)]
        assert ("hub", link.id, "pulled_from_hub") in edges
        # the lineage it had in the source registry is kept with its training run
        assert copy.training_run_id is not None
        origin = dst.training_run(copy.training_run_id).hyperparams["hub_origin"]
        upstream = origin["lineage"]
        shas = {n["label"]: n["artifact_sha256"] for n in upstream["nodes"]}
        nodes = [{k: v for k, v in n.items() if k != "artifact_sha256"} for n in upstream["nodes"]]
        assert {**upstream, "nodes": nodes} == src.lineage(original)  # recorded: read-only
        assert shas[original.ref] == original.artifact_sha256
        assert origin["commit_sha"] == pushed[ref].commit_sha
    assert [m for m in dst.resolve("sentiment-fusion@1").members] == ["books@1", "movies@1"]  # type: ignore[union-attr]
    # metrics point at re-recorded dataset snapshots with the same fingerprints
    src_fps = {(d.split, d.fingerprint) for d in src.list_datasets()}
    assert {(d.split, d.fingerprint) for d in dst.list_datasets()} == src_fps

    # Same logits from the same fixed input in both registries.
    import torch

    for ref in ("books@1", "sentiment-fusion@1"):
        assert torch.equal(logits(src, src.resolve(ref)), logits(dst, pulled[ref]))

    # Pulling the same commit twice (by branch or by sha) is one version.
    before = snapshot(dst)
    for spec in ("test-user/books", f"test-user/books@{pushed['books@1'].commit_sha}"):
        result = hub.pull(dst, spec)
        assert result.noop and result.entity.id == pulled["books@1"].id
    assert snapshot(dst) == before
    assert dst.verify().ok


def test_pull_at_tag_and_older_commit_gets_older_weights(
    hub_server: HubServer, src: Registry, dst: Registry
) -> None:
    from huggingface_hub import HfApi

    repo = "test-user/sentiment"
    first = hub.push(src, "books@1", repo).commit_sha
    HfApi(endpoint=hub_server.url).create_tag(repo, tag="v1", revision=first)
    second = hub.push(src, "movies@1", repo).commit_sha
    assert second != first and hub_server.head(repo) == second

    at_tag = hub.pull(dst, f"{repo}@v1", name="old")
    assert at_tag.commit_sha == first and at_tag.entity.ref == "old@1"
    assert weight_digests(dst, at_tag.entity) == weight_digests(src, src.resolve("books@1"))
    latest = hub.pull(dst, repo)
    assert latest.commit_sha == second
    assert weight_digests(dst, latest.entity) == weight_digests(src, src.resolve("movies@1"))
    # The older commit by sha is the one already pulled through the tag: not a second version.
    by_sha = hub.pull(dst, f"{repo}@{first}")
    assert by_sha.noop and by_sha.entity.id == at_tag.entity.id
    assert len(dst.list_entities(kind="adapter")) == 2


def test_fusion_pulled_over_renamed_members_gives_same_logits(
    hub_server: HubServer, src: Registry, dst: Registry
) -> None:
    """Members pulled under other names: the fusion's layer names follow them, tensors stay."""
    import torch
    from safetensors.torch import load_file

    for ref in ("books@1", "movies@1", "sentiment-fusion@1"):
        hub.push(src, ref, f"test-user/{ref.split('@')[0]}")
    hub.pull(dst, "test-user/books", name="b")
    hub.pull(dst, "test-user/movies", name="m")
    fusion = hub.pull(dst, "test-user/sentiment-fusion").entity
    assert fusion.members == ("b@1", "m@1")  # type: ignore[union-attr]
    original = src.resolve("sentiment-fusion@1")
    assert fusion.artifact_sha256 != original.artifact_sha256  # renamed keys: new bytes
    ours = load_file(str(dst.artifact_path(fusion) / "model_adapter_fusion.safetensors"))
    theirs = load_file(str(src.artifact_path(original) / "model_adapter_fusion.safetensors"))
    rename = {k.replace("books_v1,movies_v1", "b_v1,m_v1"): v for k, v in theirs.items()}
    assert rename.keys() == ours.keys()
    assert all(torch.equal(rename[k], ours[k]) for k in ours)
    assert torch.equal(logits(src, original), logits(dst, fusion))
    manifest = dst.artifact_path(fusion) / "fusion_manifest.json"
    if manifest.exists():  # written by registry.composer
        members = json.loads(manifest.read_text())["members"]
        assert [m["module_name"] for m in members] == ["b_v1", "m_v1"]


def test_branch_push_and_adapters_library_loads_it(
    hub_server: HubServer, src: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    """The pushed repo is a plain AdapterHub repo: adapters' own load_adapter reads it."""
    import adapters
    import torch

    result = hub.push(src, "books@1", "test-user/books", branch="dev")
    assert result.branch == "dev" and hub_server.head("test-user/books", "dev") == result.commit_sha
    assert "adapter.safetensors" not in hub_server.files_at("test-user/books", "main")

    model = adapters.AutoAdapterModel.from_pretrained(str(tiny_base_dir))
    name = model.load_adapter(
        "test-user/books", source="hf", use_safetensors=True, version=result.commit_sha
    )
    model.set_active_adapters(name)
    model.active_head = name
    model.eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_base_dir))
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = model(**batch).logits
    assert torch.equal(theirs, logits(src, src.resolve("books@1")))


# ---------------------------------------------------------------------- AdapterHub repos
def _adapterhub_repo(
    hub_server: HubServer, tiny_base_dir: Path, tmp_path: Path, repo: str, *, with_head: bool
) -> dict[str, bytes]:
    """Publish an adapter the way the adapters library saves it (pickle .bin weights)."""
    import adapters

    model = adapters.AutoAdapterModel.from_pretrained(str(tiny_base_dir))
    model.add_adapter("hubby", config="seq_bn")
    if with_head:
        model.add_classification_head("hubby", num_labels=2, id2label={0: "neg", 1: "pos"})
    folder = tmp_path / repo.replace("/", "_")
    model.save_adapter(str(folder), "hubby", with_head=with_head)  # adapters' default: .bin
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert "pytorch_adapter.bin" in files
    hub_server.commit_files_direct(repo, files)
    return files


def test_pull_adapterhub_repos_with_and_without_head_then_fuse(
    hub_server: HubServer, dst: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file

    files = _adapterhub_repo(hub_server, tiny_base_dir, tmp_path, "ah/sst-adapter", with_head=True)
    _adapterhub_repo(hub_server, tiny_base_dir, tmp_path, "ah/headless", with_head=False)

    # model_name in adapter_config.json is the base model folder: no --base needed.
    headed = hub.pull(dst, "ah/sst-adapter")
    assert headed.source == "adapterhub" and headed.entity.ref == "sst-adapter@1"
    assert dst.get_task("sst-adapter").label_names == ("neg", "pos")
    folder = dst.artifact_path(headed.entity)
    assert sorted(p.name for p in folder.iterdir() if p.name != MANIFEST) == [
        "adapter.safetensors",
        "adapter_config.json",
        "head_config.json",
        "model_head.safetensors",
    ]
    # The pickle was converted, tensor for tensor.
    original = torch.load(tmp_path / "ah_sst-adapter" / "pytorch_adapter.bin", weights_only=True)
    converted = load_file(str(folder / "adapter.safetensors"))
    assert original.keys() == converted.keys()
    assert all(torch.equal(original[k], converted[k]) for k in original)
    assert files["adapter_config.json"] == (folder / "adapter_config.json").read_bytes()

    # Headless: labels come from the task named with --task; the base from --base.
    with pytest.raises(InvalidInput, match="no head"):
        hub.pull(dst, "ah/headless")
    headless = hub.pull(dst, "ah/headless", task="sst-adapter", base=str(tiny_base_dir))
    assert headless.entity.task == "sst-adapter"
    assert not (dst.artifact_path(headless.entity) / "head_config.json").exists()

    # Both fuse like any other adapter.
    from registry.loader import attach_adapter, load_backbone_for

    backbone = load_backbone_for(dst, headless.entity)
    names = [attach_adapter(dst, backbone, e) for e in (headed.entity, headless.entity)]
    backbone.add_fusion(names)
    backbone.add_head("fused", ["neg", "pos"])
    backbone.activate(names, "fused")
    batch = backbone.tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert backbone.logits(dict(batch)).shape == (len(TEXTS), 2)


# ---------------------------------------------------------------------- refusals
def test_pickle_that_fails_weights_only_is_refused(
    hub_server: HubServer, dst: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    files = _adapterhub_repo(hub_server, tiny_base_dir, tmp_path, "ah/evil", with_head=False)
    import torch

    evil = tmp_path / "evil.bin"
    torch.save({"weight": _Payload()}, evil)  # a custom class: weights_only=True refuses it
    hub_server.commit_files_direct("ah/evil", {**files, "pytorch_adapter.bin": evil.read_bytes()})
    before = snapshot(dst)
    with pytest.raises(InvalidInput, match=r"weights_only=True") as err:
        hub.pull(dst, "ah/evil", task="t", base=str(tiny_base_dir))
    assert "Refused" in (err.value.hint or "")
    assert snapshot(dst) == before
    assert not _Payload.loaded


class _Payload:
    """Unpickling this would run code (it flags itself); torch's weights_only must refuse it."""

    loaded = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (_mark_loaded, ())


def _mark_loaded() -> None:
    _Payload.loaded = True


def test_unsafe_file_name_is_refused_before_any_download(
    hub_server: HubServer, dst: Registry
) -> None:
    hub_server.commit_files_direct(
        "ah/sneaky", {"adapter_config.json": b"{}", "../x": b"escape", "adapter.safetensors": b"x"}
    )
    before = snapshot(dst)
    with pytest.raises(InvalidInput, match=r"unsafe file names \['\.\./x'\]"):
        hub.pull(dst, "ah/sneaky")
    assert not any("/resolve/" in r.path for r in hub_server.requests_log)
    assert snapshot(dst) == before


def test_missing_repo_and_revision_are_clear_errors(
    hub_server: HubServer, src: Registry, dst: Registry
) -> None:
    before = snapshot(dst)
    with pytest.raises(HubError) as err:
        hub.pull(dst, "test-user/nope")
    assert "Repository test-user/nope was not found" in err.value.message
    assert "Check the repo name" in (err.value.hint or "")

    hub.push(src, "books@1", "test-user/books")
    with pytest.raises(HubError) as err:
        hub.pull(dst, "test-user/books@v9")
    assert err.value.message == (
        "Repository test-user/books has no branch, tag or commit 'v9'. Branches: main. Tags: none."
    )
    assert (
        err.value.hint
        == "Pick one of them: adapter-registry pull test-user/books@BRANCH_TAG_OR_SHA"
    )
    with pytest.raises(HubError, match="no branch, tag or commit"):
        hub.pull(dst, "test-user/books@" + "f" * 40)
    with pytest.raises(InvalidInput, match="expected OWNER/NAME"):
        hub.pull(dst, "../etc")
    assert snapshot(dst) == before


def test_unreachable_hub_changes_nothing(hub_server: HubServer, src: Registry) -> None:
    url = free_port_url()
    before = snapshot(src)
    with pytest.raises(HubError) as err:
        hub.push(src, "books@1", "test-user/books", endpoint=url)
    assert err.value.message.startswith(f"Could not reach the Hub at {url}")
    assert "HF_ENDPOINT" in (err.value.hint or "")
    with pytest.raises(HubError, match="Could not reach the Hub"):
        hub.pull(src, "test-user/books", endpoint=url)
    assert snapshot(src) == before


def test_bad_token_and_interrupted_upload_change_nothing(
    hub_server: HubServer, src: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.set_token("hf_good")
    monkeypatch.setenv("HF_TOKEN", "hf_bad")
    before = snapshot(src)
    with pytest.raises(HubError) as err:
        hub.push(src, "books@1", "test-user/books")
    assert "refused the credentials (HTTP 401)" in err.value.message
    assert "HF_TOKEN / huggingface-cli login" in (err.value.hint or "")
    assert snapshot(src) == before and not hub_server.has_repo("test-user/books")

    monkeypatch.setenv("HF_TOKEN", "hf_good")
    hub_server.fail_next("/lfs-upload/", 403)
    with pytest.raises(HubError) as err:
        hub.push(src, "books@1", "test-user/books")
    assert err.value.message.startswith(
        "The transfer was interrupted while pushing books@1 to test-user/books@main"
    )
    assert err.value.hint == "Run the same command again."
    assert snapshot(src) == before
    assert hub.push(src, "books@1", "test-user/books").commit_sha == hub_server.head(
        "test-user/books"
    )


def test_tampered_repo_is_refused(hub_server: HubServer, src: Registry, dst: Registry) -> None:
    hub.push(src, "books@1", "test-user/books")
    files = hub_server.files_at("test-user/books", "main")
    weights = bytearray(files["adapter.safetensors"])
    weights[-1] ^= 1
    hub_server.commit_files_direct("test-user/books", {"adapter.safetensors": bytes(weights)})
    before = snapshot(dst)
    with pytest.raises(IntegrityError, match="does not match the sha256"):
        hub.pull(dst, "test-user/books")
    assert snapshot(dst) == before


# ---------------------------------------------------------------------- command line & token
def test_cli_push_pull_and_token_never_leaks(
    hub_server: HubServer, src: Registry, dst: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hf_SuperSecretToken1234567890"
    hub_server.set_token(secret)
    monkeypatch.setenv("HF_TOKEN", secret)
    src_home, dst_home = src.settings.home, dst.settings.home

    code, out = run_cli(src_home, "push", "books@1", "--repo", "test-user/books", "--private")
    sha = hub_server.head("test-user/books")
    assert (code, out) == (
        0,
        f"Pushed books@1 to test-user/books@main: commit {sha}.\n"
        f"Pull it pinned with: adapter-registry pull test-user/books@{sha}\n",
    )
    code, out = run_cli(src_home, "push", "books@1", "--repo", "test-user/books")
    assert (code, out) == (
        0,
        f"books@1 is already at test-user/books@main (commit {sha}): nothing to push.\n",
    )
    code, out = run_cli(dst_home, "pull", "test-user/books", "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["ref"], data["commit_sha"], data["noop"]) == ("books@1", sha, False)
    code, out = run_cli(dst_home, "pull", f"test-user/books@{sha}")
    assert (code, out) == (
        0,
        f"test-user/books at commit {sha} was already pulled as books@1 (a1): nothing to do.\n",
    )
    code, out = run_cli(dst_home, "show", "books@1")
    assert code == 0 and f"hub           pull test-user/books @ {sha[:12]}" in out
    code, out = run_cli(dst_home, "pull", "test-user/missing")
    assert code == 1 and out.startswith("Error: Repository test-user/missing was not found")
    assert "\nHint: Check the repo name" in out
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    code, wrong = run_cli(src_home, "push", "movies@1", "--repo", "test-user/movies")
    assert code == 1 and "Hint: Check HF_TOKEN / huggingface-cli login" in wrong

    for reg in (src, dst):
        for path in reg.settings.home.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    assert secret not in out + wrong


def _card_meta() -> dict[str, Any]:
    fp_hub, fp_local = "f" * 64, "e" * 64
    metric = {"step": None, "name": "accuracy"}
    return {
        "kind": "adapter",
        "ref": "cb@2",
        "method": "bottleneck",
        "task": {"name": "cb", "label_names": ["a", "b", "c"], "kind": "pair"},
        "base_model": {
            "name": "sentence-transformers/all-MiniLM-L6-v2",
            "revision": "c" * 40,
            "num_layers": 6,
            "hidden_size": 384,
            "hub_id": "sentence-transformers/all-MiniLM-L6-v2",
        },
        "datasets": [
            {
                "source": "super_glue/cb",
                "hub_id": "super_glue/cb",
                "split": "test",
                "row_count": 56,
                "fingerprint": fp_hub,
            },
            {
                "source": "cb",
                "hub_id": None,
                "split": "validation",
                "row_count": 56,
                "fingerprint": fp_local,
            },
        ],  # fmt: skip
        "metrics": [
            {**metric, "value": 0.75, "split": "test", "dataset_fingerprint": fp_hub},
            {**metric, "value": 0.5, "split": "validation", "step": 1, "dataset_fingerprint": None},
            {**metric, "value": 0.7, "split": "validation", "dataset_fingerprint": fp_local},
            {
                **metric,
                "name": "macro_f1",
                "value": 0.6,
                "split": "test",
                "dataset_fingerprint": fp_hub,
            },
            # a re-eval on the same data: the latest value replaces the first, no second entry
            {**metric, "value": 0.8, "split": "test", "dataset_fingerprint": fp_hub},
            {
                **metric,
                "name": "f1/a",
                "value": 0.1,
                "split": "test",
                "dataset_fingerprint": fp_hub,
            },
        ],  # fmt: skip
        "lineage": {"root": "adapter:2", "nodes": [], "edges": []},
        "artifact": {"sha256": "a" * 64},
    }


def test_model_card_metadata_parses_with_one_entry_per_dataset_and_split() -> None:
    card_text = hub.model_card(_card_meta(), "me/cb", license_id="apache-2.0")
    data = ModelCard(card_text).data.to_dict()
    assert data["library_name"] == "adapters"
    assert data["pipeline_tag"] == "text-classification"
    assert data["license"] == "apache-2.0"
    assert data["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert data["base_model_relation"] == "adapter"
    assert data["datasets"] == ["super_glue/cb"]  # Hub ids only
    (index,) = data["model-index"]
    results = {(r["dataset"]["type"], r["dataset"]["split"]): r for r in index["results"]}
    assert sorted(results) == [("cb", "validation"), ("super_glue/cb", "test")]
    for r in index["results"]:
        assert r["task"] == {"type": "text-classification", "name": "cb"}
    test = results[("super_glue/cb", "test")]
    assert test["dataset"]["name"] == "super_glue/cb"
    assert {m["type"]: m["value"] for m in test["metrics"]} == {"accuracy": 0.8, "macro_f1": 0.6}
    assert {m["type"]: m["value"] for m in results[("cb", "validation")]["metrics"]} == {
        "accuracy": 0.7
    }
    # The body: the metrics table, the Hub base in the usage snippet.
    assert "| super_glue/cb | test | 0.8000 | 0.6000 |" in card_text
    assert "| cb | validation | 0.7000 |  |" in card_text
    assert 'AutoAdapterModel.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")' in (
        card_text.replace("'", '"')
    )
    assert 'model.load_adapter("me/cb", source="hf", use_safetensors=True)' in card_text
    with pytest.raises(InvalidInput, match="licence"):
        hub.push(None, "cb@2", "me/cb", license_id="Apache 2")  # type: ignore[arg-type]


def test_parse_repo_spec() -> None:
    assert hub.parse_repo_spec("o/n") == ("o/n", None)
    assert hub.parse_repo_spec("o/n@v1") == ("o/n", "v1")
    for bad in ("n", "o/n/x", "/o/n", "o/..", "o/n@"):
        with pytest.raises(InvalidInput):
            hub.parse_repo_spec(bad)


def test_hub_module_is_not_imported_by_the_cli() -> None:
    import subprocess
    import sys

    code = (
        "import sys, registry.cli; "
        "print('huggingface_hub' in sys.modules or 'registry.hub' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    ).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------------- cards: no local paths
def _pushed_bytes(hub_server: HubServer, repo: str) -> dict[str, bytes]:
    return {k: v for k, v in hub_server.files_at(repo, "main").items() if k != ".gitattributes"}


def test_push_publishes_no_local_path_and_names_the_hub_base(
    hub_server: HubServer,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    tiny_base_dir: Path,
) -> None:
    """Train with --base-hub-id on a local copy, eval twice, push: valid metadata, no paths."""
    home = tmp_path / "home"
    data = _write_data(tmp_path / "data" / "books-reviews", 3)
    code, out = run_cli(
        home, "train", "books", "--data", str(data), "--base", str(tiny_base_dir),
        "--base-hub-id", "test-org/tiny-bert", "--epochs", "1", "--batch-size", "16",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, out
    code, out = run_cli(
        home, "train", "other", "--data", str(data), "--base", str(tiny_base_dir),
        "--base-hub-id", "not a hub id", "--epochs", "1",
    )  # fmt: skip
    assert code != 0 and "is not a Hub model id" in out  # refused before any training
    for _ in range(2):  # a re-eval records the metrics again
        code, out = run_cli(home, "eval", "books@1", "--data", str(data), "--split", "test")
        assert code == 0, out
    code, out = run_cli(home, "push", "books@1", "--repo", "test-user/books", "--license", "mit")
    assert code == 0, out
    files = _pushed_bytes(hub_server, "test-user/books")

    needles = {
        str(home),
        str(data),
        str(tiny_base_dir),
        str(tmp_path_factory.getbasetemp()),
        str(Path(tempfile.gettempdir())) + "/",
    }
    if len(str(Path.home())) >= 4:
        needles.add(str(Path.home()) + "/")
    for name, blob in files.items():
        for needle in needles:
            assert needle.encode() not in blob, (name, needle)

    card_text = files["README.md"].decode()
    card = ModelCard(card_text).data.to_dict()
    assert card["base_model"] == "test-org/tiny-bert"
    assert card["base_model_relation"] == "adapter"
    assert card["license"] == "mit"
    assert "datasets" not in card  # local data has no Hub id
    (index,) = card["model-index"]
    keys = [(r["dataset"]["type"], r["dataset"]["split"]) for r in index["results"]]
    assert sorted(keys) == [("books-reviews", "test"), ("books-reviews", "validation")]
    assert "from_pretrained('test-org/tiny-bert')" in card_text
    assert "## Lineage" in card_text and "| books-reviews | test |" in card_text
    meta = json.loads(files["registry.json"])
    assert meta["base_model"]["name"] == tiny_base_dir.name
    assert meta["base_model"]["hub_id"] == "test-org/tiny-bert"
    assert {d["source"] for d in meta["datasets"]} == {"books-reviews"}

    # Unchanged: a no-op. Another licence, or another eval, changes the card: a new commit.
    first = hub_server.head("test-user/books")
    code, out = run_cli(home, "push", "books@1", "--repo", "test-user/books", "--license", "mit")
    assert code == 0 and "nothing to push" in out
    code, out = run_cli(home, "push", "books@1", "--repo", "test-user/books")
    assert code == 0 and hub_server.head("test-user/books") != first
    assert (
        "license"
        not in ModelCard(
            _pushed_bytes(hub_server, "test-user/books")["README.md"].decode()
        ).data.to_dict()
    )
    second = hub_server.head("test-user/books")
    code, out = run_cli(home, "eval", "books@1", "--data", str(data), "--split", "validation")
    assert code == 0, out
    code, out = run_cli(home, "push", "books@1", "--repo", "test-user/books")
    assert code == 0 and hub_server.head("test-user/books") != second
    card = ModelCard(_pushed_bytes(hub_server, "test-user/books")["README.md"].decode())
    results = card.data.to_dict()["model-index"][0]["results"]
    assert len(results) == 2  # still one entry per dataset and split


# ---------------------------------------------------------------------- pull: base and rows
def test_pull_needs_the_local_base_and_a_failed_pull_leaves_no_base_row(
    hub_server: HubServer, src: Registry, empty: Registry, tiny_base_dir: Path
) -> None:
    from sqlalchemy import text as sql

    hub.push(src, "books@1", "test-user/books")
    hub_server.requests_log.clear()
    before = snapshot(empty)
    with pytest.raises(NotFound) as err:
        hub.pull(empty, "test-user/books")
    assert "local base model tiny-bert" in err.value.message
    assert (
        err.value.hint
        == "Give your copy of it: adapter-registry pull test-user/books --base FOLDER"
    )
    assert not any(r.path.endswith(".safetensors") for r in hub_server.requests_log)
    assert snapshot(empty) == before

    # A failure at the last write of the transaction: no base model, task or dataset row stays.
    with empty.db.engine.begin() as conn:
        conn.execute(
            sql(
                "CREATE TRIGGER refuse_links BEFORE INSERT ON hub_links "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        )
    with pytest.raises(RegistryError, match="injected failure"):
        hub.pull(empty, "test-user/books", base=str(tiny_base_dir))
    assert snapshot(empty) == before
    assert before["rows"]["base_models"] == 0
    with empty.db.engine.begin() as conn:
        conn.execute(sql("DROP TRIGGER refuse_links"))
    pulled = hub.pull(empty, "test-user/books", base=str(tiny_base_dir)).entity
    assert empty.get_base_model(pulled.base_model_id).name == str(tiny_base_dir)


# ---------------------------------------------------------------------- fusion: links, recursion
def test_fusion_card_links_members_and_recursive_pull_imports_lineage(
    hub_server: HubServer, src: Registry, empty: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    from registry.trainer import TrainConfig, train

    books2 = train(src, "books", _write_data(tmp_path / "books2", 4), str(tiny_base_dir),
                   config=TrainConfig(epochs=1, batch_size=16), init_from="books@1",
                   progress=False).version  # fmt: skip
    assert books2.ref == "books@2"
    # Pushed before its members: the card cannot link them, and the push says so.
    early = hub.push(src, "sentiment-fusion@1", "test-user/fusion")
    assert early.members_not_on_hub == ("books@1", "movies@1")
    code, out = run_cli(src.settings.home, "push", "sentiment-fusion@1", "--repo", "test-user/f2")
    assert code == 0 and "Note: members books@1, movies@1 are not on the Hub" in out
    card = _pushed_bytes(hub_server, "test-user/fusion")["README.md"].decode()
    assert "- `books@1` (module `books_v1`): not on the Hub" in card
    commits = {ref: hub.push(src, ref, f"test-user/{ref.replace('@', '-v')}").commit_sha
               for ref in ("books@1", "books@2", "movies@1")}  # fmt: skip
    fusion = hub.push(src, "sentiment-fusion@1", "test-user/fusion")  # the card changed
    assert not fusion.noop and fusion.commit_sha != early.commit_sha
    assert fusion.members_not_on_hub == ()
    card = _pushed_bytes(hub_server, "test-user/fusion")["README.md"].decode()
    for ref in ("books@1", "movies@1"):
        repo = f"test-user/{ref.replace('@', '-v')}"
        assert f"({hub_server.url}/{repo}/tree/{commits[ref]})" in card
        assert f"commit `{commits[ref]}`" in card
    assert "`books@1` is fused into `sentiment-fusion@1`" in card

    # --no-recursive refuses and names the pulls; nothing is written.
    before = snapshot(empty)
    with pytest.raises(NotFound, match="needs member adapters"):
        hub.pull(empty, "test-user/fusion", base=str(tiny_base_dir), recursive=False)
    assert snapshot(empty) == before

    # A failure when the fusion registers rolls back the members pulled with it too.
    from sqlalchemy import text as sql

    with empty.db.engine.begin() as conn:
        conn.execute(
            sql(
                "CREATE TRIGGER refuse_fusions BEFORE INSERT ON fusions "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        )
    with pytest.raises(RegistryError, match="injected failure"):
        hub.pull(empty, "test-user/fusion", base=str(tiny_base_dir))
    assert snapshot(empty) == before
    with empty.db.engine.begin() as conn:
        conn.execute(sql("DROP TRIGGER refuse_fusions"))

    # The default pulls the members at the commits the fusion records, in one go.
    result = hub.pull(empty, "test-user/fusion", base=str(tiny_base_dir))
    assert result.members == ("books@1", "movies@1")
    pulled = result.entity
    assert pulled.members == ("books@1", "movies@1")  # type: ignore[union-attr]
    assert pulled.artifact_sha256 == src.resolve("sentiment-fusion@1").artifact_sha256
    import torch

    assert torch.equal(logits(src, src.resolve("sentiment-fusion@1")), logits(empty, pulled))
    for ref in ("books@1", "movies@1"):
        (link,) = empty.hub_links(empty.resolve(ref))
        assert link.commit_sha == commits[ref]
    assert fusion.commit_sha == empty.hub_links(pulled)[0].commit_sha
    assert empty.verify().ok

    # Pulling books@2 afterwards imports its upstream warm start from books@1 (already here).
    second = hub.pull(empty, "test-user/books-v2").entity
    relations = {
        (e.parent_kind, e.parent_id, e.relation) for e in empty.edges_of("adapter", second.id)
    }
    assert ("adapter", empty.resolve("books@1").id, "warm_started_from") in relations

    # The command line pulls recursively by default and says what came with the fusion.
    other = Registry.init(tmp_path / "other-home")
    know_base(other, tiny_base_dir)
    other.close()
    code, out = run_cli(tmp_path / "other-home", "pull", "test-user/fusion", "--no-recursive")
    assert code == 1 and "Pull them first, or leave out --no-recursive" in out
    code, out = run_cli(tmp_path / "other-home", "pull", "test-user/fusion")
    assert code == 0, out
    assert out.startswith("Pulled member books@1 with the fusion.\nPulled member movies@1")


def test_a_fusion_member_link_to_other_weights_is_refused(
    hub_server: HubServer, src: Registry, dst: Registry
) -> None:
    """The member repo and commit come from the fusion's registry.json: the sha must match."""
    books = hub.push(src, "books@1", "test-user/books").commit_sha
    movies = hub.push(src, "movies@1", "test-user/movies").commit_sha
    hub.push(src, "sentiment-fusion@1", "test-user/fusion")
    files = _pushed_bytes(hub_server, "test-user/fusion")
    meta = json.loads(files["registry.json"])
    assert meta["members"][0]["hub"][-1]["commit_sha"] == books
    meta["members"][0]["hub"] = [{"repo_id": "test-user/movies", "commit_sha": movies}]
    hub_server.commit_files_direct(
        "test-user/fusion", {**files, "registry.json": json.dumps(meta).encode()}
    )
    before = snapshot(dst)
    with pytest.raises(IntegrityError, match="not the .* the fusion records"):
        hub.pull(dst, "test-user/fusion")
    assert snapshot(dst) == before
    meta["members"] = meta["members"] * 40
    hub_server.commit_files_direct(
        "test-user/fusion", {**files, "registry.json": json.dumps(meta).encode()}
    )
    with pytest.raises(InvalidInput, match="lists 80 fusion members; at most 64"):
        hub.pull(dst, "test-user/fusion")
    assert snapshot(dst) == before


def test_pulled_lineage_never_rewrites_versions_already_here(
    hub_server: HubServer, src: Registry, dst: Registry
) -> None:
    """Upstream edges are imported only into the versions a pull registers."""
    hub.push(src, "movies@1", "test-user/movies")
    hub.push(src, "books@1", "test-user/books")
    movies = hub.pull(dst, "test-user/movies").entity
    edges_before = dst.edges_of("adapter", movies.id)
    files = _pushed_bytes(hub_server, "test-user/books")
    meta = json.loads(files["registry.json"])
    graph = meta["lineage"]
    graph["nodes"].append({"key": "adapter:99", "kind": "adapter", "id": 99, "label": "movies@1",
                           "artifact_sha256": movies.artifact_sha256})  # fmt: skip
    graph["edges"] += [
        {"parent": graph["root"], "child": "adapter:99", "relation": "warm_started_from"},
        {"parent": "adapter:99", "child": graph["root"], "relation": "warm_started_from"},
        {"parent": "adapter:99", "child": graph["root"], "relation": "made_up"},
    ]
    hub_server.commit_files_direct(
        "test-user/books", {**files, "registry.json": json.dumps(meta).encode()}
    )
    books = hub.pull(dst, "test-user/books").entity
    assert dst.edges_of("adapter", movies.id) == edges_before  # not rewritten
    relations = {
        (e.parent_kind, e.parent_id, e.relation) for e in dst.edges_of("adapter", books.id)
    }
    assert ("adapter", movies.id, "warm_started_from") in relations  # into the new version
    assert all(r in ("warm_started_from", "pulled_from_hub") for _, _, r in relations)

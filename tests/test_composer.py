"""The composer: fusion training changes only the fusion, reloads exactly, and refuses cleanly."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from registry import composer, fitting
from registry.cli import cli
from registry.composer import FUSION_HEAD, MANIFEST, FuseConfig, fuse, fusion_attention
from registry.data import Example, make_batches
from registry.errors import AlreadyExists, Interrupted, InvalidInput, NotFound, RegistryError
from registry.loader import load_entity, module_name
from registry.store import Registry
from registry.trainer import TrainConfig, train
from tests._tiny import build_tiny_bert

REPO = Path(__file__).resolve().parents[1]
WORDS = ["the", "a", "man", "woman", "dog", "cat", "sat", "on", "mat", "runs", "fast", "slow"]
WORDS += ["good", "bad", "movie", "book", "story"]
NLI = ["contradiction", "entailment", "neutral"]
FAST = FuseConfig(epochs=2, batch_size=16, max_length=32, device="cpu")
PROBE = [
    Example("the man sat on the mat", "a man sat", None),
    Example("the dog runs fast", "the cat is slow", None),
    Example("a good movie", "a bad book and a long story", None),
]


def write_pairs(folder: Path, labels: list[str], seed: int, n_train: int = 36) -> Path:
    """Write a tiny text-pair dataset (train + validation jsonl) and return its folder."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("validation", 12)):
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for i in range(n):
                label = labels[i % len(labels)]
                a = " ".join(rng.choices(WORDS, k=6))
                # Tie text_b to the label a little, so there is something to learn.
                cue = ["yes", "no", "why"][labels.index(label) % 3]
                b = " ".join(rng.choices(WORDS, k=3)) + f" {cue}"
                row = {"text_a": a, "text_b": b, "label": label}
                fh.write(json.dumps(row) + "\n")
    return folder


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tiny_base_dir: Path) -> dict[str, Any]:
    """Build, once per module, a registry with members to fuse; tests work on copies of it."""
    root = tmp_path_factory.mktemp("composer")
    home = root / "home"
    data = {
        "nli": write_pairs(root / "data-nli", NLI, seed=1),
        "para": write_pairs(root / "data-para", ["duplicate", "not_duplicate"], seed=2),
        "cb": write_pairs(root / "data-cb", NLI, seed=3),
        "other": write_pairs(root / "data-other", ["duplicate", "not_duplicate"], seed=4),
    }
    other_base = build_tiny_bert(root / "other-bert", seed=1)
    cfg = TrainConfig(epochs=1, batch_size=16, max_length=32, device="cpu")
    reg = Registry.init(home)
    try:
        for task in ("nli", "para", "cb"):
            train(reg, task, data[task], str(tiny_base_dir), config=cfg, progress=False)
        train(reg, "other", data["other"], str(other_base), config=cfg, progress=False)
        # A non-bottleneck adapter version (as a Hub pull of another method would register).
        fake = root / "fake-lora"
        fake.mkdir()
        (fake / "adapter_config.json").write_text('{"architecture": "lora", "r": 8}')
        reg.register_adapter_version(
            name="lora-thing",
            task="nli",
            base_model_id=reg.get_task("nli").base_model_id or 0,
            method="lora",
            config={"architecture": "lora", "r": 8},
            artifact_dir=fake,
            trainable_params=10,
        )
    finally:
        reg.close()
    return {"home": home, "data": data}


@pytest.fixture
def reg(template: dict[str, Any]) -> Iterator[Registry]:
    """Yield a private copy of the template registry at ADAPTER_REGISTRY_HOME."""
    home = Path(os.environ["ADAPTER_REGISTRY_HOME"])
    shutil.copytree(template["home"], home)
    for path in home.rglob("*"):  # artifacts are stored read-only; let tmp_path cleanup work
        if path.is_dir():
            path.chmod(0o755)
    registry = Registry.open(home)
    yield registry
    registry.close()


def state(registry: Registry) -> dict[str, Any]:
    """Return everything a refused fuse must leave as it was."""
    return {
        "entities": [e.to_dict() for e in registry.list_entities()],
        "artifacts": sorted(registry.artifacts.all_ids()),
        "tasks": [t.to_dict() for t in registry.list_tasks()],
        "datasets": [d.to_dict() for d in registry.list_datasets()],
    }


def file_hashes(folder: Path) -> dict[str, str]:
    """Return sha256 of every file under a folder, by relative path (independent of the store)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def probe_logits(backbone: Any) -> np.ndarray:
    batches, _ = make_batches(backbone.tokenizer, PROBE, None, batch_size=8, shuffle=False, seed=0)
    return backbone.logits(batches[0]).cpu().numpy()


@pytest.fixture
def spy_fit(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Wrap the shared fit loop: snapshot every tensor before and after, keep the backbone."""
    seen: dict[str, Any] = {}
    real: Callable[..., Any] = fitting.fit

    def wrapper(backbone: Any, *args: Any, **kwargs: Any) -> Any:
        seen["before"] = backbone.named_tensors()
        seen["trainable"] = {n for n, _ in backbone.trainable_parameters()}
        seen["extra_loss"] = kwargs.get("extra_loss")
        result = real(backbone, *args, **kwargs)
        seen["after"] = backbone.named_tensors()
        seen["backbone"] = backbone
        return result

    monkeypatch.setattr(fitting, "fit", wrapper)
    return seen


# --------------------------------------------------------------------------- happy path
def test_fuse_trains_only_the_fusion_and_reloads_exactly_in_a_fresh_process(
    reg: Registry, template: dict[str, Any], spy_fit: dict[str, Any], tmp_path: Path
) -> None:
    refs = ["nli@1", "para@1", "cb@1"]  # the target task's own adapter is a member
    members = [reg.resolve(r) for r in refs]
    before_files = {m.ref: file_hashes(reg.artifacts.path_for(m.artifact_sha256)) for m in members}

    outcome = fuse(reg, "cb", refs, template["data"]["cb"], config=FAST, progress=False)

    fusion = outcome.fusion
    assert (fusion.ref, fusion.task, list(fusion.members)) == ("cb-fusion@1", "cb", refs)
    assert list(fusion.member_ids) == [m.id for m in members]
    assert fusion.head == {"labels": NLI, "layers": 2}
    assert fusion.config["dynamic"] is True and fusion.config["regularization"] is True
    assert outcome.members_verified == 3 and outcome.earlier_artifacts_verified >= 5
    assert set(outcome.metrics) == {"train", "validation"}
    for split_metrics in outcome.metrics.values():
        assert {"accuracy", "macro_f1"} <= set(split_metrics)
    assert spy_fit["extra_loss"] is not None  # dynamic fusion adds the value regulariser

    # Member artifacts: byte for byte as before.
    for m in members:
        assert file_hashes(reg.artifacts.path_for(m.artifact_sha256)) == before_files[m.ref]

    # Only the fusion layer and its head were trainable, and only they changed.
    fusion_layer = "adapter_fusion_layer." + ",".join(module_name(m) for m in members) + "."
    head = f"heads.{FUSION_HEAD}."

    def is_fusion(n: str) -> bool:
        return fusion_layer in n or n.startswith(head)

    assert spy_fit["trainable"] and all(is_fusion(n) for n in spy_fit["trainable"])
    before, after = spy_fit["before"], spy_fit["after"]
    assert before.keys() == after.keys()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(is_fusion(n) for n in changed)
    unchanged = [n for n in before if not is_fusion(n)]
    assert any(".adapters." in n for n in unchanged)  # member adapter tensors were checked
    assert any(n.startswith("bert.") or "embeddings" in n for n in unchanged)  # and the base

    # The manifest names every member by ref, id, sha256 and module name, in order.
    art = reg.artifact_path(fusion)
    manifest = json.loads((art / MANIFEST).read_text())
    assert [m["ref"] for m in manifest["members"]] == refs
    assert [m["artifact_sha256"] for m in manifest["members"]] == [
        m.artifact_sha256 for m in members
    ]
    assert [m["module_name"] for m in manifest["members"]] == [module_name(m) for m in members]
    assert manifest["head"]["labels"] == NLI
    assert manifest["base_model"]["revision"] == reg.get_base_model(fusion.base_model_id).revision
    assert not Path(manifest["base_model"]["name"]).is_absolute()

    # Lineage: fused_from every member; metrics carry dataset snapshots.
    parents = {(e.parent_id, e.relation) for e in reg.edges_of("fusion", fusion.id)}
    assert {(m.id, "fused_from") for m in members} <= parents
    recorded = [m for m in reg.metrics(fusion) if m.name == "accuracy" and m.step is None]
    assert {m.split for m in recorded} == {"train", "validation"}
    assert all(m.dataset_id is not None for m in recorded)
    run = reg.training_run(fusion.training_run_id or 0)
    assert run.kind == "fusion" and run.hyperparams["members"] == refs

    # Right after training vs a fresh process that only has the registry.
    expected = probe_logits(spy_fit["backbone"])
    out = tmp_path / "fresh.npy"
    script = (
        "import sys, numpy as np\n"
        "from registry.store import Registry\n"
        "from registry.loader import load_entity\n"
        "from tests.test_composer import probe_logits\n"
        "reg = Registry.open(sys.argv[1])\n"
        "loaded = load_entity(reg, reg.resolve(sys.argv[2]))\n"
        "np.save(sys.argv[3], probe_logits(loaded.backbone))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-c", script, str(reg.settings.home), fusion.ref, str(out)],
        check=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    fresh = np.load(out)
    assert fresh.shape == (len(PROBE), len(NLI))
    assert np.max(np.abs(fresh - expected)) <= 1e-5


def test_static_fusion_reloads_in_process_and_reports_attention(
    reg: Registry, template: dict[str, Any], spy_fit: dict[str, Any]
) -> None:
    config = FuseConfig(dynamic=False, epochs=1, batch_size=16, max_length=32, device="cpu")
    outcome = fuse(
        reg,
        "cb",
        ["nli", "para"],
        template["data"]["cb"],
        name="cb-static",
        config=config,
        progress=False,
    )
    assert outcome.fusion.ref == "cb-static@1" and outcome.fusion.config["dynamic"] is False
    assert spy_fit["extra_loss"] is None
    loaded = load_entity(reg, outcome.fusion)
    assert loaded.label_names == NLI
    assert np.max(np.abs(probe_logits(loaded.backbone) - probe_logits(spy_fit["backbone"]))) <= 1e-5
    weights, members = fusion_attention(reg, "cb-static", template["data"]["cb"], max_examples=5)
    assert members == ["nli@1", "para@1"]
    assert weights.shape == (2, 2)  # tiny BERT: 2 layers × 2 members
    assert np.allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(InvalidInput, match="not a fusion"):
        fusion_attention(reg, "nli@1", template["data"]["cb"])


def test_a_new_target_task_is_created_with_the_data_labels(
    reg: Registry, template: dict[str, Any]
) -> None:
    with pytest.raises(NotFound):
        reg.get_task("cb2")
    outcome = fuse(reg, "cb2", ["nli", "cb"], template["data"]["cb"], config=FAST, progress=False)
    assert outcome.fusion.ref == "cb2-fusion@1"
    task = reg.get_task("cb2")
    assert (list(task.label_names), task.kind, task.base_model_id) == (
        NLI,
        "pair",
        outcome.fusion.base_model_id,
    )


# --------------------------------------------------------------------------- refusals
REFUSALS: list[tuple[str, Callable[[Registry, dict[str, Path]], dict[str, Any]], type, str]] = [
    (
        "one member",
        lambda r, d: {"task": "cb", "adapters": ["nli@1"], "data": d["cb"]},
        InvalidInput,
        "at least two member adapters",
    ),
    (
        "duplicate members",
        lambda r, d: {"task": "cb", "adapters": ["nli@1", "para", "nli"], "data": d["cb"]},
        InvalidInput,
        "same adapter version",
    ),
    (
        "unknown member",
        lambda r, d: {"task": "cb", "adapters": ["nli", "nope@3"], "data": d["cb"]},
        NotFound,
        "nope",
    ),
    (
        "other base model",
        lambda r, d: {"task": "cb", "adapters": ["nli", "other"], "data": d["cb"]},
        InvalidInput,
        "different base models: nli@1 on .*tiny-bert.*, other@1 on .*other-bert",
    ),
    (
        "not a bottleneck adapter",
        lambda r, d: {"task": "cb", "adapters": ["nli", "lora-thing"], "data": d["cb"]},
        InvalidInput,
        "'lora' adapter; AdapterFusion combines bottleneck adapters only",
    ),
    (
        "labels outside the task",
        lambda r, d: {"task": "para", "adapters": ["nli", "para"], "data": d["cb"]},
        InvalidInput,
        "not one of the task's labels",
    ),
    (
        "task on another base model",
        lambda r, d: {"task": "other", "adapters": ["nli", "para"], "data": d["other"]},
        InvalidInput,
        "registered on base model",
    ),
    (
        "name of an adapter",
        lambda r, d: {"task": "cb", "adapters": ["nli", "para"], "data": d["cb"], "name": "nli"},
        AlreadyExists,
        "already the name of an adapter",
    ),
]


@pytest.mark.parametrize(
    ("why", "make", "error", "message"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
def test_refusals_register_nothing(
    reg: Registry,
    template: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    why: str,
    make: Callable[[Registry, dict[str, Path]], dict[str, Any]],
    error: type,
    message: str,
) -> None:
    def no_model(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was loaded before the request was checked")

    monkeypatch.setattr(composer, "prepare_backbone", no_model)
    before = state(reg)
    kwargs = make(reg, template["data"])
    with pytest.raises(error, match=message) as info:
        fuse(reg, progress=False, **kwargs)
    assert isinstance(info.value, RegistryError) and info.value.hint
    assert state(reg) == before


def test_deprecated_member_is_refused_unless_allowed(
    reg: Registry, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    reg.set_status("para@1", "deprecated")
    before = state(reg)
    with pytest.raises(InvalidInput, match="para@1 is deprecated") as info:
        fuse(reg, "cb", ["nli", "para@1"], template["data"]["cb"], progress=False)
    assert "--allow-deprecated" in (info.value.hint or "")
    assert state(reg) == before
    # Allowed: the check passes and the model loads (stopped right there).
    monkeypatch.setattr(composer, "prepare_backbone", _stop)
    with pytest.raises(_Stop):
        fuse(reg, "cb", ["nli", "para@1"], template["data"]["cb"], allow_deprecated=True)
    assert state(reg) == before


class _Stop(Exception):
    pass


def _stop(*args: Any, **kwargs: Any) -> Any:
    raise _Stop


def test_fusion_as_member_is_refused(reg: Registry, template: dict[str, Any]) -> None:
    fuse(reg, "cb", ["nli", "para"], template["data"]["cb"], config=FAST, progress=False)
    before = state(reg)
    with pytest.raises(InvalidInput, match="is a fusion"):
        fuse(reg, "cb", ["nli", "cb-fusion@1"], template["data"]["cb"], name="x", progress=False)
    assert state(reg) == before


# --------------------------------------------------------------------------- CLI
def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_fuse_json_and_table(reg: Registry, template: dict[str, Any]) -> None:
    data = str(template["data"]["cb"])
    code, out = run(
        "fuse", "cb", "--adapters", "nli@1,para@1,cb@1", "--data", data,
        "--epochs", "1", "--batch-size", "16", "--max-length", "32", "--json",
    )  # fmt: skip
    assert code == 0, out
    payload = json.loads(out)
    assert payload["ref"] == "cb-fusion@1" and payload["members"] == ["nli@1", "para@1", "cb@1"]
    assert payload["members_verified"] == 3
    assert set(payload["metrics"]) == {"train", "validation"}

    code, out = run(
        "fuse", "cb", "--adapters", "nli,para", "--data", data, "--name", "cb-static",
        "--static", "--epochs", "1", "--max-length", "32", "--no-progress",
    )  # fmt: skip
    assert code == 0, out
    assert out.startswith("Registered fusion cb-static@1 (f2) for task cb over nli@1, para@1: ")
    assert "validation" in out and "ACCURACY" in out
    assert "Verified unchanged: 2 member artifact(s)" in out
    assert reg.resolve("cb-static@1").config["dynamic"] is False


def test_cli_fuse_refusal(reg: Registry, template: dict[str, Any]) -> None:
    before = state(reg)
    code, out = run("fuse", "cb", "--adapters", "nli", "--data", str(template["data"]["cb"]))
    assert code == 1
    assert out == (
        "Error: A fusion needs at least two member adapters, got 1: nli.\n"
        "Hint: Name two or more, e.g. --adapters mnli@1,qqp@1,cb@1\n"
    )
    assert state(reg) == before


def test_cli_attention_writes_png(reg: Registry, template: dict[str, Any], tmp_path: Path) -> None:
    data = template["data"]["cb"]
    fuse(reg, "cb", ["nli", "para", "cb"], data, config=FAST, progress=False)
    out_dir = tmp_path / "plots"
    code, out = run("attention", "cb-fusion@1", "--data", str(data), "--out", str(out_dir))
    assert code == 0, out
    png = out_dir / "attention-cb-fusion-v1.png"
    assert out.rstrip().endswith(f"Wrote heatmap to {png}")
    assert "nli@1" in out and "LAYER" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out = run(
        "attention", "cb-fusion", "--data", str(data), "--out", str(out_dir), "--json",
        "--device", "cpu", "--threads", "2",
    )  # fmt: skip
    assert code == 0, out
    payload = json.loads(out)
    assert payload["members"] == ["nli@1", "para@1", "cb@1"]
    assert np.asarray(payload["attention"]).shape == (2, 3)


# ----------------------------------------------------------------- Ctrl-C (the shared envelope)
def _ctrl_c(*args: Any, **kwargs: Any) -> Any:
    raise KeyboardInterrupt


def test_ctrl_c_before_the_commit_says_nothing_was_registered(
    reg: Registry, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = state(reg)
    monkeypatch.setattr(composer, "prepare_backbone", _ctrl_c)  # Ctrl-C while the model loads
    with pytest.raises(Interrupted, match="Fusion training was interrupted: nothing was") as info:
        fuse(reg, "cb", ["nli@1", "para@1"], template["data"]["cb"], config=FAST, progress=False)
    assert "again" in (info.value.hint or "")
    assert state(reg) == before


def test_ctrl_c_after_the_commit_says_the_fusion_is_complete(
    reg: Registry, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C during the re-check of the earlier artifacts, after the fusion was committed.
    monkeypatch.setattr(composer, "verify_untouched", _ctrl_c)
    with pytest.raises(Interrupted, match="interrupted after cb-fusion was registered") as info:
        fuse(reg, "cb", ["nli@1", "para@1"], template["data"]["cb"], config=FAST, progress=False)
    assert "adapter-registry verify" in (info.value.hint or "")
    assert reg.resolve("cb-fusion@1").kind == "fusion"

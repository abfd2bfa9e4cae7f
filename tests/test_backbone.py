"""The backbone: base resolution, adapters, heads, fusion, and exact safetensors round trips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from registry.backbone import Backbone, BaseInfo, resolve_base
from registry.data import Example, make_batches
from registry.errors import AlreadyExists, IntegrityError, InvalidInput, NotFound
from tests._tiny import build_tiny_bert

LABELS = ["neg", "pos"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("base") / "tiny-bert")


@pytest.fixture(scope="module")
def batch(tiny: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    rows = [
        Example("the movie was good", None, "pos"),
        Example("i hate this boring film", None, "neg"),
        Example("a great story", None, "pos"),
        Example("awful", None, "neg"),
    ]
    batches, _ = make_batches(tokenizer, rows, LABELS, batch_size=4, shuffle=False, seed=0)
    return batches[0]


def step(backbone: Backbone, batch: dict[str, torch.Tensor]) -> None:
    """Take one large optimizer step on the trainable parameters."""
    params = [p for _, p in backbone.trainable_parameters()]
    optimizer = torch.optim.SGD(params, lr=1.0)
    loss, _ = backbone.forward(batch)
    assert loss is not None
    loss.backward()
    optimizer.step()


def scramble(backbone: Backbone, marker: str, seed: int = 0) -> None:
    """Add noise to parameters whose name contains ``marker``, so they visibly shape the logits.

    A fresh adapter is near-identity, so without this a round trip that silently dropped it
    would still match.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in backbone.model.named_parameters():
            if marker in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.5)


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


def with_adapter(tiny: Path, name: str, seed: int, method: str = "seq_bn") -> Backbone:
    torch.manual_seed(seed)
    backbone = Backbone.load(str(tiny))
    backbone.add_adapter(name, method=method)
    backbone.add_head(name, LABELS)
    return backbone


# --------------------------------------------------------------------------- base
def test_resolve_base_local(tiny: Path, tmp_path: Path) -> None:
    info = resolve_base(str(tiny))
    assert info == resolve_base(str(tiny))
    assert (info.architecture, info.hidden_size, info.num_layers) == ("BertModel", 32, 2)
    assert info.name == str(tiny) and info.local_path == str(tiny.resolve())
    assert len(info.revision) == 64
    assert info.portable_name == "tiny-bert"
    assert resolve_base(str(tiny), revision=info.revision) == info

    copy = shutil.copytree(tiny, tmp_path / "copy")
    assert resolve_base(str(copy)).revision == info.revision  # content, not location
    build_tiny_bert(copy, seed=1)
    assert resolve_base(str(copy)).revision != info.revision
    with pytest.raises(IntegrityError, match="Weights in .* changed"):
        resolve_base(str(copy), revision=info.revision)

    (copy / "model.safetensors").unlink()
    with pytest.raises(InvalidInput, match=f"Model folder {copy} has no weight files"):
        resolve_base(str(copy))
    (copy / "config.json").unlink()
    with pytest.raises(InvalidInput, match=f"Model folder {copy} has no config.json"):
        resolve_base(str(copy))
    with pytest.raises(NotFound, match="does not exist"):
        resolve_base(str(tmp_path / "missing"))


def test_portable_name() -> None:
    local = BaseInfo("models/tiny", "r", "BertModel", 32, 2, "/abs/models/tiny")
    assert local.portable_name == "models/tiny"
    assert BaseInfo("/abs/tiny", "r", "B", 1, 1, "/abs/tiny").portable_name == "tiny"
    assert BaseInfo("org/model", "r", "B", 1, 1, None).portable_name == "org/model"


def test_invalid_method_and_duplicates(tiny: Path) -> None:
    backbone = Backbone.load(str(tiny))
    with pytest.raises(InvalidInput, match="valid choices: seq_bn, double_seq_bn"):
        backbone.add_adapter("x", method="lora")
    config = backbone.add_adapter("x", method="double_seq_bn", leave_out=[1])
    assert json.loads(json.dumps(config))["leave_out"] == [1]
    assert config["mh_adapter"] is True  # Houlsby: adapters after attention and FFN
    with pytest.raises(AlreadyExists):
        backbone.add_adapter("x")
    with pytest.raises(InvalidInput, match="at least two distinct labels"):
        backbone.add_head("x", ["only"])
    with pytest.raises(NotFound, match="Head 'x' is not loaded"):
        backbone.train_adapter("x")
    with pytest.raises(NotFound, match=r"Adapter\(s\) \['y'\] are not loaded"):
        backbone.train_adapter("y")


# --------------------------------------------------------------------------- adapter training
def test_train_adapter_changes_only_adapter_and_head(tiny: Path, batch: dict) -> None:
    backbone = with_adapter(tiny, "books", seed=0)
    backbone.add_adapter("other")
    backbone.add_head("other", LABELS)
    backbone.train_adapter("books")
    names = [n for n, _ in backbone.trainable_parameters()]
    assert names and all("adapters.books." in n or n.startswith("heads.books.") for n in names)
    assert any(n.startswith("heads.books.") for n in names)
    assert backbone.count_parameters() < backbone.count_parameters(trainable_only=False) / 5

    before = backbone.named_tensors()
    step(backbone, batch)
    moved = changed(before, backbone.named_tensors())
    assert moved and all("adapters.books." in n or n.startswith("heads.books.") for n in moved)
    assert any(n.startswith("heads.books.") for n in moved)
    assert any("adapters.books." in n for n in moved)


def test_adapter_round_trip_is_exact(tiny: Path, tmp_path: Path, batch: dict) -> None:
    backbone = with_adapter(tiny, "books", seed=0, method="double_seq_bn")
    backbone.train_adapter("books")
    step(backbone, batch)
    scramble(backbone, "adapters.books.")
    backbone.activate("books", "books")
    expected = backbone.logits(batch)
    assert backbone.model.training  # logits() restores the training mode

    folder = tmp_path / "deep" / "artifact"
    backbone.save_adapter("books", folder)
    files = sorted(p.name for p in folder.iterdir())
    assert files == [
        "adapter.safetensors",
        "adapter_config.json",
        "head_config.json",
        "model_head.safetensors",
    ]
    for path in folder.iterdir():
        assert str(tiny.parent).encode() not in path.read_bytes()
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["model_name"] == "tiny-bert"

    fresh = Backbone.load(str(tiny))
    assert fresh.load_adapter(folder, "books_v1") == "books_v1"
    assert fresh.head_labels("books_v1") == LABELS
    fresh.activate("books_v1", "books_v1")
    got = fresh.logits(batch)
    assert (got - expected).abs().max().item() <= 1e-5
    fresh.model.set_active_adapters(None)  # guard: the adapter really shapes the logits
    assert (fresh.logits(batch) - expected).abs().max().item() > 1e-3

    with pytest.raises(AlreadyExists):
        fresh.load_adapter(folder, "books_v1")
    with pytest.raises(AlreadyExists, match="not an empty folder"):
        backbone.save_adapter("books", folder)


def test_load_refuses_pickle_only_folder(tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    backbone = with_adapter(tiny, "a", seed=0)
    backbone.model.save_adapter(str(folder), "a", with_head=True)  # adapters' default: .bin
    with pytest.raises(InvalidInput, match=r"lacks adapter\.safetensors.*pickle weights"):
        Backbone.load(str(tiny)).load_adapter(folder, "a")


def test_load_refuses_weights_that_do_not_fit(tiny: Path, tmp_path: Path) -> None:
    """The engine's error on a tensor of another shape, and a missing tensor, both refused."""
    from safetensors.torch import load_file, save_file

    saved = tmp_path / "saved"
    with_adapter(tiny, "a", seed=0).save_adapter("a", saved)
    for case in ("reshaped", "dropped"):
        folder = tmp_path / case
        shutil.copytree(saved, folder)
        weights = load_file(str(folder / "adapter.safetensors"))
        key = sorted(weights)[0]
        if case == "reshaped":
            weights[key] = torch.zeros(weights[key].numel() + 3)
        else:
            del weights[key]
        save_file(weights, str(folder / "adapter.safetensors"))
        fresh = Backbone.load(str(tiny))
        if case == "reshaped":
            with pytest.raises(InvalidInput, match="Could not load the adapter") as info:
                fresh.load_adapter(folder, "a")
            assert "trained on base model" in (info.value.hint or "")
        else:
            with pytest.raises(IntegrityError, match="do not match the module they load into"):
                fresh.load_adapter(folder, "a")


# --------------------------------------------------------------------------- fusion
def _two_adapter_files(tiny: Path, tmp_path: Path, batch: dict) -> dict[str, Path]:
    folders = {}
    for seed, name in enumerate(["books", "dvd"]):
        backbone = with_adapter(tiny, name, seed=seed)
        backbone.train_adapter(name)
        step(backbone, batch)
        scramble(backbone, f"adapters.{name}.", seed=seed)
        folders[name] = tmp_path / name
        backbone.save_adapter(name, folders[name])
    return folders


def _backbone_with(tiny: Path, folders: dict[str, Path]) -> Backbone:
    backbone = Backbone.load(str(tiny))
    for name, folder in folders.items():
        backbone.load_adapter(folder, name)
    return backbone


def test_train_fusion_freezes_base_and_members(tiny: Path, tmp_path: Path, batch: dict) -> None:
    backbone = _backbone_with(tiny, _two_adapter_files(tiny, tmp_path, batch))
    members = ["books", "dvd"]
    config = backbone.add_fusion(members, dynamic=True)
    assert config["value"] is True and json.dumps(config)
    backbone.add_head("mix", LABELS)
    backbone.train_fusion(members, head="mix")
    names = [n for n, _ in backbone.trainable_parameters()]
    assert all("adapter_fusion_layer.books,dvd." in n or n.startswith("heads.mix.") for n in names)

    before = backbone.named_tensors()
    step(backbone, batch)
    moved = changed(before, backbone.named_tensors())
    assert any("adapter_fusion_layer" in n for n in moved)
    assert any(n.startswith("heads.mix.") for n in moved)
    assert all("adapter_fusion_layer" in n or n.startswith("heads.mix.") for n in moved)

    attention = backbone.fusion_attention(batch, members)
    assert attention.shape == (2, 2)
    assert attention.sum(axis=1) == pytest.approx([1.0, 1.0])


def test_fusion_round_trip_is_exact(tiny: Path, tmp_path: Path, batch: dict) -> None:
    folders = _two_adapter_files(tiny, tmp_path, batch)
    members = ["books", "dvd"]
    backbone = _backbone_with(tiny, folders)
    backbone.add_fusion(members, dynamic=False)
    backbone.add_head("mix", LABELS)
    backbone.train_fusion(members, head="mix")
    step(backbone, batch)
    scramble(backbone, "adapter_fusion_layer")
    backbone.activate(members, "mix")
    expected = backbone.logits(batch)
    assert backbone.fusion_regularization_loss() is None  # static fusion has no value matrix

    folder = tmp_path / "fusions" / "mix"
    backbone.save_fusion(members, folder, head="mix")
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_fusion_config.json",
        "head_config.json",
        "model_adapter_fusion.safetensors",
        "model_head.safetensors",
    ]
    for path in folder.iterdir():
        assert str(tiny.parent).encode() not in path.read_bytes()

    fresh = Backbone.load(str(tiny))
    with pytest.raises(NotFound, match="are not loaded"):
        fresh.load_fusion(folder, members, head="mix")
    for name in members:
        fresh.load_adapter(folders[name], name)
    with pytest.raises(InvalidInput, match=r"is over \['books', 'dvd'\], not \['dvd', 'books'\]"):
        fresh.load_fusion(folder, members[::-1], head="mix")
    fresh.load_fusion(folder, members, head="mix")
    fresh.activate(members, "mix")
    assert (fresh.logits(batch) - expected).abs().max().item() <= 1e-5
    fresh.activate("books", "mix")  # guard: the fusion really shapes the logits
    assert (fresh.logits(batch) - expected).abs().max().item() > 1e-3


def test_full_finetune_unfreezes_everything(tiny: Path, batch: dict) -> None:
    backbone = Backbone.load(str(tiny))
    backbone.add_head("full", LABELS)
    backbone.unfreeze_all()
    assert backbone.count_parameters() == backbone.count_parameters(trainable_only=False)
    before = backbone.named_tensors("bert.encoder.layer.0.")
    step(backbone, batch)
    assert changed(before, backbone.named_tensors("bert.encoder.layer.0."))


def test_tiny_builder_is_deterministic(tmp_path: Path) -> None:
    from registry.backbone import weights_digest

    first = weights_digest(build_tiny_bert(tmp_path / "a", seed=3))
    assert first == weights_digest(build_tiny_bert(tmp_path / "b", seed=3))
    assert first != weights_digest(build_tiny_bert(tmp_path / "c", seed=4))

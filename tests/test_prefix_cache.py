"""The frozen-prefix cache: cached layers give the full forward's logits and the same training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from registry.backbone import Backbone
from registry.cli import cli
from registry.data import Example, make_batches
from registry.errors import IntegrityError, InvalidInput
from registry.prefix_cache import PrefixCache, frozen_prefix_length
from registry.store import Registry
from registry.trainer import TrainConfig, fit, seed_everything, train
from tests._util import sentiment_data, sentiment_rows

LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT (tests._tiny builds 2 layers) rebuilt with 4 layers, same tokenizer."""
    from transformers import BertConfig, BertModel

    from tests._tiny import build_tiny_bert

    folder = build_tiny_bert(tmp_path_factory.mktemp("tiny4"))
    config = BertConfig.from_pretrained(str(folder))
    config.num_hidden_layers = 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def _setup(base: Path, leave_out: list[int], seed: int = 0) -> Backbone:
    seed_everything(seed)
    bb = Backbone.load(str(base))
    assert bb.info.num_layers == 4
    bb.add_adapter("a", "seq_bn", 4, leave_out)
    bb.add_head("a", LABELS)
    bb.train_adapter("a")
    return bb


def _examples(n: int, seed: int) -> list[Example]:
    return [Example(r["text"], None, r["label"]) for r in sentiment_rows(n, seed)]


def _cache(bb: Backbone, k: int = 2, replay: bool = True) -> PrefixCache:
    return PrefixCache(
        bb, k, base_revision=bb.info.revision, data_fingerprint="f", max_length=32, replay=replay
    )


def test_frozen_prefix_length() -> None:
    assert frozen_prefix_length([]) == 0
    assert frozen_prefix_length([1, 2]) == 0
    assert frozen_prefix_length([0, 1]) == 2
    assert frozen_prefix_length([2, 0, 1, 5]) == 3


def test_cached_path_gives_the_full_forward_logits(tiny4: Path) -> None:
    bb = _setup(tiny4, [0, 1])
    # Give the adapter non-trivial weights, so the layers above the prefix really use it.
    with torch.no_grad():
        for _, p in bb.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.1)
    batches, _ = make_batches(
        bb.tokenizer, _examples(20, 1), LABELS, batch_size=7, shuffle=True, seed=0
    )
    assert len({b["input_ids"].shape[1] for b in batches}) > 1  # padded, different widths
    cache = _cache(bb)
    bb.model.train()
    for batch in batches:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        torch.manual_seed(3)
        full = cache.logits(inputs)  # records (full forward, prefix without dropout)
        torch.manual_seed(3)
        cached = cache.logits(inputs)  # replays layers 2..3 + head, same dropout draws
        assert (cached - full).abs().max().item() <= 1e-5
        assert cached.requires_grad  # gradients flow to the adapter and head
        # In eval mode, against the model's own forward.
        bb.model.eval()
        with torch.no_grad():
            replayed = cache.logits(inputs)
        expected = bb.logits(inputs)
        assert (replayed - expected).abs().max().item() <= 1e-5
        bb.model.train()
    assert cache.stats.recorded == len(batches) and cache.stats.replayed == 2 * len(batches)


def _train_twice(base: Path, replay: bool) -> tuple[dict[str, torch.Tensor], PrefixCache]:
    bb = _setup(base, [0, 1])
    batches, _ = make_batches(
        bb.tokenizer, _examples(48, 2), LABELS, batch_size=8, shuffle=True, seed=0
    )
    cache = _cache(bb, replay=replay)
    seed_everything(0)
    cfg = TrainConfig(epochs=2, lr=5e-3, patience=5)
    fit(bb, batches, [], LABELS, cfg, progress=False, prefix_cache=cache)
    return {n: p.detach().clone() for n, p in bb.trainable_parameters()}, cache


def test_two_epochs_with_the_cache_train_the_same_weights(tiny4: Path) -> None:
    reference, ref_cache = _train_twice(tiny4, replay=False)
    cached, cache = _train_twice(tiny4, replay=True)
    assert ref_cache.stats.replayed == 0 and len(ref_cache) == 0
    assert cache.stats.recorded == 6 and cache.stats.replayed == 6  # epoch 2 fully cached
    assert reference.keys() == cached.keys()
    assert any(".adapters.a." in n for n in cached)
    worst = max((reference[n] - cached[n]).abs().max().item() for n in reference)
    assert worst <= 1e-5
    initial = _setup(tiny4, [0, 1])
    moved = max(
        (p.detach() - cached[n]).abs().max().item() for n, p in initial.trainable_parameters()
    )
    assert moved > 1e-3  # training did change the weights


def test_stale_entries_are_never_used(tiny4: Path) -> None:
    bb = _setup(tiny4, [0, 1])
    batches, _ = make_batches(
        bb.tokenizer, _examples(16, 3), LABELS, batch_size=8, shuffle=False, seed=0
    )
    inputs = [{k: v for k, v in b.items() if k != "labels"} for b in batches]
    cache = _cache(bb)
    cache.logits(inputs[0])
    cache.logits(inputs[1])  # another composition: a miss, recorded separately
    assert cache.stats.recorded == 2 and cache.stats.replayed == 0
    swapped = dict(inputs[0])
    swapped["input_ids"] = inputs[0]["input_ids"].flip(0)
    swapped["attention_mask"] = inputs[0]["attention_mask"].flip(0)
    cache.logits(swapped)  # same rows, other order: not the cached batch
    assert cache.stats.recorded == 3 and cache.stats.replayed == 0
    other = PrefixCache(
        bb, 2, base_revision="other", data_fingerprint="f", max_length=32, replay=True
    )
    other._entries = dict(cache._entries)  # even with another run's entries, keys differ
    other.logits(inputs[0])
    assert other.stats.replayed == 0
    with torch.no_grad():
        bb.model.base_model.encoder.layer[0].output.dense.weight.mul_(1.0)  # in place
    with pytest.raises(IntegrityError, match="changed in place"):
        cache.logits(inputs[0])
    assert len(cache) == 0


def test_refuses_a_prefix_with_trained_modules(tiny4: Path) -> None:
    bb = _setup(tiny4, [0])  # the adapter sits in layer 1
    with pytest.raises(InvalidInput, match="trainable parameters"):
        _cache(bb, k=2)
    _cache(bb, k=1)
    for _, p in bb.trainable_parameters():
        p.requires_grad = False  # frozen but active (inference): still not cacheable
    with pytest.raises(InvalidInput, match="Active adapter modules"):
        _cache(bb, k=2)
    with pytest.raises(InvalidInput, match="1..4"):
        _cache(bb, k=5)
    bb.unfreeze_all()
    with pytest.raises(InvalidInput, match="trainable"):
        _cache(bb, k=1)


def test_train_and_cli_with_cache_prefix(
    sqlite_registry: Registry, tiny4: Path, tmp_path: Path
) -> None:
    reg = sqlite_registry
    data = str(sentiment_data(tmp_path / "d"))
    cfg = TrainConfig(epochs=2, batch_size=16, lr=5e-3, leave_out=[0, 1], cache_prefix=True)
    out = train(reg, "sentiment", data, str(tiny4), config=cfg, progress=False)
    run = reg.training_run(out.version.training_run_id)
    assert run.hyperparams["cache_prefix"] is True
    assert [h.train_time_s > 0 for h in out.fit.history] == [True, True]
    with pytest.raises(InvalidInput, match="not left out of layer 0"):
        train(
            reg,
            "sentiment",
            data,
            str(tiny4),
            config=TrainConfig(epochs=1, leave_out=[1], cache_prefix=True),
            progress=False,
        )
    res = CliRunner().invoke(
        cli,
        [
            "train",
            "sentiment",
            "--data",
            data,
            "--base",
            str(tiny4),
            "--epochs",
            "2",
            "--leave-out",
            "0,1,2",
            "--cache-prefix",
            "--no-progress",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["ref"] == "sentiment@2"

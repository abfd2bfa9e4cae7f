"""The weights saved are the best validation epoch's, not the last epoch's (#16 pin).

Real training on the tiny model, long enough and hot enough that validation accuracy moves after
its best epoch; the registered adapter, loaded back from disk, must score what the best epoch did.
"""

from __future__ import annotations

from pathlib import Path

from registry.backbone import Backbone
from registry.configs import TrainConfig
from registry.data import load_spec
from registry.fitting import _BestEpoch
from registry.inference import predict
from registry.store import Registry
from registry.trainer import train
from tests._util import sentiment_rows, write_splits


def test_registered_weights_are_the_best_epochs(tiny_base_dir: Path, tmp_path: Path) -> None:
    data = write_splits(
        tmp_path / "d", {"train": sentiment_rows(64, 0), "validation": sentiment_rows(16, 1)}
    )
    registry = Registry.init(tmp_path / "home")
    cfg = TrainConfig(epochs=10, lr=3e-2, batch_size=16, patience=10, max_length=32, seed=0)
    outcome = train(
        registry, "sentiment", str(data), str(tiny_base_dir), config=cfg, progress=False
    )
    history = outcome.fit.history
    accuracies = [e.val_accuracy for e in history]
    best = outcome.fit.best_epoch
    # The run is only a test of the restore if a later epoch scored differently from the best.
    assert best < len(history) and accuracies[-1] != accuracies[best - 1], accuracies
    assert accuracies[best - 1] == max(a for a in accuracies if a is not None)
    rows = load_spec(str(data)).split("validation")
    preds = predict(registry, outcome.version.ref, data=str(data), split="validation")
    saved = sum(p["label"] == r.label for p, r in zip(preds, rows, strict=True)) / len(rows)
    assert saved == accuracies[best - 1], (saved, best, accuracies)
    assert outcome.metrics["validation"]["accuracy"] == saved


def _set_all(backbone: Backbone, value: float) -> None:
    import torch

    with torch.no_grad():
        for _, param in backbone.trainable_parameters():
            param.fill_(value)


def _all_equal(backbone: Backbone, value: float) -> bool:
    return all(bool((p == value).all()) for _, p in backbone.trainable_parameters())


def test_best_epoch_rules_on_a_real_backbone(tiny_base_dir: Path) -> None:
    """The fit loop's bookkeeping, epoch by epoch: a tie keeps the earlier epoch, patience
    counts epochs without a better score, and without validation the last epoch is kept."""
    backbone = Backbone.load(str(tiny_base_dir))
    backbone.add_adapter("a")
    backbone.add_head("a", ["negative", "positive"])
    backbone.train_adapter("a")
    best = _BestEpoch(backbone, patience=2)
    score = {"accuracy": 0.5, "macro_f1": 0.4}
    _set_all(backbone, 1.0)
    assert best.offer(1, score) is False and best.epoch == 1
    _set_all(backbone, 2.0)
    assert best.offer(2, dict(score)) is False  # a tie is not better: one stale epoch
    assert best.epoch == 1
    _set_all(backbone, 3.0)
    assert best.offer(3, {"accuracy": 0.5, "macro_f1": 0.3}) is True  # patience 2 reached
    best.restore()
    assert best.epoch == 1 and _all_equal(backbone, 1.0)
    # A better macro-F1 at the same accuracy is better; it resets the stale count.
    assert best.offer(4, {"accuracy": 0.5, "macro_f1": 0.45}) is False and best.epoch == 4
    assert best.offer(5, {"accuracy": 0.25, "macro_f1": 0.45}) is False

    # No validation split: every epoch is "better" than the one before, the last one is kept.
    last = _BestEpoch(backbone, patience=1)
    for epoch in (1, 2, 3):
        _set_all(backbone, float(epoch))
        assert last.offer(epoch, None) is False
    _set_all(backbone, 9.0)
    last.restore()
    assert last.epoch == 3 and _all_equal(backbone, 3.0)

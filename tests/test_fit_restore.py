"""The weights saved are the best validation epoch's, not the last epoch's (#16 pin).

Real training on the tiny model, long enough and hot enough that validation accuracy moves after
its best epoch; the registered adapter, loaded back from disk, must score what the best epoch did.
"""

from __future__ import annotations

from pathlib import Path

from registry.configs import TrainConfig
from registry.data import load_spec
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

"""The same train → fuse → reload → predict path on a CUDA device (marked ``gpu``; CI has none).

Run on a machine with a GPU: ``pytest -m gpu tests/test_gpu.py``. Every assertion compares the
CUDA result with what the CPU makes of the same stored files, so a tensor left on the wrong
device, weights saved from GPU memory in a form the CPU cannot read, or a run recorded with the
wrong device fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from registry.cli import cli
from registry.composer import FuseConfig, fuse
from registry.inference import evaluate_entity
from registry.loader import load_entity
from registry.store import Registry
from registry.trainer import TrainConfig, train
from tests.test_composer import NLI, file_hashes, probe_logits, write_pairs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TCFG = TrainConfig(epochs=2, batch_size=16, max_length=32, device="cuda", class_weights=True)
FCFG = FuseConfig(epochs=2, batch_size=16, max_length=32, device="cuda")


def _on(loaded_model: torch.nn.Module) -> set[str]:
    return {p.device.type for p in loaded_model.parameters()}


def test_train_and_fuse_on_cuda_reload_on_cpu(tmp_path: Path, tiny_base_dir: Path) -> None:
    reg = Registry.init(tmp_path / "home")
    nli = write_pairs(tmp_path / "nli", NLI, seed=1)
    para = write_pairs(tmp_path / "para", ["duplicate", "not_duplicate"], seed=2)
    try:
        first = train(reg, "nli", nli, str(tiny_base_dir), config=TCFG, progress=False)
        run = reg.training_run(first.version.training_run_id or 0)
        assert run.device == "cuda"
        assert run.hyperparams["class_weights"] is True
        kept = file_hashes(reg.artifact_path(first.version))

        second = train(reg, "para", para, str(tiny_base_dir), config=TCFG, progress=False)
        assert second.earlier_artifacts_verified >= 1
        outcome = fuse(reg, "nli", ["para@1", "nli@1"], nli, config=FCFG, progress=False)
        assert file_hashes(reg.artifact_path(first.version)) == kept
        assert reg.verify().ok

        for entity in (first.version, outcome.fusion):
            on_gpu = load_entity(reg, entity, "cuda")
            on_cpu = load_entity(reg, entity, "cpu")
            assert _on(on_gpu.backbone.model) == {"cuda"}
            assert _on(on_cpu.backbone.model) == {"cpu"}
            np.testing.assert_allclose(
                probe_logits(on_gpu.backbone), probe_logits(on_cpu.backbone), atol=1e-4
            )
            scores = [
                evaluate_entity(reg, entity.ref, nli, record=False, loaded=loaded)
                for loaded in (on_gpu, on_cpu)
            ]
            assert scores[0]["accuracy"] == pytest.approx(scores[1]["accuracy"])
            assert scores[0]["macro_f1"] == pytest.approx(scores[1]["macro_f1"])
        # The validation accuracy recorded at fuse time (on the GPU) is what the CPU finds again.
        assert outcome.metrics["validation"]["accuracy"] == pytest.approx(scores[1]["accuracy"])
    finally:
        reg.close()


def test_cli_auto_device_trains_on_cuda(tmp_path: Path, tiny_base_dir: Path) -> None:
    data = str(write_pairs(tmp_path / "nli", NLI, seed=5))
    runner = CliRunner()
    res = runner.invoke(
        cli,
        ["train", "nli", "--data", data, "--base", str(tiny_base_dir), "--epochs", "1"]
        + ["--batch-size", "16", "--no-progress", "--json"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["show", "nli@1", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["training_run"]["device"] == "cuda"
    res = runner.invoke(
        cli, ["predict", "nli", "--text", "the dog runs", "--text-b", "a cat", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert sum(json.loads(res.output)["scores"].values()) == pytest.approx(1.0)


def test_drift_on_cuda_agrees_with_cpu(tmp_path: Path, tiny_base_dir: Path) -> None:
    from registry import continual
    from tests.test_continual import BOOKS, PETS, _write

    reg = Registry.init(tmp_path / "home")
    books, pets = _write(tmp_path / "books", BOOKS, seed=1), _write(tmp_path / "pets", PETS, 3)
    try:
        train(reg, "sentiment", books, str(tiny_base_dir), config=TCFG, progress=False)
        checks = [
            continual.check_drift(
                reg, "sentiment", pets, n_permutations=200, record=False, device=device
            )
            for device in ("cuda", "cpu")
        ]
        assert checks[0].drift and checks[1].drift
        gpu, cpu = (c.result.test("embedding_mmd") for c in checks)
        assert gpu is not None and cpu is not None
        assert gpu.statistic == pytest.approx(cpu.statistic, rel=1e-3, abs=1e-5)
        assert gpu.drift == cpu.drift
    finally:
        reg.close()

"""Data-parallel training under torchrun: 2 CPU processes with gloo on a tiny BERT.

Only rank 0 registers; the other rank's store connection refuses writes. The weights equal a
single-process run with the same global batch up to float summation order (stated below).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from registry import entities as E
from registry.distributed import forbid_writes
from registry.errors import RegistryError
from registry.store import Registry
from tests._tiny import build_tiny_bert
from tests._util import sentiment_data

#: Largest absolute difference allowed between a trained weight of the 2-rank run and the
#: single-process one: both take the same steps on the same global batches; only the order of
#: float additions differs (two half-batch gradients averaged vs one whole-batch gradient).
WEIGHT_TOLERANCE = 1e-4


def _train_args(home: Path, data: Path, base: Path) -> list[str]:
    return [
        "--home", str(home), "train", "sentiment", "--data", str(data), "--base", str(base),
        "--device", "cpu", "--threads", "1", "--epochs", "2", "--batch-size", "8",
        "--lr", "5e-3", "--max-length", "32", "--class-weights", "--json",
    ]  # fmt: skip


def _fuse_args(home: Path, data: Path) -> list[str]:
    return [
        "--home", str(home), "fuse", "sentiment", "--adapters", "sentiment@1,books@1",
        "--data", str(data), "--device", "cpu", "--threads", "1", "--epochs", "2",
        "--batch-size", "8", "--lr", "5e-3", "--max-length", "32", "--json",
    ]  # fmt: skip


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _adapter_weights(home: Path) -> tuple[E.AdapterVersion, dict[str, torch.Tensor]]:
    reg = Registry.open(home)
    try:
        versions = reg.list_entities(task="sentiment", kind="adapter")
        assert len(versions) == 1, versions  # exactly one version registered
        version = versions[0]
        assert isinstance(version, E.AdapterVersion)
        tensors: dict[str, torch.Tensor] = {}
        for f in sorted(reg.artifact_path(version).rglob("*.safetensors")):
            tensors.update({f"{f.name}/{k}": v for k, v in load_file(str(f)).items()})
        return version, tensors
    finally:
        reg.close()


@pytest.mark.slow
def test_two_gloo_ranks_register_once_and_match_one_process(tmp_path: Path) -> None:
    base = build_tiny_bert(tmp_path / "tiny", dropout=0.0)
    data = sentiment_data(tmp_path / "data", n_train=45)  # the last batch (5 rows) splits 3 + 2
    ddp = _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "registry", *_train_args(tmp_path / "ddp", data, base)]
    )  # fmt: skip
    single = _run([sys.executable, "-m", "registry", *_train_args(tmp_path / "one", data, base)])
    # rank 0 alone reports: one JSON document on stdout
    reported = json.loads(ddp.stdout)
    assert reported["ref"] == json.loads(single.stdout)["ref"] == "sentiment@1"

    v_ddp, w_ddp = _adapter_weights(tmp_path / "ddp")
    v_one, w_one = _adapter_weights(tmp_path / "one")
    assert w_ddp and w_ddp.keys() == w_one.keys()
    diff = max((w_ddp[k] - w_one[k]).abs().max().item() for k in w_ddp)
    scale = max((w_one[k]).abs().max().item() for k in w_one)
    assert diff <= WEIGHT_TOLERANCE, diff
    assert scale > 100 * WEIGHT_TOLERANCE  # the weights are not all near zero
    ddp_run = Registry.open(tmp_path / "ddp").training_run(v_ddp.training_run_id or 0)
    assert ddp_run.hyperparams["batch_size"] == 8 and ddp_run.device == "cpu"


def test_a_reading_rank_cannot_write(tmp_path: Path) -> None:
    reg = Registry.init(tmp_path / "home")
    reg.ensure_task("t", "single", ["a", "b"], ["text"], None)
    reader = Registry.open(tmp_path / "home")
    forbid_writes(reader)
    assert list(reader.get_task("t").label_names) == ["a", "b"]  # reads work
    with pytest.raises(RegistryError, match="only rank 0 writes"):
        reader.ensure_task("u", "single", ["a", "b"], ["text"], None)
    assert [t.name for t in reg.list_tasks()] == ["t"]


@pytest.mark.slow
def test_two_gloo_ranks_fuse_once_and_match_one_process(tmp_path: Path) -> None:
    base = build_tiny_bert(tmp_path / "tiny", dropout=0.0)
    data = sentiment_data(tmp_path / "data", n_train=45)
    other = sentiment_data(tmp_path / "other", seed=4, n_train=40)
    for home in ("ddp", "one"):  # the same two members in both registries, single process
        _run([sys.executable, "-m", "registry", *_train_args(tmp_path / home, data, base)])
        books = _train_args(tmp_path / home, other, base)
        _run([sys.executable, "-m", "registry", *books[:4], "--name", "books", *books[4:]])
    ddp = _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "registry", *_fuse_args(tmp_path / "ddp", data)]
    )  # fmt: skip
    _run([sys.executable, "-m", "registry", *_fuse_args(tmp_path / "one", data)])
    assert json.loads(ddp.stdout)["ref"] == "sentiment-fusion@1"
    weights = []
    for home in ("ddp", "one"):
        reg = Registry.open(tmp_path / home)
        fusions = reg.list_entities(task="sentiment", kind="fusion")
        assert len(fusions) == 1, fusions
        folder = reg.artifact_path(fusions[0])
        weights.append(
            {
                f"{f.name}/{k}": v
                for f in sorted(folder.rglob("*.safetensors"))
                for k, v in load_file(str(f)).items()
            }
        )
        reg.close()
    assert weights[0] and weights[0].keys() == weights[1].keys()
    diff = max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0])
    assert diff <= WEIGHT_TOLERANCE, diff

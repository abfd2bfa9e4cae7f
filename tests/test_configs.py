"""Hyper-parameter configs: refused where they are made, and one set of options on every command."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from registry.cli import cli
from registry.configs import FitConfig, FuseConfig, TrainConfig
from registry.errors import InvalidInput

BAD: list[tuple[str, Any, str]] = [
    ("epochs", 0, "epochs must be a whole number ≥ 1"),
    ("batch_size", 0, "batch size must be a whole number ≥ 1"),
    ("max_length", 7, "max length must be a whole number ≥ 8"),
    ("patience", 0, "patience must be a whole number ≥ 1"),
    ("head_layers", 0, "head layers must be a whole number ≥ 1"),
    ("max_train_examples", 0, "max train examples must be a whole number ≥ 1"),
    ("threads", 0, "threads must be a whole number ≥ 1"),
    ("lr", 0.0, "lr must be > 0"),
    ("lr", -1e-3, "lr must be > 0"),
    ("lr", math.nan, "lr must be a finite number"),
    ("lr", math.inf, "lr must be a finite number"),
    ("max_grad_norm", math.nan, "max_grad_norm must be a finite number"),
    ("weight_decay", -0.1, "weight decay must be ≥ 0.0"),
    ("weight_decay", math.inf, "weight_decay must be a finite number"),
    ("warmup_ratio", 1.5, r"warmup ratio must be in \[0.0, 1.0\]"),
    ("device", "tpu", "device must be cpu, cuda, cuda:N or auto"),
    ("epochs", True, "epochs must be a whole number"),
]


@pytest.mark.parametrize("cls", [TrainConfig, FuseConfig])
@pytest.mark.parametrize(("field", "value", "message"), BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_bad_settings_are_refused_with_a_hint(
    cls: type[FitConfig], field: str, value: Any, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        cls(**{field: value})
    assert info.value.hint and info.value.hint.startswith("e.g. --")


def test_adapter_settings_are_checked() -> None:
    with pytest.raises(InvalidInput, match="Unknown adapter method 'lora'"):
        TrainConfig(method="lora")
    with pytest.raises(InvalidInput, match="reduction factor must be > 0"):
        TrainConfig(reduction_factor=0)
    with pytest.raises(InvalidInput, match="leave_out takes layer numbers"):
        TrainConfig(leave_out=[-1])
    assert TrainConfig(leave_out=[0, 1], device="cuda:1").leave_out == [0, 1]


def test_recorded_order_and_fit_part() -> None:
    # Training runs record to_dict(); the key order is what `show` prints.
    assert list(TrainConfig().to_dict())[:4] == [
        "method",
        "reduction_factor",
        "leave_out",
        "epochs",
    ]
    assert list(TrainConfig().to_dict())[-1] == "cache_prefix"
    fuse = FuseConfig(epochs=2, lr=1e-4, seed=3)
    assert list(fuse.to_dict())[0] == "dynamic" and list(fuse.to_dict())[-2:] == [
        "max_train_examples",
        "init_head",
    ]
    fit = fuse.train_config()
    assert type(fit) is FitConfig and (fit.epochs, fit.lr, fit.seed) == (2, 1e-4, 3)
    assert FuseConfig().epochs == 5 and FuseConfig().lr == 5e-4


def _options(name: str) -> dict[str, click.Option]:
    command = cli.commands[name]
    return {o.name: o for o in command.params if isinstance(o, click.Option) and o.name}


def test_train_fuse_and_update_share_the_fit_options() -> None:
    train, fuse, update = _options("train"), _options("fuse"), _options("update")
    shared = [f for f in FitConfig.__dataclass_fields__]
    for field in shared:
        assert field in train and field in fuse and field in update, field
        assert train[field].opts == fuse[field].opts == update[field].opts
    assert train["lr"].default == update["lr"].default == TrainConfig().lr
    assert fuse["lr"].default == update["fuse_lr"].default == FuseConfig().lr
    assert fuse["epochs"].default == update["fuse_epochs"].default == 5
    assert "dynamic" not in fuse and "static" in fuse
    assert list(train["method"].type.choices) == ["seq_bn", "double_seq_bn"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("command", "value"),
    [("train", "nan"), ("train", "inf"), ("fuse", "nan"), ("update", "-inf")],
)
def test_non_finite_lr_is_refused_before_anything_is_written(command: str, value: str) -> None:
    args = {
        "train": ["train", "t", "--data", "x.jsonl", "--base", "m"],
        "fuse": ["fuse", "t", "--adapters", "a,b", "--data", "x.jsonl"],
        "update": ["update", "t", "--data", "x.jsonl"],
    }[command]
    result = CliRunner().invoke(cli, [*args, "--lr", value])
    assert result.exit_code == 1
    assert "lr must be a finite number" in result.output and "Hint: e.g. --lr 1e-3" in result.output
    assert not Path(os.environ["ADAPTER_REGISTRY_HOME"]).exists()


def test_leave_out_option_is_parsed_or_refused() -> None:
    result = CliRunner().invoke(
        cli, ["train", "t", "--data", "x", "--base", "m", "--leave-out", "0,x"]
    )
    assert result.exit_code == 1 and "--leave-out takes layer numbers, got '0,x'" in result.output

"""Bad rows and settings end in one clear error (or a said clamp), never a traceback (#16: 14-17).

Real files, the real tokenizer and real training on the tiny BERT model (64 positions).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from registry.cli import cli
from registry.configs import MAX_SEED, FitConfig, TrainConfig
from registry.data import CHARS_PER_TOKEN_CAP, Example, load_spec, make_batches, training_rows
from registry.errors import InvalidInput
from registry.store import Registry
from tests._util import seed_task, sentiment_rows, write_splits


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def train_args(data: Path, base: Path, *extra: str) -> list[str]:
    return ["train", "sentiment", "--data", str(data), "--base", str(base), "--no-progress", *extra]


# ------------------------------------------------------------------------ 14: labels
def test_label_whitespace_does_not_make_a_second_label(tmp_path: Path) -> None:
    rows = sentiment_rows(12, 0)
    rows[0]["label"], rows[1]["label"] = "positive ", "  negative\t"
    bundle = load_spec(str(write_splits(tmp_path / "d", {"train": rows})))
    assert {e.label for e in bundle.split("train")} == {"negative", "positive"}


def test_label_seen_only_in_validation_is_refused(tmp_path: Path) -> None:
    val = sentiment_rows(8, 1)
    val[3]["label"] = "neutral"
    bundle = load_spec(
        str(write_splits(tmp_path / "d", {"train": sentiment_rows(16, 0), "validation": val}))
    )
    with pytest.raises(InvalidInput, match="'neutral' appear in validation but in no training"):
        training_rows(bundle, seed=0)
    # Cutting the train split can hide a label too; the message names the option.
    rows = sentiment_rows(16, 0)
    first = rows[0]["label"]
    cut = [r for r in rows if r["label"] == first][:2] + [r for r in rows if r["label"] != first]
    bundle = load_spec(str(write_splits(tmp_path / "e", {"train": cut, "validation": cut})))
    with pytest.raises(InvalidInput, match="--max-train-examples"):
        training_rows(bundle, seed=0, max_train_examples=2)


# -------------------------------------------------------------- 15, 16: long rows
def test_long_rows_train_and_predict_clamped_to_the_models_positions(
    tiny_base_dir: Path, tmp_path: Path
) -> None:
    rows = sentiment_rows(24, 0)
    rows[0]["text"] = " ".join(["good"] * 500)  # far past the tiny model's 64 positions
    data = write_splits(tmp_path / "d", {"train": rows, "validation": sentiment_rows(8, 1)})
    code, out = invoke(*train_args(data, tiny_base_dir, "--epochs", "1", "--max-length", "256"))
    assert code == 0, out
    assert "Note: --max-length 256 is above the 64 positions of base model" in out
    code, out = invoke("predict", "sentiment@1", "--text", " ".join(["bad"] * 500), "--json")
    assert code == 0, out
    assert json.loads(out)["label"] in ("negative", "positive")  # --json: the JSON alone
    code, out = invoke("predict", "sentiment@1", "--text", " ".join(["bad"] * 500))
    assert code == 0 and "Note: --max-length 256 is above the 64 positions" in out, out


class _Recording:
    """The real tokenizer, recording the longest text it was handed."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.model_max_length = tokenizer.model_max_length
        self.longest = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)

    def __call__(self, first: list[str], second: Any, **kw: Any) -> Any:
        self.longest = max(len(t) for t in first)
        return self.tokenizer(first, second, **kw)


def test_huge_row_is_cut_before_it_is_tokenised(tiny_base_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = _Recording(AutoTokenizer.from_pretrained(str(tiny_base_dir)))
    huge = Example(" ".join(["good"] * 1_000_000), None, None)  # 5 MB of text
    batches, _ = make_batches(
        tokenizer, [huge, Example("bad", None, None)], None, batch_size=2, max_length=32,
        shuffle=False, seed=0,
    )  # fmt: skip
    assert tokenizer.longest == 32 * CHARS_PER_TOKEN_CAP
    assert batches[0]["input_ids"].shape[1] == 32  # still as many tokens as the limit allows


# ----------------------------------------------------------------- 17: tracebacks
@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 2**64 + 1])
def test_seed_outside_what_the_generators_take_is_refused(seed: int) -> None:
    with pytest.raises(InvalidInput, match="seed must be"):
        FitConfig(seed=seed)
    code, out = invoke("train", "t", "--data", "x.jsonl", "--base", "m", "--seed", str(seed))
    assert code == 1 and out.startswith("Error: seed must be") and "Traceback" not in out
    assert not Path(os.environ["ADAPTER_REGISTRY_HOME"]).exists()


def test_reduction_factor_nan_is_refused() -> None:
    with pytest.raises(InvalidInput, match="reduction_factor must be a finite number"):
        TrainConfig(reduction_factor=math.nan)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_deeply_nested_json_rows_are_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"train{suffix}"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(InvalidInput, match="nested too deeply"):
        load_spec(str(path))


def test_huge_numeric_refs_name_nothing(sqlite_registry: Registry) -> None:
    seed_task(sqlite_registry)
    for ref in ("sentiment@99999999999999999999", "a99999999999999999999", "2147483648"):
        code, out = invoke("show", ref)
        assert code == 1 and out.startswith("Error: Nothing matches"), out
        with pytest.raises(Exception, match="too large"):
            sqlite_registry.resolve(ref)


def test_report_out_that_cannot_be_created(tmp_path: Path) -> None:
    from registry.evaluate import AccuracyMatrix, plot_matrix_png

    blocker = tmp_path / "file"
    blocker.write_text("x")
    matrix = AccuracyMatrix([[0.5]], task_names=["t1"])
    with pytest.raises(InvalidInput, match="Cannot write") as info:
        plot_matrix_png(matrix, blocker / "sub" / "m.png", "t")
    assert info.value.hint and "--out" in info.value.hint


def test_init_at_a_path_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out = invoke("--home", str(blocker / "home"), "init")
    assert code == 1 and "Unexpected" not in out and "Traceback" not in out, out
    assert out.startswith(f"Error: The registry home cannot be created: {blocker} is a file"), out
    assert "Hint: Point ADAPTER_REGISTRY_HOME (or --home) at a folder." in out
    code, out = invoke("--home", str(tmp_path / "missing" / "home"), "init")
    assert code == 1 and "Hint: Create it first: mkdir -p" in out, out
    long_name = tmp_path / ("x" * 300)  # longer than a file name may be
    code, out = invoke("--home", str(long_name), "init")
    assert code == 1 and out.startswith(f"Error: Cannot create the registry home {long_name}"), out
    assert not blocker.with_name("missing").exists()


def test_diverging_loss_stops_training_and_registers_nothing(
    tiny_base_dir: Path, tmp_path: Path
) -> None:
    data = write_splits(
        tmp_path / "d", {"train": sentiment_rows(32, 0), "validation": sentiment_rows(8, 1)}
    )
    code, out = invoke(*train_args(data, tiny_base_dir, "--epochs", "3", "--lr", "1e30"))
    assert code == 1, out
    assert "training diverged and nothing was registered" in out and "Hint: Lower" in out
    assert "Traceback" not in out
    code, out = invoke("list", "--json")
    assert code == 0 and json.loads(out) == [], out


def test_unexpected_errors_end_in_one_line_unless_debugging(
    sqlite_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import registry.store

    def broken(*_: Any, **__: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(registry.store.Registry, "verify", broken)
    code, out = invoke("verify")
    assert code == 1
    assert out.startswith("Error: Unexpected ZeroDivisionError: a bug") and "Traceback" not in out
    assert "ADAPTER_REGISTRY_DEBUG=1" in out
    result = CliRunner().invoke(cli, ["verify"], env={"ADAPTER_REGISTRY_DEBUG": "1"})
    assert result.exit_code == 1 and "Traceback" in result.output

"""The evaluation protocol: splits, and a guard that fails when a report split reaches training.

The slow tests run each quality benchmark's ``--quick`` path on a tiny BERT over synthetic data
with the ledger on, while recording below the registry's API every text batched for training.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import protocol
from benchmarks.protocol import Ledger, make_splits, read_ledger, stratified_sample, violations
from tests._tiny import WORDS


def _write(
    folder: Path,
    labels: list[str],
    sizes: dict[str, int],
    seed: int,
    pair: bool = False,
    words: list[str] = WORDS,
) -> None:
    """Write synthetic rows (each dataset its own vocabulary, so a domain stream drifts)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows = []
        for i in range(n):
            label = labels[i % len(labels)]
            text = " ".join(rng.choice(words) for _ in range(6)) + f" {folder.name} {split} {i}"
            row: dict[str, Any] = {"id": str(i), "label": label}
            if pair:
                row |= {"text_a": text, "text_b": " ".join(rng.choice(WORDS) for _ in range(3))}
            else:
                row["text"] = text
            rows.append(row)
        (folder / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
        )


# ------------------------------------------------------------------------------- splits
def test_stratified_sample_keeps_label_shares_and_every_label() -> None:
    rows = [
        {"id": str(i), "label": "a" if i < 90 else ("b" if i < 99 else "c")} for i in range(100)
    ]
    got = stratified_sample(rows, 20, random.Random(0))
    counts = Counter(r["label"] for r in got)
    assert len(got) == 20 and counts["a"] == 18 and counts["b"] == 1 and counts["c"] == 1
    assert len({r["id"] for r in got}) == 20


def test_make_splits_dev_is_carved_out_of_train_and_seeds_vary_the_sample(tmp_path: Path) -> None:
    _write(tmp_path / "d", ["x", "y", "z"], {"train": 60, "validation": 9, "test": 30}, 0)
    s0 = make_splits(tmp_path, "d", 0, dev_rows=12, train_rows=30, report_rows=15)
    s1 = make_splits(tmp_path, "d", 1, dev_rows=12, train_rows=30, report_rows=15)
    assert s0.report_split == "test"
    assert not {r["id"] for r in s0.dev} & {r["id"] for r in s0.train}
    assert Counter(r["label"] for r in s0.dev) == {"x": 4, "y": 4, "z": 4}
    assert all("train" in r["text"] for r in (*s0.train, *s0.dev))
    assert all("test" in r["text"] for r in s0.report)
    assert {r["id"] for r in s0.dev} != {r["id"] for r in s1.dev}  # seeds vary the data
    assert [r["id"] for r in s0.report] == [r["id"] for r in s1.report]  # same report rows
    again = make_splits(tmp_path, "d", 0, dev_rows=12, train_rows=30, report_rows=15)
    assert [r["id"] for r in again.dev] == [r["id"] for r in s0.dev]


def test_report_split_is_validation_when_test_labels_are_hidden(tmp_path: Path) -> None:
    _write(tmp_path / "cb", ["e", "c", "n"], {"train": 30, "validation": 9}, 0, pair=True)
    (tmp_path / "cb" / "test.jsonl").write_text('{"id": "0", "text_a": "a", "text_b": "b"}\n')
    s = make_splits(tmp_path, "cb", 0, dev_rows=6)
    assert s.report_split == "validation" and len(s.report) == 9 and len(s.train) == 24


def test_violations_catches_each_kind_of_leak(tmp_path: Path) -> None:
    _write(tmp_path / "d", ["x", "y"], {"train": 20, "test": 10}, 0)
    s = make_splits(tmp_path, "d", 0, dev_rows=4)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.train_folder(s, tmp_path / "fold", "ok")
    report = ledger.report(s, "ok")
    assert violations(read_ledger(tmp_path / "ledger.jsonl")) == []
    # report rows handed to selection under the dev name: same ids reported and selected
    leaky = protocol.Splits(s.dataset, 0, s.train, s.report, s.report, s.report_split)
    ledger.use(leaky, "dev", "select", "leaky-dev")
    found = violations(ledger.entries)
    assert any("leaky-dev" in v and "come from its report split" in v for v in found)
    # report texts batched for training below the API
    assert any("texts batched" in v for v in violations(ledger.entries[:3], [report[0]["text"]]))
    # an entry from the report file itself
    ledger2 = Ledger()
    ledger2.use(leaky, "train", "train", "leaky-train")
    ledger2.report(s, "ok")
    assert violations(ledger2.entries) == []  # leaky.train is s.train: nothing wrong
    ledger2.use(leaky, "report", "train", "direct")
    found = violations(ledger2.entries)
    assert any("direct" in v and "come from its report split" in v for v in found)
    assert any("direct" in v and "also reported on" in v for v in found)


# ------------------------------------------------------------------------------ the guard
@pytest.fixture
def trained_texts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record every text the registry or a benchmark batches for training (shuffle=True)."""
    import sys

    import registry.composer
    import registry.data as data
    import registry.fitting
    import registry.trainer  # noqa: F401 (loaded, so their imported names can be spied on)

    seen: list[str] = []
    real = data.make_batches

    def spy(tokenizer: Any, examples: list[Any], *a: Any, **kw: Any) -> Any:
        if kw.get("shuffle"):
            seen.extend(protocol.text_key(e.text_a, e.text_b) for e in examples)
        return real(tokenizer, examples, *a, **kw)

    # every registry module that imported the function by name gets the spy too
    for name, module in list(sys.modules.items()):
        if (
            name.split(".")[0] in ("registry", "benchmarks")
            and getattr(module, "make_batches", None) is real
        ):
            monkeypatch.setattr(module, "make_batches", spy)
    yield seen


def stream_data(root: Path) -> Path:
    sizes = {"train": 60, "validation": 10, "test": 24}
    labels = {
        "agnews": ["Business", "Sports", "World"],
        "yelp5": ["negative", "neutral", "positive"],
        "amazon5": ["negative", "neutral", "positive"],
        "dbpedia": ["Album", "Animal"],
        "yahoo": ["Health", "Sports", "Business & Finance"],
    }
    for i, (name, labs) in enumerate(labels.items()):
        _write(root / name, labs, sizes, i, words=WORDS[i * 8 : i * 8 + 16])
    return root


def _check(ledger_file: Path, texts: list[str]) -> list[dict[str, Any]]:
    entries = read_ledger(ledger_file)
    assert {e["purpose"] for e in entries} == {"train", "select", "report"}
    assert texts, "nothing was recorded as batched for training"
    assert violations(entries, texts) == []
    return entries


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["task", "domain"])
def test_streams_quick_never_trains_or_selects_on_report_rows(
    stream: str,
    tiny_base_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trained_texts: list[str],
) -> None:
    from benchmarks import streams

    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(protocol.LEDGER_ENV, str(ledger))
    root = stream_data(tmp_path / "data")
    methods = streams.METHODS + (tuple(streams.VARIANTS) if stream == "domain" else ())
    runs = streams.main(
        ["--stream", stream, "--quick", "--data-root", str(root), "--base", str(tiny_base_dir),
         "--threads", "1", "--out-dir", str(tmp_path / "out"), "--methods", ",".join(methods)]
    )  # fmt: skip
    assert sorted(r.method for r in runs) == sorted(methods)
    entries = _check(ledger, trained_texts)
    whos = {e["who"] for e in entries if e["purpose"] == "report"}
    assert whos == set(methods)
    md = next((tmp_path / "out").glob("streams_*.md")).read_text(encoding="utf-8")
    for method in streams.METHODS:
        assert f"| {method} |" in md
    assert list((tmp_path / "out").glob("streams_*_registry.png"))
    assert "## Targets" in md and "registry: BWT ≥ −0.005" in md
    # the file can be rewritten from its JSON without training (seeds and methods kept)
    again = streams.main(
        ["--stream", stream, "--quick", "--data-root", str(root), "--base", str(tiny_base_dir),
         "--out-dir", str(tmp_path / "out"), "--report-only"]
    )  # fmt: skip
    assert sorted(r.method for r in again) == sorted(methods)


@pytest.mark.slow
def test_streams_guard_fails_when_report_rows_are_used_for_dev(
    tiny_base_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trained_texts: list[str],
) -> None:
    """Break the benchmark on purpose: its dev rows are the report rows. The guard must say so."""
    from benchmarks import streams

    real = streams.make_splits

    def leaky(*a: Any, **kw: Any) -> protocol.Splits:
        s = real(*a, **kw)
        return protocol.Splits(s.dataset, s.seed, s.report, s.dev, s.report, s.report_split)

    monkeypatch.setattr(streams, "make_splits", leaky)
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(protocol.LEDGER_ENV, str(ledger))
    root = stream_data(tmp_path / "data")
    streams.main(
        ["--stream", "domain", "--quick", "--methods", "registry,seq-ft", "--data-root",
         str(root), "--base", str(tiny_base_dir), "--threads", "1", "--out-dir", str(tmp_path)]
    )  # fmt: skip
    found = violations(read_ledger(ledger), trained_texts)
    assert any("train rows of" in v and "come from its report split" in v for v in found)
    assert any("texts batched for training are report rows" in v for v in found)


@pytest.mark.slow
def test_cb_quality_quick_selects_on_dev_and_reports_on_validation(
    tiny_base_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trained_texts: list[str],
) -> None:
    from benchmarks import cb_quality

    root = tmp_path / "data"
    labels = {
        "mnli": ["entailment", "neutral", "contradiction"],
        "qqp": ["not_duplicate", "duplicate"],
        "qnli": ["entailment", "not_entailment"],
        "cb": ["contradiction", "entailment", "neutral"],
    }
    for i, (task, labs) in enumerate(labels.items()):
        _write(root / task, labs, {"train": 60, "validation": 12}, i, pair=True)
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(protocol.LEDGER_ENV, str(ledger))
    results = cb_quality.main(
        ["--quick", "--data-root", str(root), "--base", str(tiny_base_dir), "--threads", "1",
         "--out", str(tmp_path / "cb.md")]
    )  # fmt: skip
    entries = _check(ledger, trained_texts)
    reported = [e for e in entries if e["purpose"] == "report"]
    assert {e["origins"][0] for e in reported} == {"validation"}
    assert all(len(e["keys"]) == 12 for e in reported)  # all of CB validation, every seed
    for r in results:
        assert 0.0 <= r.last_accuracy <= 1.0 and 0.0 <= r.dev_accuracy <= 1.0
    assert "dev accuracy" in (tmp_path / "cb.md").read_text(encoding="utf-8")

"""Data specs: loading, validation messages, fingerprints and batching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from registry.data import (
    DataBundle,
    Example,
    fingerprint,
    infer_label_names,
    label_distribution,
    load_spec,
    make_batches,
)
from registry.errors import InvalidInput, NotFound

WORDS = [
    "the",
    "movie",
    "was",
    "good",
    "bad",
    "great",
    "awful",
    "i",
    "love",
    "hate",
    "it",
    "this",
    "film",
    "book",
    "story",
    "plot",
]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def single_rows(n: int = 4) -> list[dict[str, object]]:
    return [
        {
            "id": i,
            "text": f"the movie was {'good' if i % 2 else 'bad'}",
            "label": ["neg", "pos"][i % 2],
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    from tests._tiny import build_tiny_bert

    folder = build_tiny_bert(tmp_path_factory.mktemp("tiny"))
    return AutoTokenizer.from_pretrained(str(folder))


# --------------------------------------------------------------------------- loading
def test_folder_with_splits_and_dev_alias(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", single_rows(4))
    write_jsonl(tmp_path / "dev.jsonl", single_rows(2))
    (tmp_path / "README.md").write_text("ignored")
    bundle = load_spec(tmp_path)
    assert list(bundle.splits) == ["train", "validation"]
    assert bundle.pair is False
    assert bundle.split("train")[1] == Example("the movie was good", None, "pos")
    with pytest.raises(NotFound, match="'test' is not in .*available: train, validation"):
        bundle.split("test")
    assert infer_label_names(bundle) == ["neg", "pos"]


def test_single_file_split_from_stem(tmp_path: Path) -> None:
    assert list(load_spec(write_jsonl(tmp_path / "validation.jsonl", single_rows())).splits) == [
        "validation"
    ]
    assert list(load_spec(write_jsonl(tmp_path / "books.jsonl", single_rows())).splits) == ["train"]


@pytest.mark.parametrize(
    ("fields", "pair"),
    [
        (("text_a", "text_b"), True),
        (("premise", "hypothesis"), True),
        (("sentence1", "sentence2"), True),
        (("question", "passage"), True),
        (("sentence",), False),
    ],
)
def test_text_field_detection(tmp_path: Path, fields: tuple[str, ...], pair: bool) -> None:
    rows = [{**{f: f"{f} {i}" for f in fields}, "label": "x"} for i in range(2)]
    bundle = load_spec(write_jsonl(tmp_path / "train.jsonl", rows))
    assert bundle.pair is pair
    first = bundle.split("train")[0]
    assert first.text_a == f"{fields[0]} 0"
    assert first.text_b == (f"{fields[1]} 0" if pair else None)


def test_explicit_text_fields_and_missing_column(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [{"body": "hello", "stars": "5"}])
    bundle = load_spec(path, text_fields=("body",), label_field="stars")
    assert bundle.split("train") == [Example("hello", None, "5")]
    with pytest.raises(InvalidInput, match=r"line 1: no text column found; columns: body, stars"):
        load_spec(path)
    with pytest.raises(InvalidInput, match=r"text column\(s\) review not found; columns: body"):
        load_spec(path, text_fields=("review",))


def test_csv_and_integer_labels(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text('text,label\n"good, really",1\nbad,0\n', encoding="utf-8")
    bundle = load_spec(path, label_names=["neg", "pos"])
    assert [e.label for e in bundle.split("train")] == ["pos", "neg"]
    assert bundle.split("train")[0].text_a == "good, really"
    jsonl = write_jsonl(tmp_path / "test.jsonl", [{"text": "a", "label": 1}])
    assert load_spec(jsonl, label_names=["neg", "pos"]).split("test")[0].label == "pos"
    with pytest.raises(InvalidInput, match="line 1: label id 2 is out of range"):
        load_spec(write_jsonl(tmp_path / "x.jsonl", [{"text": "a", "label": 2}]), label_names=["n"])


def test_csv_wrong_field_count_names_line(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood,pos\nbad, very bad,neg\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"train\.csv, line 3: expected 2 fields .*found 3"):
        load_spec(path)


def test_parquet_and_json(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(single_rows(3)), tmp_path / "train.parquet")
    (tmp_path / "test.json").write_text(json.dumps(single_rows(2)), encoding="utf-8")
    bundle = load_spec(tmp_path)
    assert [len(v) for v in bundle.splits.values()] == [3, 2]
    (tmp_path / "test.json").write_text(json.dumps([{"text": "", "label": "pos"}]))
    with pytest.raises(InvalidInput, match=r"test\.json, row 1: empty text in field 'text'"):
        load_spec(tmp_path)


def test_malformed_json_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n\n{"text": "broken", "label": \n', "utf-8")
    with pytest.raises(InvalidInput, match=r"train\.jsonl, line 3: malformed JSON"):
        load_spec(path)


def test_not_utf8_names_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "a"}\n')
    with pytest.raises(InvalidInput, match=r"line 2: not UTF-8 \(byte 0xe9 at byte offset 42"):
        load_spec(path)


def test_empty_text_and_empty_file(tmp_path: Path) -> None:
    rows = single_rows(2) + [{"text": "   ", "label": "pos"}]
    with pytest.raises(InvalidInput, match=r"line 3: empty text in field 'text'"):
        load_spec(write_jsonl(tmp_path / "train.jsonl", rows))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InvalidInput, match=r"empty\.jsonl: no rows in split 'train'"):
        load_spec(tmp_path / "empty.jsonl")
    with pytest.raises(InvalidInput, match="has no split files.*found: empty.jsonl, train.jsonl"):
        load_spec(_folder_without_split_files(tmp_path))


def _folder_without_split_files(tmp_path: Path) -> Path:
    folder = tmp_path / "nosplits"
    folder.mkdir()
    (folder / "empty.jsonl").write_text("x")
    (folder / "train.jsonl").mkdir()  # a folder named like a split is not a split file
    return folder


def test_label_not_allowed(tmp_path: Path) -> None:
    rows = single_rows(2) + [{"text": "meh", "label": "neutral"}]
    with pytest.raises(InvalidInput, match=r"line 3: label 'neutral' is not one of .*neg, pos"):
        load_spec(write_jsonl(tmp_path / "train.jsonl", rows), label_names=["neg", "pos"])


def test_missing_labels(tmp_path: Path) -> None:
    rows = single_rows(2) + [{"text": "no label here"}]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(
        InvalidInput, match=r"line 3: missing label field 'label' in labelled split"
    ):
        load_spec(path)
    # A partly labelled split is a bug even when unlabelled data is allowed.
    with pytest.raises(InvalidInput, match=r"line 3: missing label field 'label'"):
        load_spec(path, require_labels=False)
    unlabeled = write_jsonl(tmp_path / "other.jsonl", [{"text": "x"}, {"text": "y"}])
    with pytest.raises(InvalidInput, match="line 1: missing label field"):
        load_spec(unlabeled)
    assert load_spec(unlabeled, require_labels=False).split("train")[0].label is None


def test_test_unlabeled_split_may_lack_labels(tmp_path: Path) -> None:
    pair = [{"text_a": "a b", "text_b": "c", "label": "entailment"}]
    write_jsonl(tmp_path / "train.jsonl", pair)
    write_jsonl(tmp_path / "test_unlabeled.jsonl", [{"text_a": "a", "text_b": "b"}])
    bundle = load_spec(tmp_path)
    assert list(bundle.splits) == ["train", "test_unlabeled"]
    assert bundle.pair
    assert bundle.split("test_unlabeled") == [Example("a", "b", None)]


def test_mixed_pair_and_single_splits_rejected(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"text_a": "a", "text_b": "b", "label": "x"}])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "a", "label": "x"}])
    with pytest.raises(InvalidInput, match="splits disagree on single text vs text pair"):
        load_spec(tmp_path)


def test_missing_path_and_datasets_object(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="not an existing file or folder"):
        load_spec(tmp_path / "nope.jsonl")
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [1, 0]}, features=features)
    hidden = datasets.Dataset.from_dict({"text": ["c"], "label": [-1]}, features=features)
    bundle = load_spec(datasets.DatasetDict({"train": ds, "test_unlabeled": hidden}))
    assert [e.label for e in bundle.split("train")] == ["pos", "neg"]
    assert bundle.split("test_unlabeled") == [Example("c", None, None)]


# --------------------------------------------------------------------------- summaries
def test_fingerprint_stable_and_sensitive() -> None:
    rows = [Example("Café  au\tlait", None, "pos"), Example("b", "c", "neg")]
    nfd = [Example("Cafe\u0301 au lait ", None, "pos"), Example("b", "c", "neg")]
    assert fingerprint(rows) == fingerprint(nfd)  # NFC + whitespace collapsing
    assert fingerprint(rows) == fingerprint(list(rows))
    assert len(fingerprint(rows)) == 64
    assert fingerprint(rows) != fingerprint(rows[::-1])
    assert fingerprint(rows) != fingerprint([rows[0], Example("b", "c", "pos")])
    assert fingerprint(rows) != fingerprint([rows[0], Example("b c", None, "neg")])
    assert fingerprint(rows) != fingerprint([Example("cafe au lait", None, "pos"), rows[1]])
    assert label_distribution(rows + [Example("x", None, None)]) == {"neg": 1, "pos": 1}


# --------------------------------------------------------------------------- batching
def _examples(n: int, seed: int = 0, pair: bool = False) -> list[Example]:
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))
        out.append(Example(text, "i love it" if pair else None, ["neg", "pos"][i % 2]))
    return out


def test_bucketing_beats_fixed_padding(tokenizer: Any) -> None:
    examples = _examples(200)
    kwargs = {"batch_size": 8, "max_length": 48, "shuffle": True, "seed": 1}
    bucketed, b_stats = make_batches(tokenizer, examples, ["neg", "pos"], **kwargs)
    fixed, f_stats = make_batches(
        tokenizer, examples, ["neg", "pos"], bucket=False, pad_to=48, **kwargs
    )
    assert b_stats.real_tokens == f_stats.real_tokens
    assert b_stats.n_examples == 200 and b_stats.n_batches == 25
    assert all(b["input_ids"].shape[1] == 48 for b in fixed)
    assert b_stats.real_fraction > 0.9 > f_stats.real_fraction
    assert b_stats.real_fraction > f_stats.real_fraction
    # Every example lands in exactly one batch, with its own label.
    seen = sorted(i for group in b_stats.batch_indices for i in group)
    assert seen == list(range(200))
    for batch, group in zip(bucketed, b_stats.batch_indices, strict=True):
        assert batch["labels"].tolist() == [i % 2 for i in group]
        assert batch["attention_mask"].sum().item() > 0
        assert batch["input_ids"].dtype == torch.long


def test_batches_deterministic_with_seed(tokenizer: Any) -> None:
    examples = _examples(60, pair=True)
    kwargs = {"batch_size": 4, "max_length": 32, "shuffle": True}

    def run(seed: int) -> list[list[int]]:
        batches, stats = make_batches(tokenizer, examples, ["neg", "pos"], seed=seed, **kwargs)
        assert "token_type_ids" in batches[0]
        assert max(b["input_ids"].shape[1] for b in batches) <= 32
        return stats.batch_indices

    assert run(3) == run(3)
    assert run(3) != run(4)
    ordered, stats = make_batches(
        tokenizer, examples, ["neg", "pos"], batch_size=4, shuffle=False, seed=0, bucket=False
    )
    assert stats.batch_indices[0] == [0, 1, 2, 3]


def test_unlabelled_batches_and_label_errors(tokenizer: Any) -> None:
    unlabeled = [Example("the film", None, None)] * 3
    batches, _ = make_batches(tokenizer, unlabeled, None, batch_size=2, shuffle=False, seed=0)
    assert "labels" not in batches[0] and len(batches) == 2
    with pytest.raises(InvalidInput, match=r"Labels \['maybe'\] are not among"):
        make_batches(
            tokenizer, [Example("a", None, "maybe")], ["neg"], batch_size=2, shuffle=False, seed=0
        )


def test_databundle_is_plain() -> None:
    bundle = DataBundle({"train": [Example("a", None, "x")]}, "mem", False)
    assert bundle.split("train")[0].text_a == "a"

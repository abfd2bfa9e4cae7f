"""Data specs: load and validate text-classification data, fingerprint it, and batch it.

Three modules: :mod:`registry.data_readers` reads files, ``datasets`` objects and Hub datasets
into raw rows; this one validates them into examples and summarises them; :mod:`registry.batching`
tokenises and batches them (re-exported here).

A spec is a local file or folder (jsonl, json, csv, parquet), a ``datasets.Dataset`` /
``DatasetDict``, or a Hub dataset name such as ``super_glue/cb``. Every row becomes an
:class:`Example` whose label is the label *name*, so ids never leak between tasks. Errors name the
file and line, because the person reading them has to open that file and fix it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .batching import CHARS_PER_TOKEN_CAP as CHARS_PER_TOKEN_CAP
from .batching import BatchStats as BatchStats
from .batching import make_batches as make_batches
from .data_readers import EXTENSIONS as EXTENSIONS
from .data_readers import SPLIT_NAMES as SPLIT_NAMES
from .data_readers import _from_datasets_object, _load_hub, _Row, _split_files, _split_of
from .data_readers import _read_file as _read_file  # looked up here, so tests can count reads
from .errors import InvalidInput, NotFound

# Pairs first: a row with text_a/text_b may also carry an unrelated "text" column.
TEXT_FIELD_CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("text_a", "text_b"),
    ("premise", "hypothesis"),
    ("sentence1", "sentence2"),
    ("question", "passage"),
    ("text",),
    ("sentence",),
)
_HUB_NAME = re.compile(r"[\w.-]+/[\w.-]+(/[\w.-]+)?")


@dataclass(frozen=True)
class Example:
    """One row: the text (or text pair) and the label name (None when unlabeled)."""

    text_a: str
    text_b: str | None
    label: str | None


@dataclass
class DataBundle:
    """Named splits of examples, where they came from, and whether they are text pairs."""

    splits: dict[str, list[Example]]
    source: str
    pair: bool

    def split(self, name: str) -> list[Example]:
        """Return the examples of one split."""
        if name not in self.splits:
            raise NotFound(
                f"Split {name!r} is not in {self.source}; available: {', '.join(self.splits)}.",
                hint=f"Use one of: {', '.join(self.splits)}.",
            )
        return self.splits[name]


# --------------------------------------------------------------------------- loading
def load_spec(
    spec: str | Path | Any,
    *,
    text_fields: tuple[str, ...] | None = None,
    label_field: str = "label",
    label_names: list[str] | None = None,
    require_labels: bool = True,
) -> DataBundle:
    """Load a data spec into validated splits.

    Args:
        spec: a file, a folder of ``train``/``validation``/``test`` files, a ``datasets``
            object, or a Hub dataset name (``owner/name`` or ``name/config``).
        text_fields: one or two column names; detected when omitted.
        label_field: the label column.
        label_names: allowed label names; integer labels are mapped through them.
        require_labels: when False, splits without any labels load with ``label=None``.
            ``test_unlabeled`` splits may always lack labels.
    """
    if text_fields is not None and len(text_fields) not in (1, 2):
        raise InvalidInput(
            f"text_fields needs one or two column names, got {list(text_fields)}.",
            hint="e.g. --text-fields premise,hypothesis",
        )
    if isinstance(spec, str | Path):
        path = Path(spec).expanduser()
        if path.is_dir():
            files = _split_files(path)
        elif path.is_file():
            files = {_split_of(path): path}
        elif isinstance(spec, str) and _HUB_NAME.fullmatch(spec) and not spec.endswith(EXTENSIONS):
            raw = _load_hub(spec, label_field)
            return _build(raw, spec, text_fields, label_field, label_names, require_labels)
        else:
            raise NotFound(
                f"Data spec {spec} is not an existing file or folder.",
                hint="Give a jsonl/json/csv/parquet file, a folder of split files, "
                "or a Hub dataset such as owner/name.",
            )
        raw = {split: (str(f), _read_file(f)) for split, f in files.items()}
        source = str(spec)
    else:
        raw = _from_datasets_object(spec, label_field)
        source = f"<{type(spec).__name__}>"
    return _build(raw, source, text_fields, label_field, label_names, require_labels)


# --------------------------------------------------------------------------- validation
def _detect_fields(columns: Iterable[str], where: str) -> tuple[str, ...]:
    present = set(columns)
    for candidate in TEXT_FIELD_CANDIDATES:
        if set(candidate) <= present:
            return candidate
    raise InvalidInput(
        f"{where}: no text column found; columns: {', '.join(sorted(present)) or 'none'}.",
        hint="Name the column 'text' (or 'text_a'/'text_b' for pairs), or pass text_fields.",
    )


def _text(row: _Row, field_name: str) -> str:
    value = row.values.get(field_name)
    if value is None:
        raise InvalidInput(
            f"{row.where}: missing text field {field_name!r}.",
            hint="Name the text column(s) with --text-fields.",
        )
    if not isinstance(value, str):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(
                f"{row.where}: text field {field_name!r} is a {type(value).__name__}, not text.",
                hint="Put text in the text column(s), or pick others with --text-fields.",
            )
        value = str(value)
    if not value.strip():
        raise InvalidInput(
            f"{row.where}: empty text in field {field_name!r}.",
            hint="Fix or drop the row in the data file.",
        )
    return value


def _label(row: _Row, label_field: str, label_names: list[str] | None) -> str | None:
    value = row.values.get(label_field)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        name = str(value)
    elif isinstance(value, int):
        if label_names is None:
            name = str(value)
        elif 0 <= value < len(label_names):
            name = label_names[value]
        else:
            raise InvalidInput(
                f"{row.where}: label id {value} is out of range for labels {label_names}.",
                hint="Use label ids 0..n-1, or write label names.",
            )
    elif isinstance(value, str):
        # "positive " and "positive" are one label: surrounding whitespace never names a class.
        name = value.strip()
        if not name:
            return None
        # CSV stores every value as text: read "2" as an id only when it is not itself a name.
        if label_names is not None and name not in label_names and name.isdigit():
            index = int(name)
            if index < len(label_names):
                name = label_names[index]
    else:
        raise InvalidInput(
            f"{row.where}: label {value!r} is a {type(value).__name__}; use a name or an id.",
            hint="Write labels as names (positive) or ids (0, 1, ...).",
        )
    if label_names is not None and name not in label_names:
        raise InvalidInput(
            f"{row.where}: label {name!r} is not one of the allowed labels "
            f"{', '.join(label_names)}.",
            hint="Fix the row, or register the task with the new label.",
        )
    return name


def _build(
    raw: dict[str, tuple[str, list[_Row]]],
    source: str,
    text_fields: tuple[str, ...] | None,
    label_field: str,
    label_names: list[str] | None,
    require_labels: bool,
) -> DataBundle:
    splits: dict[str, list[Example]] = {}
    pairs: dict[str, bool] = {}
    for split, (origin, rows) in raw.items():
        if not rows:
            raise InvalidInput(
                f"{origin}: no rows in split {split!r}.", hint="Remove the empty file."
            )
        fields = text_fields or _detect_fields(rows[0].values.keys(), rows[0].where)
        missing = [f for f in fields if f not in rows[0].values]
        if missing:
            raise InvalidInput(
                f"{rows[0].where}: text column(s) {', '.join(missing)} not found; columns: "
                f"{', '.join(sorted(rows[0].values))}.",
                hint="Pass text_fields matching the file's columns.",
            )
        may_lack_labels = not require_labels or split.endswith("unlabeled")
        examples = []
        for row in rows:
            text_a = _text(row, fields[0])
            text_b = _text(row, fields[1]) if len(fields) == 2 else None
            examples.append(Example(text_a, text_b, _label(row, label_field, label_names)))
        unlabeled = [row for row, ex in zip(rows, examples, strict=True) if ex.label is None]
        if unlabeled and (not may_lack_labels or len(unlabeled) != len(rows)):
            # A split is all labelled or, where allowed, all unlabelled; a mix is a data bug.
            raise InvalidInput(
                f"{unlabeled[0].where}: missing label field {label_field!r}"
                f"{'' if may_lack_labels else f' in labelled split {split!r}'}.",
                hint="Give every row of the split a label (or name its column: --label-field); "
                "to label rows that have none, use: adapter-registry predict REF --data SPEC",
            )
        splits[split] = examples
        pairs[split] = len(fields) == 2
    if len(set(pairs.values())) > 1:
        raise InvalidInput(
            f"{source}: splits disagree on single text vs text pair: {pairs}.",
            hint="Use the same text columns in every split.",
        )
    order = {name: i for i, name in enumerate(dict.fromkeys(SPLIT_NAMES.values()))}
    ordered = dict(sorted(splits.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    return DataBundle(splits=ordered, source=source, pair=next(iter(pairs.values())))


# --------------------------------------------------------------------------- summaries
def infer_label_names(bundle: DataBundle) -> list[str]:
    """Return the sorted label names seen in any split."""
    labels = {ex.label for exs in bundle.splits.values() for ex in exs}
    return sorted(label for label in labels if label is not None)


def _normalise(text: str | None) -> str | None:
    if text is None:
        return None
    return " ".join(unicodedata.normalize("NFC", text).split())


def fingerprint(examples: list[Example]) -> str:
    """Return a sha256 over the normalised rows (NFC, collapsed whitespace), in row order."""
    h = hashlib.sha256()
    for ex in examples:
        row = {"a": _normalise(ex.text_a), "b": _normalise(ex.text_b), "label": ex.label}
        line = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        h.update(line.encode() + b"\n")
    return h.hexdigest()


def label_distribution(examples: list[Example]) -> dict[str, int]:
    """Return the count of each label name, sorted by name (unlabelled rows are skipped)."""
    counts = Counter(ex.label for ex in examples if ex.label is not None)
    return dict(sorted(counts.items()))


def spec_label(data: Any) -> str:
    """Return how a data spec is recorded: an absolute path for local files, else the spec."""
    if isinstance(data, str | Path):
        path = Path(data).expanduser()
        return str(path.resolve()) if path.exists() else str(data)
    return f"<{type(data).__name__}>"


def write_jsonl(examples: list[Example], path: Path) -> Path:
    """Write examples as jsonl (``text`` or ``text_a``/``text_b``, ``label``); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for e in examples:
        row: dict[str, Any] = (
            {"text": e.text_a} if e.text_b is None else {"text_a": e.text_a, "text_b": e.text_b}
        )
        if e.label is not None:
            row["label"] = e.label
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------- training rows
TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"


def split_validation(bundle: DataBundle, seed: int) -> tuple[list[Example], list[Example], str]:
    """Return (train, validation, how): the bundle's validation split, or 10% held out."""
    train = bundle.split(TRAIN_SPLIT)
    if VALIDATION_SPLIT in bundle.splits and bundle.splits[VALIDATION_SPLIT]:
        return train, bundle.splits[VALIDATION_SPLIT], VALIDATION_SPLIT
    if len(train) < 10:
        return train, [], "none"
    idx = list(range(len(train)))
    random.Random(seed).shuffle(idx)
    cut = max(1, len(train) // 10)
    held = set(idx[:cut])
    return (
        [e for i, e in enumerate(train) if i not in held],
        [e for i, e in enumerate(train) if i in held],
        "held-out 10% of train",
    )


def check_labels(bundle: DataBundle, label_names: list[str]) -> None:
    """Refuse any labelled row whose label is outside the task's label set."""
    allowed = set(label_names)
    for split, rows in bundle.splits.items():
        for i, ex in enumerate(rows):
            if ex.label is not None and ex.label not in allowed:
                raise InvalidInput(
                    f"Row {i + 1} of split {split!r} has label {ex.label!r}, which is not one of "
                    f"the task's labels {label_names}.",
                    hint="Fix the data, or register it under a new task name.",
                )


def labelled_splits(
    bundle: DataBundle, train_rows: list[Example], val_rows: list[Example]
) -> dict[str, list[Example]]:
    """Return the splits a trained model is scored on: train, validation, then every other
    split whose rows are all labelled."""
    out: dict[str, list[Example]] = {TRAIN_SPLIT: train_rows}
    if val_rows:
        out[VALIDATION_SPLIT] = val_rows
    for split, rows in bundle.splits.items():
        if split in out or split == TRAIN_SPLIT:
            continue
        labelled = [e for e in rows if e.label is not None]
        if labelled and len(labelled) == len(rows):
            out[split] = rows
    return out


@dataclass
class TrainingRows:
    """The rows one training run uses, cut from a data bundle."""

    train: list[Example]
    validation: list[Example]
    validation_how: str
    eval_sets: dict[str, list[Example]]


def training_rows(
    bundle: DataBundle, seed: int, max_train_examples: int | None = None
) -> TrainingRows:
    """Cut train and validation rows (see :func:`split_validation`) and the splits to score.

    Raises:
        InvalidInput: the train split is empty or has unlabelled rows.
    """
    train, val, how = split_validation(bundle, seed)
    if max_train_examples is not None:
        train = train[:max_train_examples]
    if not train or any(e.label is None for e in train):
        raise InvalidInput(
            "The train split is empty or has unlabelled rows.",
            hint="Give data with a labelled train split.",
        )
    trained = {e.label for e in train}
    unseen = sorted({e.label for e in val if e.label is not None} - trained)
    if unseen:
        # Such a label would become a class with no training row, chosen on the dev split alone.
        raise InvalidInput(
            f"Label(s) {', '.join(map(repr, unseen))} appear in validation but in no training "
            f"row{'' if max_train_examples is None else ' used (see --max-train-examples)'}.",
            hint="Add training rows with these labels, or remove them from the validation split.",
        )
    return TrainingRows(train, val, how, labelled_splits(bundle, train, val))

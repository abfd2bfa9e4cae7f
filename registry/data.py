"""Data specs: load and validate text-classification data, fingerprint it, and batch it.

A spec is a local file or folder (jsonl, json, csv, parquet), a ``datasets.Dataset`` /
``DatasetDict``, or a Hub dataset name such as ``super_glue/cb``. Every row becomes an
:class:`Example` whose label is the label *name*, so ids never leak between tasks. Errors name the
file and line, because the person reading them has to open that file and fix it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from torch import Tensor

EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
    "test_unlabeled": "test_unlabeled",
}
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


@dataclass(frozen=True)
class _Row:
    where: str  # "file, line N" or "file, row N", for messages
    values: dict[str, Any]


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
            return _load_hub(spec, text_fields, label_field, label_names, require_labels)
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


def _split_of(path: Path) -> str:
    return SPLIT_NAMES.get(path.stem.lower(), "train")


def _split_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        split = SPLIT_NAMES.get(path.stem.lower())
        if not path.is_file() or path.suffix.lower() not in EXTENSIONS or split is None:
            continue
        if split in files:
            raise InvalidInput(
                f"Folder {folder} has two files for split {split!r}: "
                f"{files[split].name} and {path.name}.",
                hint="Keep one file per split.",
            )
        files[split] = path
    if not files:
        found = sorted(p.name for p in folder.iterdir())
        raise InvalidInput(
            f"Folder {folder} has no split files (train/validation/dev/test with "
            f"{'/'.join(EXTENSIONS)}); found: {', '.join(found) or 'nothing'}.",
            hint="Name the files train.jsonl, validation.jsonl, test.jsonl (or .csv/.parquet).",
        )
    return files


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1)
        raise InvalidInput(
            f"{path}, line {line}: not UTF-8 (byte 0x{data[exc.start]:02x} at byte offset "
            f"{exc.start}, column {column + 1}).",
            hint="Re-save the file as UTF-8.",
        ) from exc


def _read_file(path: Path) -> list[_Row]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return list(_read_jsonl(path))
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        return list(_read_csv(path))
    if suffix == ".parquet":
        return _read_parquet(path)
    raise InvalidInput(
        f"{path}: unsupported file type {suffix!r}; use one of {', '.join(EXTENSIONS)}.",
        hint="Convert the file to jsonl, csv or parquet.",
    )


def _read_jsonl(path: Path) -> Iterator[_Row]:
    # split("\n"), not splitlines(): JSON strings may hold U+2028, which splitlines() breaks on.
    for number, line in enumerate(_decode(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{path}, line {number}: malformed JSON ({exc.msg} at column {exc.colno}).",
                hint="Each line must be one JSON object.",
            ) from exc
        except RecursionError as exc:
            raise _too_deep(f"{path}, line {number}") from exc
        if not isinstance(value, dict):
            raise InvalidInput(
                f"{path}, line {number}: expected a JSON object, got {type(value).__name__}.",
                hint="Write one JSON object per line.",
            )
        yield _Row(f"{path}, line {number}", value)


def _too_deep(where: str) -> InvalidInput:
    return InvalidInput(
        f"{where}: JSON nested too deeply to read.",
        hint="Rows are flat objects of text and label fields; fix the file.",
    )


def _read_json(path: Path) -> list[_Row]:
    try:
        value = json.loads(_decode(path))
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{path}, line {exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno}).",
            hint="Fix the JSON in the data file.",
        ) from exc
    except RecursionError as exc:
        raise _too_deep(str(path)) from exc
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list):
        raise InvalidInput(
            f"{path}: expected a JSON list of objects (or {{'data': [...]}}).",
            hint="For one object per line, name the file .jsonl.",
        )
    rows = []
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise InvalidInput(
                f"{path}, row {number}: expected a JSON object.",
                hint="A .json file holds a list of JSON objects.",
            )
        rows.append(_Row(f"{path}, row {number}", item))
    return rows


def _read_csv(path: Path) -> Iterator[_Row]:
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InvalidInput(
            f"{path}, line 1: malformed CSV header ({exc}).",
            hint="Fix the header line of the CSV file.",
        ) from exc
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidInput(
                f"{path}, line {reader.line_num}: malformed CSV ({exc}).",
                hint="Fix the row in the CSV file.",
            ) from exc
        if not row:
            continue
        if len(row) != len(header):
            raise InvalidInput(
                f"{path}, line {reader.line_num}: expected {len(header)} fields "
                f"({', '.join(header)}), found {len(row)}.",
                hint="Quote fields that contain commas.",
            )
        yield _Row(f"{path}, line {reader.line_num}", dict(zip(header, row, strict=True)))


def _read_parquet(path: Path) -> list[_Row]:
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InvalidInput(
            f"{path}: not a readable parquet file ({exc}).",
            hint="Check the file, or convert it to jsonl.",
        ) from exc
    return [_Row(f"{path}, row {i}", r) for i, r in enumerate(records, start=1)]


def _from_datasets_object(obj: Any, label_field: str) -> dict[str, tuple[str, list[_Row]]]:
    import datasets

    if isinstance(obj, datasets.DatasetDict):
        parts = {SPLIT_NAMES.get(str(k).lower(), str(k)): v for k, v in obj.items()}
    elif isinstance(obj, datasets.Dataset):
        split = SPLIT_NAMES.get(str(obj.split).lower(), "train") if obj.split else "train"
        parts = {split: obj}
    else:
        raise InvalidInput(
            f"Cannot load data from a {type(obj).__name__}.",
            hint="Give a path, a Hub dataset name, or a datasets.Dataset/DatasetDict.",
        )
    raw: dict[str, tuple[str, list[_Row]]] = {}
    for split, ds in parts.items():
        feature = ds.features.get(label_field)
        names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        rows = []
        for i, record in enumerate(ds, start=1):
            record = dict(record)
            value = record.get(label_field)
            if names is not None and isinstance(value, int):
                # ClassLabel uses -1 for hidden labels (GLUE/SuperGLUE test splits).
                record[label_field] = names[value] if value >= 0 else None
            rows.append(_Row(f"split {split}, row {i}", record))
        raw[split] = (f"split {split}", rows)
    return raw


def _load_hub(
    name: str,
    text_fields: tuple[str, ...] | None,
    label_field: str,
    label_names: list[str] | None,
    require_labels: bool,
) -> DataBundle:
    import datasets

    parts = name.split("/")
    # owner/name/config, or owner/name (a repo id) falling back to name/config (super_glue/cb).
    attempts = (
        [("/".join(parts[:2]), parts[2])] if len(parts) == 3 else [(name, None), tuple(parts)]
    )
    errors = []
    for path, config in attempts:
        try:
            loaded = datasets.load_dataset(path, config)
        except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
            errors.append(f"{path}{f' ({config})' if config else ''}: {exc}")
            continue
        raw = _from_datasets_object(loaded, label_field)
        return _build(raw, name, text_fields, label_field, label_names, require_labels)
    raise NotFound(
        f"Hub dataset {name!r} could not be loaded: {'; '.join(errors)}",
        hint="Check the name (owner/name or name/config) and your network, or use a local file.",
    )


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
                hint="Add the label, or load with require_labels=False for unlabelled data.",
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


# --------------------------------------------------------------------------- batching
@dataclass
class BatchStats:
    """Token counts of a batching, to measure padding waste.

    ``batch_indices[i]`` lists the example indices in batch ``i``, so predictions can be put
    back in row order after bucketing.
    """

    real_tokens: int
    padded_tokens: int
    n_examples: int
    n_batches: int
    batch_indices: list[list[int]] = field(default_factory=list)

    @property
    def real_fraction(self) -> float:
        """Return the share of batch positions that hold real tokens."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


#: Characters kept per token of ``max_length`` before tokenising (a token spans at least one
#: character, so this keeps every token the limit allows unless a row is mostly whitespace).
CHARS_PER_TOKEN_CAP = 64


def make_batches(
    tokenizer: Any,
    examples: list[Example],
    label_names: list[str] | None,
    *,
    batch_size: int,
    max_length: int = 256,
    shuffle: bool,
    seed: int,
    bucket: bool = True,
    pad_to: int | None = None,
    max_tokens: int | None = None,
    pin_memory: bool = False,
) -> tuple[list[dict[str, Tensor]], BatchStats]:
    """Tokenize once and cut examples into padded tensor batches.

    With ``bucket``, rows are sorted by length inside chunks of ``50 * batch_size`` so each batch
    pads to a similar length; with ``shuffle`` the row order (before bucketing) and the batch
    order are shuffled with ``seed``. Each batch pads to its own longest row, or to ``pad_to``
    (which also caps ``max_length``). Labels become a ``labels`` LongTensor when every example has
    one; ``label_names`` fixes the ids.

    ``max_tokens`` caps each batch's padded size (rows x its longest row) as well: a batch is
    closed early when the next row would take it over the budget, so buckets of short rows hold
    up to ``batch_size`` rows and buckets of long rows fewer. It must be at least ``max_length``
    (every row then fits alone). With ``pin_memory`` the tensors live in page-locked memory,
    for asynchronous copies to a GPU.
    """
    import torch

    if batch_size < 1:
        raise InvalidInput(
            f"batch_size must be at least 1, got {batch_size}.", hint="e.g. --batch-size 32"
        )
    if not examples:
        raise InvalidInput("No examples to batch.", hint="Give data with at least one row.")
    if pad_to is not None:
        max_length = min(max_length, pad_to)
    if max_tokens is not None and max_tokens < max(max_length, 1):
        raise InvalidInput(
            f"max_tokens ({max_tokens}) must be at least max_length ({max_length}), so every "
            "row fits in a batch.",
            hint=f"e.g. --max-tokens {64 * max_length}",
        )

    labels: list[int] | None = None
    if all(ex.label is not None for ex in examples):
        if label_names is None:
            raise InvalidInput(
                "Labelled examples need label_names to map labels to ids.",
                hint="Pass the task's label names.",
            )
        ids = {name: i for i, name in enumerate(label_names)}
        unknown = sorted({str(ex.label) for ex in examples} - set(ids))
        if unknown:
            raise InvalidInput(
                f"Labels {unknown} are not among the task's labels {label_names}.",
                hint="Fix the data, or register it under a new task name.",
            )
        labels = [ids[str(ex.label)] for ex in examples]
    elif any(ex.label is not None for ex in examples):
        raise InvalidInput(
            "Some examples have labels and some do not; batch them separately.",
            hint="Label every row, or none.",
        )

    pair = examples[0].text_b is not None
    if any((ex.text_b is not None) != pair for ex in examples):
        raise InvalidInput(
            "Examples mix single texts and text pairs.",
            hint="Give every row one text, or every row two (--text-fields a,b).",
        )
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < max_length:
        max_length = limit  # the model has no positions past its limit (Backbone.load sets it)
    # Cut each text before tokenising: a row of megabytes would otherwise be tokenised whole.
    cap = max_length * CHARS_PER_TOKEN_CAP
    first = [ex.text_a[:cap] for ex in examples]
    second = [(ex.text_b or "")[:cap] for ex in examples] if pair else None
    encoded = tokenizer(first, second, truncation=True, max_length=max_length)
    input_ids: list[list[int]] = encoded["input_ids"]
    type_ids: list[list[int]] | None = encoded.get("token_type_ids")
    lengths = [len(ids) for ids in input_ids]

    rng = random.Random(seed)
    order = list(range(len(examples)))
    if shuffle:
        rng.shuffle(order)
    if bucket:
        chunk = 50 * batch_size
        order = [
            i
            for start in range(0, len(order), chunk)
            for i in sorted(order[start : start + chunk], key=lambda j: lengths[j])
        ]
    groups = _group(order, lengths, batch_size, max_tokens, pad_to)
    if shuffle:
        # Shuffle whole batches so sorted buckets do not feed short-to-long every epoch.
        rng.shuffle(groups)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches: list[dict[str, Tensor]] = []
    padded_total = 0
    for group in groups:
        width = pad_to if pad_to is not None else max(lengths[i] for i in group)
        ids_t = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask_t = torch.zeros((len(group), width), dtype=torch.long)
        types_t = torch.zeros((len(group), width), dtype=torch.long)
        for row, i in enumerate(group):
            n = lengths[i]
            ids_t[row, :n] = torch.tensor(input_ids[i], dtype=torch.long)
            mask_t[row, :n] = 1
            if type_ids is not None:
                types_t[row, :n] = torch.tensor(type_ids[i], dtype=torch.long)
        batch: dict[str, Tensor] = {"input_ids": ids_t, "attention_mask": mask_t}
        if type_ids is not None:
            batch["token_type_ids"] = types_t
        if labels is not None:
            batch["labels"] = torch.tensor([labels[i] for i in group], dtype=torch.long)
        if pin_memory:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        batches.append(batch)
        padded_total += len(group) * width

    stats = BatchStats(
        real_tokens=sum(lengths),
        padded_tokens=padded_total,
        n_examples=len(examples),
        n_batches=len(batches),
        batch_indices=groups,
    )
    return batches, stats


def _group(
    order: list[int],
    lengths: list[int],
    batch_size: int,
    max_tokens: int | None,
    pad_to: int | None,
) -> list[list[int]]:
    """Cut ``order`` into consecutive batches of at most ``batch_size`` rows and, with
    ``max_tokens``, at most that many padded tokens (rows x the widest row, or ``pad_to``)."""
    if max_tokens is None:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    groups: list[list[int]] = []
    group: list[int] = []
    width = 0
    for i in order:
        new_width = pad_to if pad_to is not None else max(width, lengths[i])
        if group and (len(group) >= batch_size or (len(group) + 1) * new_width > max_tokens):
            groups.append(group)
            group, new_width = [], pad_to if pad_to is not None else lengths[i]
        group.append(i)
        width = new_width
    if group:
        groups.append(group)
    return groups


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

"""Reading data sources into raw rows: split files of a folder, jsonl, json, csv and parquet files,
``datasets`` objects and Hub datasets. :mod:`registry.data` validates the rows into examples."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInput, NotFound

EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
    "test_unlabeled": "test_unlabeled",
}


@dataclass(frozen=True)
class _Row:
    where: str  # "file, line N" or "file, row N", for messages
    values: dict[str, Any]


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


def _load_hub(name: str, label_field: str) -> dict[str, tuple[str, list[_Row]]]:
    """Return the raw rows of each split of a Hub dataset (``owner/name[/config]`` or
    ``name/config``)."""
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
        return _from_datasets_object(loaded, label_field)
    raise NotFound(
        f"Hub dataset {name!r} could not be loaded: {'; '.join(errors)}",
        hint="Check the name (owner/name or name/config) and your network, or use a local file.",
    )

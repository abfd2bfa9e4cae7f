"""The evaluation protocol of every quality benchmark (see ``benchmarks/PROTOCOL.md``).

Three splits per dataset and seed:

- ``train``: what a model learns from, a seeded stratified sample of the dataset's train split;
- ``dev``: what every choice sees (best epoch, early stopping, ``update``'s gate, member order,
  settings), a seeded stratified sample carved out of the same train split, disjoint from
  ``train``;
- ``report``: what the numbers are reported on, the dataset's labelled ``test`` split (or its
  ``validation`` split where the test labels are hidden, as for CB). No choice ever sees it.

Seeds vary the data sample (which rows are train and dev) as well as the initialisation. The
report sample is the same for every seed (seed 0 when it is subsampled), so seeds differ by what
was learned, not by what was asked.

Every use of a split goes through :class:`Ledger`: a benchmark hands rows to training with
:meth:`Ledger.train_folder` (the registry's ``train`` / ``validation`` files: train rows and the
dev rows), or :meth:`Ledger.use` for in-process baselines, and takes report rows with
:meth:`Ledger.report`. With ``PROTOCOL_LEDGER=<file>`` in the environment each use is appended
to that JSON-lines file; ``tests/test_protocol.py`` runs every benchmark's ``--quick`` path and
fails when a report row reached training or selection.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]
PURPOSES = ("train", "select", "report")
LEDGER_ENV = "PROTOCOL_LEDGER"
#: every row made by :func:`make_splits` carries the file it was read from under this key
ORIGIN = "_origin"


@dataclass(frozen=True)
class Splits:
    """One dataset's train / dev / report rows for one seed."""

    dataset: str
    seed: int
    train: list[Row]
    dev: list[Row]
    report: list[Row]
    #: the file the report rows come from: ``test`` or ``validation``
    report_split: str

    def labels(self) -> list[str]:
        """Return the sorted label names seen in train, dev and report."""
        return sorted({str(r["label"]) for r in (*self.train, *self.dev, *self.report)})


def read_rows(root: Path, dataset: str, split: str) -> list[Row]:
    """Return the rows of ``<root>/<dataset>/<split>.jsonl``."""
    path = Path(root) / dataset / f"{split}.jsonl"
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()
    ]


def report_split_of(root: Path, dataset: str) -> str:
    """Return ``test`` when the dataset has a labelled test file, else ``validation``."""
    test = Path(root) / dataset / "test.jsonl"
    if test.exists():
        with test.open(encoding="utf-8") as fh:
            first = fh.readline()
        if first and "label" in json.loads(first):
            return "test"
    return "validation"


def stratified_sample(rows: Sequence[Row], n: int, rng: random.Random) -> list[Row]:
    """Return ``n`` rows (all if fewer) with each label's share kept, in a seeded order.

    Largest-remainder allocation; every label present gets at least one row when ``n`` allows.
    """
    if n >= len(rows):
        out = list(rows)
        rng.shuffle(out)
        return out
    by_label: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_label[str(r["label"])].append(r)
    labels = sorted(by_label)
    exact = {lab: n * len(by_label[lab]) / len(rows) for lab in labels}
    take = {lab: int(exact[lab]) for lab in labels}
    if n >= len(labels):
        for lab in labels:
            take[lab] = max(1, take[lab])
    left = n - sum(take.values())
    for lab in sorted(labels, key=lambda x: (take[x] - exact[x], x)):
        if left <= 0:
            break
        if take[lab] < len(by_label[lab]):
            take[lab] += 1
            left -= 1
    while sum(take.values()) > n:  # the at-least-one rule overshot: trim the largest
        big = max(labels, key=lambda x: (take[x], x))
        take[big] -= 1
    out: list[Row] = []
    for lab in labels:
        pool = list(by_label[lab])
        rng.shuffle(pool)
        out.extend(pool[: take[lab]])
    rng.shuffle(out)
    return out


def make_splits(
    root: Path,
    dataset: str,
    seed: int,
    *,
    dev_rows: int,
    train_rows: int | None = None,
    report_rows: int | None = None,
) -> Splits:
    """Carve ``dev_rows`` (stratified, seeded) out of train; sample train and the report split.

    Args:
        dev_rows: size of the dev split, taken from the dataset's train split.
        train_rows: train rows kept from what is left (None: all of it), stratified.
        report_rows: rows of the report split (None: all), stratified, the same for every seed.
    """
    pool = [{**r, ORIGIN: "train"} for r in read_rows(root, dataset, "train")]
    rng = random.Random(f"protocol:{dataset}:{seed}")
    dev = stratified_sample(pool, dev_rows, rng)
    dev_ids = {id(r) for r in dev}
    rest = [r for r in pool if id(r) not in dev_ids]
    train = stratified_sample(rest, train_rows if train_rows is not None else len(rest), rng)
    split = report_split_of(root, dataset)
    report_pool = [{**r, ORIGIN: split} for r in read_rows(root, dataset, split)]
    report = (
        stratified_sample(report_pool, report_rows, random.Random(f"protocol:{dataset}:report"))
        if report_rows is not None
        else report_pool
    )
    return Splits(dataset, seed, train, dev, report, split)


def _keys(splits: Splits, rows: Iterable[Row]) -> list[str]:
    return [f"{splits.dataset}/{r.get(ORIGIN, '?')}/{r.get('id', '?')}" for r in rows]


def strip(rows: Iterable[Row]) -> list[Row]:
    """Return the rows without the protocol's provenance key (as the data files have them)."""
    return [{k: v for k, v in r.items() if k != ORIGIN} for r in rows]


class Ledger:
    """Records which rows each benchmark handed to training, selection and reporting.

    Entries go to ``PROTOCOL_LEDGER`` (a JSON-lines file) when that variable is set, and always
    to :attr:`entries`.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        env = os.environ.get(LEDGER_ENV)
        self.path = Path(path) if path is not None else (Path(env) if env else None)
        self.entries: list[dict[str, Any]] = []

    def _record(self, purpose: str, splits: Splits, rows: Sequence[Row], who: str) -> None:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown purpose {purpose!r}")
        entry = {
            "purpose": purpose,
            "dataset": splits.dataset,
            "seed": splits.seed,
            "origins": sorted({str(r.get(ORIGIN, "?")) for r in rows}),
            "report_split": splits.report_split,
            "who": who,
            "keys": _keys(splits, rows),
            "texts": [_text(r) for r in rows],
        }
        self.entries.append(entry)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    def use(self, splits: Splits, which: str, purpose: str, who: str) -> list[Row]:
        """Return ``splits.<which>`` rows and record them as used for ``purpose`` by ``who``."""
        rows = {"train": splits.train, "dev": splits.dev, "report": splits.report}[which]
        self._record(purpose, splits, rows, who)
        return strip(rows)

    def train_folder(
        self, splits: Splits, dest: Path, who: str, extra_train: Sequence[Row] = ()
    ) -> Path:
        """Write ``train.jsonl`` (train rows) and ``validation.jsonl`` (the dev rows) to ``dest``.

        That is the layout the registry's trainer, composer and ``update`` read: they select
        their epoch and gate on the ``validation`` file, which holds dev rows, never report rows.
        """
        dest.mkdir(parents=True, exist_ok=True)
        train = [*self.use(splits, "train", "train", who), *extra_train]
        dev = self.use(splits, "dev", "select", who)
        for name, rows in (("train", train), ("validation", dev)):
            (dest / f"{name}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
            )
        return dest

    def report(self, splits: Splits, who: str) -> list[Row]:
        """Return the report rows, recorded as reported on by ``who``."""
        return self.use(splits, "report", "report", who)


def _text(row: Row) -> str:
    if "text" in row:
        return text_key(str(row["text"]), None)
    return text_key(str(row.get("text_a", "")), row.get("text_b"))


def text_key(text_a: str, text_b: str | None) -> str:
    """Return the key a row's text is compared by (also for the registry's ``Example``)."""
    return text_a if text_b is None else f"{text_a} [SEP] {text_b}"


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Return the entries of a ledger file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def violations(entries: Iterable[dict[str, Any]], trained_texts: Iterable[str] = ()) -> list[str]:
    """Return every way the recorded runs let a report row reach training or selection.

    - a ``train`` or ``select`` entry with rows read from the dataset's report file;
    - a row (by dataset, origin and id) both reported on and trained on or selected with;
    - ``trained_texts`` (texts actually batched for training, recorded by the guard test below
      the registry's API) that are report texts.
    """
    items = list(entries)
    out: list[str] = []
    reported: dict[str, str] = {}
    report_texts: dict[str, str] = {}
    for e in items:
        if e["purpose"] == "report":
            for k in e["keys"]:
                reported[k] = e["who"]
            for t in e["texts"]:
                report_texts[t] = e["dataset"]
    for e in items:
        if e["purpose"] == "report":
            continue
        if e["report_split"] in e["origins"]:
            out.append(
                f"{e['who']}: {e['purpose']} rows of {e['dataset']} come from its report split"
            )
        shared = [k for k in e["keys"] if k in reported]
        if shared:
            out.append(
                f"{e['who']}: {len(shared)} {e['purpose']} rows were also reported on "
                f"(e.g. {shared[0]})"
            )
    # a report text that also occurs in the train split (duplicates in official splits) is legit
    legit = {
        t
        for e in items
        if e["purpose"] != "report"
        for k, t in zip(e["keys"], e["texts"], strict=True)
        if k.split("/")[-2] != e["report_split"]
    }
    leaked = [t for t in trained_texts if t in report_texts and t not in legit]
    if leaked:
        out.append(
            f"{len(leaked)} texts batched for training are report rows (e.g. {leaked[0][:60]!r})"
        )
    return out

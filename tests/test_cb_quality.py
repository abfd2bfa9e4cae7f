"""The CB quality benchmark end to end on a tiny BERT: every method, every seed, sources reused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from benchmarks import cb_quality
from registry.store import Registry

LABELS = {
    "mnli": ["entailment", "neutral", "contradiction"],
    "qqp": ["not_duplicate", "duplicate"],
    "qnli": ["entailment", "not_entailment"],
    "cb": ["contradiction", "entailment", "neutral"],
}
WORDS = [
    "the",
    "a",
    "film",
    "book",
    "story",
    "plot",
    "was",
    "is",
    "good",
    "bad",
    "fun",
    "slow",
    "great",
    "awful",
    "it",
    "this",
]


def _write_pairs(folder: Path, labels: list[str], seed: int) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for split, n in (("train", 24), ("validation", 12)):
        rows = []
        for i in range(n):
            label = labels[i % len(labels)]
            a = " ".join(rng.choice(WORDS) for _ in range(8))
            b = " ".join(rng.choice(WORDS) for _ in range(4)) + f" {label}"
            rows.append({"id": str(i), "text_a": a, "text_b": b, "label": label})
        (folder / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
        )


def _tiny_args(tmp_path: Path, base: Path, cb_epochs: int) -> list[str]:
    """Write tiny data for every task; return the arguments of a tiny run (no seeds, no out)."""
    root = tmp_path / "data"
    for i, (task, labels) in enumerate(LABELS.items()):
        _write_pairs(root / task, labels, i)
    return [
        "--data-root", str(root), "--base", str(base), "--home", str(tmp_path / "home"),
        "--source-rows", "16", "--source-val-rows", "8", "--source-epochs", "1",
        "--cb-epochs", str(cb_epochs), "--fusion-epochs", "1", "--finetune-epochs", "1",
        "--max-length", "32", "--threads", "1", "--dev-rows", "6",
    ]  # fmt: skip


@pytest.mark.slow
def test_cb_quality_runs_every_method_and_reuses_sources(
    tiny_base_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    argv = [
        *_tiny_args(tmp_path, tiny_base_dir, cb_epochs=2),
        "--seeds", "0,1", "--cb-start", "fresh", "--out", str(tmp_path / "first.md"),
    ]  # fmt: skip
    results = cb_quality.main(argv)
    assert sorted((r.seed, r.method) for r in results) == sorted(
        (s, m) for s in (0, 1) for m in cb_quality.METHODS
    )
    for r in results:
        assert 0.0 <= r.accuracy <= 1.0 and 0.0 <= r.macro_f1 <= 1.0
        assert 1 <= r.best_epoch <= r.epochs_run
    report = (tmp_path / "first.md").read_text(encoding="utf-8")
    for method in cb_quality.METHODS:
        assert f"| {method} |" in report
    assert "## Targets" in report and "class-weighted loss on CB runs: True" in report

    with Registry.open(home) as reg:
        sources_before = {t: reg.list_entities(task=t, kind="adapter") for t in cb_quality.SOURCES}
        fusions = reg.list_entities(task="cb", kind="fusion")
    assert all(len(v) == 1 for v in sources_before.values())
    # each seed's sources+CB fusion has the sources and that seed's own CB adapter as members
    # (both places of the CB adapter are trained; dev picks the one reported)
    first = [f.members for f in fusions if f.name.startswith("cb-all-first-")]
    last = [f.members for f in fusions if f.name.startswith("cb-all-last-")]
    assert len(first) == len(last) == 2 and all(len(m) == 4 for m in first + last)
    assert first[0][1:] == first[1][1:] and first[0][0] != first[1][0]
    assert all(m[0].startswith("cb@") for m in first) and all(m[-1].startswith("cb@") for m in last)
    reported = [r.ref for r in results if r.method == cb_quality.METHODS[3]]
    assert len(reported) == 2 and all("(CB first)" in r or "(CB last)" in r for r in reported)

    # a second run on the same registry reuses the source adapters instead of training again
    cb_quality.main([*argv[:-1], str(tmp_path / "second.md"), "--seeds", "2"])
    with Registry.open(home) as reg:
        for t in cb_quality.SOURCES:
            assert reg.list_entities(task=t, kind="adapter") == sources_before[t]
    assert "| reused |" in (tmp_path / "second.md").read_text(encoding="utf-8")

    # runs made apart merge into one report over every seed, from their .json files
    merged = cb_quality.main(
        ["--merge", str(tmp_path / "first.json"), str(tmp_path / "second.json"),
         "--out", str(tmp_path / "all.md")]
    )  # fmt: skip
    assert sorted({r.seed for r in merged}) == [0, 1, 2] and len(merged) == 12
    text = (tmp_path / "all.md").read_text(encoding="utf-8")
    assert "over seeds 0, 1, 2" in text and "merged from 2 runs" in text
    # each merged run's own date and machine are listed, not only the merging machine's
    listed = [ln for ln in text.splitlines() if ln.startswith("- merged run `")]
    assert len(listed) == 2 and all("date: " in ln and "machine: " in ln for ln in listed)
    assert [r.accuracy for r in merged if r.seed < 2] == [
        r.accuracy
        for r in sorted(results, key=lambda r: (r.seed, cb_quality.METHODS.index(r.method)))
    ]


@pytest.mark.slow
def test_cb_quality_transfer_starts_each_cb_adapter_from_the_mnli_source(
    tiny_base_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    common = _tiny_args(tmp_path, tiny_base_dir, cb_epochs=1)
    # --sources-only trains the sources, records their facts, and trains nothing for CB
    assert cb_quality.main([*common, "--sources-only"]) == []
    with Registry.open(home) as reg:
        assert "cb" not in {t.name for t in reg.list_tasks()}
        mnli = reg.list_entities(task="mnli", kind="adapter")[0]
    facts = json.loads((home / "sources.json").read_text(encoding="utf-8"))
    assert [f[0] for f in facts] == ["mnli@1", "qqp@1", "qnli@1"]

    out = tmp_path / "transfer.md"
    results = cb_quality.main(
        [*common, "--seeds", "0,1", "--out", str(out)]  # transfer: the default
    )
    singles = [r.ref for r in results if r.method == cb_quality.METHODS[1]]
    assert singles == ["cb-s0@1", "cb-s1@1"]  # each seed's adapter is the first of its task
    with Registry.open(home) as reg:
        assert reg.resolve("mnli:production").id == mnli.id
        for ref in singles:
            adapter = reg.resolve(ref)
            edges = reg.edges_of("adapter", adapter.id)
            assert [(e.relation, e.parent_id) for e in edges] == [("warm_started_from", mnli.id)]
        # the fusions over sources + CB take that seed's transferred adapter as a member
        members = [f.members for f in reg.list_entities(task="cb", kind="fusion")]
    assert sum(1 for m in members if "cb-s0@1" in m) == 2
    # the sources table is the one --sources-only recorded, not "reused"
    report = out.read_text(encoding="utf-8")
    assert "| reused |" not in report and f"| mnli@1 | {facts[0][1]['accuracy']:.3f} |" in report
    assert "`--cb-start transfer`" in report

    # runs whose CB adapters started differently never merge into one report
    old = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    del old["cb_start"]  # as the runs made before the option was written (fresh)
    (tmp_path / "old.json").write_text(json.dumps(old), encoding="utf-8")
    with pytest.raises(SystemExit, match="started differently"):
        cb_quality.main(
            ["--merge", str(out.with_suffix(".json")), str(tmp_path / "old.json"),
             "--out", str(tmp_path / "mixed.md")]
        )  # fmt: skip
    assert not (tmp_path / "mixed.md").exists()
    cb_quality.main(["--merge", str(tmp_path / "old.json"), "--out", str(tmp_path / "old.md")])
    assert "`--cb-start fresh`" in (tmp_path / "old.md").read_text(encoding="utf-8")

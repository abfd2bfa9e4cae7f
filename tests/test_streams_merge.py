"""benchmarks/streams.py merges a new invocation's runs with the runs already in its results file.

Runs at other sizes are never merged; a run at another learning rate only when its method does
not train with that rate (a new adapter lr keeps the full fine-tuning runs, drops the adapter's).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from benchmarks import streams


def _results_file(out: Path, argv: list[str]) -> None:
    """Write a results JSON as an earlier invocation with ``argv`` would have left it."""
    args = streams.parse_args(argv)
    runs = [
        streams.MethodRun(m, seed, [[0.5]], 1.0, [1], [4])
        for m in ("seq-ft", "seq-ft-replay", "joint", "adapter", "registry", "registry-fresh")
        for seed in (0, 1)
    ]
    path = out / f"streams_{streams.stream_name(args)}.json"
    path.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "runs": [asdict(r) for r in runs],
                "single": {"0": [0.5], "1": [0.5]},
            }
        ),
        encoding="utf-8",
    )


BASE = ["--stream", "domain", "--domains", "a,b", "--train-rows", "30"]


def test_a_new_adapter_lr_keeps_full_finetuning_runs_and_drops_adapter_runs(
    tmp_path: Path,
) -> None:
    _results_file(tmp_path, [*BASE, "--out-dir", str(tmp_path)])
    args = streams.parse_args(
        [*BASE, "--out-dir", str(tmp_path), "--adapter-lr", "2e-3", "--methods",
         "registry,adapter", "--seeds", "0"]
    )  # fmt: skip
    runs, singles = streams.earlier_runs(args)
    kept = sorted((r.method, r.seed) for r in runs)
    assert kept == sorted((m, s) for m in ("seq-ft", "seq-ft-replay", "joint") for s in (0, 1))
    assert singles == {}


def test_same_lrs_keep_every_run_not_redone(tmp_path: Path) -> None:
    _results_file(tmp_path, [*BASE, "--out-dir", str(tmp_path)])
    args = streams.parse_args(
        [*BASE, "--out-dir", str(tmp_path), "--methods", "registry", "--seeds", "0"]
    )
    runs, singles = streams.earlier_runs(args)
    assert len(runs) == 11 and ("registry", 0) not in {(r.method, r.seed) for r in runs}
    assert sorted(singles) == [1]


def test_a_new_full_lr_keeps_the_adapter_runs_and_other_sizes_keep_nothing(
    tmp_path: Path,
) -> None:
    _results_file(tmp_path, [*BASE, "--out-dir", str(tmp_path)])
    args = streams.parse_args(
        [*BASE, "--out-dir", str(tmp_path), "--full-lr", "1e-4", "--methods", "seq-ft",
         "--seeds", "0"]
    )  # fmt: skip
    runs, singles = streams.earlier_runs(args)
    kept = sorted((r.method, r.seed) for r in runs)
    assert kept == sorted((m, s) for m in ("adapter", "registry", "registry-fresh") for s in (0, 1))
    assert sorted(singles) == [0, 1]
    other = streams.parse_args([*BASE, "--out-dir", str(tmp_path), "--epochs", "9"])
    assert streams.earlier_runs(other) == ([], {})


def test_a_new_replay_ratio_drops_the_runs_that_replay_only(tmp_path: Path) -> None:
    _results_file(tmp_path, [*BASE, "--out-dir", str(tmp_path)])
    path = next(tmp_path.glob("streams_*.json"))
    old = json.loads(path.read_text(encoding="utf-8"))
    del old["args"]["replay_ratio"]  # a file from before --replay-ratio: its budget was 1
    path.write_text(json.dumps(old), encoding="utf-8")
    same = streams.parse_args(
        [*BASE, "--out-dir", str(tmp_path), "--replay-ratio", "1", "--methods", "seq-ft",
         "--seeds", "0"]
    )  # fmt: skip
    assert len(streams.earlier_runs(same)[0]) == 11
    args = streams.parse_args(
        [*BASE, "--out-dir", str(tmp_path), "--replay-ratio", "2", "--methods", "seq-ft",
         "--seeds", "0"]
    )  # fmt: skip
    runs, singles = streams.earlier_runs(args)
    kept = sorted((r.method, r.seed) for r in runs)
    assert kept == sorted([("seq-ft", 1), *((m, s) for m in ("joint", "adapter") for s in (0, 1))])
    assert singles == {}

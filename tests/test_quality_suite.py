"""benchmarks/quality.py: the quality suite as one command, its plan and its timing report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import quality
from tests.test_protocol import stream_data


def _stream_file(folder: Path, stem: str, runs: list[tuple[str, float]], borrow: bool) -> None:
    args = {"borrow_order": "1" if borrow else "None"}
    data = {"args": args, "runs": [{"method": m, "seed": 0, "wall_s": s} for m, s in runs]}
    (folder / f"{stem}.json").write_text(json.dumps(data), encoding="utf-8")


def test_plan_adds_the_recorded_times_and_skips_borrowed_runs(tmp_path: Path) -> None:
    parts = {p.stem: p for p in quality.SUITE}
    (tmp_path / "cb_quality.json").write_text(json.dumps({"total_s": 600.0}), encoding="utf-8")
    _stream_file(
        tmp_path,
        "streams_task_order1",
        [("seq-ft", 120.0), ("joint", 60.0), ("registry-strictgate", 600.0)],  # a variant
        False,
    )
    _stream_file(tmp_path, "streams_task_order2", [("seq-ft", 180.0), ("joint", 60.0)], True)
    assert quality.recorded_minutes(parts["cb_quality"], tmp_path)[0] == 10.0
    assert quality.recorded_minutes(parts["streams_task_order1"], tmp_path)[0] == 3.0
    minutes, note = quality.recorded_minutes(parts["streams_task_order2"], tmp_path)
    assert minutes == 3.0 and "joint" in note and "borrowed" in note
    text = quality.plan(tmp_path)
    assert "Recorded in all: 16 minutes" in text and "within it" in text
    assert text.count("| n/a |") == len(quality.SUITE) - 3  # the parts with no results file
    _stream_file(tmp_path, "streams_domain_qnli-rte", [("registry", 7200.0)], False)
    assert "over it" in quality.plan(tmp_path)


def test_the_suite_runs_each_benchmark_at_the_sizes_its_results_file_states() -> None:
    """The plan's arguments are the ones the committed results were made with."""
    for part in quality.SUITE:
        if part.module != "streams":
            continue
        recorded = json.loads((quality.RESULTS / f"{part.stem}.json").read_text(encoding="utf-8"))[
            "args"
        ]
        args = quality.parse_args([])
        from benchmarks import streams

        ours = streams.parse_args(quality.part_argv(part, args, Path("/tmp/x")))
        for key in ("stream", "train_rows", "dev_rows", "report_rows", "epochs", "patience",
                    "adapter_lr", "max_length", "batch_size"):  # fmt: skip
            assert str(getattr(ours, key)) == recorded[key], (part.name, key)
        if part.stem.startswith("streams_domain"):
            assert ours.domains == recorded["domains"]
        else:
            assert str(ours.order) == recorded["order"]


@pytest.mark.slow
def test_quick_suite_runs_its_parts_in_order_and_times_them(
    tiny_base_dir: Path, tmp_path: Path
) -> None:
    root = stream_data(tmp_path / "data")
    out = tmp_path / "out"
    timed = quality.main(
        ["--quick", "--only", "2,3", "--threads", "1", "--data-root", str(root), "--base",
         str(tiny_base_dir), "--out-dir", str(out)]
    )  # fmt: skip
    assert [name for name, _ in timed] == ["task order 1", "task order 2"]
    assert (out / "streams_task_order1.md").exists() and (out / "streams_task_order2.md").exists()
    order2 = json.loads((out / "streams_task_order2.json").read_text(encoding="utf-8"))
    joint = [r for r in order2["runs"] if r["method"] == "joint"]
    assert joint and all("borrowed from order 1" in r["notes"] for r in joint)  # not retrained
    report = (out / "quality_suite.md").read_text(encoding="utf-8")
    assert "smoke run (--quick)" in report and "2 of 6 parts" in report
    assert report.count("| task order") == 2 and "Whole suite:" in report

"""benchmarks/RESULTS.md is regenerated from results/ without losing what was written by hand."""

from __future__ import annotations

from pathlib import Path

from benchmarks import run


def _result(folder: Path, name: str, title: str, figure: str) -> None:
    (folder / f"{name}.md").write_text(
        f"# {title}\n\n| a | b |\n|---|---|\n| x | {figure} |\n\n- date: 2026-12-01 10:00 UTC\n",
        encoding="utf-8",
    )


def test_write_index_keeps_hand_written_sections_where_they_were(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    _result(results, "throughput", "Throughput", "1.36x")
    _result(results, "cb_quality", "CB quality", "0.714")
    _result(results, "zeta", "Zeta", "9")
    index = tmp_path / "RESULTS.md"
    first = run.write_index(results, index)
    assert "## Throughput" in first and "| x | 0.714 |" in first and "## Zeta" in first

    # an engineer writes two sections by hand: one in place of a file's, one of its own
    hand_cb = (
        "## CB quality, under the protocol\n"
        f"{run.KEPT}; replaces results/cb_quality.md -->\n\nSeeds ran apart; 0.714 ± 0.000.\n"
    )
    hand_streams = f"## Streams (issue 14)\n{run.KEPT} -->\n\nNarrative with a table.\n"
    sections = first.split("## ")
    edited = (
        sections[0]
        + "## "
        + sections[1]  # throughput
        + hand_streams
        + "\n"
        + hand_cb
        + "\n## "
        + "## ".join(s for s in sections[2:] if not s.startswith("CB quality"))
    )
    index.write_text(edited, encoding="utf-8")

    # a results file changes and a new one appears; the index is regenerated
    _result(results, "throughput", "Throughput", "1.40x")
    _result(results, "alpha", "Alpha", "7")
    text = run.write_index(results, index)
    assert "| x | 1.40x |" in text and "| x | 1.36x |" not in text  # generated: refreshed
    assert "## Alpha" in text
    assert hand_streams in text and hand_cb in text  # kept word for word
    assert "## CB quality\n" not in text  # the hand-written one stands in for the file's
    order = [ln[3:] for ln in text.splitlines() if ln.startswith("## ")]
    assert order.index("Streams (issue 14)") == order.index("Throughput") + 1
    assert order.index("CB quality, under the protocol") < order.index("Alpha")
    assert run.write_index(results, index) == text  # regenerating again changes nothing

    # once the file it replaced is gone, a kept section still stays, where it was
    (results / "cb_quality.md").unlink()
    assert hand_cb in run.write_index(results, index)

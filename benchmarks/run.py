"""Run the performance suite and regenerate ``benchmarks/RESULTS.md``.

Runs every benchmark module in ``benchmarks/`` (each through its own ``main()``), then writes
``benchmarks/RESULTS.md``: one section per results file in ``benchmarks/results/`` with its title,
its key-figures table and a link. Usage::

    python -m benchmarks.run [--quick] [--only NAME[,NAME...]] [--index-only]

``--quick`` passes ``--quick`` to every module that has one (a 1-3 minute smoke run each; modules
without one get small explicit arguments, or are skipped) and sends their results to
``benchmarks/results/quick/``, so a smoke run never overwrites the real results. A failing
benchmark is reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from benchmarks.common import REPO, RESULTS

BENCH_DIR = REPO / "benchmarks"
INDEX = BENCH_DIR / "RESULTS.md"
#: The suite's order; other modules in benchmarks/ with a main() run after these.
ORDER = [
    "throughput",
    "registry_scale",
    "prefix_cache",
    "fusion_cost",
    "overhead",
    "domain_stream",
    "streams",
    "cb_fusion",
    "cb_quality",
    "serve_load",
]
NOT_BENCHMARKS = {"__init__", "common", "run", "quality"}  # quality: the suite of suites
#: Small arguments for modules that have no --quick flag of their own.
QUICK_ARGS: dict[str, list[str]] = {
    "domain_stream": ["--train-rows", "64", "--epochs", "1", "--fuse-epochs", "1"],
}


def discover() -> list[str]:
    """Return the benchmark modules present, in suite order."""
    present = {
        p.stem
        for p in BENCH_DIR.glob("*.py")
        if p.stem not in NOT_BENCHMARKS and "def main(" in p.read_text(encoding="utf-8")
    }
    return [m for m in ORDER if m in present] + sorted(present - set(ORDER))


def module_args(name: str, quick: bool) -> list[str] | None:
    """Return the argv for one module's main(), or None to skip it in this mode."""
    if not quick:
        return []
    source = (BENCH_DIR / f"{name}.py").read_text(encoding="utf-8")
    if '"--quick"' in source:
        args = ["--quick"]
    elif name in QUICK_ARGS:
        args = list(QUICK_ARGS[name])
    else:
        return None
    if '"--out"' in source:
        args += ["--out", str(RESULTS / "quick" / f"{name}.md")]
    return args


def run_module(name: str, argv: list[str]) -> tuple[bool, float]:
    """Run ``benchmarks.<name>.main()`` with ``argv``; return (ok, seconds)."""
    saved = sys.argv
    sys.argv = [str(BENCH_DIR / f"{name}.py"), *argv]
    t0 = time.perf_counter()
    ok = True
    try:
        importlib.import_module(f"benchmarks.{name}").main()
    except SystemExit as exc:
        ok = exc.code in (None, 0)
    except Exception:  # one failing benchmark must not stop the suite
        traceback.print_exc()
        ok = False
    finally:
        sys.argv = saved
    return ok, time.perf_counter() - t0


def _first_table(lines: list[str]) -> list[str]:
    table: list[str] = []
    for line in lines:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return table


def _key_lines(lines: list[str]) -> list[str]:
    """Return the bullet lines with a bold figure (the headline ratios)."""
    return [line for line in lines if line.startswith("- ") and "**" in line]


#: A section of RESULTS.md written by hand carries this mark (on the line after its heading);
#: regenerating keeps it, word for word. ``KEPT + " replaces results/NAME.md -->"`` also stands
#: in for that file's generated section; a bare ``KEPT + " -->"`` adds a section of its own.
KEPT = "<!-- kept: written by hand"


def _sections(text: str) -> list[tuple[str, str]]:
    """Split an index into (title, text) per ``## `` section; the preamble is dropped."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            out.append((line[3:].strip(), line))
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + line)
    return out


def _kept(index: Path) -> list[tuple[str, str, str | None, str | None]]:
    """Return the hand-written sections of an existing index: (title, text, the results file
    it replaces or None, the title of the section before it or None)."""
    if not index.exists():
        return []
    found = []
    before: str | None = None
    for title, text in _sections(index.read_text(encoding="utf-8")):
        mark = next((ln for ln in text.splitlines()[1:3] if ln.startswith(KEPT)), None)
        if mark is not None:
            replaces = None
            if " replaces " in mark:
                replaces = mark.split(" replaces ", 1)[1].split("-->")[0].strip()
            found.append((title, text.rstrip("\n") + "\n\n", replaces, before))
        before = title
    return found


def write_index(results: Path = RESULTS, index: Path = INDEX) -> str:
    """Write the index of every results file; return its text.

    Sections marked as written by hand (:data:`KEPT`) are kept as they are: one that replaces a
    results file takes that file's place; any other stays after the section it followed."""
    kept = _kept(index)
    replaced = {k[2]: k for k in kept if k[2] is not None}
    files = sorted(results.glob("*.md"))
    rank = {name: i for i, name in enumerate(ORDER)}
    files.sort(key=lambda p: (rank.get(p.stem, len(rank)), p.stem))
    out = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks.run` (`make bench`) from the files in "
        "[`results/`](results/); each section copies the file's key figures. Timings come from "
        "shared CPU machines: read the ratios, not the absolute times. Sections marked as "
        "written by hand are kept as they are when the index is regenerated.",
        "",
    ]
    sections: list[tuple[str, str]] = []
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        title = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), path.stem)
        own = replaced.get(f"results/{path.name}")
        if own is not None:
            sections.append((own[0], own[1]))
            continue
        when = [ln for ln in lines if ln.startswith(("- date:", "- machine:"))]
        body = [f"## {title}", "", f"[`results/{path.name}`](results/{path.name})", ""]
        table = _first_table(lines)
        if table:
            body += [*table, ""]
        key = _key_lines(lines)
        if key:
            body += [*key, ""]
        if when:
            body += [" · ".join(ln[2:] for ln in when), ""]
        sections.append((title, "\n".join(body) + "\n"))
    for title, text, replaces, before in kept:
        if replaces is not None and (results.parent / replaces).exists():
            continue  # placed above, where its file goes
        at = next((i + 1 for i, (t, _) in enumerate(sections) if t == before), len(sections))
        sections.insert(at, (title, text))
    if not sections:
        out += ["No results yet: run `make bench`.", ""]
    text = "\n".join(out) + "\n" + "".join(body for _, body in sections)
    text = text.rstrip("\n") + "\n"
    index.write_text(text, encoding="utf-8")
    return text


def main() -> None:
    """Run the selected benchmarks, then regenerate RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run of every benchmark")
    parser.add_argument("--only", help="comma-separated module names, e.g. prefix_cache")
    parser.add_argument("--index-only", action="store_true", help="only regenerate RESULTS.md")
    args = parser.parse_args()
    names = discover()
    if args.only:
        wanted = [n.strip().removesuffix(".py") for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; available: {', '.join(names)}")
        names = wanted
    failed: list[str] = []
    summary: list[str] = []
    for name in [] if args.index_only else names:
        argv = module_args(name, args.quick)
        if argv is None:
            summary.append(f"{name}: skipped (no quick mode)")
            continue
        print(f"=== {name} {' '.join(argv)}", file=sys.stderr, flush=True)
        ok, secs = run_module(name, argv)
        summary.append(f"{name}: {'ok' if ok else 'FAILED'} in {secs / 60:.1f} min")
        if not ok:
            failed.append(name)
    write_index()
    print("\n".join([*summary, f"wrote {INDEX}"]), file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

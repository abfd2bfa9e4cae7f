"""Drift against production (#18): a fusion's reference covers every member's data, and saved
reports can be listed and shown (tests, p-values, decision, the PNG against the null)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from registry import continual
from registry.cli import cli
from registry.composer import fuse
from registry.continual.drift_check import closest_member
from registry.drift import ReferenceProfile, detect_drift
from registry.store import Registry
from registry.trainer import train
from tests._util import add_version, seed_task
from tests.test_continual import BOOKS, FCFG, PETS, TCFG, _write


def _version(ref: str) -> Any:
    return type("V", (), {"ref": ref})()


def test_a_fusion_drifts_only_from_every_members_data() -> None:
    rng = np.random.default_rng(0)
    a = ReferenceProfile(rng.normal(0, 1, (40, 4)), {"p": 20, "n": 20})
    b = ReferenceProfile(rng.normal(3, 1, (40, 4)), {"p": 20, "n": 20})
    own_b = ReferenceProfile(rng.normal(3, 1, (40, 4)), {"p": 21, "n": 19})
    far = ReferenceProfile(rng.normal(-4, 1, (40, 4)), {"p": 20, "n": 20})
    va, vb = _version("a@1"), _version("b@1")

    def check(new: ReferenceProfile) -> tuple[str, bool]:
        results = [(v, detect_drift(p, new, n_permutations=200)) for v, p in ((va, a), (vb, b))]
        ref, result = closest_member(results)
        return ref.ref, result.drift

    # b's own data drifts from a (what the issue saw) but not from the fusion of a and b
    assert detect_drift(a, own_b, n_permutations=200).drift
    assert check(own_b) == ("b@1", False)
    far_ref, far_drift = check(far)
    assert far_drift and far_ref == "a@1"  # drift from both; a is the nearer


def test_drift_list_and_show_with_the_png(sqlite_registry: Registry, tmp_path: Path) -> None:
    reg = sqlite_registry
    seed_task(reg)
    v = add_version(reg, tmp_path, "books", b"w")
    rng = np.random.default_rng(1)
    ref = ReferenceProfile(rng.normal(0, 1, (40, 4)), {"positive": 20, "negative": 20})
    new = ReferenceProfile(rng.normal(1, 1, (40, 4)), {"positive": 35, "negative": 5})
    result = detect_drift(ref, new, n_permutations=300)
    ds = reg.record_dataset(v.task_id, "/data/pets", "train", 40, "fp", {"positive": 35})
    report = reg.record_drift_report(
        task="sentiment", reference_adapter_version_id=v.id, new_dataset_id=ds.id, alpha=0.05,
        tests=[{**t.to_dict(), "per_test_alpha": result.per_test_alpha,
                "reference_covers": ["books@1"]} for t in result.tests],
        drift=result.drift,
    )  # fmt: skip
    listed = CliRunner().invoke(cli, ["drift", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert (row["id"], row["task"], row["drift"]) == (report.id, "sentiment", True)
    assert row["data"] == {"source": "/data/pets", "split": "train", "rows": 40}
    text = CliRunner().invoke(cli, ["drift", "list"])
    assert "DRIFT" in text.output and "embedding_mmd, label_shift" in text.output, text.output
    out = CliRunner().invoke(cli, ["drift", "show", str(report.id), "--out", str(tmp_path / "o")])
    assert out.exit_code == 0, out.output
    mmd = result.test("embedding_mmd")
    assert mmd is not None and f"{mmd.p_value:.4g}" in out.output
    png = tmp_path / "o" / f"drift-{report.id}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(png).size == (2 * 420, 360)  # one panel per p-value test
    shown = json.loads(
        CliRunner()
        .invoke(cli, ["drift", "show", str(report.id), "--json", "--out", str(tmp_path)])
        .output
    )
    assert [t["name"] for t in shown["tests"]] == ["embedding_mmd", "label_shift"]
    assert len(shown["tests"][0]["details"]["null_quantiles"]) == 201
    missing = CliRunner().invoke(cli, ["drift", "show", "99"])
    assert missing.exit_code == 1 and "No drift report with id 99" in missing.output


@pytest.mark.slow
def test_a_members_own_data_is_not_drift_against_the_production_fusion(
    tmp_path: Path, tiny_base_dir: Path
) -> None:
    reg = Registry.init(tmp_path / "home")
    books = _write(tmp_path / "books", BOOKS, seed=1)
    pets = _write(tmp_path / "pets", PETS, seed=3)
    a = train(reg, "sentiment", books, str(tiny_base_dir), config=TCFG, progress=False).version
    b = train(reg, "sentiment", pets, str(tiny_base_dir), config=TCFG, progress=False).version
    reg.set_alias("sentiment", "production", a.uid)
    assert continual.check_drift(reg, "sentiment", pets, n_permutations=200, record=False).drift
    fused: Any = fuse(reg, "sentiment", [a.ref, b.ref], str(books), config=FCFG, progress=False)
    reg.set_alias("sentiment", "production", fused.fusion.uid)
    check = continual.check_drift(reg, "sentiment", pets, n_permutations=200, record=True)
    assert check.to_dict()["reference_covers"] == [a.ref, b.ref]
    assert not check.drift, check.to_dict()
    assert check.report is not None and check.report.tests[0]["reference_covers"] == [a.ref, b.ref]

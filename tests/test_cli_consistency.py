"""One CLI (#18): the shared options, --json/--quiet everywhere, progress bars, plain output."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from registry.cli import cli
from registry.store import Registry
from registry.trainer import TrainConfig, train
from tests._util import sentiment_rows, write_splits

FAST = TrainConfig(epochs=2, batch_size=16, lr=5e-3)
#: serve prints a ready line and logs, not a result.
NOT_RESULTS = {"serve"}
LONG_PHASES = {"train", "fuse", "eval", "predict", "attention", "drift check", "update"}


def _commands(group: click.Group = cli, prefix: str = "") -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out.update(_commands(command, f"{prefix}{name} "))
        else:
            out[f"{prefix}{name}"] = command
    return out


def _option(command: click.Command, name: str) -> click.Option | None:
    for p in command.params:
        if isinstance(p, click.Option) and name in p.opts:
            return p
    return None


def test_every_command_has_json_and_quiet_and_long_ones_no_progress() -> None:
    commands = _commands()
    missing = [
        f"{name} {flag}"
        for name, command in commands.items()
        if name not in NOT_RESULTS
        for flag in ("--json", "--quiet")
        if _option(command, flag) is None
    ]
    missing += [
        f"{n} --no-progress" for n in LONG_PHASES if _option(commands[n], "--no-progress") is None
    ]
    assert missing == []


@pytest.mark.parametrize("flag", ["--json", "--quiet", "--text-fields", "--label-field", "--alpha"])
def test_shared_options_are_one_option(flag: str) -> None:
    """An option on several commands comes from registry/cli/options.py: one help text."""
    helps = {
        name: (o.help, o.default)
        for name, command in _commands().items()
        if name not in NOT_RESULTS and (o := _option(command, flag)) is not None
    }
    assert len(helps) >= 2 and len(set(helps.values())) == 1, helps


@pytest.fixture
def trained(tmp_path: Path, tiny_base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    home = tmp_path / "home"
    monkeypatch.setenv("ADAPTER_REGISTRY_HOME", str(home))
    data = write_splits(
        tmp_path / "d",
        {
            "train": sentiment_rows(48, 0),
            "validation": sentiment_rows(24, 1),
            "test": sentiment_rows(10, 2),
        },
    )
    reg = Registry.open(home, create=True)
    version = train(reg, "sentiment", str(data), str(tiny_base_dir), config=FAST, progress=False)
    return reg, version.version, data


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_show_on_a_terminal_and_hide_on_request(
    trained: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry import progress
    from registry.continual import check_drift
    from registry.inference import evaluate_entity

    reg, version, data = trained
    err = _Terminal()
    monkeypatch.setattr("sys.stderr", err)
    evaluate_entity(reg, version.ref, str(data), record=False)
    check_drift(reg, "sentiment", str(data), record=False, n_permutations=10)
    shown = err.getvalue()
    assert "predict" in shown and "embed" in shown
    err.truncate(0)
    with progress.showing(False):
        evaluate_entity(reg, version.ref, str(data), record=False)
    assert err.getvalue().strip("\x00") == ""


def test_quiet_json_predict_split_show_list_lineage(trained: Any) -> None:
    reg, version, data = trained
    runner = CliRunner()
    res = runner.invoke(cli, ["eval", version.ref, "--data", str(data), "--quiet"])
    assert res.exit_code == 0 and res.output == "", res.output
    res = runner.invoke(cli, ["eval", version.ref, "--data", str(data), "--quiet", "--json"])
    assert json.loads(res.output)["ref"] == version.ref

    # predict --data reads the held-out split by default: test (10 rows), not train (48).
    def rows(output: str) -> int:  # the runner mixes stderr's notes in
        return sum(line.startswith("{") for line in output.splitlines())

    res = runner.invoke(cli, ["predict", version.ref, "--data", str(data)])
    assert res.exit_code == 0 and rows(res.output) == 10, res.output
    os.remove(data / "test.jsonl")
    res = runner.invoke(cli, ["predict", version.ref, "--data", str(data)])
    assert rows(res.output) == 24

    res = runner.invoke(cli, ["list", "--json"])
    (row,) = json.loads(res.output)
    assert (row["name"], row["version"], row["ref"]) == ("sentiment", 1, "sentiment@1")
    a = runner.invoke(cli, ["lineage", version.ref, "--json"]).output
    assert json.loads(a) == json.loads(
        runner.invoke(cli, ["lineage", version.ref, "--format", "json"]).output
    )

    # show: metrics grouped by dataset and split; the epochs as one curve line per metric.
    out = runner.invoke(cli, ["show", version.ref]).output
    assert f"metrics on {data} [validation]" in out and "training curve" in out
    curve = [line for line in out.splitlines() if line.startswith("train_loss")]
    assert len(curve) == 1 and curve[0].split()[1] == "2"  # two epochs, one row

    # report: a registered version that is not production is not "nothing registered".
    res = runner.invoke(cli, ["report", "--json", "--out", str(data.parent / "rep")])
    (rep,) = json.loads(res.output)
    assert rep["production"] is None
    assert any("none is production" in n and "sentiment@1" in n for n in rep["notes"]), rep


def test_engine_notice_about_inactive_adapters_is_silenced(
    trained: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    from registry.loader import load_entity

    reg, version, _ = trained
    loaded = load_entity(reg, version)
    loaded.backbone.model.set_active_adapters(None)
    batch = loaded.backbone.tokenizer(["fine"], return_tensors="pt")
    with caplog.at_level(logging.INFO), torch.no_grad():
        loaded.backbone.model.base_model(**batch)
    assert not [r for r in caplog.records if "none are activated" in r.getMessage()]


def test_update_dry_run_plan_names_the_new_adapter(trained: Any) -> None:
    from registry.continual.plan import plan_lines

    reg, version, _ = trained
    kw: dict[str, Any] = dict(reference=version, production=None, incumbent=version,
                              source="new", train_rows=5, epochs=1, validation_how="split",
                              warm_start=False, policy="replace", alias="production",
                              tolerance=0.01)  # fmt: skip
    assert "'books-v2'" in plan_lines(reg, "sentiment", adapter_name="books-v2", **kw)[0]
    assert "new version of adapter 'sentiment'" in plan_lines(reg, "sentiment", **kw)[0]


def test_pull_name_and_its_old_spelling() -> None:
    res = CliRunner().invoke(cli, ["pull", "o/r", "--name", "a", "--as", "b"])
    assert res.exit_code == 2 and "Give the name once" in res.output
    assert "--as" not in CliRunner().invoke(cli, ["pull", "--help"]).output


def test_missing_label_hint_names_no_python_argument(tmp_path: Path) -> None:
    from registry.data import load_spec
    from registry.errors import InvalidInput

    data = write_splits(tmp_path / "d", {"train": [{"text": "a", "label": "x"}, {"text": "b"}]})
    with pytest.raises(InvalidInput) as err:
        load_spec(str(data))
    assert "require_labels" not in (err.value.hint or "") and "--label-field" in (
        err.value.hint or ""
    )


def test_a_role_that_may_not_log_in_is_not_told_to_retry() -> None:
    admin = os.environ.get("ADAPTER_REGISTRY_TEST_PG")
    if not admin:
        pytest.skip("ADAPTER_REGISTRY_TEST_PG not set")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from registry.errors import DatabaseError

    engine = create_engine(admin)
    with engine.begin() as conn:
        conn.execute(text("DROP ROLE IF EXISTS registry_nologin"))
        conn.execute(text("CREATE ROLE registry_nologin NOLOGIN"))
    try:
        url = make_url(admin).set(username="registry_nologin", password=None)
        with pytest.raises(DatabaseError) as err:
            Registry.open(db_url=url.render_as_string(hide_password=False))
        assert "retry" not in (err.value.hint or "").lower()
        assert "LOGIN" in (err.value.hint or "")
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP ROLE registry_nologin"))
        engine.dispose()


def test_plots_are_at_least_800_px_wide(tmp_path: Path) -> None:
    import numpy as np
    from matplotlib.image import imread

    from registry.evaluate import AccuracyMatrix, plot_attention_png, plot_matrix_png

    matrix = AccuracyMatrix(np.array([[0.8]]), ["books"], ["1: books@1"])
    title = "a-fusion-with-a-rather-long-name@12: fusion attention (validation split)"
    pngs = [
        plot_matrix_png(matrix, tmp_path / "m.png", "sentiment: accuracy"),
        plot_attention_png(np.full((2, 2), 0.5), ["a@1", "b@1"], tmp_path / "a.png", title),
    ]
    for png in pngs:
        height, width = imread(png).shape[:2]
        assert width >= 800 and height >= 500, (png, width, height)


MODEL_RUNNERS = ("train", "fuse", "eval", "predict", "attention", "serve")


def test_commands_that_run_a_model_take_the_same_device_and_threads() -> None:
    commands = _commands()
    for flag in ("--device", "--threads"):
        seen = {}
        for name in MODEL_RUNNERS:
            option = _option(commands[name], flag)
            assert option is not None, f"{name} has no {flag}"
            seen[name] = (option.help, option.default)
        assert len(set(seen.values())) == 1, seen


def test_eval_predict_run_where_asked_and_check_like_train(
    trained: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from registry import inference

    reg, version, data = trained
    runner = CliRunner()
    devices: list[str] = []
    real = inference.load_entity

    def spy(registry: Any, entity: Any, device: str = "cpu", *a: Any, **kw: Any) -> Any:
        devices.append(device)  # what the command chose reaches the loader; run on the CPU
        return real(registry, entity, "cpu", *a, **kw)

    monkeypatch.setattr(inference, "load_entity", spy)  # the name eval and predict call
    # as if --device cpu resolved to the second GPU: the choice must reach the model
    monkeypatch.setattr("registry.runtime.pick_device", lambda d: "cuda:1" if d == "cpu" else d)
    before = torch.get_num_threads()
    try:
        for args in (
            ["eval", version.ref, "--data", str(data), "--no-record"],
            ["predict", version.ref, "--text", "fine"],
        ):
            res = runner.invoke(cli, [*args, "--device", "cpu", "--threads", "1", "--json"])
            assert res.exit_code == 0, res.output
            assert torch.get_num_threads() == 1
            torch.set_num_threads(before)
    finally:
        torch.set_num_threads(before)
    assert devices == ["cuda:1", "cuda:1"]
    monkeypatch.undo()
    res = runner.invoke(cli, ["eval", version.ref, "--data", str(data), "--threads", "0"])
    assert res.exit_code == 1, res.output
    assert "threads must be a whole number ≥ 1, got 0" in res.output
    assert "Hint: e.g. --threads 2" in res.output
    res = runner.invoke(cli, ["attention", version.ref, "--data", str(data), "--device", "tpu"])
    assert res.exit_code == 1 and "device must be cpu, cuda, cuda:N or auto" in res.output
    if not torch.cuda.is_available():
        res = runner.invoke(cli, ["predict", version.ref, "--text", "x", "--device", "cuda"])
        assert res.exit_code == 1 and "CUDA was requested but no GPU" in res.output

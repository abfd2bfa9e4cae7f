"""The fit loop's device-facing settings: precision, token-budget batching, host syncs, options.

Real training of a tiny BERT (tests/_tiny.py) on CPU; bf16 runs through CPU autocast, so the
GPU path's dtype handling is exercised here too.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from registry import entities as E
from registry.backbone import Backbone
from registry.cli import cli
from registry.configs import GPU_BATCH_SIZE, GPU_MAX_TOKENS, FitConfig, FuseConfig, TrainConfig
from registry.continual import inherited_train_config
from registry.data import Example, make_batches
from registry.errors import InvalidInput
from registry.fitting import batches_for, fit
from registry.inference import predict_examples
from registry.loader import Loaded
from registry.runtime import seed_everything
from registry.store import Registry
from registry.trainer import train
from tests._util import sentiment_data, sentiment_rows, write_splits

LABELS = ["negative", "positive"]


def _rows(n: int, seed: int = 0) -> list[Example]:
    return [Example(r["text"], None, r["label"]) for r in sentiment_rows(n, seed)]


def _backbone(base: Path) -> Backbone:
    bb = Backbone.load(str(base))
    bb.add_adapter("a", "seq_bn", 4)
    bb.add_head("a", LABELS)
    bb.train_adapter("a")
    return bb


def _fit(base: Path, config: FitConfig, rows: list[Example]) -> tuple[Backbone, list[float]]:
    seed_everything(config.seed)
    bb = _backbone(base)
    seed_everything(config.seed)
    train_b = batches_for(bb, rows, LABELS, config, shuffle=True)
    val_b = batches_for(bb, rows[:16], LABELS, config, shuffle=False)
    result = fit(bb, train_b, val_b, LABELS, config, progress=False)
    return bb, [h.train_loss for h in result.history]


# ----------------------------------------------------------------------------- precision
def test_precision_resolves_per_device() -> None:
    cpu = TrainConfig().resolved("cpu")
    assert (cpu.precision, cpu.batch_size, cpu.max_tokens) == ("fp32", 32, None)
    gpu = TrainConfig().resolved("cuda", bf16_supported=True)
    assert (gpu.precision, gpu.batch_size, gpu.max_tokens) == (
        "bf16",
        GPU_BATCH_SIZE,
        GPU_MAX_TOKENS,
    )
    assert TrainConfig().resolved("cuda", bf16_supported=False).precision == "fp32"
    # a batch size given by hand is kept, without a token cap the user did not ask for
    told = TrainConfig(batch_size=64).resolved("cuda", bf16_supported=True)
    assert (told.batch_size, told.max_tokens) == (64, None)
    assert TrainConfig(precision="fp16").resolved("cuda").precision == "fp16"


def test_fp16_on_cpu_is_refused_up_front(tiny_base_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        TrainConfig(precision="fp16", device="cpu")
    assert "bf16" in (err.value.hint or "")
    with pytest.raises(InvalidInput):
        TrainConfig(precision="fp16").resolved("cpu")  # device auto on a machine without a GPU
    data = sentiment_data(tmp_path / "d")
    home = tmp_path / "home"
    res = CliRunner().invoke(
        cli,
        ["--home", str(home), "train", "sentiment", "--data", str(data), "--base",
         str(tiny_base_dir), "--precision", "fp16", "--device", "cpu"],
    )  # fmt: skip
    assert res.exit_code != 0
    assert "fp16" in res.output and "--precision bf16" in res.output
    assert not home.exists()  # refused before the registry was even created


def test_bf16_on_cpu_trains_saves_fp32_and_reloads(tiny_base_dir: Path, tmp_path: Path) -> None:
    rows = _rows(48)
    cfg = FitConfig(epochs=2, batch_size=8, lr=5e-3, device="cpu", max_length=32)
    bb16, losses16 = _fit(tiny_base_dir, FitConfig(**{**cfg.to_dict(), "precision": "bf16"}), rows)
    bb32, losses32 = _fit(tiny_base_dir, FitConfig(**{**cfg.to_dict(), "precision": "fp32"}), rows)
    # autocast really ran: bf16 rounding moves the losses, but not far
    assert losses16 != losses32
    assert max(abs(a - b) for a, b in zip(losses16, losses32, strict=True)) < 0.05
    assert all(p.dtype == torch.float32 for _, p in bb16.trainable_parameters())

    bb16.save_adapter("a", tmp_path / "saved")
    files = list((tmp_path / "saved").rglob("*.safetensors"))
    assert files
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            assert {st.get_tensor(k).dtype for k in st.keys()} == {torch.float32}  # noqa: SIM118
    fresh = Backbone.load(str(tiny_base_dir))
    fresh.load_adapter(tmp_path / "saved", "a")
    fresh.activate("a", "a")
    bb16.activate("a", "a")
    batch = make_batches(bb16.tokenizer, rows[:8], LABELS, batch_size=8, shuffle=False, seed=0)[0][
        0
    ]
    assert (fresh.logits(batch) - bb16.logits(batch)).abs().max().item() <= 1e-5


def test_precision_is_recorded_with_the_run(
    sqlite_registry: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    out = train(
        sqlite_registry,
        "sentiment",
        str(sentiment_data(tmp_path / "d")),
        str(tiny_base_dir),
        config=TrainConfig(epochs=1, lr=5e-3, precision="bf16", device="cpu", max_tokens=256),
        progress=False,
    )
    run = sqlite_registry.training_run(out.version.training_run_id or 0)
    assert run.hyperparams["precision"] == "bf16"
    assert (run.hyperparams["batch_size"], run.hyperparams["max_tokens"]) == (32, 256)
    assert run.device == "cpu"
    auto = train(
        sqlite_registry,
        "sentiment",
        str(sentiment_data(tmp_path / "d")),
        str(tiny_base_dir),
        config=TrainConfig(epochs=1, device="cpu"),
        progress=False,
    )
    assert (
        sqlite_registry.training_run(auto.version.training_run_id or 0).hyperparams["precision"]
        == "fp32"
    )


# ----------------------------------------------------------------------------- token budget
def test_token_budget_batches_hold_every_row_once_within_budget(tiny_base_dir: Path) -> None:
    bb = Backbone.load(str(tiny_base_dir))
    rows = _rows(200, seed=3)
    rng = random.Random(0)
    rows = [Example(r.text_a + " very" * rng.randint(0, 20), None, r.label) for r in rows]
    for budget in (48, 100, 333):
        batches, stats = make_batches(
            bb.tokenizer, rows, LABELS, batch_size=16, max_length=48, shuffle=True, seed=1,
            max_tokens=budget,
        )  # fmt: skip
        seen = sorted(i for group in stats.batch_indices for i in group)
        assert seen == list(range(len(rows)))
        for batch in batches:
            n, width = batch["input_ids"].shape
            assert n <= 16 and n * width <= budget
        sizes = {b["input_ids"].shape[0] for b in batches}
        assert len(sizes) > 1  # short buckets hold more rows than long ones
    with pytest.raises(InvalidInput, match="max_tokens"):
        make_batches(bb.tokenizer, rows, LABELS, batch_size=16, max_length=48, shuffle=False,
                     seed=0, max_tokens=47)  # fmt: skip
    with pytest.raises(InvalidInput):
        FitConfig(max_length=64, max_tokens=32)


def test_a_budget_that_never_binds_equals_fixed_batching(tiny_base_dir: Path) -> None:
    rows = _rows(40, seed=4)
    cfg = FitConfig(epochs=2, batch_size=8, lr=5e-3, device="cpu", max_length=32)
    loose = FitConfig(**{**cfg.to_dict(), "max_tokens": 8 * 32})
    bb = Backbone.load(str(tiny_base_dir))
    a = batches_for(bb, rows, LABELS, cfg, shuffle=True)
    b = batches_for(bb, rows, LABELS, loose, shuffle=True)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    bb1, losses1 = _fit(tiny_base_dir, cfg, rows)
    bb2, losses2 = _fit(tiny_base_dir, loose, rows)
    assert losses1 == losses2
    for (n1, p1), (_, p2) in zip(
        bb1.trainable_parameters(), bb2.trainable_parameters(), strict=True
    ):
        assert torch.equal(p1, p2), n1


def test_predictions_do_not_depend_on_the_batching(tiny_base_dir: Path) -> None:
    bb = _backbone(tiny_base_dir)
    bb.activate("a", "a")
    loaded = Loaded(backbone=bb, entity=None, head="a", setup="a", label_names=LABELS)  # type: ignore[arg-type]
    rows = _rows(70, seed=5)
    one = predict_examples(loaded, rows, batch_size=1)
    big = predict_examples(loaded, rows)
    assert [p["label"] for p in one] == [p["label"] for p in big]
    for p, q in zip(one, big, strict=True):
        for label in LABELS:
            assert abs(p["scores"][label] - q["scores"][label]) < 1e-5


# ----------------------------------------------------------------------------- host syncs
def test_the_hot_loop_reads_nothing_back_per_step(
    tiny_base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a device value back (float(), .item()) waits for the GPU; the registry's loop
    does it once per epoch, not per step (torch's own CPU optimiser reads are not counted)."""
    rows = _rows(96)
    cfg = FitConfig(epochs=2, batch_size=4, lr=5e-3, device="cpu", max_length=32)
    reads = {"n": 0}
    real_float, real_item = torch.Tensor.__float__, torch.Tensor.item

    def from_registry() -> bool:
        caller = sys._getframe(2).f_code.co_filename
        return "registry" in Path(caller).parts

    def counting_float(self: torch.Tensor) -> float:
        reads["n"] += from_registry()
        return real_float(self)

    def counting_item(self: torch.Tensor) -> object:
        reads["n"] += from_registry()
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "__float__", counting_float)
    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    seed_everything(0)
    bb = _backbone(tiny_base_dir)
    train_b = batches_for(bb, rows, LABELS, cfg, shuffle=True)
    reads["n"] = 0
    result = fit(bb, train_b, [], LABELS, cfg, progress=False)
    assert result.steps == 2 * len(train_b) == 48
    assert reads["n"] <= 2 * cfg.epochs, reads


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("command", ["train", "fuse", "update"])
def test_every_training_command_has_the_cost_controls(command: str) -> None:
    res = CliRunner().invoke(cli, [command, "--help"])
    assert res.exit_code == 0
    for option in ("--max-train-examples", "--patience", "--lr", "--batch-size", "--device",
                   "--precision", "--max-tokens", "--compile"):  # fmt: skip
        assert option in res.output, (command, option)


def test_fuse_config_takes_the_same_settings() -> None:
    cfg = FuseConfig(precision="bf16", max_tokens=4096, batch_size=8)
    assert cfg.train_config().to_dict()["precision"] == "bf16"
    assert cfg.to_dict()["max_tokens"] == 4096


# ----------------------------------------------------------------------------- update's recipe
def _drifted(folder: Path) -> Path:
    """Rows in another vocabulary and label mix than sentiment_data's: drift for sure."""
    rng = random.Random(7)
    rows = []
    for _ in range(48):
        positive = rng.random() < 0.85
        word = rng.choice(["fast", "yes", "true"] if positive else ["slow", "no", "false"])
        noun = rng.choice(["dog", "cat", "man", "woman"])
        rows.append({"text": f"the {noun} was very {word}", "label": LABELS[positive]})
    return write_splits(folder, {"train": rows[:32], "validation": rows[32:]})


def test_update_starts_from_the_current_adapters_recipe(
    sqlite_registry: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    reg = sqlite_registry
    recipe = TrainConfig(
        epochs=2, lr=7e-3, head_layers=1, reduction_factor=8, max_length=40, patience=1,
        device="cpu", batch_size=16,
    )  # fmt: skip
    first = train(
        reg, "sentiment", str(sentiment_data(tmp_path / "d")), str(tiny_base_dir),
        config=recipe, progress=False,
    )  # fmt: skip
    reg.set_alias("sentiment", "production", first.version.uid)

    inherited = inherited_train_config(reg, "sentiment", TrainConfig(), given=set())
    assert (inherited.epochs, inherited.lr, inherited.head_layers) == (2, 7e-3, 1)
    assert (inherited.reduction_factor, inherited.max_length, inherited.patience) == (8, 40, 1)
    # the machine's settings are not inherited: this machine decides them
    assert (inherited.device, inherited.precision, inherited.batch_size) == ("auto", "auto", None)
    told = inherited_train_config(reg, "sentiment", TrainConfig(lr=1e-4), given={"lr"})
    assert (told.lr, told.epochs) == (1e-4, 2)

    res = CliRunner().invoke(
        cli,
        ["--home", str(reg.settings.home), "update", "sentiment", "--data",
         str(_drifted(tmp_path / "pets")), "--lr", "2e-3", "--tolerance", "1.0", "--json"],
    )  # fmt: skip
    assert res.exit_code in (0, 4), res.output  # promoted, or kept by the gate: trained either way
    new = reg.resolve("sentiment@2")
    assert isinstance(new, E.AdapterVersion) and new.training_run_id is not None
    run = reg.training_run(new.training_run_id).hyperparams
    assert run["lr"] == 2e-3  # given on the command line
    assert (run["epochs"], run["head_layers"], run["reduction_factor"]) == (2, 1, 8)
    assert (run["max_length"], run["patience"]) == (40, 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_defaults_are_resolved_recorded_and_reload_on_cpu(
    sqlite_registry: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    from registry.loader import load_entity
    from registry.runtime import bf16_supported

    out = train(
        sqlite_registry,
        "sentiment",
        str(sentiment_data(tmp_path / "d", n_train=300)),
        str(tiny_base_dir),
        config=TrainConfig(epochs=2, lr=5e-3, device="cuda"),
        progress=False,
    )
    run = sqlite_registry.training_run(out.version.training_run_id or 0)
    assert run.hyperparams["precision"] == ("bf16" if bf16_supported("cuda") else "fp32")
    assert (run.hyperparams["batch_size"], run.hyperparams["max_tokens"]) == (
        GPU_BATCH_SIZE,
        GPU_MAX_TOKENS,
    )
    gpu = load_entity(sqlite_registry, out.version, "cuda")
    cpu = load_entity(sqlite_registry, out.version, "cpu")
    rows = _rows(40, seed=9)
    on_gpu = predict_examples(gpu, rows)
    on_cpu = predict_examples(cpu, rows)
    for p, q in zip(on_gpu, on_cpu, strict=True):
        assert abs(p["scores"]["positive"] - q["scores"]["positive"]) < 1e-4

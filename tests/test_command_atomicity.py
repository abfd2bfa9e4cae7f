"""#16 findings 9-11: what one command records commits as one, an interrupt after the commit
says so, and the re-check of earlier artifacts counts only what it re-verified.

- 9: a ``train`` whose registration fails (here: the adapter name was taken by another task
  while it trained) leaves no base model, task or dataset row and no new artifact behind;
- 10: Ctrl-C (a real SIGINT) right after ``train`` committed its version exits 130 saying the
  version is complete, not "nothing was registered": raised in-process at the exact point
  between the database's commit and the count of commits (deterministic, for ``tag`` and for a
  real ``train``), and sent from outside to a real ``train`` process (slow);
- 11: an earlier artifact that a row still points at but that is gone is not counted as
  re-verified, and is named in a Note.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from registry import recording, trainer
from registry.cli import cli
from registry.errors import IntegrityError, Interrupted, InvalidInput
from registry.fitting import FitResult
from registry.store import Registry
from tests._util import add_version, make_artifact, seed_task, sentiment_data


def _state(reg: Registry) -> tuple[list[str], list[int], int, list[str]]:
    bases = reg.transaction(lambda s: list(s.scalars(text("SELECT id FROM base_models"))))
    return (
        [t.name for t in reg.list_tasks()],
        bases,
        len(reg.list_datasets()),
        sorted(reg.artifacts.all_ids()),
    )


def test_a_failed_registration_leaves_no_rows_and_no_files(
    tmp_path: Path, tiny_base_dir: Path
) -> None:
    reg = Registry.init(tmp_path / "home")
    seed_task(reg, task="other")
    plan = trainer.plan_training(
        reg, "reviews", str(sentiment_data(tmp_path / "data")), str(tiny_base_dir), name="books"
    )
    # While it trained, another command registered an adapter called "books" for another task.
    add_version(reg, tmp_path, "books", b"someone else's", task="other")
    before = _state(reg)
    art = make_artifact(tmp_path / "art", b"trained weights")
    profile = make_artifact(tmp_path / "profile", b"profile", name="profile.npz")
    result = FitResult(
        best_epoch=1, history=[], wall_time_s=1.0, train_time_s=1.0, real_tokens=10, steps=1
    )
    metrics = {split: {"accuracy": 0.5} for split in plan.rows.eval_sets}

    def write() -> object:
        return trainer._register(
            reg, plan, {"reduction_factor": 16}, art, profile, 10, result, metrics, "cpu"
        )

    with pytest.raises(InvalidInput, match="belongs to task 'other'"):
        recording.register_as_one(reg, write, [art, profile])
    assert _state(reg) == before  # no ghost task "reviews", no base model, no snapshots, no files


def test_the_recheck_counts_only_what_it_reverified(tmp_path: Path) -> None:
    reg = Registry.init(tmp_path / "home")
    seed_task(reg)
    versions = [add_version(reg, tmp_path, "books", bytes([i]) * 64) for i in range(3)]
    earlier = reg.referenced_artifacts()
    gone = versions[1].artifact_sha256
    shutil.rmtree(reg.artifacts.open(gone, what="test"))
    with pytest.warns(recording.MissingArtifactNote, match=r"1 earlier artifact.*books@2"):
        assert recording.verify_untouched(reg, earlier) == 2
    # One deleted from the registry meanwhile (no row points at it) is not counted, and it is
    # not damage: no Note.
    still = {sha: what for sha, what in earlier.items() if sha != gone}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert recording.verify_untouched(reg, {**still, "f" * 64: "adapter gone@1"}) == 2
    # And a changed byte in an earlier artifact stops it: the re-check really re-hashes.
    target = reg.artifacts.path_for(versions[2].artifact_sha256) / "weights.bin"
    os.chmod(target, 0o644)
    target.write_bytes(b"changed" + target.read_bytes()[7:])
    with pytest.raises(IntegrityError, match="books@3"):
        recording.verify_untouched(reg, still)


CHILD_ARGS = ["--no-progress", "--epochs", "1", "--batch-size", "16", "--max-length", "32"]


@contextlib.contextmanager
def sigint_after_commit() -> Iterator[list[int]]:
    """A real SIGINT raised at the first commit's ``after_commit`` inside the block: the
    database has committed, the process has not counted it yet (the old race window, hit every
    time)."""
    fired: list[int] = []

    def fire(_session: Session) -> None:
        # Only the command's own commits (main thread): a thread left running by an earlier
        # test that commits inside the block must neither fire nor use up the hook.
        if not fired and threading.current_thread() is threading.main_thread():
            fired.append(1)
            signal.raise_signal(signal.SIGINT)

    event.listen(Session, "after_commit", fire)
    try:
        yield fired
    finally:
        event.remove(Session, "after_commit", fire)


def test_ctrl_c_between_the_commit_and_its_count_says_it_was_recorded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    reg = Registry.init(home)
    seed_task(reg)
    add_version(reg, tmp_path, "books", b"weights")
    with sigint_after_commit() as fired:
        result = CliRunner().invoke(cli, ["--home", str(home), "tag", "books@1", "gold"])
    assert fired, "the hook did not fire: nothing was committed"
    assert result.exit_code == 130, result.output
    assert "nothing was registered" not in result.stderr
    assert "recorded this command's changes" in result.stderr
    reg = Registry.open(home)
    assert reg.tags(reg.resolve("books@1")) == ["gold"]


def test_ctrl_c_between_trains_commit_and_its_count_says_the_version_is_complete(
    tmp_path: Path, tiny_base_dir: Path
) -> None:
    home = tmp_path / "home"
    Registry.init(home).close()
    data = sentiment_data(tmp_path / "data")
    args = ["--home", str(home), "train", "reviews", "--data", str(data)]
    with sigint_after_commit() as fired:
        result = CliRunner().invoke(
            cli, [*args, "--base", str(tiny_base_dir), "--name", "fresh", *CHILD_ARGS]
        )
    assert fired, "the hook did not fire: nothing was committed"
    assert result.exit_code == 130, result.output
    assert "nothing was registered" not in result.stderr
    assert "after fresh was registered: the new version is complete" in result.stderr
    assert "adapter-registry verify" in result.stderr
    assert Registry.open(home).resolve("fresh@1").name == "fresh"


@pytest.mark.slow
def test_ctrl_c_after_the_commit_says_the_version_is_complete(
    tmp_path: Path, tiny_base_dir: Path
) -> None:
    home = tmp_path / "home"
    reg = Registry.init(home)
    seed_task(reg, task="other")
    # Earlier artifacts big enough that re-hashing them after the commit takes a while.
    for i in range(24):
        add_version(reg, tmp_path, f"old{i}", os.urandom(4 * 2**20), task="other")
    reg.close()
    data = sentiment_data(tmp_path / "data")
    env = {**os.environ, "ADAPTER_REGISTRY_HOME": str(home)}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "registry",
            "train",
            "reviews",
            "--data",
            str(data),
            "--base",
            str(tiny_base_dir),
            "--name",
            "fresh",
            *CHILD_ARGS,
        ],  # fmt: skip
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores SIGINT, and the child would inherit that: Python
        # raises KeyboardInterrupt only when SIGINT is at its default at start-up.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    db = sqlite3.connect((home / "registry.db").as_uri() + "?mode=ro", uri=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and child.poll() is None:
        n = db.execute("SELECT count(*) FROM adapters WHERE name = 'fresh'").fetchone()[0]
        if n:
            child.send_signal(signal.SIGINT)  # right after the commit
            break
        time.sleep(0.002)
    out, err = child.communicate(timeout=600)
    assert child.returncode == 130, (child.returncode, out, err)
    assert "nothing was registered" not in err
    assert "fresh was registered" in err or "recorded this command's changes" in err, err
    assert "adapter-registry verify" in err or "adapter-registry list" in err
    reg = Registry.open(home)
    assert reg.resolve("fresh@1").name == "fresh"


def test_ctrl_c_during_the_recheck_says_the_version_is_complete(
    tmp_path: Path, tiny_base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 10 without the race: Ctrl-C at a known point after the commit (the re-check)."""
    reg = Registry.init(tmp_path / "home")
    seed_task(reg, task="other")
    add_version(reg, tmp_path, "old", b"earlier weights", task="other")

    def ctrl_c(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "verify_untouched", ctrl_c)
    config = trainer.TrainConfig(epochs=1, batch_size=16, max_length=32, device="cpu")
    with pytest.raises(Interrupted, match="Training was interrupted after fresh was registered"):
        trainer.train(
            reg,
            "reviews",
            str(sentiment_data(tmp_path / "data")),
            str(tiny_base_dir),
            name="fresh",
            config=config,
            progress=False,
        )
    assert reg.resolve("fresh@1").kind == "adapter"

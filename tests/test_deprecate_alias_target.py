"""deprecate refuses the target of an alias (#16 finding 13), as alias refuses a deprecated one."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import cli
from registry.errors import InvalidInput
from registry.store import Registry
from tests._util import add_version, seed_task


def test_deprecating_the_production_target_is_refused_unless_forced(
    sqlite_registry: Registry, tmp_path: Path
) -> None:
    reg = sqlite_registry
    seed_task(reg)
    add_version(reg, tmp_path, "books", b"one")
    add_version(reg, tmp_path, "books", b"two")
    reg.set_alias("sentiment", "production", "books@1")
    with pytest.raises(InvalidInput, match="books@1 is the target of sentiment:production") as info:
        reg.set_status("books@1", "deprecated")
    assert info.value.hint and "adapter-registry alias sentiment production REF" in info.value.hint
    assert reg.resolve("books@1").status == "active"
    result = CliRunner().invoke(cli, ["deprecate", "books@1"])
    assert result.exit_code == 1 and "pass --force" in result.output, result.output
    assert reg.resolve("books@1").status == "active"
    # An untargeted version deprecates as before; --force deprecates the target.
    assert CliRunner().invoke(cli, ["deprecate", "books@2"]).exit_code == 0
    result = CliRunner().invoke(cli, ["deprecate", "books@1", "--force"])
    assert result.exit_code == 0 and "books@1 is now deprecated." in result.output
    assert reg.resolve("books@1").status == "deprecated"

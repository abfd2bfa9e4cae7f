"""Alembic migrations: they build the ORM's schema, round-trip, and keep data across upgrades."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from registry.db import KNOWN_REVISIONS, SCHEMA_HEAD, Database, migrations_dir
from registry.errors import SchemaOutOfDate
from registry.orm import Base
from registry.settings import load_settings
from registry.store import Registry


def _script() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return ScriptDirectory.from_config(cfg)


def test_schema_head_constant_matches_scripts() -> None:
    script = _script()
    assert script.get_current_head() == SCHEMA_HEAD
    chain = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert tuple(chain) == KNOWN_REVISIONS


def test_migrated_schema_equals_orm_metadata(backend_url: str | None, tmp_path: Path) -> None:
    reg = Registry.init(tmp_path / "home", backend_url)
    with reg.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    reg.close()
    assert diff == [], f"ORM and migrations disagree; add a revision: {diff}"


def test_upgrade_downgrade_upgrade(backend_url: str | None, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    database = Database(load_settings(tmp_path / "home", backend_url))
    database.upgrade()
    assert database.current_revision() == SCHEMA_HEAD
    database.downgrade("base")
    assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
    database.upgrade()
    assert "adapter_versions" in inspect(database.engine).get_table_names()
    database.dispose()


def test_rows_survive_upgrade_from_0001(backend_url: str | None, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    database = Database(load_settings(tmp_path / "home", backend_url))
    database.upgrade("0001")
    with database.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO base_models (id, name, revision, architecture, hidden_size, "
                "num_layers, created_at) VALUES (1, 'bert', 'abc', 'bert', 32, 2, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO tasks (id, name, kind, label_names, text_fields, base_model_id, "
                "created_at) VALUES (1, 'sent', 'single', '[\"n\", \"p\"]', '[\"text\"]', 1, "
                "'2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO adapters (id, name, task_id, created_at) "
                "VALUES (1, 'books', 1, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO adapter_versions (id, adapter_id, version, task_id, base_model_id, "
                "method, config, config_hash, artifact_sha256, artifact_size, trainable_params, "
                "status, created_at) VALUES (1, 1, 1, 1, 1, 'seq_bn', '{}', 'h', :sha, 5, 7, "
                "'active', '2026-01-01')"
            ),
            {"sha": "a" * 64},
        )
        conn.execute(
            text(
                "INSERT INTO hub_links (id, entity_kind, entity_id, repo_id, commit_sha, "
                "direction, created_at) VALUES (1, 'adapter', 1, 'me/books', 'c1', 'push', "
                "'2026-01-01')"
            )
        )
    with pytest.raises(SchemaOutOfDate, match="out of date") as info:
        database.verify_schema()
    assert info.value.hint == "Run: adapter-registry db upgrade"
    database.upgrade()
    with database.engine.connect() as conn:
        row = conn.execute(
            text("SELECT version, artifact_sha256, profile_sha256 FROM adapter_versions")
        ).one()
        link = conn.execute(text("SELECT repo_id, artifact_sha256 FROM hub_links")).one()
    assert tuple(row) == (1, "a" * 64, None)
    assert tuple(link) == ("me/books", None)
    reg = Registry(database.settings, database)
    assert reg.resolve("books@1").trainable_params == 7
    database.downgrade("0001")
    with database.engine.connect() as conn:
        cols = {c["name"] for c in inspect(conn).get_columns("adapter_versions")}
        assert "profile_sha256" not in cols
        assert conn.execute(text("SELECT count(*) FROM adapter_versions")).scalar() == 1
    database.dispose()


def test_behind_schema_is_refused_until_upgraded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    database = Database(load_settings(home))
    database.upgrade("0001")
    with pytest.raises(SchemaOutOfDate) as info:
        Registry.open(home)
    assert "found revision 0001, expected 0007" in str(info.value)
    assert info.value.hint == "Run: adapter-registry db upgrade"
    database.upgrade()
    Registry.open(home).close()


def test_newer_schema_is_refused_and_not_downgraded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Registry.init(home).close()
    con = sqlite3.connect(home / "registry.db")
    con.execute("UPDATE alembic_version SET version_num = '0099'")
    con.commit()
    con.close()
    with pytest.raises(SchemaOutOfDate, match="newer than this adapter-registry knows"):
        Registry.open(home)
    with pytest.raises(SchemaOutOfDate, match="newer"):
        Registry.init(home)
    con = sqlite3.connect(home / "registry.db")
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("0099",)
    con.close()


def test_promoted_step_rows_move_to_promotions_and_back(
    backend_url: str | None, tmp_path: Path
) -> None:
    (tmp_path / "home").mkdir()
    database = Database(load_settings(tmp_path / "home", backend_url))
    database.upgrade("0002")
    with database.engine.begin() as conn:
        for sql in (
            "INSERT INTO base_models (id, name, revision, architecture, hidden_size, num_layers, "
            "created_at) VALUES (1, 'bert', 'abc', 'bert', 32, 2, '2026-01-01')",
            "INSERT INTO tasks (id, name, kind, label_names, text_fields, base_model_id, "
            "created_at) VALUES (1, 'sent', 'single', '[\"n\", \"p\"]', '[\"text\"]', 1, "
            "'2026-01-01')",
            "INSERT INTO datasets (id, task_id, source, split, row_count, fingerprint, "
            "label_distribution, created_at) VALUES (7, 1, '/d/books', 'validation', 4, 'f1', "
            "'{}', '2026-01-01')",
            "INSERT INTO adapters (id, name, task_id, created_at) VALUES (1, 'books', 1, "
            "'2026-01-01')",
            "INSERT INTO adapter_versions (id, adapter_id, version, task_id, base_model_id, "
            "method, config, config_hash, artifact_sha256, artifact_size, trainable_params, "
            "status, created_at) VALUES (1, 1, 1, 1, 1, 'seq_bn', '{}', 'h', 'a', 5, 7, "
            "'active', '2026-01-01'), (2, 1, 2, 1, 1, 'seq_bn', '{}', 'h', 'b', 5, 7, "
            "'active', '2026-01-02')",
            "INSERT INTO fusions (id, name, version, task_id, base_model_id, config, head, "
            "artifact_sha256, artifact_size, trainable_params, status, created_at) VALUES "
            "(1, 'sent-fusion', 1, 1, 1, '{}', '{}', 'c', 5, 9, 'active', '2026-01-03')",
            # Step 0 (the first production adapter), step 1 (an adapter), step 2 (a fusion);
            # an ordinary accuracy row stays where it is.
            "INSERT INTO metrics (entity_kind, entity_id, dataset_id, split, name, value, step, "
            "created_at) VALUES ('adapter', 1, 7, NULL, 'promoted_step', 0.0, 0, '2026-01-04'), "
            "('adapter', 2, NULL, NULL, 'promoted_step', 1.0, 1, '2026-01-05'), "
            "('fusion', 1, 7, NULL, 'promoted_step', 2.0, 2, '2026-01-06'), "
            "('adapter', 1, 7, 'validation', 'accuracy', 0.75, 0, '2026-01-04')",
        ):
            conn.execute(text(sql))
    database.upgrade()
    with database.engine.connect() as conn:
        promotions = conn.execute(
            text(
                "SELECT task_id, entity_kind, entity_id, step, dataset_id, alias FROM promotions "
                "ORDER BY step"
            )
        ).all()
        names = conn.execute(text("SELECT name, value FROM metrics ORDER BY id")).all()
        ds = conn.execute(text("SELECT artifact_sha256 FROM datasets")).one()
    assert [tuple(p) for p in promotions] == [
        (1, "adapter", 1, 0, 7, "production"),
        (1, "adapter", 2, 1, None, "production"),
        (1, "fusion", 1, 2, 7, "production"),
    ]
    assert [tuple(n) for n in names] == [("accuracy", 0.75)]
    assert tuple(ds) == (None,)
    reg = Registry(database.settings, database)
    from registry.continual import production_history

    history = production_history(reg, "sent")
    assert [(s.step, s.entity.ref) for s in history] == [
        (0, "books@1"),
        (1, "books@2"),
        (2, "sent-fusion@1"),
    ]
    database.downgrade("0002")
    with database.engine.connect() as conn:
        back = conn.execute(
            text(
                "SELECT entity_kind, entity_id, dataset_id, value, step FROM metrics "
                "WHERE name = 'promoted_step' ORDER BY value"
            )
        ).all()
        assert "promotions" not in inspect(conn).get_table_names()
        assert "artifact_sha256" not in {c["name"] for c in inspect(conn).get_columns("datasets")}
    assert [tuple(b) for b in back] == [
        ("adapter", 1, 7, 0.0, 0),
        ("adapter", 2, None, 1.0, 1),
        ("fusion", 1, 7, 2.0, 2),
    ]
    database.dispose()


def test_0005_starts_each_alias_history_and_round_trips(
    backend_url: str | None, tmp_path: Path
) -> None:
    (tmp_path / "home").mkdir()
    database = Database(load_settings(tmp_path / "home", backend_url))
    database.upgrade("0004")
    with database.engine.begin() as conn:
        for sql in (
            "INSERT INTO base_models (id, name, revision, architecture, hidden_size, num_layers, "
            "created_at) VALUES (1, 'bert', 'abc', 'bert', 32, 2, '2026-01-01')",
            "INSERT INTO tasks (id, name, kind, label_names, text_fields, base_model_id, "
            "created_at) VALUES (1, 'sent', 'single', '[\"n\", \"p\"]', '[\"text\"]', 1, "
            "'2026-01-01')",
            "INSERT INTO adapters (id, name, task_id, created_at) VALUES (1, 'books', 1, "
            "'2026-01-01')",
            "INSERT INTO adapter_versions (id, adapter_id, version, task_id, base_model_id, "
            "method, config, config_hash, artifact_sha256, artifact_size, trainable_params, "
            "status, created_at) VALUES (1, 1, 1, 1, 1, 'seq_bn', '{}', 'h', 'aa', 5, 7, "
            "'active', '2026-01-01')",
            "INSERT INTO fusions (id, name, version, task_id, base_model_id, config, head, "
            "artifact_sha256, artifact_size, trainable_params, status, created_at) VALUES "
            "(1, 'mix', 1, 1, 1, '{}', '{}', 'bb', 5, 7, 'active', '2026-01-02')",
            "INSERT INTO aliases (id, task_id, alias, target_kind, target_id, updated_at) "
            "VALUES (1, 1, 'production', 'fusion', 1, '2026-02-03 04:05:06')",
            "INSERT INTO aliases (id, task_id, alias, target_kind, target_id, updated_at) "
            "VALUES (2, 1, 'staging', 'adapter', 1, '2026-02-04 00:00:00')",
        ):
            conn.execute(text(sql))
    database.upgrade()
    reg = Registry(database.settings, database)
    history = [(e.alias, e.old_ref, e.new_ref, e.actor) for e in reg.alias_history("sent")]
    assert history == [
        ("production", None, "mix@1", "migration"),
        ("staging", None, "books@1", "migration"),
    ]
    assert str(reg.alias_history("sent", "production")[0].created_at) == "2026-02-03 04:05:06"
    reg.describe("mix@1", "two domains")
    reg.tag("books@1", ["baseline"])
    database.downgrade("0004")
    with database.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert not {"tags", "alias_events"} & tables
        assert "description" not in {c["name"] for c in inspect(conn).get_columns("fusions")}
        assert conn.execute(text("SELECT count(*) FROM aliases")).scalar() == 2
        assert conn.execute(text("SELECT count(*) FROM fusions")).scalar() == 1
    database.upgrade()
    assert len(Registry(database.settings, database).alias_history("sent")) == 2
    database.dispose()


def test_0006_keeps_promotions_as_ungated_and_drops_refusals_on_downgrade(
    backend_url: str | None, tmp_path: Path
) -> None:
    (tmp_path / "home").mkdir()
    database = Database(load_settings(tmp_path / "home", backend_url))
    database.upgrade("0005")
    with database.engine.begin() as conn:
        for sql in (
            "INSERT INTO base_models (id, name, revision, architecture, hidden_size, num_layers, "
            "created_at) VALUES (1, 'bert', 'abc', 'bert', 32, 2, '2026-01-01')",
            "INSERT INTO tasks (id, name, kind, label_names, text_fields, base_model_id, "
            "created_at) VALUES (1, 'sent', 'single', '[\"n\", \"p\"]', '[\"text\"]', 1, "
            "'2026-01-01')",
            "INSERT INTO adapters (id, name, task_id, created_at) VALUES (1, 'books', 1, "
            "'2026-01-01')",
            "INSERT INTO adapter_versions (id, adapter_id, version, task_id, base_model_id, "
            "method, config, config_hash, artifact_sha256, artifact_size, trainable_params, "
            "status, created_at) VALUES (1, 1, 1, 1, 1, 'seq_bn', '{}', 'h', 'aa', 5, 7, "
            "'active', '2026-01-01'), (2, 1, 2, 1, 1, 'seq_bn', '{}', 'h', 'bb', 5, 7, "
            "'active', '2026-01-02'), (3, 1, 3, 1, 1, 'seq_bn', '{}', 'h', 'cc', 5, 7, "
            "'active', '2026-01-03')",
            "INSERT INTO promotions (id, task_id, entity_kind, entity_id, step, dataset_id, "
            "alias, created_at) VALUES (1, 1, 'adapter', 1, 0, NULL, 'production', "
            "'2026-01-04'), (2, 1, 'adapter', 2, 1, NULL, 'production', '2026-01-05')",
        ):
            conn.execute(text(sql))
    database.upgrade()
    reg = Registry(database.settings, database)
    before = reg.promotions(1)
    assert [(p.step, p.outcome, p.gate_metric, p.gate_reason) for p in before] == [
        (0, "promoted", None, None),
        (1, "promoted", None, None),
    ]
    reg.record_promotion(
        reg.resolve("books@3"), 2, None, "production", gate_metric="macro_f1", outcome="refused"
    )
    assert [p.outcome for p in reg.promotions(1)] == ["promoted", "promoted", "refused"]
    database.downgrade("0005")
    with database.engine.connect() as conn:
        cols = {c["name"] for c in inspect(conn).get_columns("promotions")}
        assert not {"gate_metric", "gate_reason", "outcome"} & cols
        kept = conn.execute(text("SELECT entity_id FROM promotions ORDER BY id")).scalars().all()
    assert list(kept) == [1, 2]  # the refusal was never a promotion
    database.upgrade()
    assert [p.outcome for p in Registry(database.settings, database).promotions(1)] == [
        "promoted",
        "promoted",
    ]
    database.dispose()

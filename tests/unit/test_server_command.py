"""``python -m mlpipeline server``'s parts that need no database: its command lines, whom
PostgreSQL runs as, and the messages when something is missing."""

from __future__ import annotations

import pytest

from mlpipeline.commands import server
from mlpipeline.core.errors import PipelineError


def test_the_tracking_server_listens_on_localhost_and_serves_the_artifacts():
    command = server.server_command(5123, "postgresql+psycopg2://u@h:1/db", "s3://b/", 2)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "5123"
    assert command[command.index("--backend-store-uri") + 1] == "postgresql+psycopg2://u@h:1/db"
    assert command[command.index("--artifacts-destination") + 1] == "s3://b/"
    assert "--serve-artifacts" in command  # clients need no storage credentials
    assert server.tracking_url(5123) == "http://127.0.0.1:5123"


def test_the_database_uri_names_the_driver_in_the_requirements():
    # SQLAlchemy 2's default PostgreSQL driver is psycopg 3; the requirements pin psycopg2
    assert server.postgres_uri(5432).startswith("postgresql+psycopg2://mlflow@127.0.0.1:5432/")


def test_postgres_runs_as_the_unprivileged_user_only_when_this_is_root(monkeypatch):
    monkeypatch.setattr(server.os, "geteuid", lambda: 0)
    assert server.postgres_user("nobody") == "nobody"
    assert server.as_user("nobody") == ["runuser", "-u", "nobody", "--"]
    monkeypatch.setattr(server.os, "geteuid", lambda: 1000)
    assert server.postgres_user("nobody") is None
    assert server.as_user(None) == []


def test_missing_postgresql_programs_are_named_with_the_fix(monkeypatch):
    monkeypatch.setattr(server.shutil, "which", lambda name: None)
    with pytest.raises(PipelineError, match=r"`pg_ctl` is not on PATH.*drop --postgres"):
        server.require_tool("pg_ctl")


def test_the_defaults_keep_everything_in_the_project_cache():
    args = server.parse_args([])
    assert not args.postgres and not args.s3 and args.port == 0
    assert str(args.home) == ".cache/team-server"

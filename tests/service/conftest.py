"""Service tests run against SQLite and against a real PostgreSQL server (pgserver's binaries, from PyPI)."""

from __future__ import annotations

import itertools

import pytest

_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "guard-serve.db")
    server = request.getfixturevalue("postgres_server")
    name = f"guard_test_{next(_counter)}"
    server.psql(f"CREATE DATABASE {name};")
    return server.get_uri(name)


@pytest.fixture
def online(monkeypatch):
    """The suite runs with HF_HUB_OFFLINE=1 (tests/conftest.py); service tests talk to a loopback fake Hub."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

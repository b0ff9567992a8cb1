"""The local stack's pure parts and its messages when the machine lacks something."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitalstream.devstack import emulators, postgres
from vitalstream.devstack.processes import StackError
from vitalstream.devstack.stack import format_env, stack_env


def test_missing_node_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(emulators.shutil, "which", lambda name: None)
    with pytest.raises(StackError, match=r"Node\.js .*install"):
        emulators.start_kinesalite(tmp_path)


def test_missing_kinesalite_says_to_run_make_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VITALSTREAM_NODE_MODULES", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(emulators, "__file__", str(tmp_path / "a" / "b" / "emulators.py"))
    with pytest.raises(StackError, match="make install"):
        emulators.find_node_modules()


def test_missing_postgres_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VITALSTREAM_PG_BINDIR", raising=False)
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    with pytest.raises(StackError, match="apt-get install postgresql"):
        postgres.find_bindir()


def test_env_exports_are_shell_quoted_and_cover_the_contract() -> None:
    env = stack_env(
        "http://127.0.0.1:1", "http://127.0.0.1:2", "postgresql://u@127.0.0.1:3/db?x=1&y=2", "http://127.0.0.1:4"
    )
    lines = format_env(env).splitlines()
    assert all(line.startswith("export ") for line in lines)
    assert "export VITALSTREAM_WAREHOUSE_URL='postgresql://u@127.0.0.1:3/db?x=1&y=2'" in lines
    names = {line.split("=", 1)[0].removeprefix("export ") for line in lines}
    assert {
        "VITALSTREAM_GATEWAY_URL",
        "VITALSTREAM_STREAM",
        "VITALSTREAM_BUCKET",
        "VITALSTREAM_WAREHOUSE_URL",
        "AWS_REGION",
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_DYNAMODB",
    } <= names

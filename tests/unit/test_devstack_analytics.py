"""The local stack's analytics wiring: the loader's URL, the Glue endpoint and database in `dev env`."""

from __future__ import annotations

from vitalstream.devstack.stack import DEFAULT_NAMES, STOP_ORDER, as_user, stack_env


def test_as_user_swaps_only_the_user() -> None:
    assert as_user("postgresql://vitalstream@127.0.0.1:5439/vitalstream", "vitalstream_loader") == (
        "postgresql://vitalstream_loader@127.0.0.1:5439/vitalstream"
    )
    assert as_user("postgresql://owner:secret@db.local/wh?sslmode=require", "vitalstream_loader") == (
        "postgresql://vitalstream_loader@db.local/wh?sslmode=require"
    )


def test_dev_env_exports_the_glue_endpoint_and_database() -> None:
    env = stack_env("http://k", "http://m", "postgresql://o@h:1/d", "http://g")
    assert env["AWS_ENDPOINT_URL_GLUE"] == "http://m"
    assert env["VITALSTREAM_GLUE_DATABASE"] == DEFAULT_NAMES.glue_database == "vitalstream"
    assert env["VITALSTREAM_WAREHOUSE_URL"] == "postgresql://o@h:1/d"  # the owner's, as CONTRACT §10 says
    assert STOP_ORDER.index("refresher") < STOP_ORDER.index("postgres")

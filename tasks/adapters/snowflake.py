"""The only code that talks to Snowflake: a query read as Arrow batches, credentials never logged."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pandas as pd
import pyarrow as pa

from tasks.errors import ConfigError, DataError

_ENV_KEYS = {
    "account": "SNOWFLAKE_ACCOUNT",
    "user": "SNOWFLAKE_USER",
    "password": "SNOWFLAKE_PASSWORD",
    "warehouse": "SNOWFLAKE_WAREHOUSE",
    "database": "SNOWFLAKE_DATABASE",
    "schema": "SNOWFLAKE_SCHEMA",
    "role": "SNOWFLAKE_ROLE",
    "host": "SNOWFLAKE_HOST",
    "port": "SNOWFLAKE_PORT",
    "protocol": "SNOWFLAKE_PROTOCOL",
}


def connection_params() -> dict[str, Any]:
    """Connection settings from SNOWFLAKE_* variables, or from a Prefect Secret block holding JSON."""
    block = os.environ.get("MLOPS_SNOWFLAKE_BLOCK")
    if block:
        from prefect.blocks.system import Secret

        params = dict(Secret.load(block).get())
    else:
        params = {key: os.environ[env] for key, env in _ENV_KEYS.items() if os.environ.get(env)}
    if "port" in params:
        params["port"] = int(params["port"])
    if "account" not in params and "host" not in params:
        raise ConfigError(
            "Snowflake source needs SNOWFLAKE_ACCOUNT (and SNOWFLAKE_USER, SNOWFLAKE_PASSWORD) "
            "or MLOPS_SNOWFLAKE_BLOCK naming a Secret block"
        )
    return params


def read_query(query: str) -> tuple[pd.DataFrame, str]:
    """Run the query and stream its Arrow batches; the fingerprint hashes the batches as they come."""
    import snowflake.connector

    params = connection_params()
    digest = hashlib.sha256(query.encode())
    batches: list[pa.RecordBatch] = []
    try:
        with snowflake.connector.connect(**params) as conn, conn.cursor() as cur:
            cur.execute(query)
            for table in cur.fetch_arrow_batches():
                for batch in table.to_batches():
                    digest.update(batch.serialize())
                    batches.append(batch)
    except snowflake.connector.errors.ProgrammingError as exc:
        raise DataError(f"Snowflake rejected the query: {exc.msg}") from None
    except snowflake.connector.errors.DatabaseError as exc:
        # DatabaseError covers login failures; its message never contains the password
        raise DataError(f"cannot connect to Snowflake: {exc.msg}") from None
    if not batches:
        return pd.DataFrame(), digest.hexdigest()
    frame = pa.Table.from_batches(batches).to_pandas()
    # unquoted Snowflake identifiers come back upper-case; model configs use lower-case names
    frame.columns = [c.lower() for c in frame.columns]
    return frame, digest.hexdigest()

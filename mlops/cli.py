"""`mlops`: the command line. Commands load config and call flows; errors are one line."""

from __future__ import annotations

from mlops.environment import apply_defaults

apply_defaults()  # before Prefect or MLflow are imported: the one place the environment changes

from mlops import audit, batch, compliance, configs, platform, release, reproduce, server, status, training  # noqa: E402,F401 (each module adds its commands)
from mlops.app import app  # noqa: E402


def main() -> None:
    app()


if __name__ == "__main__":
    main()

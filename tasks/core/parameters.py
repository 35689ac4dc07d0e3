"""Flow parameter types that read well in the Prefect UI's run form."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from tasks.core.settings import configured_models


def model_name() -> Any:
    """`str` whose parameter schema lists the configured models (`enum`): the Prefect UI shows a
    choice and the server refuses another name for a deployment run (`prefect deploy` builds the
    schema from the checkout's configs/models). In-process calls are not limited to the list:
    load_config checks them, and a YAML path works there too."""
    names = configured_models()
    if not names:
        return str
    schema: dict[str, Any] = {"enum": names}
    return Annotated[str, Field(json_schema_extra=schema)]


ModelName = model_name()

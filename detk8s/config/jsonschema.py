"""The run config's JSON Schema as editors need it: any file may be partial (the rest comes
through `_BASE_` or detk8s.yaml defaults), so nothing is required, but unknown keys still are
errors."""

from __future__ import annotations

from typing import Any

from detk8s.config.layered import BASE_KEY
from detk8s.config.schema import RunConfig


def run_config_schema() -> dict[str, Any]:
    schema = RunConfig.model_json_schema(by_alias=True)
    schema.pop("required", None)
    schema["properties"].pop("name", None)  # the file name
    schema["properties"][BASE_KEY] = {
        "description": "Config(s) this file inherits, relative to it; merged depth-first.",
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "detk8s run config"
    return schema

"""The run config's JSON Schema as editors need it: any file may be partial (the rest comes
through `_BASE_` or detk8s.yaml defaults), so nothing is required, but unknown keys still are
errors. Framework sections come from the framework registry (this module does not know them)."""

from __future__ import annotations

from typing import Any

from detk8s.config.layered import BASE_KEY
from detk8s.config.schema import RunConfig


def run_config_schema(
    sections: dict[str, dict[str, Any]], datasets: list[str] | None = None
) -> dict[str, Any]:
    """`sections`: each framework's settings schema, by framework name; `datasets`: the
    project's dataset names, when the schema is made for one project."""
    schema = RunConfig.model_json_schema()
    schema.pop("required", None)
    schema["properties"].pop("name", None)  # the file name
    schema["properties"][BASE_KEY] = {
        "description": "Config(s) this file inherits, relative to it; merged depth-first.",
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    }
    defs = schema.setdefault("$defs", {})
    for name, section in sections.items():
        defs.update(section.pop("$defs", {}))
        section.pop("required", None)
        section["description"] = f"Settings of the {name} framework (framework: {name})."
        schema["properties"][name] = section
    schema["properties"]["framework"]["enum"] = sorted(sections)
    if datasets:
        schema["properties"]["dataset"]["enum"] = sorted(datasets)
    schema["additionalProperties"] = False
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "detk8s run config"
    return schema

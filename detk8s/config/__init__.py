"""Run configs: YAML files with `_BASE_` inheritance, validated into RunConfig objects."""

"""Export the contract (pydantic models) as JSON Schema files under ``shared/jsonschema/``."""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path

from pydantic import BaseModel

SCHEMA_DIR = Path(__file__).parent / "jsonschema"

# Modules that define contract models; each exposes CONTRACT_MODELS: dict[name, model].
CONTRACT_MODULES = ["shared.schemas", "shared.curation", "shared.registry", "shared.training"]


def contract_models() -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {}
    for module_name in CONTRACT_MODULES:
        models.update(import_module(module_name).CONTRACT_MODELS)
    return models


def render_schemas() -> dict[str, str]:
    """File name -> JSON text of every contract model's schema."""
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in sorted(contract_models().items())
    }


def export_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written

"""The committed JSON Schema files and the Arrow schema must match the pydantic contract."""

import json

import pytest

from shared.contract import SCHEMA_DIR, render_schemas
from shared.manifests import RECORD_SCHEMA
from shared.schemas import ImageRecord

pytestmark = pytest.mark.unit


def test_committed_json_schemas_match_the_code() -> None:
    rendered = render_schemas()
    committed = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.schema.json")}
    assert set(committed) == set(rendered), "run `sporeprint schema export` and commit shared/jsonschema/"
    for name, text in rendered.items():
        assert json.loads(committed[name]) == json.loads(text), f"{name} drifted: run `sporeprint schema export`"


def test_arrow_schema_names_the_same_fields_as_image_record() -> None:
    assert RECORD_SCHEMA.names == list(ImageRecord.model_fields)

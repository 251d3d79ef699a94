"""Validate our responses against OpenAI's official OpenAPI excerpt (../shared/openai)."""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

SHARED = Path(os.environ.get("SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
SCHEMA_FILE = SHARED / "openai" / "openai_schema_excerpt.json"


def _fix_nullable(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` → JSON-schema ``anyOf [..., null]``."""
    if isinstance(node, list):
        return [_fix_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _fix_nullable(v) for k, v in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    doc = json.loads(SCHEMA_FILE.read_text())
    return _fix_nullable(copy.deepcopy(doc))


def validate(instance: Any, schema_name: str) -> None:
    doc = _document()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)

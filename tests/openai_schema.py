"""Validate our responses against OpenAI's official OpenAPI excerpts (vendored in tests/fixtures/openai).

``validate(instance, "CreateChatCompletionResponse")`` looks the schema name up in the chat/models
excerpt first, then in the embeddings/completions/responses one. OpenAPI 3.0's ``nullable: true`` is
rewritten to JSON-schema ``anyOf [..., null]``.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_DIR = Path(__file__).resolve().parent / "fixtures" / "openai"
SCHEMA_FILES = (SCHEMA_DIR / "openai_schema_excerpt.json", SCHEMA_DIR / "openai_schema_more.json")


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


@lru_cache(maxsize=len(SCHEMA_FILES))
def _document(path: Path) -> dict[str, Any]:
    return _fix_nullable(copy.deepcopy(json.loads(path.read_text())))


def document_for(schema_name: str) -> dict[str, Any]:
    """The schema document that defines ``schema_name``."""
    for path in SCHEMA_FILES:
        doc = _document(path)
        if schema_name in doc["components"]["schemas"]:
            return doc
    raise KeyError(f"no OpenAI schema named {schema_name!r} in {[p.name for p in SCHEMA_FILES]}")


def validate(instance: Any, schema_name: str) -> None:
    doc = document_for(schema_name)
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)


def validate_completion_chunk(instance: Any) -> None:
    """A ``/v1/completions`` stream chunk. OpenAI's spec shares one schema between the body and the
    chunks, and its ``finish_reason`` is not nullable, yet OpenAI's own stream sends
    ``"finish_reason": null`` until the last chunk (openai/openai-openapi#100): only that is relaxed."""
    doc = copy.deepcopy(document_for("CreateCompletionResponse"))
    choice = doc["components"]["schemas"]["CreateCompletionResponse"]["properties"]["choices"]["items"]
    choice["properties"]["finish_reason"] = {"anyOf": [choice["properties"]["finish_reason"], {"type": "null"}]}
    schema = {"$ref": "#/components/schemas/CreateCompletionResponse", "components": doc["components"]}
    jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)

"""Grammar-constrained sampling checked after sampling (``backend.llm.lazy_grammar``), on the real 0.5B.

What a user relies on: constrained output always satisfies its schema, and under greedy decoding
it is token for token what llama-cpp-python's grammar-first order gives. The rejected-token path
(the model wanted something the grammar forbids) is exercised and counted, with both the short
candidate pass and the whole-vocabulary pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import backend.llm.lazy_grammar as lazy_grammar

pytestmark = pytest.mark.model

TOOL_CALL = {
    "type": "object",
    "properties": {
        "name": {"const": "weather"},
        "arguments": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
    "required": ["name", "arguments"],
}
ROUTE = {
    "type": "object",
    "properties": {"mode": {"type": "string", "enum": ["chat", "code", "react"]}, "steps": {"type": "integer"}},
    "required": ["mode", "steps"],
}
CASES = [
    (TOOL_CALL, "Call the tool weather for this task.", "Weather in Berlin, Germany tomorrow"),
    (TOOL_CALL, "Call the tool weather for this task.", "temperature at 52.52,13.41 now"),
    (ROUTE, "Classify the request. Reply with JSON.", "What is 17 * 23? Think in 2 steps."),
]


@pytest.fixture(scope="module")
def llama(qwen_path: Path) -> Iterator[Any]:
    model = lazy_grammar.lazy_grammar_llama_class()(model_path=str(qwen_path), n_ctx=1024, n_threads=2, verbose=False)
    yield model
    model.close()


def _generate(llama: Any, schema: dict[str, Any], system: str, user: str, *, lazy: bool, **kw: Any) -> tuple[str, Any]:
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    llama.lazy_grammar = lazy
    prompt = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    grammar = LlamaGrammar.from_string(json_schema_to_gbnf(json.dumps(schema)), verbose=False)
    out = llama.create_completion(prompt, max_tokens=60, grammar=grammar, **kw)
    return out["choices"][0]["text"], llama._sampler


@pytest.mark.parametrize("schema,system,user", CASES)
def test_greedy_output_is_the_grammar_first_output(llama: Any, schema: dict[str, Any], system: str, user: str) -> None:
    reference, _ = _generate(llama, schema, system, user, lazy=False, temperature=0.0)
    text, sampler = _generate(llama, schema, system, user, lazy=True, temperature=0.0)
    assert isinstance(sampler, lazy_grammar.LazyGrammarSampler)
    assert text == reference
    jsonschema.validate(json.loads(text), schema)


def test_rejected_tokens_are_resampled_within_the_grammar(llama: Any) -> None:
    rejected = 0
    for seed in range(6):
        for schema, system, user in CASES:
            text, sampler = _generate(llama, schema, system, user, lazy=True, temperature=1.0, seed=seed)
            jsonschema.validate(json.loads(text), schema)
            rejected += sampler.rejected
    # the model's own choice was outside the grammar many times (the prompts do not show the format)
    assert rejected > 0


def test_whole_vocabulary_pass_gives_the_same_greedy_output(llama: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    schema, system, user = CASES[0]
    reference, _ = _generate(llama, schema, system, user, lazy=False, temperature=0.0)
    monkeypatch.setattr(lazy_grammar, "CANDIDATES", 1)  # only the rejected token itself: always the full pass
    text, sampler = _generate(llama, schema, system, user, lazy=True, temperature=0.0)
    assert sampler.full_passes > 0
    assert text == reference

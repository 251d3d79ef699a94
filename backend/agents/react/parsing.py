"""Reading a text-format ReAct reply: ``Thought:`` / ``Action:`` / ``Action Input:`` / ``Final Answer:``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from backend.agents.calls import parse_input

FINAL_RE = re.compile(r"Final\s*Answer\s*:\s*", re.IGNORECASE)
ACTION_RE = re.compile(
    r"Action\s*\d*\s*:\s*[`\"']?([A-Za-z_][\w\-]*)[`\"']?\s*(?:\(\s*\))?\s*\n?\s*Action\s*\d*\s*Input\s*\d*\s*:\s*(.*)",
    re.IGNORECASE | re.DOTALL,
)
ACTION_ONLY_RE = re.compile(r"^\s*Action\s*:", re.IGNORECASE | re.MULTILINE)
THOUGHT_RE = re.compile(r"^\s*Thought\s*:\s*", re.IGNORECASE)
TOOL_CALL_RE = re.compile(r"<tool_call>.*?(?:</tool_call>|$)", re.DOTALL)
STRUCTURED_START = ("thought:", "action:", "final answer", "{", "[", "<tool_call>", "```json", "```tool")


@dataclass
class ParsedAction:
    thought: str
    tool: str
    arguments: dict[str, Any] | str


@dataclass
class ParsedFinal:
    thought: str
    answer: str


@dataclass
class ParseError:
    problem: str
    text: str


def parse_react_text(text: str, tool_names: list[str]) -> ParsedAction | ParsedFinal | ParseError:
    """Parse one text-format ReAct reply. Plain text without any marker is a final answer."""
    final = FINAL_RE.search(text)
    action = ACTION_RE.search(text)
    if action and (not final or action.start() < final.start()):
        thought = THOUGHT_RE.sub("", text[: action.start()]).strip()
        name = action.group(1)
        raw_input = re.split(r"\n\s*Observation\s*:", action.group(2), maxsplit=1, flags=re.IGNORECASE)[0]
        if name not in tool_names:
            return ParseError(f"'{name}' is not a tool", text)
        return ParsedAction(thought, name, parse_input(raw_input))
    if final:
        thought = THOUGHT_RE.sub("", text[: final.start()]).strip()
        answer = text[final.end() :].strip()
        if not answer:
            return ParseError("the Final Answer is empty", text)
        return ParsedFinal(thought, answer)
    if ACTION_ONLY_RE.search(text):
        return ParseError("an 'Action:' line must be followed by an 'Action Input:' line", text)
    stripped = text.strip()
    if not stripped:
        return ParseError("the reply was empty", text)
    return ParsedFinal("", THOUGHT_RE.sub("", stripped))


def trim_after_input(text: str) -> str:
    """Drop anything the model wrote after the Action Input (e.g. an invented Observation)."""
    return re.split(r"\n\s*Observation\s*:", text, maxsplit=1, flags=re.IGNORECASE)[0].rstrip()

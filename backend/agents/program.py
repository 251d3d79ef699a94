"""Python programs in model replies: find them, make them print, tell a program from prose.

Shared by the code agent (``backend.agents.code``) and the chat guard against fabricated
program output (``backend.chat.fabricated_output``). Pure text work: nothing here runs code.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

#: a fenced block: ```lang\n body ``` (the closing fence may be missing when generation was cut)
_FENCE_RE = re.compile(r"```[ \t]*([\w+.-]*)[ \t]*\n(.*?)(?:\n?```|\Z)", re.DOTALL)
PYTHON_TAGS = ("python", "py", "python3", "py3")


@dataclass
class Block:
    lang: str
    body: str
    start: int  # offsets of the whole fenced block in the text
    end: int


def fenced_blocks(text: str) -> list[Block]:
    return [Block(m.group(1).lower(), m.group(2), m.start(), m.end()) for m in _FENCE_RE.finditer(text)]


def is_python(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def _looks_like_code(text: str) -> bool:
    """Unfenced text that parses as Python and has a statement that is not a bare name or sentence."""
    if not text.strip() or not is_python(text):
        return False
    tree = ast.parse(text)
    return any(not isinstance(node, ast.Expr) or isinstance(node.value, ast.Call) for node in tree.body)


def extract_program(reply: str) -> str | None:
    """The program a model reply contains: its first python block (or first untagged block that
    parses), or the whole reply when it is bare code; None when the reply is prose."""
    blocks = fenced_blocks(reply)
    for b in blocks:
        if b.lang in PYTHON_TAGS and b.body.strip():
            return b.body.strip("\n")
    for b in blocks:
        if not b.lang and b.body.strip() and _looks_like_code(b.body):
            return b.body.strip("\n")
    if not blocks and _looks_like_code(reply.strip()):
        return reply.strip()
    return None


def has_complete_python_block(text: str) -> bool:
    """True once the text holds an opened *and closed* python block (generation can stop there)."""
    m = re.search(r"```[ \t]*(?:python3?|py3?)?[ \t]*\n", text, re.IGNORECASE)
    return bool(m and "\n```" in text[m.end() - 1 :])


def _calls_print(tree: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("print", "pprint")
        for n in ast.walk(tree)
    )


def ensure_prints(program: str) -> str:
    """A program that prints nothing but ends in an expression prints that expression (like a notebook)."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return program
    if not tree.body or _calls_print(tree):
        return program
    last = tree.body[-1]
    if not isinstance(last, ast.Expr) or last.col_offset != 0:
        return program
    if isinstance(last.value, ast.Constant) and isinstance(last.value.value, str):
        return program  # a trailing docstring-like string
    segment = ast.get_source_segment(program, last.value)
    if segment is None:
        return program
    lines = program.splitlines()
    head = lines[: last.lineno - 1]
    return "\n".join([*head, f"print({segment})"])


def computes_nothing(program: str) -> bool:
    """The program only prints text typed into it (``print("The answer is 42")``): nothing computed."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return False
    if not tree.body:
        return True
    for node in tree.body:
        call = node.value if isinstance(node, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print"):
            return False
        if not all(isinstance(a, ast.Constant) for a in call.args):
            return False
    return True

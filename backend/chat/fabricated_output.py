"""A chat reply never shows an unexecuted program's claimed output as a result.

A coder model answering in plain chat often writes a Python program and then an ```output```
block with a number it made up. This module finds such claims and settles them:

* the program runs in the sandbox (``python_code``); the claimed block is replaced by the real
  output, marked as executed, and later prose whose numbers came from the invented output is dropped;
* if it cannot run (error, no sandbox), the claimed output and such prose are removed, with a note.

``ClaimGuard`` does the streaming part: text streams as it comes until a python block closes;
what follows is held until the reply is complete and settled, so a claim is never shown first.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

from backend.agents.grounding import grounded, numbers
from backend.agents.program import PYTHON_TAGS, Block, fenced_blocks
from backend.tools.base import ToolResult

#: tags of a fenced block that presents a program's output
OUTPUT_TAGS = ("", "output", "text", "plaintext", "txt", "console", "stdout", "result", "out")
#: how far after the program a claimed output may start (prose such as "When you run it, you get:")
CLAIM_GAP_CHARS = 300
MAX_RUNS = 2
EXECUTED_NOTE = "*(Output of running this program in the sandbox.)*"
NOT_RUN_NOTE = "*(The program's claimed output was removed: {why}.)*"

RunProgram = Callable[[str], Awaitable[ToolResult]]


@dataclass
class Claim:
    program: Block
    output: Block


@dataclass
class Settled:
    text: str
    runs: list[tuple[str, ToolResult]] = field(default_factory=list)


def _closed(text: str, b: Block) -> bool:
    return text[: b.end].endswith("```")


def find_claims(text: str) -> list[Claim]:
    """Each python block followed, within a short gap, by an output-like block."""
    blocks = fenced_blocks(text)
    claims = []
    for prog, nxt in zip(blocks, blocks[1:], strict=False):
        if prog.lang not in PYTHON_TAGS or nxt.lang not in OUTPUT_TAGS:
            continue
        if nxt.start - prog.end > CLAIM_GAP_CHARS or not nxt.body.strip():
            continue
        if nxt.lang == "" and _looks_like_program(nxt.body):
            continue
        claims.append(Claim(prog, nxt))
    return claims


def _looks_like_program(body: str) -> bool:
    return bool(re.search(r"^\s*(def |import |from \w+ import |for .+:|print\()", body, re.MULTILINE))


def _stdout(result: ToolResult) -> str:
    out = (result.data or {}).get("stdout")
    return (out if isinstance(out, str) else result.output).strip()


def _prose_without_invented_numbers(prose: str, allowed: list[Decimal]) -> str:
    """Drop the sentences of ``prose`` holding a number not in ``allowed`` (the invented ones)."""
    pieces = re.split(r"(?<=[.!?])(\s+)|(\n+)", prose)
    out: list[str] = []
    for piece in pieces:
        if piece is None:
            continue
        if piece.strip() and any(not grounded(n, allowed) for n in numbers(piece)):
            continue
        out.append(piece)
    return "".join(out)


async def settle_claims(text: str, question: str, run: RunProgram | None) -> Settled:
    """``text`` with every claimed output replaced by the real one or removed (see the module docstring)."""
    claims = find_claims(text)
    if not claims:
        return Settled(text)
    settled = Settled("")
    pos = 0
    pieces: list[str] = []
    for i, claim in enumerate(claims):
        program = claim.program.body.strip("\n")
        result: ToolResult | None = None
        if run is not None and i < MAX_RUNS:
            result = await run(program)
            settled.runs.append((program, result))
        real = _stdout(result) if result is not None and result.ok else ""
        tag = claim.output.lang or "output"
        # up to the program's end, unchanged; the gap prose kept (it introduces the output)
        pieces.append(text[pos : claim.output.start])
        if real:
            pieces.append(f"```{tag}\n{real}\n```\n{EXECUTED_NOTE}")
        else:
            why = "the program was not run" if result is None else "running it in the sandbox failed"
            if result is not None and not result.ok:
                last = result.output.strip().splitlines()[-1:] or [""]
                why += f" ({last[0][:200]})"
            pieces.append(NOT_RUN_NOTE.format(why=why))
        pos = claim.output.end
        # prose up to the next block: numbers must come from the real output, the question or the program
        nxt = claims[i + 1].program.start if i + 1 < len(claims) else len(text)
        following = fenced_blocks(text[pos:nxt])
        prose_end = pos + following[0].start if following else nxt
        allowed = numbers(real) + numbers(question) + numbers(program)
        pieces.append(_prose_without_invented_numbers(text[pos:prose_end], allowed))
        pos = prose_end
    pieces.append(text[pos:])
    settled.text = "".join(pieces)
    return settled


class ClaimGuard:
    """Streaming side: ``feed`` returns the text that may be shown now; the rest waits for ``settle``."""

    def __init__(self) -> None:
        self.text = ""
        self.shown = 0
        self.holding = False

    def feed(self, delta: str) -> str:
        self.text += delta
        if not self.holding:
            for b in fenced_blocks(self.text):
                if b.lang in PYTHON_TAGS and _closed(self.text, b):
                    self.holding = True
                    cut = b.end
                    break
            else:
                cut = len(self.text)
            if cut > self.shown:
                out = self.text[self.shown : cut]
                self.shown = cut
                return out
        return ""

    async def settle(self, question: str, run: RunProgram | None) -> tuple[str, Settled]:
        """(the rest to show, the settled reply). The settled text starts with what was shown."""
        settled = await settle_claims(self.text, question, run)
        if not settled.text.startswith(self.text[: self.shown]):  # cannot happen: claims start after a closed block
            return "", Settled(self.text[: self.shown])
        return settled.text[self.shown :], settled

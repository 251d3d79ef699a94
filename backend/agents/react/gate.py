"""The answer gate: which streamed text is final-answer text that can be shown now."""

from __future__ import annotations

import re
from typing import Literal

from backend.agents.react.parsing import ACTION_ONLY_RE, ACTION_RE, FINAL_RE, STRUCTURED_START


class AnswerGate:
    """Decides, while tokens stream in, which text is final-answer text that can be shown now.

    Plain replies stream at once (holding back a short tail in case a tool call or ReAct marker
    begins); structured replies (``Thought:``, JSON) stream only after ``Final Answer:``.
    """

    HOLD = 14
    DECIDE_AT = 12

    def __init__(self) -> None:
        self.text = ""
        self.emitted = 0  # chars of the answer already released
        self.state: Literal["undecided", "plain", "structured", "final", "stopped"] = "undecided"
        self.answer_start = 0

    def answer_so_far(self) -> str:
        return self.text[self.answer_start :].lstrip() if self.state in ("plain", "final") else ""

    def feed(self, delta: str) -> str:
        self.text += delta
        if self.state == "undecided":
            head = self.text.lstrip()
            if len(head) < self.DECIDE_AT:
                return ""
            low = head.lower()
            self.state = "structured" if low.startswith(STRUCTURED_START) else "plain"
        if self.state == "structured":
            m = FINAL_RE.search(self.text)
            if m is None or ACTION_RE.search(self.text[: m.start()]):
                return ""
            self.state, self.answer_start = "final", m.end()
        if self.state in ("plain", "final"):
            answer = self.answer_so_far()
            if self.state == "plain" and ("<tool_call>" in answer or ACTION_ONLY_RE.search(answer)):
                self.state = "stopped"
                return ""
            if self.state == "final" and re.search(r"\n\s*(Observation|Thought|Action)\s*:", answer):
                self.state = "stopped"
                return ""
            releasable = len(answer) - self.HOLD
            if releasable > self.emitted:
                out = answer[self.emitted : releasable]
                self.emitted = releasable
                return out
        return ""

    def released(self) -> int:
        return self.emitted



    def remaining(self, answer: str) -> str:
        """The part of the final ``answer`` not streamed yet."""
        done = self.released()
        if done == 0:
            return answer
        streamed = self.answer_so_far()[:done]
        if answer.startswith(streamed):
            return answer[done:]
        # the answer was cleaned after streaming began (e.g. a trailing marker removed)
        return answer[done:] if len(answer) > done else ""

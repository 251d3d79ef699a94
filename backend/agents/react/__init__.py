"""The ReAct agent, one module per job (like ``backend.agents.plan_execute``).

* ``loop``: ``ReActAgent`` — Thought -> Action -> Observation turns, then the answer;
* ``parsing``: the text ReAct format (``Action:`` / ``Action Input:`` / ``Final Answer:``);
* ``gate``: which streamed text is final-answer text that can be shown now;
* ``prompts``: the system prompts and the notes the loop adds.

Tool calls written as text are recovered by ``backend.agents.calls`` (shared by every agent).
"""

from backend.agents.react.gate import AnswerGate
from backend.agents.react.loop import ReActAgent, Style
from backend.agents.react.parsing import ParsedAction, ParsedFinal, ParseError, parse_react_text

__all__ = ["AnswerGate", "ParseError", "ParsedAction", "ParsedFinal", "ReActAgent", "Style", "parse_react_text"]

"""Agent modes and the model ids that select them: the one home of both.

A model id is a base id (what the provider serves) with an optional mode suffix:
``<base>`` (auto: the router decides), ``<base>:chat``, ``<base>:code``, ``<base>:react``,
``<base>:plan-execute``. The request field ``mode`` takes the same names (``plan_execute`` too).
"""

from __future__ import annotations

from enum import StrEnum

from backend.errors import NotFoundError


class Mode(StrEnum):
    """How a request is answered. The values are the internal spelling (``plan_execute``)."""

    AUTO = "auto"  # the router (backend.agents.router) picks one of the others
    CHAT = "chat"  # the model answers directly
    CODE = "code"  # the code agent: a Python program answers
    REACT = "react"  # the ReAct agent: tool calls in a loop
    PLAN_EXECUTE = "plan_execute"  # plan, run tools in parallel, verify

    @property
    def suffix(self) -> str:
        """The spelling in a model id (``plan-execute``)."""
        return self.value.replace("_", "-")

    @property
    def is_agent(self) -> bool:
        """Answered by an agent (``backend.agents.runner.run_agent``), not by plain chat."""
        return self in AGENT_MODES

    @classmethod
    def from_name(cls, name: str) -> Mode | None:
        """The mode for a model-id suffix or ``mode`` field value (either spelling), else None."""
        try:
            return cls(name.lower().replace("-", "_"))
        except ValueError:
            return None


AGENT_MODES = frozenset({Mode.CODE, Mode.REACT, Mode.PLAN_EXECUTE})
#: what the router may choose
ROUTABLE = (Mode.CHAT, Mode.CODE, Mode.REACT, Mode.PLAN_EXECUTE)
#: the suffixes a model id may carry, in /v1/models order ("auto" is the bare base id)
MODES = [m.suffix for m in Mode]


def parse_model_id(model: str, base_ids: list[str]) -> tuple[str, Mode]:
    """Split ``model`` into (base id, mode).

    Base ids may themselves contain ':' (Ollama tags), so the exact base id wins first.
    Raises ``NotFoundError`` (code ``model_not_found``) for an unknown id, like OpenAI.
    """
    if model in base_ids:
        return model, Mode.AUTO
    base, sep, suffix = model.rpartition(":")
    if sep and base in base_ids:
        mode = Mode.from_name(suffix)
        if mode is not None:
            return base, mode
    raise NotFoundError(
        f"The model '{model}' does not exist. Use one of the ids listed by GET /v1/models "
        f"(a base id, optionally with :{', :'.join(MODES[1:])}).",
        param="model",
        code="model_not_found",
    )


def model_ids(base_ids: list[str]) -> list[str]:
    """Every id ``/v1/models`` lists: each base id and its mode variants."""
    return [b if m is Mode.AUTO else f"{b}:{m.suffix}" for b in base_ids for m in Mode]

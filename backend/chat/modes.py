"""Model ids and agent modes: ``<base>`` (auto), ``<base>:chat``, ``<base>:react``,
``<base>:plan-execute``, ``<base>:code``.

The router (``backend.agents.router``) parses the ids it knows; this module is the chat pipeline's
view and adds the agent modes run by ``backend.agents.runner`` that the router may not list.
"""

from __future__ import annotations

from backend.agents import router
from backend.errors import NotFoundError

#: modes the runner has beyond the router's own list (model-id suffix -> internal mode)
RUNNER_MODES = {"code": "code"}

MODES = [*router.MODES, *(m for m in RUNNER_MODES if m not in router.MODES)]

# external name (model-id suffix or the ``mode`` body field) -> internal mode
MODE_ALIASES = {
    "auto": "auto",
    "chat": "chat",
    "react": "react",
    "plan-execute": "plan_execute",
    "plan_execute": "plan_execute",
    **RUNNER_MODES,
}

#: modes answered by an agent (``backend.agents.runner.run_agent``), not by plain chat
AGENT_MODES = ("react", "plan_execute", "code")


def resolve_model(model: str, base_ids: list[str]) -> tuple[str, str]:
    """``(base model id, internal mode)``; unknown ids are a 404 like OpenAI's."""
    try:
        return router.parse_model_id(model, base_ids)
    except NotFoundError:
        base, sep, suffix = model.rpartition(":")
        mode = RUNNER_MODES.get(suffix.lower())
        if sep and base in base_ids and mode is not None:
            return base, mode
        raise


def model_ids(base_ids: list[str]) -> list[str]:
    """Every id ``/v1/models`` lists: each base id and its mode variants."""
    ids = router.model_ids(base_ids)
    extra = [f"{b}:{m}" for b in base_ids for m in RUNNER_MODES if f"{b}:{m}" not in ids]
    return ids + extra


__all__ = ["AGENT_MODES", "MODES", "MODE_ALIASES", "model_ids", "resolve_model"]

"""Model ids and agent modes: ``<base>`` (auto), ``<base>:chat``, ``<base>:react``, ``<base>:plan-execute``.

The parsing lives with the router (``backend.agents.router``); this module is the chat pipeline's view.
"""

from __future__ import annotations

from backend.agents.router import MODES, model_ids, parse_model_id

# external name (model-id suffix or the ``mode`` body field) -> internal mode
MODE_ALIASES = {"auto": "auto", "chat": "chat", "react": "react", "plan-execute": "plan_execute", "plan_execute": "plan_execute"}


def resolve_model(model: str, base_ids: list[str]) -> tuple[str, str]:
    """``(base model id, internal mode)``; unknown ids are a 404 like OpenAI's."""
    return parse_model_id(model, base_ids)


__all__ = ["MODES", "MODE_ALIASES", "model_ids", "resolve_model"]

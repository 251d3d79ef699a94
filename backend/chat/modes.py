"""Model ids and agent modes: ``<base>`` (auto), ``<base>:chat``, ``<base>:react``, ``<base>:plan-execute``."""

from __future__ import annotations

from backend.errors import NotFoundError

MODES = ("auto", "chat", "react", "plan-execute")
# external name -> internal mode
MODE_ALIASES = {"auto": "auto", "chat": "chat", "react": "react", "plan-execute": "plan_execute", "plan_execute": "plan_execute"}


def model_ids(base_ids: list[str]) -> list[str]:
    out = []
    for base in base_ids:
        out.append(base)
        out.extend(f"{base}:{mode}" for mode in MODES if mode != "auto")
    return out


def resolve_model(model: str, base_ids: list[str]) -> tuple[str, str]:
    """``(base model id, internal mode)``; unknown ids are a 404 like OpenAI's."""
    if model in base_ids:
        return model, "auto"
    base, sep, mode = model.rpartition(":")
    if sep and base in base_ids and mode in MODE_ALIASES:
        return base, MODE_ALIASES[mode]
    raise NotFoundError(
        f"The model '{model[:200]}' does not exist. Available models: {', '.join(model_ids(base_ids))}.",
        param="model",
        code="model_not_found",
    )

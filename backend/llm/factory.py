"""Builds the configured model provider (nothing is loaded or connected here)."""

from __future__ import annotations

from backend.llm.base import LLMProvider
from backend.settings import Settings


def create_provider(settings: Settings) -> LLMProvider:
    """The provider named by ``settings.llm_provider``; call ``await provider.start()`` afterwards."""
    if settings.llm_provider == "embedded":
        from backend.llm.embedded import EmbeddedProvider

        return EmbeddedProvider(settings)
    if settings.llm_provider == "ollama":
        from backend.llm.ollama_provider import OllamaProvider

        return OllamaProvider(settings)
    if settings.llm_provider == "openai":
        from backend.llm.openai_provider import OpenAIProvider

        return OpenAIProvider(settings)
    raise ValueError(f"Unknown LLM_PROVIDER '{settings.llm_provider}' (embedded, ollama or openai).")

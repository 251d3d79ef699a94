"""Durable state as JSON files: atomic writes under cross-process locks."""

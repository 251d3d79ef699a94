"""Server-side tools. ``backend.tools.registry.TOOLS`` is the one list every agent reads."""

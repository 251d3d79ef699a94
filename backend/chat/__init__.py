"""Chat completions: request validation, the generation pipeline and its two renderers."""

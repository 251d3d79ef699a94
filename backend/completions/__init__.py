"""``/v1/completions``: raw text completions and fill-in-the-middle (request, run, check, render)."""

"""Fill-in-the-middle post-processing: where a generated middle ends, and making it parse.

* ``MiddleStream`` passes a generated middle on whole lines at a time and ends it where the model
  starts repeating the suffix (FIM models often write the middle, then the suffix again).
* ``fit_python`` returns the longest line-boundary prefix of a middle with which
  ``prefix + middle + suffix`` parses as Python (``ast.parse``: nothing is executed), or None.
"""

from __future__ import annotations

import ast
import warnings

MAX_FIT_CANDIDATES = 128  # line boundaries tried before giving up (each try is one parse)


def _anchor(suffix: str | None) -> str | None:
    """The suffix's first non-blank line, stripped: a middle line equal to it is the suffix repeated."""
    for line in (suffix or "").splitlines():
        if line.strip():
            return line.strip()
    return None


class MiddleStream:
    def __init__(self, suffix: str | None) -> None:
        self.anchor = _anchor(suffix)
        self._pending = ""
        self.reached_suffix = False

    def feed(self, delta: str) -> str:
        """Text that may go out now (whole lines); after the suffix is reached, nothing."""
        if self.reached_suffix:
            return ""
        if self.anchor is None:
            return delta
        self._pending += delta
        out: list[str] = []
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            if line.strip() == self.anchor:
                self.reached_suffix, self._pending = True, ""
                break
            out.append(line + "\n")
        return "".join(out)

    def close(self) -> str:
        """The last, unfinished line (unless it is the suffix's start)."""
        rest, self._pending = self._pending, ""
        if self.reached_suffix or (self.anchor is not None and rest.strip() == self.anchor):
            return ""
        return rest


def _parses(source: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not an error
            ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def line_cuts(middle: str) -> list[str]:
    """The whole middle, then it cut after each line break from the last to the first, then ''."""
    cuts = [middle]
    end = len(middle)
    while True:
        end = middle.rfind("\n", 0, end)
        if end < 0:
            break
        if end + 1 < len(middle):
            cuts.append(middle[: end + 1])
    if middle:
        cuts.append("")
    return cuts[:MAX_FIT_CANDIDATES] + ([""] if len(cuts) > MAX_FIT_CANDIDATES else [])


def fit_python(prefix: str, middle: str, suffix: str) -> str | None:
    for candidate in line_cuts(middle):
        if _parses(prefix + candidate + suffix):
            return candidate
    return None

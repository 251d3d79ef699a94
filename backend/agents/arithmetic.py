"""A one-expression computation asked in words, read into a math expression by rules (no model call).

    expression_of("what is 15% of 820?")                          -> "15/100*820"
    expression_of("and also what is 2 to the power of 20")        -> "2**20"
    expression_of("What is twelve multiplied by thirteen?")       -> "12*13"
    expression_of("what is the greatest common divisor of 84 and 126") -> "gcd(84, 126)"
    expression_of("how many days are there between 2025-01-01 and 2025-03-01")  -> None

The reading is deliberately narrow: after the question words are dropped and the phrases below
are rewritten, what is left must be nothing but numbers, operators, brackets and a few function
names; anything else (a unit, a date, a name, a second clause) means None, and the caller asks the
model instead. So a rule never guesses: either the whole question was an expression, or it is not
used. Number words become numerals first (``number_words.with_numerals``).
"""

from __future__ import annotations

import re

from backend.agents.number_words import with_numerals

_NUM = r"(\d+(?:\.\d+)?)"
_LEAD = re.compile(
    r"^(?:(?:and|also|then|so|now|please|ok|okay)\b[\s,]*|(?:what|whats|what's)\s+(?:is|are|was|would be|'s)?\s*"
    r"|how much (?:is|are|would be)\s*|(?:can you |could you )?(?:calculate|compute|evaluate|work out|figure out|"
    r"find|tell me|give me|determine|solve)\s*|the (?:value|result|answer) of\s*|the answer to\s*)+"
)
_TRAIL = re.compile(r"[\s?.!,;:]+$")
#: (pattern, replacement) in order; each pattern's numbers are already numerals
_PHRASES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"{_NUM}\s*(?:%|percent)\s+of\s+{_NUM}"), r"(\1/100*\2)"),
    (
        re.compile(
            rf"{_NUM}\s+(?:to the power of|raised to the power of|raised to the|raised to|to the)\s+{_NUM}(?:th|st|nd|rd)?(?:\s+power)?"
        ),
        r"\1**\2",
    ),
    (re.compile(rf"{_NUM}\s+squared"), r"\1**2"),
    (re.compile(rf"{_NUM}\s+cubed"), r"\1**3"),
    (re.compile(rf"(?:the\s+)?square root of\s+{_NUM}"), r"sqrt(\1)"),
    (re.compile(rf"(?:the\s+)?cube root of\s+{_NUM}"), r"cbrt(\1)"),
    (re.compile(rf"(?:the\s+)?factorial of\s+{_NUM}|{_NUM}\s*factorial"), r"factorial(\1\2)"),
    (
        re.compile(rf"(?:the\s+)?(?:gcd|hcf|greatest common (?:divisor|factor)|highest common factor) of\s+{_NUM}\s*(?:and|,)\s*{_NUM}"),
        r"gcd(\1, \2)",
    ),
    (re.compile(rf"(?:the\s+)?(?:lcm|least common multiple) of\s+{_NUM}\s*(?:and|,)\s*{_NUM}"), r"lcm(\1, \2)"),
    (re.compile(r"\bmultiplied by\b|\btimes\b|×"), "*"),
    (re.compile(r"\bdivided by\b|÷"), "/"),
    (re.compile(r"\bplus\b"), "+"),
    (re.compile(r"\bminus\b|\u2212"), "-"),
    (re.compile(r"\b(?:mod|modulo)\b"), "%"),
    (re.compile(r"\^"), "**"),
]
_FUNCTIONS = ("sqrt", "cbrt", "factorial", "gcd", "lcm")
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|(\*\*|[-+*/%(),])|([a-z]+))")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def _only_arithmetic(text: str) -> bool:
    """Numbers, operators, brackets and the allowed functions, at least one operation, balanced."""
    pos, depth, operations, numbers = 0, 0, 0, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            return text[pos:].strip() == "" and depth == 0 and operations > 0 and numbers > 0
        number, op, word = m.groups()
        if word is not None:
            if word not in _FUNCTIONS:
                return False
            operations += 1
        elif op is not None:
            if op == "(":
                depth += 1
            elif op == ")":
                depth -= 1
                if depth < 0:
                    return False
            elif op != ",":
                operations += 1
        elif number is not None:
            numbers += 1
        pos = m.end()
    return depth == 0 and operations > 0 and numbers > 0


def expression_of(question: str) -> str | None:
    """The math expression the whole ``question`` asks for, or None when it is anything more."""
    text = with_numerals(question).lower().strip()
    text = _THOUSANDS.sub("", text)
    text = re.sub(r"(\d)\s*!(?!=)", r"\1 factorial", text)  # "12!" before the trailing "!" is dropped
    text = _TRAIL.sub("", _LEAD.sub("", text)).strip()
    if not text or len(text) > 200:
        return None
    for pattern, replacement in _PHRASES:
        text = pattern.sub(replacement, text)
    text = re.sub(r"\s+", " ", text).strip()
    if text.startswith("(") and text.endswith(")") and text.count("(") == 1:
        text = text[1:-1]
    return text if _only_arithmetic(text) else None

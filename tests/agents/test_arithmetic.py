"""Rule-read arithmetic (``backend.agents.arithmetic``): the whole question is an expression, or None.

Each expression is evaluated with SymPy here, so a test checks the value a user would get, not the
spelling of the expression."""

from __future__ import annotations

import pytest
import sympy

from backend.agents.arithmetic import expression_of

VALUES = [
    ("What is 15% of 820?", 123),
    ("and also what is 2 to the power of 20", 2**20),
    ("What is twelve multiplied by thirteen?", 156),
    ("what is the greatest common divisor of 84 and 126", 42),
    ("What's the LCM of 4 and 6?", 12),
    ("what is 1234 * 5678?", 7006652),
    ("What is 12 factorial", 479001600),
    ("what is 12!", 479001600),
    ("Calculate the square root of 144", 12),
    ("what is 17 squared", 289),
    ("what is 3 raised to the 4th power", 81),
    ("compute 17 mod 5", 2),
    ("what is 1,234,567 + 1", 1234568),
    ("What is 2^10?", 1024),
    ("What is 10 divided by 4?", sympy.Rational(5, 2)),
    ("what is 100 - 7 times 3", 79),
    ("how much is one thousand plus five", 1005),
    ("what is (3 + 4) * 5", 35),
]


@pytest.mark.parametrize("question,value", VALUES)
def test_expression_has_the_asked_value(question: str, value: object) -> None:
    expr = expression_of(question)
    assert expr is not None, question
    assert sympy.sympify(expr, locals={"cbrt": sympy.cbrt}) == value


@pytest.mark.parametrize(
    "question",
    [
        "how many days are there between 2025-01-01 and 2025-03-01",  # a date computation
        "what is the weather in Paris",
        "how many r are in strawberry",
        "what is 2 + 2 in binary",  # a conversion after the sum
        "what is 5",  # no operation
        "what is 15 percent of 80 dollars",  # a unit left over
        "what is 3 + 4 and who wrote Hamlet",  # a second question
        "what is 2 ** 10000000 + os.system(1)",  # a name
        "what is (3 + 4",  # unbalanced
        "",
    ],
)
def test_anything_more_than_an_expression_is_not_read(question: str) -> None:
    assert expression_of(question) is None

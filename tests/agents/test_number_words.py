"""Number words become numerals before the code agent's model reads the question."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backend.agents.code import task_question
from backend.agents.number_words import find_numbers, with_numerals


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("twelve thousand three hundred and five", "12305"),
        ("twelve thousand three hundred forty-five", "12345"),
        ("seven hundred twelve times forty-three", "712 times 43"),
        ("one hundred and five", "105"),
        ("a hundred and twenty", "120"),
        ("ten thousand and one", "10001"),
        ("one million two hundred thousand", "1200000"),
        ("two hundred million", "200000000"),
        ("1.2 million", "1200000"),
        ("$2.5 billion", "$2500000000"),
        ("3 thousand", "3000"),
        ("a dozen eggs", "12 eggs"),
        ("two dozen apples", "24 apples"),
        ("half a dozen pears", "6 pears"),
        ("three point one four", "3.14"),
        ("twenty five", "25"),
        ("eighty-one", "81"),
        ("zero", "0"),
    ],
)
def test_number_phrases(text, expected):
    assert with_numerals(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nineteen eighty-four", "19 84"),  # two numbers, never summed
        ("five twenty", "5 20"),
        ("twenty twenty", "20 20"),
        ("no one came, and the one who left", "no one came, and the one who left"),
        ("I have a cat and an idea", "I have a cat and an idea"),
        ("Tom has five apples and three bags, and gives one away.", "Tom has 5 apples and 3 bags, and gives 1 away."),
        ("sixty and seventy", "60 and 70"),  # "and" joins numbers only after hundred/thousand
        ("2,360 and 17.5%", "2,360 and 17.5%"),  # numerals stay as written
        ("Someone tenders", "Someone tenders"),
    ],
)
def test_what_is_left_alone_or_split(text, expected):
    assert with_numerals(text) == expected


def test_spans_and_values():
    found = find_numbers("Add forty-two and a million.")
    assert [(f.text, f.value) for f in found] == [("forty-two", Decimal(42)), ("a million", Decimal(1_000_000))]
    text = "Add forty-two and a million."
    assert all(text[f.start : f.end] == f.text for f in found)


def test_the_program_prompt_gets_numerals_and_no_reasoning_format_request():
    q = "Janet has sixteen eggs and sells a dozen.\nPlease reason step by step, and put your final answer within \\boxed{}."
    assert task_question(q) == "Janet has 16 eggs and sells 12."

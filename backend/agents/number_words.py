"""Numbers written in words, read deterministically, so a program gets numerals it cannot miscopy.

    with_numerals("What is twelve thousand three hundred and five minus a dozen?")
        -> "What is 12305 minus 12?"
    with_numerals("Revenue grew to 1.2 million dollars")  -> "Revenue grew to 1200000 dollars"

Read: cardinals from zero to the trillions ("seven hundred twelve", "forty-three", "one hundred
and five", "twelve thousand three hundred forty-five"), "a"/"an" before a scale ("a hundred",
"a million"), digits with a scale word ("1.2 million", "3 thousand"), dozens ("a dozen",
"two dozen", "half a dozen"), and "point" decimals ("three point five"). A number phrase ends where
the grammar does ("nineteen eighty-four" is 19 then 84, never 1984-as-a-sum). "no one" keeps its
words. Ordinals and fractions other than "half a dozen" are left as written. Pure text work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
DIGITS = "0123456789"
#: words after which "one" is a pronoun, not a number
_PRONOUN_BEFORE_ONE = {"no", "any", "every", "some", "each", "which", "the", "this", "that", "little", "other", "another"}

_TOKEN = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?|[A-Za-z]+")


@dataclass(frozen=True)
class Found:
    """A number phrase in the text: where it is, what it says and its value."""

    start: int
    end: int
    text: str
    value: Decimal

    @property
    def numeral(self) -> str:
        return numeral(self.value)


def numeral(value: Decimal) -> str:
    """Plain digits, no exponent, no trailing zeros (1200000, 3.5)."""
    if value == value.to_integral_value():
        return str(int(value))
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass
class _Tok:
    text: str
    low: str
    start: int
    end: int
    sep: str  # what lies between the previous token and this one


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    prev_end = 0
    for m in _TOKEN.finditer(text):
        out.append(_Tok(m.group(0), m.group(0).lower(), m.start(), m.end(), text[prev_end : m.start()]))
        prev_end = m.end()
    return out


def _joined(tok: _Tok) -> bool:
    """Whether the token continues the phrase before it: only spaces or one hyphen in between."""
    return tok.sep.strip() in ("", "-") and "\n" not in tok.sep


def _digit_value(tok: _Tok) -> Decimal | None:
    if not tok.text[0].isdigit():
        return None
    try:
        return Decimal(tok.text.replace(",", ""))
    except InvalidOperation:
        return None


class _Reader:
    """Reads one number phrase from ``toks[i]`` on; ``value``/``end`` after ``read()``."""

    def __init__(self, toks: list[_Tok], i: int) -> None:
        self.toks = toks
        self.i = i

    def _word(self, j: int) -> str | None:
        if j >= len(self.toks) or (j > self.i and not _joined(self.toks[j])):
            return None
        return self.toks[j].low

    def read(self) -> tuple[Decimal, int] | None:  # noqa: C901 - one small grammar, kept in one place
        toks, j = self.toks, self.i
        first = toks[j]
        # digits with a scale or "dozen": "1.2 million", "3 thousand", "2 dozen"
        digits = _digit_value(first)
        if digits is not None:
            nxt = self._word(j + 1)
            if nxt in SCALES:
                return digits * SCALES[nxt], j + 2
            if nxt == "dozen":
                return digits * 12, j + 2
            return None
        # "half a dozen"
        if first.low == "half" and self._word(j + 1) == "a" and self._word(j + 2) == "dozen":
            return Decimal(6), j + 3
        # "a hundred", "a thousand", "a dozen"
        if first.low in ("a", "an"):
            nxt = self._word(j + 1)
            if nxt == "dozen":
                return Decimal(12), j + 2
            if nxt not in ("hundred", *SCALES):
                return None
        elif first.low not in UNITS and first.low not in TENS:
            return None
        total = 0
        current = 0
        last_scale = 10**15
        last = ""  # kind of the last word taken: unit, teen, tens, hundred, scale, a
        end = j
        k = j
        while True:
            w = self._word(k)
            if w is None:
                break
            if w in ("a", "an") and k == j:
                current, last, k = 1, "a", k + 1
                continue
            if w in UNITS:
                v = UNITS[w]
                if last in ("unit", "teen") or (last == "tens" and v >= 10) or (last == "tens" and current % 10):
                    break
                if last == "tens" and v == 0:
                    break
                current += v
                last = "teen" if v >= 10 else "unit"
            elif w in TENS:
                if last in ("unit", "teen", "tens") or (last == "hundred" and current % 100):
                    break
                current += TENS[w]
                last = "tens"
            elif w == "hundred":
                if last not in ("unit", "teen", "a") or current >= 100 or current == 0:
                    # "twenty hundred" / "nineteen hundred" style years are left alone
                    break
                current *= 100
                last = "hundred"
            elif w in SCALES:
                scale = SCALES[w]
                if last not in ("unit", "teen", "tens", "hundred", "a") or scale >= last_scale:
                    break
                total += max(current, 1) * scale
                current = 0
                last_scale = scale
                last = "scale"
            elif w == "dozen":
                if last not in ("unit", "teen", "tens") or total:
                    break
                current *= 12
                last = "scale"
                k += 1
                end = k
                break
            elif w == "and":
                nxt = self._word(k + 1)
                if last not in ("hundred", "scale") or nxt is None or (nxt not in UNITS and nxt not in TENS):
                    break
                k += 1
                continue
            elif w == "point":
                if last not in ("unit", "teen", "tens", "hundred", "scale"):
                    break
                frac = ""
                m = k + 1
                while (d := self._word(m)) in UNITS and UNITS[d] < 10:
                    frac += str(UNITS[d])
                    m += 1
                if not frac:
                    break
                value = Decimal(total + current) + Decimal("0." + frac)
                return value, m
            else:
                break
            k += 1
            end = k
        if end == j or last == "a":
            return None
        return Decimal(total + current), end


def find_numbers(text: str) -> list[Found]:
    """Every number phrase in ``text``, left to right, not overlapping."""
    toks = _tokens(text)
    found: list[Found] = []
    i = 0
    while i < len(toks):
        read = _Reader(toks, i).read()
        if read is None:
            i += 1
            continue
        value, end = read
        phrase = (toks[i].start, toks[end - 1].end)
        words = text[phrase[0] : phrase[1]]
        pronoun = words.lower() == "one" and i > 0 and toks[i - 1].low in _PRONOUN_BEFORE_ONE
        if not pronoun:
            found.append(Found(phrase[0], phrase[1], words, value))
        i = end
    return found


def with_numerals(text: str) -> str:
    """``text`` with every number phrase written as digits (see the module docstring)."""
    out: list[str] = []
    pos = 0
    for f in find_numbers(text):
        out.append(text[pos : f.start])
        out.append(f.numeral)
        pos = f.end
    out.append(text[pos:])
    return "".join(out)

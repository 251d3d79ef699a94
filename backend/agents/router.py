"""Which way to answer a request: plain chat, the code agent, a ReAct agent or plan-and-execute.

The goal is the most right answers per second on a small local model:

* ``code`` — computation-shaped questions (arithmetic in digits or words, sums over ranges,
  "how many" counts, letters in a word, dates and day counts, primes, gcd, strings,
  percentages, statistics, unit conversions, word problems with several numbers): the model
  writes a short program, the sandbox runs it and its exact output is the answer;
* ``plan_execute`` — independent parts that need different tools (weather *and* a
  computation, two lookups, a document *and* the database);
* ``react`` — one lookup with one non-computation tool (weather, Wikipedia, web search, the
  user's documents, SQL), symbolic maths (derivatives, integrals, equations: the sympy tool),
  or parts that depend on each other ("look up X, then compute 2 % of it");
* ``chat`` — small talk, writing, explanations, coding help.

Keyword heuristics decide first. Only when they are unsure (no clear signal, but the request looks
like it may need fresh facts) and a provider is given, one short JSON-constrained LLM call
classifies it. Model ids select a mode explicitly: ``<base>`` (auto), ``<base>:chat``,
``<base>:code``, ``<base>:react``, ``<base>:plan-execute`` (see ``parse_model_id``).

**Bounded work.** The heuristics read at most ``SCAN_HEAD`` characters from the start and
``SCAN_TAIL`` from the end of the request, and every pattern is linear: no unbounded gap between
two sub-patterns (gaps are ``.{0,N}``), digit runs are possessive, so a hostile text (repeated
words, long digit runs, nested brackets) costs the same few milliseconds as a normal one.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from backend.llm.types import GenerationParams
from backend.modes import MODES, ROUTABLE, Mode, model_ids, parse_model_id

if TYPE_CHECKING:
    from backend.llm.base import LLMProvider

log = logging.getLogger("backend.agents.router")

Source = Literal["heuristic", "llm", "override"]

__all__ = ["MODES", "Mode", "RouteDecision", "decide", "heuristic_route", "model_ids", "parse_model_id", "route"]

#: how much of a request the heuristics read: its start and its end (where the question usually is)
SCAN_HEAD = 1500
SCAN_TAIL = 500


@dataclass(frozen=True)
class RouteDecision:
    mode: Mode
    reason: str
    source: Source


def _rx(pattern: str) -> re.Pattern[str]:
    """A pattern over the lower-cased text (cheaper than ``re.IGNORECASE`` on every search)."""
    return re.compile(pattern)


def scan_text(query: str) -> str:
    """The bounded part of ``query`` the heuristics read (head and tail)."""
    if len(query) <= SCAN_HEAD + SCAN_TAIL:
        return query
    return query[:SCAN_HEAD] + "\n" + query[-SCAN_TAIL:]


# ----------------------------------------------------------------------------- vocabulary
_NUMBER_WORDS = {
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "thirty",
    "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand", "million", "billion",
    "trillion", "dozen", "half", "twice", "thrice", "double", "triple", "quarter",
}
_NUM_TOKEN = re.compile(r"\d++(?:[.,]\d++)*+|[a-z]++")
#: word operators between two numbers: "six multiplied by seven", "12 times 13"
_WORD_OPS = {"plus", "minus", "times", "multiplied", "divided", "over", "mod", "modulo", "x", "add", "subtract", "and"}

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)

# compute kinds: an explicit computation ("strong") goes to code even next to a lookup; a
# quantity question with numbers ("weak") goes to code only when nothing else claims it
_STRONG_COMPUTE: dict[str, list[re.Pattern[str]]] = {
    "arithmetic": [
        _rx(r"(?<![\d.-])(?!\d{4}-\d\d?-\d)\d++(?:\.\d++)?+\s*+(?:[-+*/^×÷]|\*\*)\s*+\(?\s*+\d"),  # not a 2024-03-01 date
        _rx(r"\b(?:square root|cube root|sqrt|factorial|squared|cubed|to the power|raised to|reciprocal|logarithm|log base)\b"),
        _rx(
            r"\b(?:sum|product|total) of (?:all |the )?(?:the )?(?:first |integers|numbers|digits|odd|even|"
            r"squares|cubes|primes|multiples|\d)"
        ),
        _rx(r"\b(?:from|between) \d++ (?:to|and|through) \d"),
        _rx(r"\b(?:add up|multiply|divide|subtract)\b.{0,40}\d"),
        _rx(
            r"\b(?:convert|how many)\b.{0,40}\b(?:celsius|fahrenheit|kelvin|miles|kilometers|kilometres|km|meters|"
            r"metres|feet|inches|pounds|kg|kilograms|grams|ounces|liters|litres|gallons|cups|mph|km/h)\b"
        ),
        _rx(
            r"\b\d++(?:\.\d++)? ?(?:cm|mm|km|m|kg|g|lb|lbs|pounds|miles|mi|feet|ft|inches|in|liters|litres|"
            r"gallons|ounces|oz|celsius|fahrenheit|kelvin|mph|km/h|seconds|minutes|hours|bytes|kb|mb|"
            r"gb)\b.{0,30}\b(?:to|in|into) (?:cm|mm|km|meters|metres|kg|grams|g|lb|lbs|pounds|miles|feet|ft|"
            r"inches|liters|litres|gallons|ounces|oz|celsius|fahrenheit|kelvin|mph|km/h|seconds|minutes|hours|"
            r"days|bytes|kb|mb|gb)\b"
        ),
    ],
    "percentage": [
        _rx(r"(?<![\d.])\d++(?:\.\d++)?+\s*+(?:%|percent\b)"),
        _rx(r"\b(?:what|which) (?:percent|percentage|fraction)\b"),
        _rx(r"\b(?:percentage|percent) (?:of|increase|decrease|change)\b"),
        _rx(r"\b(?:compound interest|simple interest|discount|tip|sales tax|vat)\b.{0,60}\d"),
    ],
    "number theory": [
        _rx(r"\bprimes?\b(?! minister| time| video| member)"),
        _rx(r"\b(?:gcd|lcm|hcf|greatest common (?:divisor|factor)|least common (?:multiple|denominator)|highest common factor)\b"),
        _rx(r"\b(?:fibonacci|divisible by|divisors? of|factors of|remainder|modulo|collatz|perfect square|perfect number)\b"),
        _rx(r"\b(?:in|to|into) (?:binary|hexadecimal|hex|octal|base \d++|roman numerals?)\b"),
        _rx(r"\bdigits? (?:of|in) \d"),
    ],
    "dates": [
        _rx(r"\b(?:days?|weeks?|months?|years?|hours?|minutes?) (?:are there )?(?:between|until|till|since|from|after|before|ago)\b"),
        _rx(r"\b(?:day of the week|what day|which day|weekday|leap years?|day of the year|week number|iso week)\b"),
        _rx(r"\b\d{4}-\d{1,2}-\d{1,2}\b"),
        _rx(rf"\b{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?\b(?:,? \d{{4}})?"),
        _rx(rf"\b\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH}\b"),
        _rx(r"\b(?:add|plus|minus|subtract) \d++ (?:days|weeks|months)\b"),
        _rx(
            r"\bhow many (?:mondays|tuesdays|wednesdays|thursdays|fridays|saturdays|sundays|weekends|weekdays|"
            r"working days|business days)\b"
        ),
    ],
    "strings": [
        _rx(
            r"\b(?:reverse|reversed|backwards|palindrome|anagrams?|uppercase|upper case|lowercase|lower case|"
            r"capitali[sz]e|title case|alphabetical(?:ly)?|acronym|caesar|rot13|base64|sha-?256|sha1|md5|"
            r"hash of)\b"
        ),
        _rx(r"\b(?:vowels|consonants|characters|letters|syllables)\b.{0,40}\b(?:in|of)\b"),
        _rx(
            r"\b(?:how many|count the|count how many|number of)\b.{0,20}\b(?:times|letters?|vowels|consonants|"
            r"characters|chars|words|digits|spaces|occurrences|r's|s's|e's)\b"
        ),
        _rx(r"\bletter ['\"]?[a-z]['\"]?(?:\s|$|\?|,)"),
        _rx(r"\b(?:sort|order)\b.{0,30}\b(?:words|names|letters|list|numbers)\b"),
    ],
    "statistics": [
        _rx(
            r"\b(?:standard deviation|std dev|stdev|variance|median|mode of|percentile|quartiles?|interquartile|"
            r"z-score|correlation|regression|geometric mean|harmonic mean|weighted average)\b"
        ),
        _rx(r"\b(?:mean|average|avg|range) of\b"),
        _rx(r"\baverage\b.{0,60}\d"),
    ],
    "run code": [
        _rx(r"\b(?:run|execute|exec)\b.{0,30}\b(?:code|python|script|snippet|program)\b"),
        _rx(r"\b(?:python|code|script|program)\b.{0,20}\b(?:to|and)\b.{0,10}\b(?:compute|calculate|simulate|run|count|find)\b"),
        _rx(r"\buse python\b"),
        _rx(r"\bwhat (?:does|will|would) (?:this|the following|it) (?:code |program |script )?(?:print|output|return)\b"),
    ],
    "calculation": [
        _rx(r"\b(?:calculate|compute|evaluate|work out|how much is|what is|what's|whats)\b\s*+[-(]?\s*+\d"),
        _rx(r"\b(?:calculate|compute|evaluate|work out)\b.{0,40}\b(?:" + "|".join(sorted(_NUMBER_WORDS)) + r")\b"),
    ],
}
_WEAK_COMPUTE_Q = _rx(
    r"\b(?:how many|how much|how long|how far|how old|how fast|what is the total|what's the total|"
    r"total cost|in total|altogether|left over|per (?:day|week|hour|month|year)|each)\b"
)
_SYMBOLIC = [
    _rx(r"\b(?:derivative|differentiate|integral|integrate|antiderivative|limit of|taylor series|partial fractions)\b"),
    _rx(r"\b(?:solve|simplify|factori[sz]e|factor|expand)\b.{0,60}(?:\b[xyzt]\b|\*\*|\^)"),
    _rx(r"\b[xyz]\s*+(?:\*\*|\^)\s*+\d.{0,40}="),
]

# lookups: one non-computation tool each. The patterns live on the tools (``Tool.route_patterns``,
# for the tool's first category); the router only orders the categories and adds the time words.
#: when a request matches several lookups, the first category in this order names it
LOOKUP_ORDER = ("weather", "wikipedia", "search", "documents", "sql")
#: a search signal that is only a time word ("weather in Berlin right now") yields to the other lookups
_TEMPORAL_ONLY = _rx(r"\b(?:right now|currently|as of today|today's|this year's|this week)\b")


@lru_cache(maxsize=1)
def lookup_patterns() -> dict[str, list[re.Pattern[str]]]:
    """Lookup category -> the patterns of the registry tools that serve it (compiled once)."""
    from backend.tools.registry import all_tools

    found: dict[str, list[re.Pattern[str]]] = {}
    for t in all_tools().values():
        if t.route_patterns and t.categories:
            found.setdefault(t.categories[0], []).extend(_rx(p) for p in t.route_patterns)
    found.setdefault("search", []).append(_TEMPORAL_ONLY)
    rank = {c: i for i, c in enumerate(LOOKUP_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: rank.get(kv[0], len(rank))))


_WEB = _rx(r"\b(?:web|internet|online|google|news)\b")
#: where one part of a request ends and the next begins
_PARTS = re.compile(r"[?!;\n]|\.(?:\s|$)|, and\b|\b(?:and also|also|as well as)\b")
#: quoted text is data ("how many vowels in 'encyclopedia'"), not a request for a tool
_QUOTED = re.compile(
    r"\"[^\"\n]{1,80}\"|“[^”\n]{1,80}”|(?<!\w)'[^'\n]{1,60}'(?!\w)"
    r"|\b(?:the )?(?:word|string|name|phrase|letters of) [A-Za-z]++\b"  # "the word encyclopedia" is data too
)
#: a fact, then a computation on it ("find the population of Canada, then divide it by ...")
_COMPUTE_VERB = _rx(r"\b(?:calculate|compute|divide|multiply|convert|subtract|add|double|halve|square|percent|percentage|round)\b")

#: a lookup for several named things at once: "weather in Paris and London", "both X and Y"
_PARALLEL = [
    _rx(r"\b(?:compare|comparison|versus|vs\.?|both|each of|all of|respectively|side by side)\b"),
    _rx(r"\b(?:complete|full|comprehensive|overall) (?:analysis|report|overview|picture|breakdown)\b"),
]
#: two or more capitalised names joined by "and" ("Paris and London"): read on the original case
_NAMES = re.compile(r"\b[A-Z][a-z]++(?: [A-Z][a-z]++)?+,? (?:and|&) (?:(?:in|for|of|on) )?[A-Z][a-z]++")
_SEQUENTIAL = [
    _rx(r"\b(?:then|after that|afterwards|next,|finally,|step by step)\b"),
    _rx(
        r"\b(?:based on (?:that|the|this|it)|using (?:that|the|this) (?:result|value|number|answer)|"
        r"with (?:that|the) (?:result|value|number))\b"
    ),
    _rx(r"\b(?:if (?:it|the|that|so)|depending on|and use (?:it|that|the result)|of (?:it|that|this number|that number|the result)\b)"),
]

# typical chat requests
_GREETING = _rx(r"^\s*+(?:hi|hello|hey|yo|thanks|thank you|good (?:morning|evening|afternoon|night)|bye|goodbye|how are you)\b")
_CREATIVE = _rx(
    r"\b(?:write|compose|draft|create|give me|make)\b.{0,25}\b(?:poem|story|haiku|essay|email|e-mail|letter|song|joke|limerick|tweet|"
    r"slogan|toast|speech|cover letter|blog post|caption|riddle|lyrics|names? for|title for|tagline|sonnet|bio)\b"
    r"|\b(?:translate|rephrase|rewrite|proofread|paraphrase|summari[sz]e this|tell me a (?:joke|story)|brainstorm)\b"
)
_CODING_HELP = _rx(
    r"\b(?:write|implement|create|fix|debug|refactor|optimi[sz]e|review|explain|improve|convert|port|generate)\b.{0,40}"
    r"\b(?:function|class|method|script|program|code|regex|regular expression|query|snippet|unit tests?|"
    r"algorithm|decorator|endpoint|api|component|dockerfile|makefile)\b"
    r"|\b(?:bug|refactor|stack trace|traceback|typeerror|valueerror|syntax error|segfault|compile error|"
    r"unit test|big-o|time complexity)\b"
)
_EXPLAIN = _rx(
    r"\b(?:explain|describe|what does .{0,40} mean|(?:what(?:'s| is| are)|explain|describe) the (?:main |key )?"
    r"differences? between|^\s*+differences? between|why (?:do|"
    r"does|is|are|did|can|can't)|how (?:does|do|can|should) (?:i|you|we|a|an|the)\b|"
    r"tell me about|what are the (?:benefits|advantages|pros)|pros and cons|tips|advice|recommend|suggest|"
    r"ideas for|opinion|should i)\b"
)
#: an explanation cue this far into a text with numbers is part of a word problem, not the request
_EXPLAIN_WITHIN = 80
_RUN_WORDS = _rx(r"\b(?:run|execute|exec|use python|what (?:does|will) (?:it|this) (?:print|output))\b")
# may need facts the model may not have: unsure, ask the model when allowed
_WEAK_FACTS = [
    _rx(r"\b(?:current|recent|recently|now|today|tonight|tomorrow|yesterday|20[2-3]\d)\b"),
    _rx(r"\b(?:who is|who won|who was|when did|when was|when is|how many|how much|population of|ceo of|president of|where is)\b"),
    _rx(r"\b(?:find|check|verify|fetch)\b"),
]


@dataclass
class _Signals:
    compute: dict[str, str] = field(default_factory=dict)  # kind -> first matched phrase
    weak_compute: str = ""
    symbolic: str = ""
    separate: set[str] = field(default_factory=set)  # compute kinds found in a part with no lookup
    lookups: dict[str, str] = field(default_factory=dict)  # tool category -> first matched phrase
    chat: str = ""  # the chat cue: creative / coding help / explanation / greeting
    chat_kind: str = ""
    parallel: str = ""
    sequential: str = ""
    facts: str = ""


def _first(patterns: list[re.Pattern[str]], text: str) -> str:
    for p in patterns:
        m = p.search(text)
        if m:
            return m.group(0).strip()
    return ""


def _word_arithmetic(text: str) -> str:
    """"six multiplied by seven", "12 times 13", "one thousand plus 5": a word operator between two numbers.

    One linear pass over the words; number words and digit runs count as numbers.
    """
    tokens = _NUM_TOKEN.findall(text)
    n = len(tokens)

    def is_num(i: int) -> bool:
        return 0 <= i < n and (tokens[i][0].isdigit() or tokens[i] in _NUMBER_WORDS)

    for i, tok in enumerate(tokens):
        if tok not in _WORD_OPS or not is_num(i - 1):
            continue
        j = i + 1
        if tok in ("multiplied", "divided") and j < n and tokens[j] == "by":
            j += 1
        if tok == "and" and not (tokens[i - 1] in _NUMBER_WORDS and is_num(j) and tokens[j] in _NUMBER_WORDS):
            continue  # "and" only inside a number written in words ("one hundred and five")
        if is_num(j):
            return " ".join(tokens[i - 1 : j + 1])
    return ""


def _count_numbers(text: str) -> int:
    count = 0
    for t in _NUM_TOKEN.findall(text):
        if t[0].isdigit() or t in _NUMBER_WORDS:
            count += 1
            if count >= 8:
                break
    return count


def _signals(query: str) -> _Signals:
    original = scan_text(query)
    text = original.lower()
    s = _Signals()
    for kind, patterns in _STRONG_COMPUTE.items():
        hit = _first(patterns, text)
        if hit:
            s.compute[kind] = hit
    words = _word_arithmetic(text)
    if words and "arithmetic" not in s.compute:
        s.compute["arithmetic"] = words
    if _count_numbers(text) >= 2:
        m = _WEAK_COMPUTE_Q.search(text)
        if m or "?" in text:
            s.weak_compute = m.group(0) if m else "a question with several numbers"
    s.symbolic = _first(_SYMBOLIC, text)
    unquoted = _QUOTED.sub(" ", text)
    for cat, patterns in lookup_patterns().items():
        hit = _first(patterns, unquoted)
        if hit:
            s.lookups[cat] = hit
    if "search" in s.lookups and _TEMPORAL_ONLY.fullmatch(s.lookups["search"]) and (
        len(s.lookups) > 1 or s.compute or s.weak_compute
    ):
        s.lookups.pop("search")  # "weather in Berlin right now", "she works 40 hours this week": no web search
    if "search" in s.lookups and "wikipedia" in s.lookups and not _WEB.search(text):
        s.lookups.pop("search")  # "look up X on Wikipedia" names its source
    for kind, rx in (("greeting", _GREETING), ("creative", _CREATIVE), ("coding help", _CODING_HELP), ("explanation", _EXPLAIN)):
        m = rx.search(text)
        if m and not (kind == "explanation" and m.start() > _EXPLAIN_WITHIN and (s.compute or s.weak_compute)):
            # "... The difference between the two tanks is 7 feet. How deep ...?" is a word problem
            s.chat, s.chat_kind = m.group(0).strip(), kind
            break
    s.parallel = _first(_PARALLEL, text) or _first([_NAMES], original)
    s.sequential = _first(_SEQUENTIAL, text)
    s.facts = _first(_WEAK_FACTS, text)
    if s.lookups and s.compute:
        for part in _PARTS.split(text):
            if part.strip() and not any(p.search(_QUOTED.sub(" ", part)) for ps in lookup_patterns().values() for p in ps):
                s.separate.update(k for k in s.compute if _first(_STRONG_COMPUTE[k], part))
    if s.facts and s.sequential and not (s.lookups or s.compute or s.weak_compute) and _COMPUTE_VERB.search(text):
        s.lookups["search"] = s.facts  # the fact comes from a lookup, the computation uses it
    return s


#: compute kinds that stay part of a SQL or document lookup ("how many orders since March 3")
_ABSORBED_BY_DATA = {"dates", "strings", "statistics", "calculation"}


def _decide(s: _Signals) -> tuple[RouteDecision, bool]:
    lookups = dict(s.lookups)
    compute = dict(s.compute)
    if s.chat_kind in ("creative", "coding help") and not _has_run(s):
        compute.clear()  # "write a function that computes the gcd" is coding help
        if s.chat_kind == "coding help":
            lookups.pop("sql", None)  # "write a SQL query that ..." too
        if not lookups:
            return RouteDecision(Mode.CHAT, f"{s.chat_kind} ({s.chat!r}): the model answers directly", "heuristic"), True
    if s.chat_kind == "explanation" and not lookups and "calculation" not in compute and "run code" not in compute:
        compute.clear()
        return RouteDecision(Mode.CHAT, f"explanation ({s.chat!r}): the model answers directly", "heuristic"), True
    if lookups:
        # a lookup claims the computing words of its own part ("orders since March 3 in the database",
        # "the temperature in Paris in Fahrenheit"); a computation in a part of its own stays
        absorbed = _ABSORBED_BY_DATA if {"sql", "documents"} & set(lookups) else {"dates", "strings", "statistics"}
        compute = {k: v for k, v in compute.items() if k not in absorbed or k in s.separate}
    needs = [f"{cat} ({hit!r})" for cat, hit in sorted(lookups.items())]
    if compute:
        needs.append("computation (" + ", ".join(f"{k}: {v!r}" for k, v in compute.items()) + ")")
    elif s.symbolic and lookups:
        needs.append(f"symbolic maths ({s.symbolic!r})")
    if len(needs) >= 2:
        if s.sequential:
            return RouteDecision(
                Mode.REACT, f"{' + '.join(needs)}; the steps depend on each other ({s.sequential!r})", "heuristic"
            ), True
        return RouteDecision(Mode.PLAN_EXECUTE, f"independent parts: {' + '.join(needs)}", "heuristic"), True
    if lookups:
        cat, hit = next(iter(lookups.items()))
        if s.parallel and not s.sequential:
            return RouteDecision(
                Mode.PLAN_EXECUTE, f"{cat} lookup ({hit!r}) for several things at once ({s.parallel!r})", "heuristic"
            ), True
        return RouteDecision(Mode.REACT, f"one lookup: {cat} ({hit!r})", "heuristic"), True
    if s.symbolic and not (set(compute) - {"calculation", "arithmetic"}):
        return RouteDecision(Mode.REACT, f"symbolic maths ({s.symbolic!r}): the sympy tool", "heuristic"), True
    if compute:
        return RouteDecision(Mode.CODE, f"{needs[0]}: a program computes it in the sandbox", "heuristic"), True
    if s.weak_compute and s.chat_kind not in ("greeting", "explanation"):
        return RouteDecision(Mode.CODE, f"a question with numbers ({s.weak_compute!r}): a program computes it", "heuristic"), True
    if s.chat:
        return RouteDecision(Mode.CHAT, f"{s.chat_kind} ({s.chat!r}): the model answers directly", "heuristic"), True
    if s.facts:
        return RouteDecision(Mode.CHAT, f"no tool signal; may need fresh facts ({s.facts!r})", "heuristic"), False
    return RouteDecision(Mode.CHAT, "no tool or computation signal", "heuristic"), True


def _has_run(s: _Signals) -> bool:
    return "run code" in s.compute and bool(_RUN_WORDS.search(s.compute["run code"]))


def heuristic_route(query: str) -> tuple[RouteDecision, bool]:
    """The keyword decision and whether it is sure of it (linear time, bounded text)."""
    if not query or query.isspace():
        return RouteDecision(Mode.CHAT, "empty request", "heuristic"), True
    return _decide(_signals(query))


# ----------------------------------------------------------------------------- independent parts
#: a question or instruction word that starts a part of its own
_QWORD = r"(?:what|what's|whats|how|which|who|when|where|is|are|does|do|did|can|calculate|compute|find|give|tell|list|name|look)\b"
#: where a multi-part request is cut: sentence ends, "; ", ", and also what", ", how many", ": what", "also,"
_PART_CUT = re.compile(
    r"[?!;\n]+|\.(?:\s+|$)"
    rf"|,\s*+(?:and\s+)?(?:also\s*+,?\s*+)?(?={_QWORD})"
    rf"|:\s*+(?={_QWORD})"
    rf"|\s+and\s+(?:also\s+)?(?=(?:what|what's|how|which|who|when|where)\b)"
    r"|\b(?:and also|as well as)\b|^\s*+also\b,?",
    re.IGNORECASE,
)
_LEADS_WITH_QWORD = re.compile(rf"^\W*+(?:also\W+|and\W+)?{_QWORD}", re.IGNORECASE)
_FILLER = re.compile(r"\W*+(?:also|and|and also|so|please|thanks)?\W*+", re.IGNORECASE)
#: the most parts a request is split into
MAX_PARTS = 4


@dataclass(frozen=True)
class Part:
    """One independent part of a request and what answers it."""

    text: str
    need: str  # "compute" (a program or the math tool computes it) or a lookup category (weather, sql, ...)
    cue: str  # the phrase that decided ``need``
    compute_kind: str = ""  # for "compute": arithmetic, percentage, dates, strings, ... ("" when only weak signals)

    @property
    def arithmetic(self) -> bool:
        """A one-expression computation (the math tool writes it in one call; no program needed)."""
        return self.compute_kind in ARITHMETIC_KINDS


#: compute kinds one math expression answers ("17% of 2340", "12 factorial", "2 to the power of 20")
ARITHMETIC_KINDS = frozenset({"arithmetic", "percentage", "calculation"})


def _part_need(text: str) -> tuple[str, str, str] | None:
    """(need, cue, compute kind) of one part, or None when nothing in it asks for a tool."""
    s = _signals(text)
    if s.lookups:
        cat, hit = next(iter(s.lookups.items()))
        return cat, hit, ""
    if s.compute:
        kinds = list(s.compute)
        # the most specific kind decides: "what is the gcd of 84 and 126" is number theory, not a calculation
        kind = next((k for k in kinds if k not in ARITHMETIC_KINDS), kinds[0])
        return "compute", f"{kind}: {s.compute[kind]}", kind
    if s.symbolic or s.weak_compute:
        return "compute", s.symbolic or s.weak_compute, ""
    return None


def question_pieces(query: str) -> list[str]:
    """The request cut where one question or instruction ends and the next begins (fillers dropped)."""
    pieces = [p.strip(" ,:") for p in _PART_CUT.split(scan_text(query))]
    return [p for p in pieces if re.search(r"\w", p) and not _FILLER.fullmatch(p)]


def split_parts(query: str) -> list[Part]:
    """The independent parts of a multi-part request, each with what answers it; [] if it is not one.

    "What is the weather in Paris, and what is 17% of 2340?" -> [weather part, compute part].
    A lead-in without a question of its own ("According to my documents, how many ...",
    "Three questions: ...") joins the part after it; a part without any tool or computation signal
    joins the one before it. Parts that depend on each other ("then", "of it") are not split.
    """
    text = scan_text(query)
    if _first(_SEQUENTIAL, text.lower()):
        return []
    pieces = question_pieces(text)
    merged: list[str] = []
    carry = ""
    for i, piece in enumerate(pieces):
        piece = f"{carry} {piece}".strip() if carry else piece
        carry = ""
        if not _LEADS_WITH_QWORD.search(piece) and i + 1 < len(pieces) and _part_need(piece) is not None and len(piece) < 60:
            carry = piece  # a lead-in: "According to my documents", "In the database"
            continue
        merged.append(piece)
    if carry:
        merged.append(carry)
    parts: list[Part] = []
    for piece in merged:
        need = _part_need(piece)
        if need is None:
            if parts:  # no signal of its own: it belongs to the part before
                prev = parts[-1]
                parts[-1] = Part(f"{prev.text}, {piece}", prev.need, prev.cue, prev.compute_kind)
            continue
        parts.append(Part(piece, need[0], need[1], need[2]))
    if len(parts) < 2 or len(parts) > MAX_PARTS:
        return []
    return parts


#: compute kinds -> the tool categories the agents' tool narrowing knows
_COMPUTE_CATEGORY = {
    "arithmetic": "math", "percentage": "math", "number theory": "math", "calculation": "math",
    "dates": "code", "strings": "code", "run code": "code", "statistics": "data",
}


def tool_categories(query: str) -> set[str]:
    """The kinds of tool a request asks for: math, search, weather, wikipedia, documents, sql, code, data."""
    s = _signals(query)
    cats = set(s.lookups)
    if s.symbolic:
        cats.add("math")
    creative_or_help = s.chat_kind in ("creative", "coding help") and not _has_run(s)
    if not creative_or_help:
        cats.update(_COMPUTE_CATEGORY[k] for k in s.compute)
        if s.weak_compute and not cats:
            cats.add("math")
    return cats


def determine_task_type(query: str) -> Literal["chat", "agentic"]:
    """``"agentic"`` when the request needs tools, by keyword heuristics alone."""
    decision, _ = heuristic_route(query)
    return "chat" if decision.mode is Mode.CHAT else "agentic"


_ROUTER_SCHEMA = {
    "type": "object",
    "properties": {
        "mode": {"type": "string", "enum": [m.value for m in ROUTABLE]},
        "reason": {"type": "string", "maxLength": 120},
    },
    "required": ["mode", "reason"],
}

_ROUTER_PROMPT = (
    "Classify the user's request. Reply with JSON only.\n"
    'mode "chat": answer from general knowledge, writing or coding help.\n'
    'mode "code": needs computing, counting, dates, strings or statistics (a Python program answers it).\n'
    'mode "react": needs one lookup with a tool (web search, weather, Wikipedia, documents, database).\n'
    'mode "plan_execute": needs several independent tool lookups that can run at the same time.'
)


async def _llm_route(query: str, provider: LLMProvider) -> RouteDecision | None:
    params = GenerationParams(
        temperature=0.0,
        max_tokens=80,
        response_format={"type": "json_schema", "json_schema": {"name": "route", "schema": _ROUTER_SCHEMA}},
    )
    messages = [{"role": "system", "content": _ROUTER_PROMPT}, {"role": "user", "content": query[:2000]}]
    try:
        out = await provider.complete(messages, params)
        obj = json.loads(out.content or "")
        mode = obj["mode"]
        if mode not in ROUTABLE:
            return None
        reason = str(obj.get("reason") or "").strip()[:200] or "classified by the model"
        return RouteDecision(Mode(mode), f"model classification: {reason}", "llm")
    except Exception as exc:  # noqa: BLE001 - the heuristic answer stands if classification fails
        log.info("router LLM classification failed: %s", exc)
        return None


async def route(query: str, provider: LLMProvider | None = None, use_llm: bool = True) -> RouteDecision:
    """Decide how to answer ``query``. Asks the model only when the heuristics are unsure."""
    decision, sure = heuristic_route(query)
    if sure or not use_llm or provider is None:
        return decision
    llm_decision = await _llm_route(query, provider)
    return llm_decision or decision


async def decide(query: str, mode: str, provider: LLMProvider | None = None, use_llm: bool = True) -> RouteDecision:
    """The decision for a request whose model id asked for ``mode`` (from ``parse_model_id``)."""
    chosen = Mode.from_name(mode)
    if chosen is Mode.AUTO:
        return await route(query, provider, use_llm)
    if chosen is None or chosen not in ROUTABLE:
        raise ValueError(f"unknown mode {mode!r}")
    return RouteDecision(chosen, f"mode '{mode}' requested by the model id", "override")

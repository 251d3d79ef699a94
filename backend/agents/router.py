"""Which way to answer a request: plain chat, a ReAct agent or plan-and-execute.

Keyword heuristics decide first. Only when they are unsure (no clear tool signal, but the
request looks like it may need fresh facts) and a provider is given, one short JSON-constrained
LLM call classifies it. Model ids select a mode explicitly: ``<base>`` (auto), ``<base>:chat``,
``<base>:react``, ``<base>:plan-execute`` (see ``parse_model_id``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from backend.errors import NotFoundError
from backend.llm.types import GenerationParams

if TYPE_CHECKING:
    from backend.llm.base import LLMProvider

log = logging.getLogger("backend.agents.router")

Mode = Literal["chat", "react", "plan_execute"]
Source = Literal["heuristic", "llm", "override"]

#: the suffixes a model id may carry ("auto" is the bare base id)
MODES = ["auto", "chat", "react", "plan-execute"]
_MODE_BY_SUFFIX: dict[str, str] = {"auto": "auto", "chat": "chat", "react": "react", "plan-execute": "plan_execute"}


@dataclass(frozen=True)
class RouteDecision:
    mode: Mode
    reason: str
    source: Source


@dataclass
class _Signals:
    tools: dict[str, list[str]] = field(default_factory=dict)  # category -> matched phrases
    weak: list[str] = field(default_factory=list)  # hints that facts may be needed
    chat: list[str] = field(default_factory=list)
    sequential: list[str] = field(default_factory=list)
    parallel: list[str] = field(default_factory=list)


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_NUM_OR_VAR = r"(?:\d|\b[xyzt]\b|\*\*|\^|sqrt|sin|cos|tan|log|exp|pi\b)"

# category -> patterns whose match means "this needs a tool"
_TOOL_PATTERNS: dict[str, list[re.Pattern[str]]] = {
    "math": [
        _rx(r"\b(derivative|differentiate|integral|integrate|antiderivative|limit of|taylor series)\b"),
        _rx(rf"\b(solve|simplify|factori[sz]e|expand|calculate|compute|evaluate)\b.*{_NUM_OR_VAR}"),
        _rx(r"\d+(?:\.\d+)?\s*(?:[-+*/^×÷%]|\*\*)\s*\(?\s*\d"),
        _rx(r"\b(square root|cube root|factorial|percent of|\d+\s*%\s*of)\b"),
        _rx(r"\b\d+\s*(?:to the power|squared|cubed)\b"),
    ],
    "search": [
        _rx(r"\b(search (?:the )?(?:web|internet|online)|web search|search for|google|look(?:ing)? up|lookup)\b"),
        _rx(r"\b(latest|breaking|news|headlines|this week|right now|currently|as of today|today's)\b"),
        _rx(r"\b(stock price|share price|exchange rate|price of|release date of)\b"),
    ],
    "weather": [_rx(r"\b(weather|forecast|temperature (?:in|at|for)|raining|rain in|humidity|wind speed)\b")],
    "wikipedia": [_rx(r"\b(wikipedia|wiki article|encyclop(?:a)?edia)\b")],
    "documents": [
        _rx(r"\b(my|the|our|these|uploaded|attached) (documents?|files?|pdfs?|notes|reports?|papers?|contracts?)\b"),
        _rx(r"\b(uploaded|attached)\b"),
        _rx(r"\baccording to (?:the|my) (?:doc|file|pdf|report)"),
    ],
    "sql": [
        _rx(r"\b(sql|sqlite|db table|select \w+ from)\b"),
        _rx(r"\b(the|my|our|in|from) (database|db)\b"),
        _rx(r"\bquery (?:the|my|our) (?:database|db|tables?)\b"),
    ],
    "code": [
        _rx(r"\b(run|execute|exec)\b.{0,30}\b(code|python|script|snippet|program)\b"),
        _rx(r"\b(python|code|script)\b.{0,20}\b(to|and)\b.{0,10}\b(compute|calculate|simulate|run|count|find)\b"),
        _rx(r"\buse python\b"),
    ],
    "data": [
        _rx(r"\b(statistics|statistical|standard deviation|std dev|variance|median|regression|correlation)\b"),
        _rx(r"\b(mean|average) of\b"),
        _rx(r"\b(csv|dataset|data set|spreadsheet|histogram|plot|chart)\b"),
        _rx(r"\b(analy[sz]e|summari[sz]e) (?:the |this |my )?(?:data|numbers|sales|dataset)\b"),
    ],
}

# looks like it may need facts the model may not have (unsure without a clear tool signal)
_WEAK_PATTERNS = [
    _rx(r"\b(current|recent|recently|now|today|tonight|tomorrow|yesterday|20[2-3]\d)\b"),
    _rx(r"\b(who is|who won|who was|when did|when was|how many|how much|population of|capital of|ceo of)\b"),
    _rx(r"\b(find|check|verify|fetch)\b"),
]

# typical chat requests: writing, explaining, coding help, small talk
_CHAT_PATTERNS = [
    _rx(r"^\s*(hi|hello|hey|thanks|thank you|good (morning|evening|afternoon))\b"),
    _rx(r"\b(write|compose|draft|rewrite|rephrase|translate|proofread)\b"),
    _rx(r"\b(explain|what does .* mean|what is the difference|why do|why does|how does|tell me a joke|poem|story)\b"),
    _rx(r"\b(function|class|method|bug|refactor|regex|unit test|snippet|implement)\b"),
]

_SEQUENTIAL_PATTERNS = [
    _rx(r"\b(then|after that|afterwards|next,|finally,|step by step)\b"),
    _rx(r"\b(based on (?:that|the|this|it)|using (?:that|the) result)\b"),
    _rx(r"\b(if (?:it|the|that|so)|depending on|and use (?:it|that|the result))\b"),
    _rx(r"\bfirst\b.*\b(then|and then|next|after)\b"),
]

_PARALLEL_PATTERNS = [
    _rx(r"\b(compare|comparison|versus|vs\.?|both|each of|all of|as well as|also)\b"),
    _rx(r"\b(complete|full|comprehensive|overall) (analysis|report|overview|picture|breakdown)\b"),
]
_AND = _rx(r"\b(and|also|plus|as well as)\b")
# categories served by the same kind of tool do not make separate tasks
_FAMILY = {"math": "compute", "data": "compute", "code": "compute"}


def _signals(query: str) -> _Signals:
    s = _Signals()
    for cat, patterns in _TOOL_PATTERNS.items():
        for p in patterns:
            m = p.search(query)
            if m:
                s.tools.setdefault(cat, []).append(m.group(0))
    # "write a python function" is coding help, not code execution
    if "code" in s.tools and not re.search(r"\b(run|execute|exec|use python|compute|calculate|simulate)\b", query, re.IGNORECASE):
        s.tools.pop("code")
    for p in _WEAK_PATTERNS:
        m = p.search(query)
        if m:
            s.weak.append(m.group(0))
    for p in _CHAT_PATTERNS:
        m = p.search(query)
        if m:
            s.chat.append(m.group(0))
    for p in _SEQUENTIAL_PATTERNS:
        m = p.search(query)
        if m:
            s.sequential.append(m.group(0))
    for p in _PARALLEL_PATTERNS:
        m = p.search(query)
        if m:
            s.parallel.append(m.group(0))
    return s


def _agentic_mode(query: str, s: _Signals) -> RouteDecision:
    cats = sorted(s.tools)
    found = ", ".join(f"{c} ({s.tools[c][0]!r})" for c in cats)
    if s.sequential:
        return RouteDecision("react", f"tool use needed: {found}; steps depend on each other ({s.sequential[0]!r})", "heuristic")
    families = {_FAMILY.get(c, c) for c in cats}
    many_tasks = len(families) >= 2 and bool(_AND.search(query))
    if s.parallel or many_tasks:
        why = repr(s.parallel[0]) if s.parallel else "several independent tasks"
        return RouteDecision("plan_execute", f"tool use needed: {found}; independent parts ({why})", "heuristic")
    return RouteDecision("react", f"tool use needed: {found}", "heuristic")


def heuristic_route(query: str) -> tuple[RouteDecision, bool]:
    """The keyword decision and whether it is sure of it."""
    q = query.strip()
    if not q:
        return RouteDecision("chat", "empty request", "heuristic"), True
    s = _signals(q)
    if s.tools:
        return _agentic_mode(q, s), True
    if s.weak and not s.chat:
        return RouteDecision("chat", f"no tool signal; may need fresh facts ({s.weak[0]!r})", "heuristic"), False
    reason = f"no tool signal ({s.chat[0]!r})" if s.chat else "no tool signal"
    return RouteDecision("chat", reason, "heuristic"), True


def tool_categories(query: str) -> set[str]:
    """The kinds of tool a request asks for: math, search, weather, wikipedia, documents, sql, code, data."""
    return set(_signals(query).tools)


def determine_task_type(query: str) -> Literal["chat", "agentic"]:
    """``"agentic"`` when the request needs tools, by keyword heuristics alone."""
    decision, _ = heuristic_route(query)
    return "chat" if decision.mode == "chat" else "agentic"


_ROUTER_SCHEMA = {
    "type": "object",
    "properties": {
        "mode": {"type": "string", "enum": ["chat", "react", "plan_execute"]},
        "reason": {"type": "string", "maxLength": 120},
    },
    "required": ["mode", "reason"],
}

_ROUTER_PROMPT = (
    "Classify the user's request. Reply with JSON only.\n"
    'mode "chat": answer from general knowledge, writing or coding help.\n'
    'mode "react": needs tools (web search, weather, calculator, documents, database, code) step by step.\n'
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
        if mode not in ("chat", "react", "plan_execute"):
            return None
        reason = str(obj.get("reason") or "").strip()[:200] or "classified by the model"
        return RouteDecision(mode, f"model classification: {reason}", "llm")
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


def parse_model_id(model: str, base_ids: list[str]) -> tuple[str, str]:
    """Split ``model`` into (base id, mode); mode is "auto", "chat", "react" or "plan_execute".

    Base ids may themselves contain ':' (Ollama tags), so the exact base id wins first.
    Raises ``NotFoundError`` (code ``model_not_found``) for an unknown id.
    """
    if model in base_ids:
        return model, "auto"
    base, sep, suffix = model.rpartition(":")
    if sep and base in base_ids:
        mode = _MODE_BY_SUFFIX.get(suffix.lower().replace("_", "-"))
        if mode is not None:
            return base, mode
    raise NotFoundError(
        f"The model '{model}' does not exist. Use one of the ids listed by GET /v1/models "
        f"(a base id, optionally with :{', :'.join(MODES[1:])}).",
        param="model",
        code="model_not_found",
    )


def model_ids(base_ids: list[str]) -> list[str]:
    """Every id ``/v1/models`` lists: each base id and its mode variants."""
    return [b if m == "auto" else f"{b}:{m}" for b in base_ids for m in MODES]


async def decide(query: str, mode: str, provider: LLMProvider | None = None, use_llm: bool = True) -> RouteDecision:
    """The decision for a request whose model id asked for ``mode`` (from ``parse_model_id``)."""
    if mode == "auto":
        return await route(query, provider, use_llm)
    if mode not in ("chat", "react", "plan_execute"):
        raise ValueError(f"unknown mode {mode!r}")
    return RouteDecision(mode, f"mode '{mode}' requested by the model id", "override")  # type: ignore[arg-type]

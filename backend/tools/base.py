"""What a tool is: a typed function with a docstring.

    @tool
    async def math_calc(ctx: ToolContext, expression: str) -> str:
        '''Evaluate math with SymPy: arithmetic, algebra, derivatives ...

        Args:
            expression: the expression or equation, e.g. "diff(x**3*sin(x), x)".
        '''

The decorator derives the name, the description (docstring summary) and the JSON-schema
parameters (from the type hints, with per-argument text from the ``Args:`` section).
``Tool.run`` validates the arguments and turns *any* failure into an error observation:
a tool never ends an agent's run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_type_hints, overload

from pydantic import ValidationError, create_model

if TYPE_CHECKING:
    from backend.mcp.client import McpManager
    from backend.rag.types import Retriever
    from backend.settings import Settings

log = logging.getLogger("backend.tools")


@dataclass
class ToolContext:
    """Per-request context: who is asking, with which configuration, and what a tool may use."""

    user_id: str
    settings: Settings
    request_id: str | None = None
    file_ids: list[str] | None = None  # restrict document retrieval to these files
    #: the caller's documents (opened on first use; None: no document index here)
    documents: Callable[[], Awaitable[Retriever]] | None = None
    mcp: McpManager | None = None  # the attached MCP servers, whose tools join the registry's


@dataclass
class ToolResult:
    ok: bool
    output: str  # the observation the model reads
    data: dict[str, Any] | None = None  # structured extras (e.g. sources for citations)
    duration_s: float = 0.0


class ToolError(Exception):
    """Raise inside a tool for an expected failure; the message becomes the observation."""


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Awaitable[Any]]
    _model: Any = field(repr=False, default=None)
    timeout_s: float = 60.0
    #: ``requires(settings)`` → None when the tool can run here, else why not (e.g. a missing API key)
    requires: Callable[[Settings], str | None] | None = field(repr=False, default=None)
    #: ``describe(settings)`` → extra text for the description with this configuration (e.g. the
    #: SQL database's schema), or None
    describe: Callable[[Settings], str | None] | None = field(repr=False, default=None)
    #: the kinds of request it serves (the router's categories: math, code, data, search, weather,
    #: wikipedia, documents, sql); the agents offer a tool when the request asks for one of them
    categories: tuple[str, ...] = ()
    #: regexes over the lower-cased request that ask for this tool's first category (the router's
    #: lookup signals; linear patterns only: bounded gaps, possessive runs)
    route_patterns: tuple[str, ...] = ()
    #: a one-line usage tip added to agent prompts when the tool is offered (small models need them)
    hint: str | None = None
    #: the same input always gives the same output (a computed fact: math, code, SQL, statistics):
    #: its result is stated exactly in the answer, and needs no model verification
    deterministic: bool = False
    #: the parameter that may simply be the user's question as asked (a search query): a plan step
    #: for one part of a request fills it with that part's text instead of asking the model
    question_argument: str | None = None

    def for_settings(self, settings: Settings) -> Tool:
        """This tool as offered under ``settings``: the description gains what ``describe`` adds."""
        extra = self.describe(settings) if self.describe is not None else None
        return dataclasses.replace(self, description=f"{self.description}\n{extra}") if extra else self

    def unavailable_reason(self, settings: Settings) -> str | None:
        return self.requires(settings) if self.requires is not None else None

    def openai_spec(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def parse_arguments(self, arguments: object) -> dict[str, Any]:
        """Validated keyword arguments for the function; ``ToolError`` says what is wrong."""
        value: object = arguments_dict(arguments)
        if value is None:
            # a single-argument tool may be given its input bare (text ReAct: a string; a plan: a value)
            required = self.parameters.get("required") or []
            if isinstance(arguments, str) and not required:
                required = list(self.parameters.get("properties", {}))
            if len(required) != 1:
                raise ToolError(f"arguments for {self.name} must be a JSON object")
            value = {required[0]: arguments}
        try:
            validated = self._model.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise ToolError(f"invalid argument {where!r}: {first.get('msg')}") from None
        out: dict[str, Any] = validated.model_dump()
        return out

    async def run(self, ctx: ToolContext, arguments: object) -> ToolResult:
        start = time.perf_counter()
        try:
            kwargs = self.parse_arguments(arguments)
            value = await asyncio.wait_for(self.func(ctx, **kwargs), timeout=self.timeout_s)
        except ToolError as exc:
            return ToolResult(False, f"Error: {exc}", duration_s=time.perf_counter() - start)
        except TimeoutError:
            return ToolResult(False, f"Error: {self.name} timed out after {self.timeout_s:.0f}s", duration_s=time.perf_counter() - start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool must never end the run
            log.warning("tool %s failed: %s", self.name, exc, exc_info=True)
            return ToolResult(False, f"Error: {self.name} failed: {type(exc).__name__}: {exc}", duration_s=time.perf_counter() - start)
        if isinstance(value, ToolResult):
            value.duration_s = time.perf_counter() - start
            return value
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return ToolResult(True, text, duration_s=time.perf_counter() - start)


def arguments_dict(arguments: object) -> dict[str, Any] | None:
    """Tool-call arguments as a dict: a dict as is, JSON object text parsed, ``None``/"" as ``{}``.

    ``None`` when they are not a JSON object (bare text, a list, a number): the caller decides.
    The one place that turns "arguments" (native calls, text ReAct, plans, MCP) into a dict.
    """
    if arguments is None:
        return {}
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str):
        if not arguments.strip():
            return {}
        try:
            value = json.loads(arguments)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    return None


_ARG_LINE = re.compile(r"^\s{2,}(\w+)\s*(?:\([^)]*\))?:\s*(.+)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    in_args = False
    current: str | None = None
    for line in lines:
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            m = _ARG_LINE.match(line)
            if m:
                current = m.group(1)
                args[current] = m.group(2).strip()
            elif line.strip() and current and line.startswith("    "):
                args[current] += " " + line.strip()
            elif line.strip() and not line.startswith(" "):
                in_args = False
        else:
            summary.append(line)
    return " ".join(s.strip() for s in summary if s.strip()), args


#: an ``async def f(ctx: ToolContext, ...)`` that ``@tool`` turns into a ``Tool``
ToolFunc = Callable[..., Awaitable[Any]]


@overload
def tool(
    func: ToolFunc,
    *,
    name: str | None = None,
    timeout_s: float = 60.0,
    requires: Callable[[Settings], str | None] | None = None,
    describe: Callable[[Settings], str | None] | None = None,
    categories: tuple[str, ...] = (),
    route_patterns: tuple[str, ...] = (),
    hint: str | None = None,
    deterministic: bool = False,
    question_argument: str | None = None,
) -> Tool: ...


@overload
def tool(
    func: None = None,
    *,
    name: str | None = None,
    timeout_s: float = 60.0,
    requires: Callable[[Settings], str | None] | None = None,
    describe: Callable[[Settings], str | None] | None = None,
    categories: tuple[str, ...] = (),
    route_patterns: tuple[str, ...] = (),
    hint: str | None = None,
    deterministic: bool = False,
    question_argument: str | None = None,
) -> Callable[[ToolFunc], Tool]: ...


def tool(
    func: ToolFunc | None = None,
    *,
    name: str | None = None,
    timeout_s: float = 60.0,
    requires: Callable[[Settings], str | None] | None = None,
    describe: Callable[[Settings], str | None] | None = None,
    categories: tuple[str, ...] = (),
    route_patterns: tuple[str, ...] = (),
    hint: str | None = None,
    deterministic: bool = False,
    question_argument: str | None = None,
) -> Tool | Callable[[ToolFunc], Tool]:
    """Turn ``async def f(ctx: ToolContext, ...)`` into a ``Tool``."""

    def wrap(fn: ToolFunc) -> Tool:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"tool {fn.__name__} must be async")
        description, arg_docs = _parse_docstring(fn.__doc__ or "")
        hints = get_type_hints(fn)
        sig = inspect.signature(fn)
        fields: dict[str, Any] = {}
        for i, (pname, param) in enumerate(sig.parameters.items()):
            if i == 0:
                continue  # the ToolContext
            annotation = hints.get(pname, str)
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (annotation, default)
        model = create_model(f"{fn.__name__}_args", **fields)
        schema = model.model_json_schema()
        schema.pop("title", None)
        if question_argument is not None and question_argument not in schema.get("properties", {}):
            raise TypeError(f"tool {fn.__name__} has no parameter {question_argument!r}")
        for pname, prop in schema.get("properties", {}).items():
            prop.pop("title", None)
            if pname in arg_docs:
                prop["description"] = arg_docs[pname]
        return Tool(
            name=name or fn.__name__,
            description=description,
            parameters=schema,
            func=fn,
            _model=model,
            timeout_s=timeout_s,
            requires=requires,
            describe=describe,
            categories=categories,
            route_patterns=route_patterns,
            hint=hint,
            deterministic=deterministic,
            question_argument=question_argument,
        )

    return wrap(func) if func is not None else wrap

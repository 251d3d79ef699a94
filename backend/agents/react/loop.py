"""The ReAct agent: Thought -> Action (tool + input) -> Observation, repeated, then a final answer.

Two ways for the model to act, both parsed on every turn:

* native tool calls (``tools=..., tool_choice="auto"``): the provider returns ``Completion.tool_calls``
  (for text-only models the provider base class recovers calls written as JSON);
* the text ReAct format (``Action: tool`` / ``Action Input: {...}`` / ``Final Answer: ...``), used as
  the prompt format in ``style="text"`` and accepted as a fallback in ``style="native"``.

A tool error or a reply that cannot be parsed becomes an observation; the run goes on. After
``max_iterations`` turns one last call (without tools) asks for the best answer from what was observed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from backend.agents.calls import call_key, failed_call_problem, recover_calls
from backend.agents.events import AgentStep, AnswerDelta, merge_sources
from backend.agents.grounding import Observed, ground_answer
from backend.agents.llm import CountingLLM
from backend.agents.messages import split_conversation
from backend.agents.react import prompts
from backend.agents.react.gate import AnswerGate
from backend.agents.react.parsing import (
    THOUGHT_RE,
    TOOL_CALL_RE,
    ParsedAction,
    ParsedFinal,
    ParseError,
    parse_react_text,
    trim_after_input,
)
from backend.agents.tools import hints, normalize_args, prompt_observation, run_tool, signature, specs, trace_observation
from backend.errors import UpstreamError
from backend.llm.tool_calling import new_call_id
from backend.llm.types import GenerationParams, Message, ToolCall
from backend.tools.base import Tool, ToolContext

log = logging.getLogger("backend.agents.react")

Style = Literal["native", "text"]


class ReActAgent:
    def __init__(
        self,
        llm: CountingLLM,
        ctx: ToolContext,
        tools: dict[str, Tool],
        *,
        max_iterations: int = 5,
        style: Style = "native",
        require_first_call: bool = False,
        answer_from_result: bool = False,
    ) -> None:
        self.llm = llm
        self.ctx = ctx
        self.tools = tools
        self.max_iterations = max(1, max_iterations)
        self.style: Style = style if tools else "native"
        self.steps: list[AgentStep] = []
        self.sources: list[dict[str, Any]] = []
        self.final: str = ""
        self.stop_reason: str = "answered"
        self._seen_calls: dict[str, str] = {}
        self._repeated = False  # the model repeated a call: it is stuck, ask for the answer
        self._question = ""
        self._user_texts: list[str] = []
        self._client_system = ""
        self.grounding_problems: list[str] = []
        # the router saw a clear tool need: the first turn must call a tool (grammar-enforced
        # for text-only models, so a small model cannot invent a tool name or skip the tool)
        self.require_first_call = require_first_call and self.style == "native" and bool(tools)
        #: a one-step computation: the first exact (deterministic) result is the answer, stated by
        #: the server around the observed value, without another model call
        self.answer_from_result = answer_from_result

    def get_trace(self) -> list[AgentStep]:
        return list(self.steps)

    # ------------------------------------------------------------------ prompts
    def _initial_messages(self, messages: list[Message]) -> list[Message]:
        client_system, turns = split_conversation(messages)
        self._client_system = client_system
        self._question = next((m["content"] for m in reversed(turns) if m["role"] == "user"), "")
        self._user_texts = [m["content"] for m in turns if m["role"] == "user"]
        if self.style == "text":
            system = prompts.REACT_TEXT_SYSTEM.format(
                tool_lines="\n".join(signature(t) for t in self.tools.values()),
                tool_names=", ".join(self.tools),
            )
        else:
            system = prompts.REACT_NATIVE_SYSTEM
        system += hints(self.tools)
        if client_system:
            system += "\n\n" + client_system
        return [{"role": "system", "content": system}, *turns]

    # ------------------------------------------------------------------ the loop
    async def run(self, messages: list[Message]) -> AsyncGenerator[AgentStep | AnswerDelta, None]:
        convo = self._initial_messages(messages)
        for turn in range(self.max_iterations):
            gate = AnswerGate()
            held = self._has_exact_results()  # the answer is checked against them before it is shown
            text, calls = "", []
            params = self._turn_params(required=turn == 0 and self.require_first_call)
            try:
                async with contextlib.aclosing(self.llm.stream(convo, params)) as events:
                    async for ev in events:
                        if ev.content:
                            text += ev.content
                            out = gate.feed(ev.content)
                            if out and not held:
                                yield AnswerDelta(out)
                        if ev.tool_calls:
                            calls.extend(ev.tool_calls)
            except UpstreamError as exc:
                if params.tool_choice != "required":
                    raise
                # the forced call failed (e.g. cut by max_tokens): tell the model, go on without forcing
                yield self._format_error(convo, ParseError(exc.message.rstrip("."), ""))
                continue
            if not calls and self.style == "native" and self.tools:
                # calls the provider did not recover: after some text, or several bare JSON objects
                calls, before = recover_calls(text, self.tools, self._seen_calls)
                if calls:
                    text = before
            if calls:
                async for step in self._act_native(convo, text, calls):
                    yield step
                if self._answer_in_hand():
                    yield AnswerDelta(self.final)
                    return
                if self._repeated:
                    break
                continue
            parsed = parse_react_text(text, list(self.tools))
            if isinstance(parsed, ParsedFinal) and self.style == "native":
                problem = failed_call_problem(text, list(self.tools))
                if problem:
                    parsed = ParseError(problem, text)
            if isinstance(parsed, ParsedFinal):
                if parsed.thought:
                    yield self._step(parsed.thought, None, None, "", True, 0.0, kind="note")
                if held:
                    self.final = self._grounded(parsed.answer)
                    yield AnswerDelta(self.final)
                    return
                self.final = parsed.answer
                rest = gate.remaining(parsed.answer)
                if rest:
                    yield AnswerDelta(rest)
                return
            if isinstance(parsed, ParsedAction):
                async for step in self._act_text(convo, text, parsed):
                    yield step
                if self._answer_in_hand():
                    yield AnswerDelta(self.final)
                    return
                if self._repeated:
                    break
                continue
            yield self._format_error(convo, parsed)
        async for delta in self._force_final(convo):
            yield delta

    def _turn_params(self, required: bool = False) -> GenerationParams:
        if self.style == "text":
            return self.llm.params(stop=["\nObservation:", "Observation:"])
        if not self.tools:
            return self.llm.params()
        stop = None
        if not self.llm.provider.native_tool_calls:
            # a small model often writes call after call: stop after the first one
            stop = ['\n{"name"', "</tool_call>\n<tool_call>", "</tool_call><tool_call>"]
        return self.llm.params(tools=specs(self.tools), tool_choice="required" if required else "auto", stop=stop)

    # ------------------------------------------------------------------ exact results
    def _observed(self) -> list[Observed]:
        return [
            Observed(s.tool, s.observation, s.input, self._exact(s.tool))
            for s in self.steps
            if s.tool and s.kind == "tool" and s.ok and not s.observation.startswith("You already called")
        ]

    def _answer_in_hand(self) -> bool:
        """Stop now, the answer composed around the exact results, without another model call, when

        * a one-step computation (``answer_from_result``) got its exact result, or
        * the model repeated a call while exact results are in hand (it has nothing to add).
        """
        if not self._has_exact_results() or not (self.answer_from_result or self._repeated):
            return False
        self.final = self._grounded("")
        self.stop_reason = "repeated_call" if self._repeated else "answered"
        return bool(self.final)

    def _exact(self, name: str) -> bool | None:
        t = self.tools.get(name)
        return t.deterministic if t is not None else None

    def _has_exact_results(self) -> bool:
        return any(o.deterministic for o in self._observed())

    def _grounded(self, draft: str) -> str:
        """The draft checked against the deterministic results (``backend.agents.grounding``)."""
        g = ground_answer(draft, self._user_texts, self._observed())
        if g.changed:
            log.info("answer composed around the tool results: %s", "; ".join(g.problems))
            self.grounding_problems = g.problems
        return g.answer

    # ------------------------------------------------------------------ acting
    def _step(
        self,
        thought: str,
        tool: str | None,
        args: Any,
        observation: str,
        ok: bool,
        duration: float,
        kind: str = "tool",
    ) -> AgentStep:
        step = AgentStep(
            index=len(self.steps),
            thought=thought,
            tool=tool,
            input=normalize_args(args),
            observation=trace_observation(observation),
            ok=ok,
            duration_s=round(duration, 4),
            kind=kind,
        )
        self.steps.append(step)
        return step

    async def _execute(self, name: str, arguments: Any) -> tuple[str, bool, float, bool]:
        """(observation, ok, seconds, repeated). A repeated identical call is not run again."""
        key = call_key(name, arguments)
        if key in self._seen_calls:
            obs = prompts.REPEATED_CALL.format(tool=name, observation=prompt_observation(self._seen_calls[key]))
            return obs, False, 0.0, True
        start = time.perf_counter()
        result = await run_tool(self.tools, self.ctx, name, arguments)
        merge_sources(self.sources, (result.data or {}).get("sources"))
        self._seen_calls[key] = result.output
        return result.output, result.ok, result.duration_s or time.perf_counter() - start, False

    async def _act_native(self, convo: list[Message], thought: str, calls: list[ToolCall]) -> AsyncIterator[AgentStep]:
        thought = THOUGHT_RE.sub("", thought).strip()
        convo.append({"role": "assistant", "content": thought or None, "tool_calls": [c.to_openai() for c in calls]})
        results = await asyncio.gather(*(self._execute(c.name, c.arguments) for c in calls))
        for call, (obs, ok, secs, repeated) in zip(calls, results, strict=True):
            self._repeated = self._repeated or repeated
            content = prompt_observation(obs) + (prompts.AFTER_RESULT if ok else "")
            convo.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content})
            yield self._step(thought or f"I should use {call.name}.", call.name, call.arguments, obs, ok, secs)

    async def _act_text(self, convo: list[Message], text: str, action: ParsedAction) -> AsyncIterator[AgentStep]:
        obs, ok, secs, repeated = await self._execute(action.tool, action.arguments)
        self._repeated = self._repeated or repeated
        if self.style == "text":
            convo.append({"role": "assistant", "content": trim_after_input(text)})
            convo.append({"role": "user", "content": prompts.OBSERVATION_PREFIX_TEXT + prompt_observation(obs)})
        else:  # a text-format action in native style: replay it as a native call
            call = ToolCall(id=new_call_id(), name=action.tool, arguments=json.dumps(action.arguments))
            convo.append({"role": "assistant", "content": action.thought or None, "tool_calls": [call.to_openai()]})
            convo.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": prompt_observation(obs)})
        yield self._step(action.thought or f"I should use {action.tool}.", action.tool, action.arguments, obs, ok, secs)

    def _format_error(self, convo: list[Message], err: ParseError) -> AgentStep:
        names = ", ".join(self.tools)
        if self.style == "text":
            help_text = prompts.FORMAT_HELP_TEXT.format(problem=err.problem, tool_names=names)
        else:
            help_text = prompts.FORMAT_HELP_NATIVE.format(problem=err.problem, tool_names=names)
        if err.text.strip():
            convo.append({"role": "assistant", "content": err.text.strip()})
        convo.append({"role": "user", "content": help_text})
        return self._step(err.text.strip()[:500], None, None, help_text, False, 0.0, kind="format")

    async def _force_final(self, convo: list[Message]) -> AsyncIterator[AnswerDelta]:
        """The answer without tools, from a fresh compact prompt of the question and the results.

        A small model that is shown its own tool-call history keeps calling tools; a clean prompt
        ("answer from these results") gets an answer.
        """
        self.stop_reason = "repeated_call" if self._repeated else "max_iterations"
        results = [s for s in self.steps if s.tool and s.kind == "tool"]
        lines = [
            f"- {s.tool}({json.dumps(s.input, ensure_ascii=False)}) -> {prompt_observation(s.observation)}"
            for s in results
            if not s.observation.startswith("You already called")
        ]
        system = prompts.FINAL_FROM_RESULTS.format(results="\n".join(lines) or "(none)")
        if self._client_system:
            system += "\n\n" + self._client_system
        messages = [{"role": "system", "content": system}, {"role": "user", "content": self._question}]
        params = self.llm.params(final=True, stop=["<tool_call>", '{"name"'])
        gate = AnswerGate()
        held = self._has_exact_results()
        text = ""
        async with contextlib.aclosing(self.llm.stream(messages, params)) as events:
            async for ev in events:
                if ev.content:
                    text += ev.content
                    out = gate.feed(ev.content)
                    if out and not held:
                        yield AnswerDelta(out)
        parsed = parse_react_text(TOOL_CALL_RE.sub("", text), list(self.tools))
        answer = parsed.answer if isinstance(parsed, ParsedFinal) else ""
        if not answer:  # nothing usable: report what was observed rather than nothing
            observed = [s for s in results if s.ok]
            answer = "I could not finish within the step limit." + (
                f" The last result was: {observed[-1].observation[:500]}" if observed else ""
            )
        if held:
            self.final = self._grounded(answer)
            yield AnswerDelta(self.final)
            return
        self.final = answer
        rest = gate.remaining(answer)
        if rest:
            yield AnswerDelta(rest)


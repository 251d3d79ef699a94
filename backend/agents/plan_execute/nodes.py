"""The graph's nodes. Each reads the state and the run context and returns a partial state update.

Steps are reported as they happen through LangGraph's custom stream (``get_stream_writer``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from backend.agents.arithmetic import expression_of
from backend.agents.calls import call_key, forced_arguments
from backend.agents.events import AgentStep, merge_sources
from backend.agents.grounding import Observed, ground_answer, label
from backend.agents.messages import text_of
from backend.agents.plan_execute import prompts
from backend.agents.plan_execute.state import PlanExecuteState, PlanStep, RunContext, ToolOutcome, ToolTask
from backend.agents.router import Part, split_parts
from backend.agents.tools import hints, normalize_args, prompt_observation, run_tool, signature, trace_observation
from backend.errors import APIError
from backend.tools.base import Tool, ToolError

log = logging.getLogger("backend.agents.plan_execute")

RESULTS_PROMPT_CHARS = 4000


def _emit(step: AgentStep) -> None:
    get_stream_writer()(step)


def _arguments_schema(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("type") != "object":
        return {"type": "object", "properties": {}}
    return params


def plan_schema(rc: RunContext) -> dict[str, Any]:
    """JSON schema of a plan: a list of {task, tool, arguments}, each tool with its own argument schema."""
    variants = [
        {
            "type": "object",
            "properties": {
                "task": {"type": "string"},
                "tool": {"const": name},
                "arguments": _arguments_schema(t.parameters),
            },
            "required": ["task", "tool", "arguments"],
        }
        for name, t in rc.tools.items()
    ]
    item: dict[str, Any] = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {
        "type": "object",
        # at least one step: plan-and-execute runs because tools are wanted, and a small model under a
        # grammar otherwise takes the easy exit of an empty plan
        "properties": {"steps": {"type": "array", "items": item, "minItems": 1, "maxItems": rc.max_parallel_tools}},
        "required": ["steps"],
    }


VERIFY_SCHEMA = {
    "type": "object",
    "properties": {"correct": {"type": "boolean"}, "problem": {"type": "string", "maxLength": 300}},
    "required": ["correct", "problem"],
}


def _results_text(results: dict[str, ToolOutcome], limit: int = RESULTS_PROMPT_CHARS) -> str:
    if not results:
        return "(no tool results)"
    lines = []
    for r in sorted(results.values(), key=lambda r: not r["ok"]):  # answers first: small models favour them
        args = json.dumps(r["arguments"], ensure_ascii=False) if not isinstance(r["arguments"], str) else r["arguments"]
        lines.append(f"[{r['step_id']}] {r['tool']}({args}) -> {prompt_observation(r['output'])}")
    text = "\n".join(lines)
    return text if len(text) <= limit else text[-limit:]


def _history(state: PlanExecuteState) -> list[dict[str, Any]]:
    """The client's conversation as plain user/assistant text (the last user turn is the question)."""
    out = []
    for m in state.get("messages", []):
        if m.get("role") in ("user", "assistant"):
            text = text_of(m.get("content")).strip()
            if text:
                out.append({"role": m["role"], "content": text})
    return out[-6:]


# ------------------------------------------------------------------------------- planning
async def plan(state: PlanExecuteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    rc = runtime.context
    iteration = state.get("iteration", 0) + 1
    system = prompts.PLAN_SYSTEM.format(
        max_steps=rc.max_parallel_tools, tool_lines="\n".join(signature(t) for t in rc.tools.values())
    ) + hints(rc.tools)
    if state.get("feedback"):
        system += "\n\n" + prompts.REPLAN_NOTE.format(
            feedback=state["feedback"], results=_results_text(state.get("tool_results", {}), 1500)
        )
    if not state.get("feedback"):
        by_parts = plan_from_parts(split_parts(state.get("question", "")), rc.tools, iteration)
        if by_parts:
            summary = "; ".join(f"{s['id']} {_step_label(s)}: {s['task']}" for s in by_parts)
            _emit(rc.new_step(thought=f"Plan (round {iteration}, one step per part): {summary}", tool=None,
                              input=None, observation="", ok=True, kind="plan"))
            return {"plan": by_parts, "iteration": iteration, "decomposed": True}
    steps: list[PlanStep] = []
    problem = ""
    if rc.tools:
        params = rc.llm.params(
            response_format={"type": "json_schema", "json_schema": {"name": "plan", "schema": plan_schema(rc)}},
        )
        try:
            out = await rc.llm.complete([{"role": "system", "content": system}, *_history(state)], params)
            raw = json.loads(out.content or "{}").get("steps", [])
        except (json.JSONDecodeError, AttributeError) as exc:
            raw, problem = [], f"the plan was not valid JSON ({exc})"
        except APIError as exc:  # e.g. the schema cannot be enforced: plan nothing, reason without tools
            raw, problem = [], exc.message
        for n, item in enumerate(raw if isinstance(raw, list) else [], start=1):
            if not isinstance(item, dict):
                continue
            args = item.get("arguments")
            steps.append(
                PlanStep(
                    id=f"{iteration}.{n}",
                    task=str(item.get("task") or "").strip(),
                    tool=str(item.get("tool") or ""),
                    arguments=args if isinstance(args, dict) else {},
                )
            )
    summary = "; ".join(f"{s['id']} {s['tool']}: {s['task']}" for s in steps) or "no tool calls"
    thought = f"Plan (round {iteration}): {summary}"
    if problem:
        thought += f" [planning problem: {problem}]"
    _emit(rc.new_step(thought=thought, tool=None, input=None, observation="", ok=not problem, kind="plan"))
    return {"plan": steps, "iteration": iteration, "decomposed": False}


def _step_label(step: PlanStep) -> str:
    return "program" if step.get("kind") == "program" else step["tool"]


def _first_tool(
    tools: dict[str, Tool], category: str, *, deterministic: bool | None = None, besides: str | None = None
) -> str | None:
    """The first tool serving ``category`` (other than ``besides`` when there is another)."""
    names = [
        name
        for name, t in tools.items()
        if category in t.categories and (deterministic is None or t.deterministic == deterministic)
    ]
    others = [n for n in names if n != besides]
    return others[0] if others else (names[0] if names else None)


def _expression_argument(t: Tool) -> str | None:
    """The one required text parameter of a math tool (``expression`` for math_calc), else None."""
    required = t.parameters.get("required") or []
    props = t.parameters.get("properties") or {}
    if len(required) == 1 and props.get(required[0], {}).get("type") == "string":
        return str(required[0])
    return None


def _ready_arguments(part: Part, t: Tool) -> dict[str, Any]:
    """Arguments for ``part`` that need no model call: a rule-read expression, or the part as a query."""
    if "math" in t.categories:
        name, expression = _expression_argument(t), expression_of(part.text)
        if name is not None and expression is not None:
            return {name: expression}
    elif t.question_argument is not None:
        return {t.question_argument: part.text}
    return {}


def plan_from_parts(parts: list[Part], tools: dict[str, Tool], iteration: int = 1) -> list[PlanStep]:
    """One step per independent part, without a planning call; [] when a part has no tool here.

    A computation part goes to the computing path: an expression the rules read
    (``agents.arithmetic``: "15% of 820", "2 to the power of 20", "gcd of 84 and 126") or another
    one-expression computation to the math tool, any other (dates, strings, counting, number
    theory) to a program run in the sandbox (the code agent); a lookup part to the tool of its
    category. Arguments the server can fill itself (the rule-read expression; the part's text for
    a search tool's query) are filled here; the others are asked for later with the call forced to
    that tool (``select_tools``).
    """
    steps: list[PlanStep] = []
    for n, part in enumerate(parts, start=1):
        kind = "call"
        tool: str | None
        if part.need == "compute":
            program_tool = _first_tool(tools, "code", deterministic=True)
            math_tool = _first_tool(tools, "math", deterministic=True, besides=program_tool)
            math_ready = math_tool is not None and math_tool != program_tool
            if math_ready and (part.arithmetic or _ready_arguments(part, tools[str(math_tool)])):
                tool = math_tool
            elif program_tool is not None:
                tool, kind = program_tool, "program"
            else:
                tool = math_tool
        else:
            tool = _first_tool(tools, part.need)
        if tool is None:
            return []
        arguments = _ready_arguments(part, tools[tool]) if kind == "call" else {}
        steps.append(PlanStep(id=f"{iteration}.{n}", task=part.text, tool=tool, arguments=arguments, kind=kind))
    return steps


# ------------------------------------------------------------------------------- tool selection
async def _repair(rc: RunContext, step: PlanStep) -> dict[str, Any] | None:
    """Ask for the arguments again with the call forced to this tool (grammar-constrained)."""
    t = rc.tools[step["tool"]]
    params = rc.llm.params(tools=[t.openai_spec()], tool_choice={"type": "function", "function": {"name": t.name}})
    system = prompts.REPAIR_SYSTEM.format(tool=t.name) + (f"\n{t.hint}" if t.hint else "")
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": step["task"] or json.dumps(step["arguments"])},
    ]
    try:
        out = await rc.llm.complete(messages, params)
    except APIError as exc:
        log.info("argument repair for %s failed: %s", t.name, exc.message)
        return None
    args = forced_arguments(t, out.tool_calls, out.content or "")
    if args is None:
        return None
    try:
        return t.parse_arguments(args)
    except ToolError:
        return None


def _named_tool(step: PlanStep, tools: dict[str, Tool]) -> str | None:
    """The tool a step's task explicitly names when the step itself names a different one."""
    named = [name for name in tools if re.search(rf"\b{re.escape(name)}\b", step["task"])]
    if len(named) == 1 and named[0] != step["tool"]:
        return named[0]
    return None


async def select_tools(state: PlanExecuteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Validate the plan's calls: known tool, valid arguments (repaired once if not), no duplicates."""
    rc = runtime.context
    done = {call_key(r["tool"], r["arguments"]) for r in state.get("tool_results", {}).values() if r["ok"]}
    selected: list[PlanStep] = []
    seen: set[str] = set()
    for step in state.get("plan", []):
        if step.get("kind") == "program":  # the code path writes its own program: nothing to validate
            key = "program:" + step["task"]
            if key not in seen:
                seen.add(key)
                selected.append(step)
            continue
        retarget = _named_tool(step, rc.tools)
        if retarget is not None:  # the task says "math_calc(...)" but the step names another tool
            step = PlanStep(id=step["id"], task=step["task"], tool=retarget, arguments={})
        t = rc.tools.get(step["tool"])
        problem = ""
        args: dict[str, Any] | None = None
        if t is None:
            problem = f"unknown tool '{step['tool']}'"
        else:
            try:
                args = t.parse_arguments(step["arguments"])
            except ToolError as exc:
                args = await _repair(rc, step)
                if args is None:
                    problem = f"invalid arguments for {t.name}: {exc}"
        if args is not None:
            key = call_key(step["tool"], args)
            if key in seen:
                continue
            if key in done:
                problem = "already done in an earlier round (result reused)"
            seen.add(key)
        if problem:
            _emit(
                rc.new_step(
                    thought=f"Skipping step {step['id']}: {step['task']}",
                    tool=step["tool"] or None,
                    input=normalize_args(step["arguments"]),
                    observation=problem,
                    ok=False,
                    kind="format",
                )
            )
            continue
        selected.append(PlanStep(id=step["id"], task=step["task"], tool=step["tool"], arguments=args or {}))
    return {"selected": selected[: rc.max_parallel_tools]}


# ------------------------------------------------------------------------------- tool execution
async def execute_tool(task: ToolTask, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """One tool call. Several of these run concurrently (one ``Send`` each)."""
    rc = runtime.context
    step = task["step"]
    if step.get("kind") == "program":
        return await _run_program(rc, step)
    result = await run_tool(rc.tools, rc.tool_ctx, step["tool"], step["arguments"])
    merge_sources(rc.sources, (result.data or {}).get("sources"))
    _emit(
        rc.new_step(
            thought=step["task"] or f"Use {step['tool']}.",
            tool=step["tool"],
            input=step["arguments"],
            observation=trace_observation(result.output),
            ok=result.ok,
            duration_s=round(result.duration_s, 4),
            kind="tool",
        )
    )
    outcome = ToolOutcome(
        step_id=step["id"],
        task=step["task"],
        tool=step["tool"],
        arguments=step["arguments"],
        output=result.output,
        ok=result.ok,
        duration_s=result.duration_s,
    )
    return {"tool_results": {step["id"]: outcome}, "tools_used": [step["tool"]]}


async def _run_program(rc: RunContext, step: PlanStep) -> dict[str, Any]:
    """A computation part through the code path: a program written for it, run in the sandbox."""
    from backend.agents.code import CodeAgent

    agent = CodeAgent(rc.llm, rc.tool_ctx, rc.tools[step["tool"]])
    program: Any = {}
    start = time.perf_counter()
    async for ev in agent.run([{"role": "user", "content": step["task"]}]):
        if isinstance(ev, AgentStep):
            if ev.tool is not None:
                program = {"code": ev.input}
            _emit(
                rc.new_step(
                    thought=f"{step['task']}: {ev.thought}",
                    tool=ev.tool,
                    input=ev.input,
                    observation=ev.observation,
                    ok=ev.ok,
                    duration_s=ev.duration_s,
                    kind=ev.kind,
                )
            )
    ok = agent.output is not None
    outcome = ToolOutcome(
        step_id=step["id"],
        task=step["task"],
        tool=step["tool"],
        arguments=program,
        output=agent.output if agent.output is not None else agent.final,
        ok=ok,
        duration_s=time.perf_counter() - start,
    )
    return {"tool_results": {step["id"]: outcome}, "tools_used": [step["tool"]]}


# ------------------------------------------------------------------------------- reasoning
def _exact(rc: RunContext, name: str) -> bool | None:
    t = rc.tools.get(name)
    return t.deterministic if t is not None else None


def _observed(rc: RunContext, results: dict[str, ToolOutcome]) -> list[Observed]:
    return [Observed(r["tool"], r["output"], r["arguments"], _exact(rc, r["tool"])) for r in results.values() if r["ok"]]


def _all_deterministic(rc: RunContext, results: list[ToolOutcome]) -> bool:
    return bool(results) and all(r["ok"] and bool(_exact(rc, r["tool"])) for r in results)


async def reasoning(state: PlanExecuteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The drafted answer, checked against the deterministic results (``backend.agents.grounding``)."""
    rc = runtime.context
    results = state.get("tool_results", {})
    if state.get("decomposed"):
        answer, lookup_draft = await _compose_parts(state, rc)
        return {"draft": answer, "lookup_draft": lookup_draft}
    system = prompts.REASON_SYSTEM.format(results=_results_text(results))
    history = _history(state)
    out = await rc.llm.complete([{"role": "system", "content": system}, *history], rc.llm.params(final=True))
    draft = (out.content or "").strip()
    user_texts = [m["content"] for m in history if m["role"] == "user"] + [state.get("question", "")]
    g = ground_answer(draft, user_texts, _observed(rc, results))
    if g.changed:
        log.info("answer composed around the tool results: %s", "; ".join(g.problems))
    return {"draft": g.answer}


def _sentence_start(task: str) -> str:
    task = task.strip().rstrip("?.!,") or "Result"
    return task[0].upper() + task[1:]


def _unanswered(state: PlanExecuteState) -> list[PlanStep]:
    """This round's planned steps that never ran (no valid call could be made for them)."""
    results = state.get("tool_results", {})
    return [st for st in state.get("plan", []) if st["id"] not in results]


def _stated(outcome: ToolOutcome) -> str:
    """A computed part as the server states it: the part, then its exact result."""
    task = _sentence_start(outcome["task"])
    if not outcome["ok"]:
        return f"{task}: could not be computed ({outcome['output'].strip()[:200]})."
    out = outcome["output"].strip()
    if "\n" not in out and len(out) <= 200:
        return f"{task}: {out}"
    return f"{task}: " + label(Observed(outcome["tool"], out, outcome["arguments"], True))


async def _compose_parts(state: PlanExecuteState, rc: RunContext) -> tuple[str, str]:
    """(the answer, the model's draft of the looked-up parts) for a decomposed request.

    The answer is composed around the observed values.

    Computed parts (math, programs, SQL) are stated by the server: the part, then its exact output
    (no model call restates them). Only the parts answered by a lookup (weather, Wikipedia,
    documents, search) are drafted by the model, from those results alone; the draft's numbers are
    then checked against every result (``ground_answer``).
    """
    this_round = str(state.get("iteration", 1))
    results = [r for r in state.get("tool_results", {}).values() if r["step_id"].split(".")[0] == this_round]
    results.sort(key=lambda r: [int(x) for x in r["step_id"].split(".")])
    computed = [r for r in results if _exact(rc, r["tool"])]
    looked_up = [r for r in results if not _exact(rc, r["tool"])]
    draft = ""
    if looked_up:
        questions = "\n".join(f"- {r['task']}" for r in looked_up)
        system = prompts.REASON_SYSTEM.format(results=_results_text({r["step_id"]: r for r in looked_up}))
        out = await rc.llm.complete(
            [{"role": "system", "content": system}, {"role": "user", "content": questions}], rc.llm.params(final=True)
        )
        draft = (out.content or "").strip()
        if not draft:
            draft = " ".join(f"{r['task']}: {r['output'].strip()[:300]}" for r in looked_up)
    unanswered = [f"{_sentence_start(st['task'])}: I could not answer this part." for st in _unanswered(state)]
    answer = "\n".join([p for p in [draft, *(_stated(r) for r in computed), *unanswered] if p])
    user_texts = [state.get("question", "")]
    g = ground_answer(answer, user_texts, _observed(rc, {r["step_id"]: r for r in results}))
    if g.changed:
        log.info("answer composed around the tool results: %s", "; ".join(g.problems))
    return g.answer, draft


# ------------------------------------------------------------------------------- verification
async def verify(state: PlanExecuteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Cheap checks first (empty answer, every tool failed), then one JSON-constrained model check."""
    rc = runtime.context
    draft = state.get("draft", "")
    results = state.get("tool_results", {})
    this_round = [r for r in results.values() if r["step_id"].split(".")[0] == str(state.get("iteration", 1))]
    ok, problem = True, ""
    if not draft:
        ok, problem = False, "the answer was empty"
    elif this_round and not any(r["ok"] for r in this_round):
        ok, problem = False, "every tool call failed: " + "; ".join(r["output"][:150] for r in this_round)
    elif state.get("decomposed") and _unanswered(state):
        ok, problem = False, "no tool call could be made for: " + "; ".join(st["task"] for st in _unanswered(state))
    elif _all_deterministic(rc, this_round) or (state.get("decomposed") and all(r["ok"] for r in this_round)):
        # computed results, and the answer states them exactly by construction; for a request cut into
        # parts, each part had its own tool, the computed ones are stated by the server and the
        # looked-up ones' numbers were checked against their results (``ground_answer``): a model
        # checker has nothing to add (and it could not send the parts back to be planned again)
        why = (
            "every result is computed (math/code/SQL/data) and stated exactly"
            if _all_deterministic(rc, this_round)
            else "every part was answered by its own tool; computed parts are stated exactly, "
            "looked-up numbers were checked against their results"
        )
        _emit(rc.new_step(thought="Verification", tool=None, input=None, observation=f"skipped: {why}", ok=True, kind="verify"))
        return {"verified": True, "feedback": ""}
    else:
        params = rc.llm.params(
            response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERIFY_SCHEMA}},
            max_tokens=160,
        )
        question, checked, answer = state.get("question", ""), results, draft
        if state.get("decomposed"):
            # the computed parts are stated by the server: only the looked-up parts' draft is checked
            looked_up = {r["step_id"]: r for r in this_round if not _exact(rc, r["tool"])}
            question = "\n".join(r["task"] for r in looked_up.values()) or question
            checked, answer = looked_up or results, state.get("lookup_draft") or draft
        user = prompts.VERIFY_USER.format(question=question, results=_results_text(checked, 2500), answer=answer[:2000])
        try:
            out = await rc.llm.complete([{"role": "system", "content": prompts.VERIFY_SYSTEM}, {"role": "user", "content": user}], params)
            verdict = json.loads(out.content or "{}")
            ok = bool(verdict.get("correct"))
            problem = "" if ok else str(verdict.get("problem") or "the checker rejected the answer")[:300]
        except (json.JSONDecodeError, AttributeError, APIError) as exc:
            # a checker that cannot answer does not block the answer
            log.info("verification call failed: %s", exc)
            ok, problem = True, ""
    observation = "passed" if ok else f"failed: {problem}"
    _emit(rc.new_step(thought="Verification", tool=None, input=None, observation=observation, ok=ok, kind="verify"))
    update: dict[str, Any] = {"verified": ok, "feedback": problem}
    return update


def replan(state: PlanExecuteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    return {"replans": state.get("replans", 0) + 1}


def finalize(state: PlanExecuteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    draft = state.get("draft", "")
    if not state.get("verified"):
        draft = (draft or "I could not find a reliable answer.") + prompts.UNVERIFIED_NOTE
    return {"final_output": draft}

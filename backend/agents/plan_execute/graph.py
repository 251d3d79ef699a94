"""The plan-and-execute graph.

START -> plan -> select_tools -(Send per call)-> execute_tool (concurrently) -> reasoning -> verify
verify -> finalize -> END                       (verified, or no replans left)
verify -> replan -> plan                        (failed, at most ``max_replans`` times; never for a
                                                 plan of independent parts, one step each)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from backend.agents.plan_execute import nodes
from backend.agents.plan_execute.state import PlanExecuteState, RunContext, ToolTask


def fan_out(state: PlanExecuteState) -> list[Send] | str:
    """One ``execute_tool`` task per selected call (LangGraph runs them concurrently)."""
    selected = state.get("selected", [])
    if not selected:
        return "reasoning"
    return [Send("execute_tool", ToolTask(step=s)) for s in selected]


def after_verify(state: PlanExecuteState, runtime: Runtime[RunContext]) -> str:
    if state.get("verified"):
        return "finalize"
    if state.get("decomposed"):
        # every part already had its own tool; a replan would throw away the exact results'
        # structure for a free-form plan: finish, marked unverified
        return "finalize"
    if state.get("replans", 0) < runtime.context.max_replans:
        return "replan"
    return "finalize"


def build_graph() -> StateGraph[Any, Any, Any, Any]:
    g = StateGraph(PlanExecuteState, context_schema=RunContext)
    g.add_node("plan", nodes.plan)
    g.add_node("select_tools", nodes.select_tools)
    # LangGraph's stubs bound a node's input type by protocols a TypedDict *instance* never matches,
    # so a node whose input is not the state (here the ``Send`` payload ``ToolTask``) fails to type-check
    g.add_node("execute_tool", nodes.execute_tool)  # type: ignore[call-overload]
    g.add_node("reasoning", nodes.reasoning)
    g.add_node("verify", nodes.verify)
    g.add_node("replan", nodes.replan)
    g.add_node("finalize", nodes.finalize)
    g.add_edge(START, "plan")
    g.add_edge("plan", "select_tools")
    g.add_conditional_edges("select_tools", fan_out, ["execute_tool", "reasoning"])
    g.add_edge("execute_tool", "reasoning")
    g.add_edge("reasoning", "verify")
    g.add_conditional_edges("verify", after_verify, ["finalize", "replan"])
    g.add_edge("replan", "plan")
    g.add_edge("finalize", END)
    return g


@lru_cache(maxsize=1)
def compiled_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compiled once; per-run dependencies travel in ``context``, so the graph is shared."""
    return build_graph().compile(name="plan_execute")

"""Plan-and-execute: a LangGraph StateGraph (plan -> select tools -> tools in parallel -> reason -> verify)."""

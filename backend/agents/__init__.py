"""Agents: a router (chat / ReAct / plan-and-execute), the two agents and ``runner.run_agent``."""

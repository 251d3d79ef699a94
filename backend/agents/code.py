"""The code agent (program-of-thought / CodeAct): the model writes a program, the sandbox runs it.

    question -> one model call: a short Python program -> python_code (bubblewrap sandbox)
             (a question that is one expression — "what is 15% of 820?" — is read by rule,
             ``agents.arithmetic``, and the server writes that program itself: no model call)
             -> printed output == the answer            (exact by construction: no restating call)
             -> on an error: traceback back to the model, at most ``MAX_REPAIRS`` repairs

The answer is the program's printed output itself, so a result can never be miscopied. Each
run is one step (tool ``python_code``, input = the program, observation = what it printed).
Generation stops as soon as the reply holds a closed python block: whatever the model would
write after it (an invented ```output``` block, an explanation) is never generated.
A reply without a program (the question needed no computation) is the answer as written.

What the model reads is made hard to get wrong: numbers written in words become numerals
(``backend.agents.number_words``: "twelve thousand three hundred and five" -> 12305) and the
system prompt asks for program-of-thought style code — one named variable per quantity, the
arithmetic in straight lines, only the answer printed — with one worked example. Where the user
has SQL or documents enabled and the question points at them, the program may call them
(``from tools import sql, search_documents, calc``; see ``backend.tools.tool_channel``): each
call runs on the server with this user's context, and shows in the trace as a step of its own.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncGenerator, Mapping

from backend.agents.arithmetic import expression_of
from backend.agents.events import AgentStep, AnswerDelta
from backend.agents.llm import CountingLLM
from backend.agents.messages import split_conversation
from backend.agents.number_words import with_numerals
from backend.agents.program import computes_nothing, ensure_prints, extract_program, has_complete_python_block
from backend.agents.router import tool_categories
from backend.agents.tools import run_tool, trace_observation
from backend.llm.types import Message
from backend.tools.base import Tool, ToolContext, ToolResult
from backend.tools.python_code import python_code, python_code_with_tools
from backend.tools.tool_channel import BY_NAME, ChannelFunction, channel_functions, prompt_lines

MAX_REPAIRS = 2
PROGRAM_MAX_TOKENS = 512
CODE_TEMPERATURE = 0.2
ERROR_PROMPT_CHARS = 1200
ANSWER_CHUNK_CHARS = 24
CODE_TOOL = "python_code"

#: stable: its KV state is reused across requests (see the embedded provider's prefix cache)
CODE_SYSTEM = """You are a Python programmer. You answer questions by writing a short Python 3 program \
that computes the answer and prints it. Standard library and sympy only; no input(), files or network.
Write it like this:
- one named variable for each number in the question, with the number exactly as written there;
- then the calculation, one step per line, each step a new named variable;
- print only the final answer (a number or a short text, no sentence); one line per question asked.

Example question: A shop sells pens for 3 dollars each. Ana buys 4 pens and pays with a 20 dollar bill. \
How much change does she get?
```python
pen_price = 3
pens_bought = 4
paid = 20
cost = pen_price * pens_bought
change = paid - cost
print(change)
```"""

#: the question goes to the model as a programming task (a coder model writes code for those)
TASK_PROMPT = """Write a short Python program that computes the answer to the question below and prints it. \
Compute it in the program.

Question: {question}"""

#: instructions about how to *show* reasoning (the program is the reasoning; its output is the answer)
_FORMAT_INSTRUCTIONS = re.compile(
    r"(?:please\s+)?(?:let'?s\s+)?(?:think|reason|work)(?:\s+it)?(?:\s+out)?\s+step[- ]by[- ]step[^.\n]*\.?"
    r"|(?:and\s+)?put\s+(?:your|the)\s+final\s+answer\s+(?:with)?in\s+\\boxed\{\}\.?",
    re.IGNORECASE,
)
_SYMBOLIC = re.compile(r"\b(?:derivative|differentiate|integra(?:l|te)|solve|equation|factori[sz]e|simplify|limit)\b", re.IGNORECASE)
_CATEGORY_FUNCTIONS = {"sql": "sql", "documents": "search_documents"}


def task_question(question: str) -> str:
    """The question as the program prompt shows it: numerals for number words, no reasoning-format asks."""
    text = _FORMAT_INSTRUCTIONS.sub("", question).strip() or question
    return with_numerals(text)


def offered_functions(question: str, tools: Mapping[str, Tool]) -> dict[str, ChannelFunction]:
    """The server functions the prompt offers: enabled for this user *and* pointed at by the question."""
    enabled = channel_functions(tools)
    wanted = {_CATEGORY_FUNCTIONS[c] for c in tool_categories(question) if c in _CATEGORY_FUNCTIONS}
    if _SYMBOLIC.search(question):
        wanted.add("calc")
    return {name: f for name, f in enabled.items() if name in wanted}


REPAIR_PROMPT = """The program failed:
{error}
Fix it. Reply with only the corrected program in one ```python block."""

NO_OUTPUT_PROMPT = "The program printed nothing. Print the final answer with print(). Reply with only the program."

NO_PROGRAM_PROMPT = "Do not answer yourself: reply with only a Python program that computes the answer and prints it."

TYPED_RESULT_PROMPT = (
    "The program only prints a text you typed; it computes nothing. Write a program that computes "
    "the answer from the numbers in the question and prints it. Reply with only the program."
)


def program_stdout(result: ToolResult) -> str:
    """What the program printed (without the tool's stderr/notes decoration)."""
    data = result.data or {}
    out = data.get("stdout")
    return (out if isinstance(out, str) else result.output).strip()


def error_text(result: ToolResult) -> str:
    text = result.output
    return text if len(text) <= ERROR_PROMPT_CHARS else "..." + text[-ERROR_PROMPT_CHARS:]


def expression_program(expression: str) -> str:
    """The program for a rule-read expression: exact with SymPy, printed as an integer or a decimal."""
    return (
        "from sympy import N, sympify\n"
        f"value = sympify({expression!r}, rational=True)\n"
        "text = str(value) if value.is_Integer or not value.is_number else str(N(value, 15))\n"
        "if '.' in text and 'e' not in text and text.replace('.', '').replace('-', '').isdigit():\n"
        "    text = text.rstrip('0').rstrip('.')\n"
        "print(text)\n"
    )


def format_answer(output: str) -> str:
    """The answer is the printed output, verbatim; several lines keep their layout in a block."""
    out = output.strip()
    return out if "\n" not in out else "```\n" + out + "\n```"


class CodeAgent:
    def __init__(
        self,
        llm: CountingLLM,
        ctx: ToolContext,
        python_tool: Tool | None,
        *,
        max_repairs: int = MAX_REPAIRS,
        channel_tools: Mapping[str, Tool] | None = None,
    ) -> None:
        self.llm = llm
        self.ctx = ctx
        self.tools: dict[str, Tool] = {CODE_TOOL: python_tool} if python_tool is not None else {}
        # the enabled server tools a program may call (only the registry's own python tool gets the channel)
        self.channel_tools = {name: t for name, t in (channel_tools or {}).items() if any(f.tool == name for f in BY_NAME.values())}
        self.functions: dict[str, ChannelFunction] = {}
        self.max_repairs = max_repairs
        self.steps: list[AgentStep] = []
        self.final = ""
        self.stop_reason = "answered"
        self.output: str | None = None  # the printed output the answer was built from

    async def _write(self, convo: list[Message]) -> str:
        """One model call; stops reading (and so generating) once a python block is closed."""
        # programs want near-greedy sampling, whatever the chat default is
        temperature = min(self.llm.base.temperature if self.llm.base.temperature is not None else 0.0, CODE_TEMPERATURE)
        params = self.llm.params(max_tokens=PROGRAM_MAX_TOKENS, temperature=temperature)
        text = ""
        stream = self.llm.stream(convo, params)
        async with contextlib.aclosing(stream) as events:
            async for ev in events:
                if ev.content:
                    text += ev.content
                    if has_complete_python_block(text):
                        break
        return text

    def _step(self, thought: str, program: str, result: ToolResult, duration: float) -> AgentStep:
        step = AgentStep(
            index=len(self.steps),
            thought=thought,
            tool=CODE_TOOL,
            input=program,
            observation=trace_observation(result.output),
            ok=result.ok,
            duration_s=round(result.duration_s or duration, 4),
            kind="tool",
        )
        self.steps.append(step)
        return step

    def _inner_steps(self, result: ToolResult) -> list[AgentStep]:
        """The server tools the program called, one step each (after the program's own step)."""
        out = []
        for call in (result.data or {}).get("tool_calls") or []:
            fn = BY_NAME.get(str(call.get("fn")))
            step = AgentStep(
                index=len(self.steps),
                thought=f"The program called {call.get('fn')}().",
                tool=fn.tool if fn else str(call.get("fn")),
                input=call.get("args"),
                observation=trace_observation(str(call.get("output", ""))),
                ok=bool(call.get("ok")),
                duration_s=float(call.get("duration_s") or 0.0),
                kind="tool",
            )
            self.steps.append(step)
            out.append(step)
        return out

    def _system(self, client_system: str, question: str) -> str:
        system = CODE_SYSTEM
        self.functions = offered_functions(question, self.channel_tools) if self.channel_tools else {}
        python_tool = self.tools.get(CODE_TOOL)
        if self.functions and python_tool is not None and python_tool.func is python_code.func:
            self.tools[CODE_TOOL] = python_code_with_tools(self.channel_tools)
            system += "\n\n" + prompt_lines(self.functions, self.channel_tools)
        else:
            self.functions = {}
        return system + ("\n\n" + client_system if client_system else "")

    def _note(self, reply: str, asked: str) -> AgentStep:
        """A reply that was not a usable program (one model call, nothing run), and what was asked next."""
        step = AgentStep(len(self.steps), reply.strip()[:500], None, None, asked, ok=False, kind="format")
        self.steps.append(step)
        return step

    async def _run_expression(self, question: str) -> AgentStep | None:
        """A question that is one expression (``agents.arithmetic``): the server writes the program.

        No model call; the program still runs in the sandbox and its output is the answer. None
        (the model writes the program as usual) when no rule reads it or the run fails."""
        expression = expression_of(question)
        if expression is None or CODE_TOOL not in self.tools:
            return None
        program = expression_program(expression)
        start = time.perf_counter()
        result = await run_tool(self.tools, self.ctx, CODE_TOOL, {"code": program})
        stdout = program_stdout(result) if result.ok else ""
        if not stdout or stdout.startswith("(no output"):
            return None
        step = self._step(
            f"The question is the expression {expression}: a program computes it.", program, result, time.perf_counter() - start
        )
        self.output, self.final, self.stop_reason = stdout, format_answer(stdout), "answered"
        return step

    async def run(self, messages: list[Message]) -> AsyncGenerator[AgentStep | AnswerDelta, None]:
        client_system, turns = split_conversation(messages)
        question = turns[-1]["content"] if turns and turns[-1]["role"] == "user" else ""
        ruled = await self._run_expression(question) if question else None
        if ruled is not None:
            yield ruled
            for i in range(0, len(self.final), ANSWER_CHUNK_CHARS):
                yield AnswerDelta(self.final[i : i + ANSWER_CHUNK_CHARS])
            return
        system = self._system(client_system, question)
        if question:
            turns[-1] = {"role": "user", "content": TASK_PROMPT.format(question=task_question(question))}
        convo: list[Message] = [{"role": "system", "content": system}, *turns]
        last_error = ""
        for attempt in range(self.max_repairs + 1):
            reply = await self._write(convo)
            program = extract_program(reply)
            if program is None:
                if attempt == 0 and not re.search(r"\d", reply):  # no computation needed: the reply is the answer
                    self.final = reply.strip() or "I could not write a program for this question."
                    self.stop_reason = "no_program"
                    break
                # a number the model worked out itself is not an answer here: ask for the program
                last_error = "the reply did not contain a program"
                yield self._note(reply, NO_PROGRAM_PROMPT)
                convo += [{"role": "assistant", "content": reply}, {"role": "user", "content": NO_PROGRAM_PROMPT}]
                continue
            program = ensure_prints(program)
            if computes_nothing(program) and re.search(r"\d", program + question):
                # its "result" is the model's own claim: never shown as a program's output
                last_error = "the program only printed a text typed into it"
                yield self._note(program, TYPED_RESULT_PROMPT)
                convo += [
                    {"role": "assistant", "content": f"```python\n{program}\n```"},
                    {"role": "user", "content": TYPED_RESULT_PROMPT},
                ]
                continue
            start = time.perf_counter()
            result = await run_tool(self.tools, self.ctx, CODE_TOOL, {"code": program})
            stdout = program_stdout(result) if result.ok else ""
            thought = "Write a program that computes the answer." if attempt == 0 else f"Repair {attempt}: fix the program."
            yield self._step(thought, program, result, time.perf_counter() - start)
            for inner in self._inner_steps(result):
                yield inner
            if result.ok and stdout and not stdout.startswith("(no output"):
                self.output = stdout
                self.final = format_answer(stdout)
                self.stop_reason = "answered"
                break
            if not result.ok and _unavailable(result):
                last_error = result.output
                break  # no sandbox here: repairs cannot help
            last_error = result.output if not result.ok else "the program printed nothing"
            follow = REPAIR_PROMPT.format(error=error_text(result)) if not result.ok else NO_OUTPUT_PROMPT
            convo += [{"role": "assistant", "content": f"```python\n{program}\n```"}, {"role": "user", "content": follow}]
        else:
            self.stop_reason = "program_failed"
        if not self.final:
            self.stop_reason = "program_failed"
            self.final = "I could not compute the answer: the program failed." + (
                f"\n\n```\n{last_error.strip()[-600:]}\n```" if last_error.strip() else ""
            )
        for i in range(0, len(self.final), ANSWER_CHUNK_CHARS):
            yield AnswerDelta(self.final[i : i + ANSWER_CHUNK_CHARS])


def _unavailable(result: ToolResult) -> bool:
    text = result.output.lower()
    return "sandbox is unavailable" in text or "code execution is disabled" in text or "unknown tool" in text

"""Fill-in-the-middle post-processing: the suffix cut, line buffering, and the parse fit."""

from __future__ import annotations

import ast

from backend.completions.fim import MAX_FIT_CANDIDATES, MiddleStream, fit_python, line_cuts


def feed_all(stream: MiddleStream, pieces: list[str]) -> str:
    return "".join(stream.feed(p) for p in pieces) + stream.close()


def test_middle_stream_stops_where_the_suffix_repeats():
    s = MiddleStream("\n    return total / len(xs)\n")
    out = feed_all(s, ["        tot", "al += x\n    re", "turn total / len(xs)\n\ndef other():\n"])
    assert out == "        total += x\n" and s.reached_suffix
    assert s.feed("more\n") == ""


def test_middle_stream_passes_whole_lines_and_keeps_the_last_partial_line():
    s = MiddleStream("\nprint(x)\n")
    assert s.feed("x = 1") == ""  # held until its line ends
    assert s.feed("\ny = 2") == "x = 1\n"
    assert s.close() == "y = 2" and not s.reached_suffix


def test_middle_stream_without_a_suffix_line_passes_everything_through():
    s = MiddleStream("   \n")
    assert s.feed("a") == "a" and s.feed("b\n") == "b\n" and s.close() == ""


def test_line_cuts_go_from_longest_to_empty():
    assert line_cuts("a\nb\nc") == ["a\nb\nc", "a\nb\n", "a\n", ""]
    assert line_cuts("a\nb\n") == ["a\nb\n", "a\n", ""]
    assert line_cuts("") == [""]
    many = line_cuts("x\n" * (MAX_FIT_CANDIDATES + 50))
    assert len(many) == MAX_FIT_CANDIDATES + 1 and many[-1] == ""


def test_fit_python_returns_the_longest_prefix_that_parses():
    prefix, suffix = "def f(x):\n", "\n    return y\n"
    assert fit_python(prefix, "    y = x * 2\n", suffix) == "    y = x * 2\n"
    assert fit_python(prefix, "    y = x * 2\n    z = (", suffix) == "    y = x * 2\n"
    assert fit_python(prefix, "    y = (\n    oops", suffix) == ""  # only the empty middle fits
    for middle in ("    y = x * 2\n", ""):
        ast.parse(prefix + middle + suffix)


def test_fit_python_is_none_when_nothing_parses():
    assert fit_python("value = ", "(((", "\nprint(value)\n") is None


def test_fit_python_never_executes_code(tmp_path):
    marker = tmp_path / "ran"
    middle = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')\n"
    assert fit_python("", middle, "") == middle
    assert not marker.exists()

"""web_search, weather and wikipedia against the replay server (real recorded responses).

The production code path is unchanged; only the base URLs point at 127.0.0.1, which the tests
allow explicitly through ``ssrf_allow_hosts``.
"""

from __future__ import annotations

import json

from backend.tools.weather import weather
from backend.tools.web_search import web_search
from backend.tools.wikipedia_tool import wikipedia_tool

# --- web_search -----------------------------------------------------------------------------------


def test_web_search_without_key_says_not_configured(tool_settings, run_tool):
    result = run_tool(web_search, tool_settings(tavily_api_key=None), query="anything")
    assert not result.ok
    assert "not configured" in result.output and "TAVILY_API_KEY" in result.output


def test_web_search_returns_titles_urls_and_sources(replay_settings, run_tool, replay):
    settings = replay_settings(tavily_api_key="tvly-test-key")
    result = run_tool(web_search, settings, query="Who is Leo Messi?", max_results=3)
    assert result.ok, result.output
    assert "https://www.britannica.com/biography/Lionel-Messi" in result.output
    assert "Lionel Messi | Biography" in result.output
    assert result.data["sources"][0] == {
        "title": "Lionel Messi | Biography, Barcelona, PSG, Ballon d'Or, Inter Miami ...",
        "url": "https://www.britannica.com/biography/Lionel-Messi",
    }
    assert len(result.data["sources"]) == 3
    sent = [r for r in replay.requests if r.path == "/tavily/search"][-1]
    assert sent.headers["authorization"] == "Bearer tvly-test-key"
    assert json.loads(sent.body)["query"] == "Who is Leo Messi?"


def test_web_search_refuses_private_base_url_when_not_allow_listed(replay_settings, run_tool):
    settings = replay_settings(tavily_api_key="tvly-test-key", ssrf_allow_hosts=[])
    result = run_tool(web_search, settings, query="Who is Leo Messi?")
    assert not result.ok
    assert "not allowed" in result.output and "loopback" in result.output


# --- weather ---------------------------------------------------------------------------------------


def test_weather_geocodes_and_renders_forecast(replay_settings, run_tool):
    result = run_tool(weather, replay_settings(), location="Paris")
    assert result.ok, result.output
    assert "Paris, Île-de-France, France" in result.output
    assert "2024-08-19: Overcast, 13.1 to 23.3°C" in result.output
    assert "2024-08-20: Slight rain showers" in result.output and "94% chance" in result.output
    assert "2024-08-22" not in result.output  # only 3 days
    assert "Current conditions: not reported." in result.output  # the recording has no current block


def test_weather_by_coordinates_shows_current_conditions(replay_settings, run_tool):
    result = run_tool(weather, replay_settings(), location="52.52, 13.41")
    assert result.ok, result.output
    assert "Now (2026-03-11T08:15): 10.2°C, Partly cloudy, humidity 75%" in result.output
    assert "2026-03-12: 6.1 to 13.6°C" in result.output


def test_weather_unknown_place(replay_settings, run_tool):
    result = run_tool(weather, replay_settings(), location="Qwxyzzyville")
    assert not result.ok
    assert "no place named 'Qwxyzzyville'" in result.output


def test_weather_upstream_error_is_reported(replay_settings, run_tool):
    result = run_tool(weather, replay_settings(), location="1.23,4.56")
    assert not result.ok
    assert "HTTP 400" in result.output and "Invalid timezone" in result.output


def test_weather_request_drift_is_noticed(replay_settings, run_tool):
    result = run_tool(weather, replay_settings(), location="10,10")  # no recording: replay answers 404
    assert not result.ok and "HTTP 404" in result.output


def test_weather_blocks_metadata_address(tool_settings, run_tool):
    settings = tool_settings(weather_forecast_url="http://169.254.169.254/latest/meta-data")
    result = run_tool(weather, settings, location="1,1")
    assert not result.ok
    assert "blocked" in result.output and "link-local" in result.output


# --- wikipedia -------------------------------------------------------------------------------------


def test_wikipedia_summary(replay_settings, run_tool):
    result = run_tool(wikipedia_tool, replay_settings(), query="Celtuce")
    assert result.ok, result.output
    assert result.output.startswith("Celtuce\nhttp://en.wikipedia.org/wiki/Celtuce")
    assert "cultivar of lettuce grown primarily for its thick stem" in result.output
    assert result.data["sources"] == [{"title": "Celtuce", "url": "http://en.wikipedia.org/wiki/Celtuce"}]


def test_wikipedia_second_article(replay_settings, run_tool):
    result = run_tool(wikipedia_tool, replay_settings(), query="Tropical Depression Ten (2005)")
    assert result.ok, result.output
    assert "tenth tropical cyclone of the record-breaking 2005 Atlantic hurricane season" in result.output


def test_wikipedia_disambiguation_lists_options(replay_settings, run_tool):
    result = run_tool(wikipedia_tool, replay_settings(), query="Dodge Ram (disambiguation)")
    assert result.ok, result.output
    assert "ambiguous" in result.output
    for option in ("Dodge Ramcharger", "Dodge Ram Van", "Dodge Rampage", "Ram (brand)"):
        assert f"- {option}" in result.output
    assert "Dodge Ramcharger" in result.data["options"]


def test_wikipedia_missing_page(replay_settings, run_tool):
    result = run_tool(wikipedia_tool, replay_settings(), query="purpleberry")
    assert not result.ok
    assert "no Wikipedia article matches 'purpleberry'" in result.output


def test_wikipedia_private_api_url_refused_without_allow_list(replay_settings, run_tool):
    result = run_tool(wikipedia_tool, replay_settings(ssrf_allow_hosts=[]), query="Celtuce")
    assert not result.ok and "not allowed" in result.output


def test_wikipedia_package_refuses_use_outside_the_tool(replay_settings, run_tool):
    run_tool(wikipedia_tool, replay_settings(), query="Celtuce")  # installs the guarded shim
    import pytest
    import wikipedia

    with pytest.raises(Exception, match="only be used through the wikipedia tool"):
        wikipedia.page("Celtuce", auto_suggest=False)

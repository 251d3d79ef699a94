"""weather: current conditions and a 3-day forecast from Open-Meteo (no API key needed).

Geocoding (``settings.weather_geocoding_url``) turns a place name into coordinates; a location may
also be given directly as "lat,lon". The forecast comes from ``settings.weather_forecast_url``. All
requests go through the SSRF-guarded client (``backend.net.http.safe_get_json``).
"""

from __future__ import annotations

import re
from typing import Any

from backend.net.http import HttpFetchError, safe_get_json
from backend.tools.base import ToolContext, ToolError, ToolResult, tool

WMO_CODES = {
    0: "Clear sky", 1: "Mainly clear", 2: "Partly cloudy", 3: "Overcast", 45: "Fog", 48: "Depositing rime fog",
    51: "Light drizzle", 53: "Moderate drizzle", 55: "Dense drizzle", 56: "Light freezing drizzle",
    57: "Dense freezing drizzle", 61: "Slight rain", 63: "Moderate rain", 65: "Heavy rain",
    66: "Light freezing rain", 67: "Heavy freezing rain", 71: "Slight snow fall", 73: "Moderate snow fall",
    75: "Heavy snow fall", 77: "Snow grains", 80: "Slight rain showers", 81: "Moderate rain showers",
    82: "Violent rain showers", 85: "Slight snow showers", 86: "Heavy snow showers", 95: "Thunderstorm",
    96: "Thunderstorm with slight hail", 99: "Thunderstorm with heavy hail",
}  # fmt: skip
CURRENT_VARS = "temperature_2m,relative_humidity_2m,apparent_temperature,weather_code,wind_speed_10m"
DAILY_VARS = "weather_code,temperature_2m_max,temperature_2m_min,precipitation_sum,precipitation_probability_max"
_COORDS = re.compile(r"^\s*(-?\d{1,2}(?:\.\d+)?)\s*[,;]\s*(-?\d{1,3}(?:\.\d+)?)\s*$")


def describe_code(code: Any) -> str:
    try:
        return WMO_CODES.get(int(code), f"weather code {code}")
    except (TypeError, ValueError):
        return "unknown conditions"


def _unit(units: dict[str, Any], key: str, default: str = "") -> str:
    value = units.get(key, default) if isinstance(units, dict) else default
    text = str(value or "").strip()
    return text if not text or text == "%" or text.startswith("°") else f" {text}"


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None


def render(place: str, forecast: dict[str, Any], days: int = 3) -> str:
    lines = [f"Weather for {place}"]
    current = forecast.get("current") or {}
    cu = forecast.get("current_units") or {}
    if current:
        bits = []
        if current.get("temperature_2m") is not None:
            bits.append(f"{current['temperature_2m']}{_unit(cu, 'temperature_2m', '°C')}")
        if current.get("weather_code") is not None:
            bits.append(describe_code(current["weather_code"]))
        if current.get("apparent_temperature") is not None:
            bits.append(f"feels like {current['apparent_temperature']}{_unit(cu, 'apparent_temperature', '°C')}")
        if current.get("relative_humidity_2m") is not None:
            bits.append(f"humidity {current['relative_humidity_2m']}{_unit(cu, 'relative_humidity_2m', '%')}")
        if current.get("wind_speed_10m") is not None:
            bits.append(f"wind {current['wind_speed_10m']}{_unit(cu, 'wind_speed_10m', ' km/h')}")
        lines.append(f"Now ({current.get('time', 'current')}): " + ", ".join(bits))
    else:
        lines.append("Current conditions: not reported.")
    daily = forecast.get("daily") or {}
    du = forecast.get("daily_units") or {}
    dates = daily.get("time") or []
    if dates:
        lines.append(f"Forecast ({min(days, len(dates))} days):")
    for i, date in enumerate(dates[:days]):
        code = _at(daily.get("weather_code"), i)
        bits = [describe_code(code)] if code is not None else []
        lo, hi = _at(daily.get("temperature_2m_min"), i), _at(daily.get("temperature_2m_max"), i)
        if lo is not None and hi is not None:
            bits.append(f"{lo} to {hi}{_unit(du, 'temperature_2m_max', '°C')}")
        rain = _at(daily.get("precipitation_sum"), i)
        if rain is not None:
            bits.append(f"precipitation {rain}{_unit(du, 'precipitation_sum', ' mm')}")
        chance = _at(daily.get("precipitation_probability_max"), i)
        if chance is not None:
            bits.append(f"{chance}{_unit(du, 'precipitation_probability_max', '%')} chance of precipitation")
        lines.append(f"- {date}: " + ", ".join(bits))
    if not dates:
        lines.append("No daily forecast was returned.")
    lines.append("Source: Open-Meteo.com")
    return "\n".join(lines)


async def geocode(settings: Any, name: str) -> dict[str, Any] | None:
    data = await safe_get_json(
        settings.weather_geocoding_url, {"name": name, "count": 1, "language": "en", "format": "json"}, settings
    )
    results = data.get("results") if isinstance(data, dict) else None
    return results[0] if results else None


@tool(
    timeout_s=60,
    categories=("weather",),
    route_patterns=(
        r"\b(?:weather|forecast|humidity|wind speed|precipitation)\b.{0,25}\b(?:in|at|for|of|like|today|"
        r"tomorrow|tonight|now|this week)\b",
        r"\b(?:temperature|raining|rain|snowing|snow|sunny|hot|cold) (?:is it )?(?:in|at|for)\b",
        r"\b(?:will it (?:rain|snow)|is it (?:raining|snowing|sunny)|weather forecast|current weather)\b",
    ),
)
async def weather(ctx: ToolContext, location: str) -> ToolResult:
    """Current weather and a 3-day forecast for a place (city name, or "latitude,longitude").

    Args:
        location: a place name such as "Paris" or "Berlin, Germany", or coordinates like "52.52,13.41".
    """
    settings = ctx.settings
    location = (location or "").strip()
    if not location:
        raise ToolError("location is empty")
    if len(location) > 200:
        raise ToolError("location is too long")
    try:
        match = _COORDS.match(location)
        if match:
            lat, lon = float(match.group(1)), float(match.group(2))
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ToolError("coordinates are out of range")
            place = f"{lat:.2f}, {lon:.2f}"
        else:
            hit = await geocode(settings, location.split(",")[0].strip() if "," in location else location)
            if hit is None:
                raise ToolError(f"no place named {location!r} was found")
            lat, lon = float(hit["latitude"]), float(hit["longitude"])
            parts = [hit.get("name"), hit.get("admin1"), hit.get("country")]
            place = ", ".join(str(p) for p in parts if p) + f" ({lat:.2f}, {lon:.2f})"
        forecast = await safe_get_json(
            settings.weather_forecast_url,
            {
                "latitude": f"{lat:.2f}",
                "longitude": f"{lon:.2f}",
                "current": CURRENT_VARS,
                "daily": DAILY_VARS,
                "timezone": "auto",
                "forecast_days": 3,
            },
            settings,
        )
    except HttpFetchError as exc:
        raise ToolError(f"weather service error: {exc}") from None
    if not isinstance(forecast, dict):
        raise ToolError("weather service returned an unexpected answer")
    return ToolResult(
        True,
        render(place, forecast),
        data={"location": place, "latitude": lat, "longitude": lon, "sources": [{"title": "Open-Meteo", "url": "https://open-meteo.com/"}]},
    )

"""Outbound networking for URLs that users or models influence: the SSRF guard and a safe HTTP client."""

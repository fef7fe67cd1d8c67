"""The browser tests' module fixtures, from tests/support/app_browser.py (pytest finds
fixtures by name in a conftest)."""

from tests.support.app_browser import app_url, home

__all__ = ["app_url", "home"]

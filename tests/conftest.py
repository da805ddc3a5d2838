"""Shared pytest configuration."""

from __future__ import annotations


def pytest_configure(config):
    """Register the markers used by the test suite."""
    config.addinivalue_line(
        "markers", "slow: long-running statistical test (deselect with -m 'not slow')"
    )

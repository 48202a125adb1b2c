"""The tracing tests export nothing to the environment's collector."""

import pytest


@pytest.fixture(autouse=True)
def no_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """No exporter of the environment's: the spans stay in the test's memory."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")

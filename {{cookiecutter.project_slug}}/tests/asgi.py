"""Raw ASGI messages for tests that drive an app below the HTTP client."""

__all__ = ["http_scope"]


def http_scope(path: str = "/", *, spec_version: str = "2.3") -> dict[str, object]:
    """The scope of a plain `GET path` from a client that speaks `spec_version`."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }

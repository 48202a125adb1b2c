"""What the service tells its operators: log lines, request ids and traces.

- `logs`: every record as one JSON line, written off the event loop;
- `requests`: the request id, the request's log line and its SQL statement count;
- `tracing`: OpenTelemetry traces, loaded only with OTEL_ENABLED.
"""

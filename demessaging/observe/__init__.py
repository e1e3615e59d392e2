"""What a running backend and client tell the tools their operators already run.

Tracing (OpenTelemetry), metrics and a health check (Prometheus's text format) and log lines
(text or JSON). Each part imports its library only when switched on; without it nothing changes.
"""

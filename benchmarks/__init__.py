"""Benchmarks of demessaging against raw pulsar-client, on pulsar-lite and Apache Pulsar.

Run ``python -m benchmarks`` from the repository root; ``docs/benchmarks.md`` describes what is
measured and how.
"""

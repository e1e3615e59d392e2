"""Real brokers for tests, benchmarks and local experiments.

- :mod:`.pulsar`: an Apache Pulsar standalone broker, fetched from Maven Central and started on
  127.0.0.1 (``python -m demessaging.testing.pulsar run``);
- :mod:`.tokens`: JSON Web Tokens for Pulsar's token authentication.

The embedded pulsar-lite broker is in :mod:`demessaging.embedded`.
"""

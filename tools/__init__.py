"""Real brokers for tests, benchmarks and local experiments; not part of the package.

- :mod:`.pulsar`: an Apache Pulsar standalone broker, fetched from Maven Central and started on
  127.0.0.1 (``python -m tools.pulsar run``);
- :mod:`.dasf_broker`: dasf-broker-django, DASF's broker, installed from PyPI into an
  environment of its own (``python -m tools.dasf_broker run``).

They run from a checkout of the repository (its root on ``sys.path``), not from the wheel.
JSON Web Tokens for Pulsar's token authentication are in :mod:`demessaging.tokens`, and the
embedded pulsar-lite broker is in :mod:`demessaging.embedded`.
"""

"""Settings of backends and clients, read from arguments, then the environment, then defaults.

Every setting ``name`` can be set by the environment variable ``DEMESSAGING_<NAME>``
(``DEMESSAGING_BROKER_URL``, ``DEMESSAGING_TOPIC``, ``DEMESSAGING_TIMEOUT``). A generated client
package reads ``<PACKAGE>_<NAME>`` first, so that two clients in one process can point at
different backends.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

__all__ = ["DEFAULT_BROKER_URL", "DEFAULT_TIMEOUT", "ENV_PREFIX", "Settings"]

ENV_PREFIX = "DEMESSAGING_"
DEFAULT_BROKER_URL = "memory://"
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Settings:
    """Where the broker is and how to talk to it.

    Attributes
    ----------
    broker_url
        The broker, e.g. ``memory://`` for the in-process broker.
    topic
        The backend's request topic.
    timeout
        Default deadline of a call, in seconds.
    """

    broker_url: str = DEFAULT_BROKER_URL
    topic: str = ""
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigurationError(f"timeout must be positive, got {self.timeout!r}")

    @classmethod
    def from_env(
        cls,
        prefixes: Sequence[str] = (ENV_PREFIX,),
        environ: Mapping[str, str] | None = None,
        defaults: Settings | None = None,
        **values: Any,
    ) -> Settings:
        """Settings from ``values``, else the environment, else ``defaults``.

        Parameters
        ----------
        prefixes
            Environment prefixes, the first found wins.
        environ
            The environment; ``os.environ`` by default.
        defaults
            What unset settings fall back to; the class defaults if None.
        **values
            Explicit settings (None means unset); they win over the environment.

        Raises
        ------
        ConfigurationError
            If a value has the wrong type or an unknown name.
        """
        env = os.environ if environ is None else environ
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigurationError(f"unknown settings: {', '.join(sorted(unknown))}")
        chosen = dataclasses.asdict(defaults or cls())
        for name, field in known.items():
            for prefix in prefixes:
                key = f"{prefix}{name.upper()}"
                if key in env:
                    chosen[name] = _parse(key, env[key], field.type)
                    break
            if values.get(name) is not None:
                chosen[name] = values[name]
        return cls(**chosen)


def _parse(key: str, text: str, kind: Any) -> Any:
    if kind in (float, "float"):
        try:
            return float(text)
        except ValueError:
            raise ConfigurationError(f"{key}={text!r} is not a number") from None
    return text

"""The exceptions demessaging raises, all under one root.

::

    DemessagingError
    ├── ConfigurationError          settings that cannot work (bad URL, unknown scheme)
    ├── ModuleLoadError             a backend module cannot be loaded or has nothing to serve
    │   └── SignatureError          a signature cannot be served (names member and parameter)
    ├── GeneratorError              a client package cannot be written
    ├── ProtocolError               a message breaks the wire protocol
    ├── TransportError              the broker or the connection failed
    │   ├── AuthenticationError     the broker refused our credentials
    │   ├── AuthorizationError      credentials taken, but the role may not do that
    │   └── BrokerUnreachableError  no broker at the URL: connection refused, unknown host
    └── CallError                   a remote call did not produce its result
        ├── InvalidArgumentsError   arguments rejected on the client, before anything was sent
        ├── PayloadTooLargeError    a request larger than the broker takes in one message
        ├── CallTimeoutError        no reply within the deadline (also a built-in TimeoutError)
        ├── RemoteError             the backend answered with an error (type, message, stage)
        └── APIChangedError         the backend's member changed since the client was generated

Inside a served function, a cancellation point (a :class:`~demessaging.core.reporter.Reporter`'s
methods) raises :class:`CallCancelled` when the caller cancels the call. It derives from
``BaseException``, as ``KeyboardInterrupt`` does, so that ``except Exception`` blocks in
served code let it through.

The dispatcher in the backend uses three more, which travel back to the caller as a
:class:`RemoteError` with the matching ``stage``:

    DispatchError
    ├── RequestError                the request could not be decoded or validated  ("request")
    ├── ExecutionError              the function or method raised                  ("execution")
    └── ResultError                 the return value does not match its annotation ("result")
"""

from __future__ import annotations

__all__ = [
    "APIChangedError",
    "AuthenticationError",
    "AuthorizationError",
    "BrokerUnreachableError",
    "CallCancelled",
    "CallError",
    "CallTimeoutError",
    "ConfigurationError",
    "DemessagingError",
    "DemessagingWarning",
    "DispatchError",
    "ExecutionError",
    "GeneratorError",
    "InvalidArgumentsError",
    "ModuleLoadError",
    "PayloadTooLargeError",
    "ProtocolError",
    "RemoteError",
    "RequestError",
    "ResultError",
    "SignatureError",
    "TransportError",
]


class DemessagingError(Exception):
    """Root of every exception raised by demessaging."""


class DemessagingWarning(UserWarning):
    """Something works, but probably not the way the module's author meant."""


class ConfigurationError(DemessagingError, ValueError):
    """Settings that cannot work, such as an unknown broker URL scheme."""


class ModuleLoadError(DemessagingError):
    """A backend module cannot be loaded, or it has nothing to serve."""


class SignatureError(ModuleLoadError, TypeError):
    """A function or method of a backend module cannot be served as it is declared.

    Parameters
    ----------
    member
        Qualified name of the function or method, e.g. ``"Accumulator.add"``.
    parameter
        The offending parameter, ``"return"`` for the return annotation, or None when the
        problem concerns the whole member.
    reason
        What is wrong and, where possible, how to fix it.
    """

    def __init__(self, member: str, parameter: str | None, reason: str) -> None:
        self.member = member
        self.parameter = parameter
        self.reason = reason
        where = f"parameter {parameter!r} of {member!r}" if parameter else f"{member!r}"
        if parameter == "return":
            where = f"the return annotation of {member!r}"
        super().__init__(f"cannot serve {where}: {reason}")


class GeneratorError(DemessagingError):
    """A client package cannot be generated, e.g. a default value has no source form."""


class ProtocolError(DemessagingError):
    """A message breaks the wire protocol: missing properties, undecodable payload."""


class TransportError(DemessagingError):
    """The broker or the connection to it failed.

    ``reason`` is what failed; ``hint``, appended to it in the message, what may mend it (a
    command to run, a setting to raise), or empty.
    """

    def __init__(self, reason: str = "", *, hint: str = "") -> None:
        super().__init__(f"{reason}{hint}")
        self.reason = reason
        self.hint = hint


class AuthenticationError(TransportError):
    """The broker refused the credentials (or their absence)."""


class AuthorizationError(TransportError):
    """The broker took the credentials, but their role may not do this (HTTP 403).

    Pulsar's ``AuthorizationError``, a 403 of the admin API or the WebSocket API. Not an
    :class:`AuthenticationError`: the credentials are right and another token would not help;
    the role needs a grant (``pulsar-admin namespaces grant-permission``). Retrying does not
    help either.
    """


class BrokerUnreachableError(TransportError):
    """No broker can be reached at the URL: the connection is refused or the host unknown.

    Raised at once rather than after the broker's timeouts: typically a wrong URL, or a
    broker not started. A connection lost later is tried again first (a broker restarting).

    Parameters
    ----------
    url
        The broker URL.
    reason
        Why, e.g. ``"connection refused"`` or ``"unknown host broker.example"``.
    setting
        Where the broker URL is set, named in the message.
    """

    def __init__(
        self,
        url: str,
        reason: str,
        setting: str = "DEMESSAGING_BROKER_URL (--broker-url on the command line)",
    ) -> None:
        super().__init__(
            f"cannot reach the broker at {url}: {reason}; start the broker, or set its URL "
            f"in {setting}"
        )
        self.url = url
        self.reason = reason
        self.setting = setting

    def __reduce__(self) -> tuple[type[BrokerUnreachableError], tuple[str, str, str]]:
        return type(self), (self.url, self.reason, self.setting)


class CallError(DemessagingError):
    """A remote call did not produce its result."""


class InvalidArgumentsError(CallError, ValueError):
    """The arguments of a call were rejected on the client before anything was sent."""


class PayloadTooLargeError(CallError, ValueError):
    """A request is larger than the broker takes in one message."""


class CallTimeoutError(CallError, TimeoutError):
    """No reply arrived within the call's deadline.

    Parameters
    ----------
    topic
        The request topic the call was sent to.
    timeout
        The deadline, in seconds.
    member
        What was called, e.g. ``"array_sum"`` or ``"Accumulator.add"``.
    broker
        The broker's URL, when the time ran out before the broker could be reached.
    """

    def __init__(self, topic: str, timeout: float, member: str = "", broker: str = "") -> None:
        self.topic = topic
        self.timeout = timeout
        self.member = member
        what = f"call of {member!r}" if member else "call"
        if broker:
            text = f"{what} could not reach the broker at {broker} within {timeout:g} s"
        else:
            text = (
                f"{what} on topic {topic!r} got no reply within {timeout:g} s; "
                "is a backend listening on that topic?"
            )
        super().__init__(text)


class RemoteError(CallError):
    """The backend answered a call with an error.

    Parameters
    ----------
    remote_type
        Qualified name of the exception type raised in the backend, e.g. ``"ValueError"``.
    message
        The exception's message.
    stage
        Where it failed: ``"request"`` (the request was invalid), ``"execution"`` (the
        function raised) or ``"result"`` (the return value broke its annotation).
    remote_traceback
        The backend's traceback, when the backend runs in debug mode.
    declared
        The name the backend module exports the exception's type under, if it declares it;
        generated clients raise such errors as their mirror of that type (this error is its
        ``__cause__``).
    api_fingerprint
        The fingerprint of the called member as the backend knows it, when its reply said
        (demessaging backends do once they know which member was called; DASF's never do).
    """

    def __init__(
        self,
        remote_type: str,
        message: str,
        stage: str = "execution",
        remote_traceback: str | None = None,
        declared: str | None = None,
        api_fingerprint: str | None = None,
    ) -> None:
        self.remote_type = remote_type
        self.message = message
        self.stage = stage
        self.remote_traceback = remote_traceback
        self.declared = declared
        self.api_fingerprint = api_fingerprint
        text = f"{remote_type}: {message}"
        if remote_traceback:
            text = f"{text}\n\nRemote traceback:\n{remote_traceback}"
        super().__init__(text)


class APIChangedError(CallError):
    """A call failed because the backend's member is not what the client was generated for.

    Parameters
    ----------
    member
        The member called, ``"function"`` or ``"Class.method"``.
    changes
        What changed, in sentences (see :func:`demessaging.core.versions.changes`).
    """

    def __init__(self, member: str, changes: list[str]) -> None:
        self.member = member
        self.changes = changes
        super().__init__(
            f"the backend's {member} has changed since this client was generated: "
            f"{'; '.join(changes)}. Regenerate the client (demessaging generate)."
        )


class CallCancelled(BaseException):
    """Raised in a served function, at a cancellation point, when its caller cancelled it."""


class DispatchError(DemessagingError):
    """A request failed inside the backend's dispatcher; carries the reply's ``stage``."""

    stage = "execution"

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or type(self).__name__


class RequestError(DispatchError):
    """The request could not be decoded, or it does not validate against the module."""

    stage = "request"


class ExecutionError(DispatchError):
    """The called function or method raised an exception."""

    stage = "execution"


class ResultError(DispatchError):
    """The return value does not validate against the return annotation."""

    stage = "result"

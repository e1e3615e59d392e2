"""The dispatcher: a request in, the declared function or method called, a reply out. No I/O.

Only members of the module's request union can be reached: the request is validated against
the union, and the function is taken from its spec, never looked up by a name from the wire.
Nothing is ever unpickled.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..core.introspection import inspect_module
from ..core.models import Call, ModuleModels, build_models, format_validation_error
from ..core.reporter import SendProgress
from ..core.versions import member_name
from ..errors import DispatchError, ExecutionError, RequestError, ResultError
from ..protocol.envelope import JSON, ErrorInfo
from ..serialization import MalformedPayloadError, codec_for
from .reports import finish, reporters

__all__ = ["Dispatcher", "Outcome", "type_name"]

log = logging.getLogger("demessaging.backend")


@dataclass(frozen=True)
class Outcome:
    """The result of handling one request: an encoded value, or an error.

    Attributes
    ----------
    payload
        The encoded return value (empty on errors).
    error
        What went wrong, or None on success.
    member
        The member the request called (``"function"`` or ``"Class.method"``), if it got as
        far as naming one.
    streamed
        Whether a generator's items went one by one (``payload`` is then their number).
    """

    payload: bytes | bytearray = b""
    error: ErrorInfo | None = None
    member: str = ""
    streamed: bool = False

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.error is None


class Dispatcher:
    """Validates requests, calls the module and validates what it returns.

    Parameters
    ----------
    models
        The module's models, from :func:`demessaging.core.build_models`.
    debug
        Include tracebacks in error replies. Off by default: tracebacks reveal the backend's
        file layout and code to callers.
    """

    def __init__(self, models: ModuleModels, *, debug: bool = False) -> None:
        self.models = models
        self.debug = debug

    @classmethod
    def from_module(cls, target: str | Path | ModuleType, *, debug: bool = False) -> Dispatcher:
        """Introspect ``target`` (a path, dotted name or module) and build its dispatcher."""
        return cls(build_models(inspect_module(target)), debug=debug)

    def parse(
        self, request: bytes | bytearray | str | Mapping[str, Any], content_type: str = JSON
    ) -> Call:
        """Validate a request given as a payload of ``content_type`` or as a mapping.

        Raises
        ------
        RequestError
            If the request cannot be decoded or does not validate against the module.
        """
        try:
            if isinstance(request, Mapping):
                return self.models.validate_python(request)
            if content_type == JSON:
                return self.models.validate_json(request)
            if isinstance(request, str):
                request = request.encode()
            return self.models.resolve(codec_for(content_type).decode(request, self.models.request))
        except MalformedPayloadError as exc:  # the sender's error: no traceback logged
            raise RequestError(str(exc), error_type="ProtocolError") from None
        except ValidationError as exc:
            raise RequestError(format_validation_error(exc), error_type="ValidationError") from exc
        except ValueError as exc:  # an unknown content type
            raise RequestError(str(exc), error_type="ValueError") from exc

    def execute(
        self,
        call: Call,
        progress: SendProgress | None = None,
        cancelled: threading.Event | None = None,
        emit: Callable[[Any], None] | None = None,
    ) -> Any:
        """Run a validated call and return its validated result.

        ``progress`` sends the progress reports of functions that take one (see
        :mod:`demessaging.backend.reports`); ``cancelled``, once set, makes their
        reporters raise :class:`~demessaging.errors.CallCancelled`.

        A generator function's items are validated one by one, and handed to ``emit`` as they
        come (then the result is how many there were), or returned in a list.

        Raises
        ------
        ExecutionError
            If the function or method raises (``SystemExit`` included).
        ResultError
            If the return value does not validate against the return annotation.
        """
        spec = call.target.spec
        positional, keywords = _split(spec.parameters, call.arguments)
        made = reporters(spec, progress, cancelled, call.reports)
        keywords.update(made)
        try:
            if spec.kind == "method":
                owner = call.target.owner
                assert owner is not None
                ctor_pos, ctor_kw = _split(owner.constructor.parameters, call.constructor)
                ctor_made = reporters(
                    owner.constructor, progress, cancelled, call.constructor_reports
                )
                made.update({f"constructor {name}": r for name, r in ctor_made.items()})
                ctor_kw.update(ctor_made)
                instance = owner.cls(*ctor_pos, **ctor_kw)
                result = spec.func(instance, *positional, **keywords)
            elif spec.kind == "classmethod":
                assert call.target.owner is not None
                result = spec.func(call.target.owner.cls, *positional, **keywords)
            else:
                result = spec.func(*positional, **keywords)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
            if spec.streams:
                return self._drain(call, result, emit, made)
        except DispatchError:
            finish(made, ok=False)
            raise
        except BaseException as exc:  # KeyboardInterrupt and the like too: never the backend's end
            finish(made, ok=False)
            message = str(exc) or type(exc).__name__
            error = ExecutionError(message, error_type=type_name(type(exc)))
            error.__cause__ = exc
            raise error from exc
        finish(made, ok=True)
        try:
            return call.target.returns.validate_python(result)
        except ValidationError as exc:
            raise ResultError(
                f"{spec.qualname} returned a value that does not match its return annotation: "
                + format_validation_error(exc),
                error_type="ValidationError",
            ) from exc

    def _drain(
        self,
        call: Call,
        items: Iterator[Any],
        emit: Callable[[Any], None] | None,
        made: dict[str, Any],
    ) -> Any:
        """Validate a generator's items and emit them (or collect them); closes it at the end."""
        collected: list[Any] = []
        count = 0
        try:
            for item in items:
                try:
                    value = call.target.returns.validate_python(item)
                except ValidationError as exc:
                    raise ResultError(
                        f"{call.target.spec.qualname} yielded an item that does not match its "
                        f"annotation: {format_validation_error(exc)}",
                        error_type="ValidationError",
                    ) from exc
                count += 1
                if emit is None:
                    collected.append(value)
                else:
                    emit(value)
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # the caller gave up, or an item was wrong: stop it
                close()
        finish(made, ok=True)
        return count if emit is not None else collected

    def call(self, request: bytes | bytearray | str | Mapping[str, Any]) -> Any:
        """Parse, execute and return the result as a Python value; raises DispatchError."""
        return self.execute(self.parse(request))

    def handle(
        self,
        payload: bytes | bytearray,
        content_type: str = JSON,
        progress: SendProgress | None = None,
        cancelled: threading.Event | None = None,
        items: Callable[[bytes], None] | None = None,
    ) -> Outcome:
        """Handle the payload of a request; never raises for a bad request or call.

        Parameters
        ----------
        payload
            The request payload.
        content_type
            Its encoding; the result is encoded the same way.
        progress
            Sends progress messages to the caller.
        cancelled
            Set when the caller cancels the call.
        items
            Sends one encoded item of a generator function to the caller, who asked for its
            items one by one; the result is then their number. Without it, a generator
            function's result is the list of its items.

        Returns
        -------
        Outcome
            The encoded result, or the error to reply with.
        """
        member = ""
        try:
            call = self.parse(payload, content_type)
            owner = call.target.owner
            member = member_name(call.target.spec.name, owner.name if owner else None)
            codec = codec_for(content_type)
            target = call.target
            emit = None
            if items is not None and target.spec.streams:

                def emit(value: Any) -> None:
                    items(codec.encode(value, target.returns))

            value = self.execute(call, progress, cancelled, emit)
            adapter = target.returns
            if target.spec.streams:
                adapter = _COUNT if emit is not None else target.collected or target.returns
            try:
                encoded = codec.encode(value, adapter)
                return Outcome(payload=encoded, member=member, streamed=emit is not None)
            except Exception as exc:  # serialization of an unsupported value
                raise ResultError(
                    f"{call.target.spec.qualname} returned a value that cannot be encoded: {exc}",
                    error_type=type_name(type(exc)),
                ) from exc
        except DispatchError as exc:
            return Outcome(error=self.error_info(exc), member=member)
        except Exception as exc:  # a defect of the backend's own: answered, logged, never raised
            error = ExecutionError(f"internal error: {exc}", error_type=type_name(type(exc)))
            error.__cause__ = exc
            return Outcome(error=self.error_info(error), member=member)

    def error_info(self, exc: DispatchError) -> ErrorInfo:
        """The ErrorInfo to reply with for ``exc`` (logged; traceback only in debug mode)."""
        cause = exc.__cause__ or exc
        if exc.stage == "execution":
            log.warning("call failed: %s: %s", exc.error_type, exc.message, exc_info=cause)
        else:
            log.info("%s rejected: %s", exc.stage, exc.message)
        trace = "".join(traceback.format_exception(cause)) if self.debug else None
        declared = self.models.spec.declared_error(cause) if cause is not exc else None
        return ErrorInfo(
            type=exc.error_type,
            message=exc.message,
            stage=exc.stage,
            traceback=trace,
            declared=declared,
        )


def _split(params: Any, arguments: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Positional-only parameters are passed by position (their defaults filling gaps)."""
    positional = []
    keywords = dict(arguments)
    for param in params:
        if param.kind is not inspect.Parameter.POSITIONAL_ONLY:
            break
        if param.name in keywords:
            positional.append(keywords.pop(param.name))
        elif not param.required:
            positional.append(param.default)
        else:
            break
    return positional, keywords


_COUNT: TypeAdapter[int] = TypeAdapter(int)


def type_name(cls: type) -> str:
    """``ValueError`` for builtins, ``module.Qualified`` for the rest."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"

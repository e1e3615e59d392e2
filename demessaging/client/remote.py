"""The runtime of a generated client package.

A generated module mirrors the backend module; each mirrored function sends its arguments
through :class:`RemoteModule`, which builds the request models by introspecting the mirror
module itself (the same signatures, so the same models as the backend's). Arguments are
validated before anything is sent.
"""

from __future__ import annotations

import builtins
import dataclasses
import os
import sys
import threading
import warnings
from collections.abc import AsyncGenerator, Mapping, Sequence
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ValidationError

from ..config import DEFAULT_BROKER_URL, DEFAULT_TIMEOUT, ENV_PREFIX, Settings
from ..core import versions
from ..core.introspection import inspect_module
from ..core.models import CallableModels, ModuleModels, build_models, format_validation_error
from ..core.schema import api_info
from ..errors import (
    APIChangedError,
    DemessagingError,
    DemessagingWarning,
    InvalidArgumentsError,
    ProtocolError,
    RemoteError,
)
from .portal import Portal, blocking, blocking_iterator
from .runtime import Client, ReplyMismatchError

__all__ = ["RemoteModule"]


class RemoteModule:
    """Sends the calls of a mirror module to the backend it mirrors.

    Parameters
    ----------
    module
        The mirror module's ``__name__``.
    topic, broker_url, timeout
        The settings the package was generated with. The environment overrides them:
        ``<ENV_PREFIX>TOPIC`` and the like, then ``DEMESSAGING_TOPIC`` and the like.
    env_prefix
        The package's own environment prefix, e.g. ``"CLIMATE_CLIENT_"``.
    errors
        The exception types the backend module declares, by name: the mirror module's
        attributes of those names (or builtins). A call failing with one of them raises it,
        with the :class:`~demessaging.errors.RemoteError` as its ``__cause__``.
    """

    def __init__(
        self,
        module: str,
        *,
        topic: str,
        broker_url: str | None = None,
        timeout: float | None = None,
        env_prefix: str = "",
        errors: Sequence[str] = (),
    ) -> None:
        self.module_name = module
        self.errors = tuple(errors)
        generated = Settings(
            topic=topic,
            broker_url=broker_url or DEFAULT_BROKER_URL,
            timeout=timeout or DEFAULT_TIMEOUT,
        )
        prefixes = (env_prefix, ENV_PREFIX) if env_prefix else (ENV_PREFIX,)
        settings = Settings.from_env(prefixes, defaults=generated)
        # the topic names this package's backend: only the package's own variable changes it
        own = os.environ.get(f"{env_prefix}TOPIC") if env_prefix else None
        self.settings = dataclasses.replace(settings, topic=own or topic)
        self._lock = threading.Lock()
        self._client: Client | None = None

    @cached_property
    def models(self) -> ModuleModels:
        """The request models, built from the mirror module on first use."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DemessagingWarning)
            return build_models(inspect_module(sys.modules[self.module_name]))

    @property
    def client(self) -> Client:
        """The connection, opened on first use."""
        with self._lock:
            if self._client is None:
                self._client = Client(settings=self.settings)
            return self._client

    def bind(self, class_name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Check a mirrored class's constructor arguments; returns them for later calls.

        Raises
        ------
        InvalidArgumentsError
            If they do not validate against the constructor's signature.
        """
        try:
            self.models.constructors[class_name].model_validate(
                {"class_name": class_name, **arguments}
            )
        except ValidationError as exc:
            raise InvalidArgumentsError(
                f"invalid arguments for {class_name}(): {format_validation_error(exc)}"
            ) from None
        return dict(arguments)

    def request(
        self,
        member: str,
        arguments: Mapping[str, Any],
        constructor: Mapping[str, Any] | None = None,
    ) -> tuple[BaseModel, CallableModels]:
        """Validate a call and build its request.

        Parameters
        ----------
        member
            ``"function"`` or ``"Class.method"``.
        arguments
            The call's arguments by name.
        constructor
            The instance's constructor arguments, for instance methods.

        Raises
        ------
        InvalidArgumentsError
            If the arguments do not validate.
        """
        class_name, _, method = member.rpartition(".")
        if class_name:
            target = self.models.methods[(class_name, method)]
            data: dict[str, Any] = {
                "class_name": class_name,
                **((constructor or {}) if target.spec.needs_instance else {}),
                "function": {"func_name": method, **arguments},
            }
        else:
            target = self.models.functions[member]
            data = {"func_name": member, **arguments}
        try:
            validated = self.models.request.validate_python(data)
        except ValidationError as exc:
            raise InvalidArgumentsError(
                f"invalid arguments for {member}(): {format_validation_error(exc)}"
            ) from None
        return validated, target

    async def acall(
        self,
        member: str,
        arguments: Mapping[str, Any],
        constructor: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Call ``member`` on the backend and return its validated result.

        Raises
        ------
        APIChangedError
            If the call failed because the backend's member changed since the package was
            generated; it names what changed.
        Exception
            The package's copy of an exception type the module declares, when the backend
            raised it; other errors as :class:`~demessaging.errors.RemoteError`.
        """
        payload, target = self.request(member, arguments, constructor)
        try:
            return await self.client.acall(
                payload,
                returns=target.returns,
                timeout=timeout,
                member=member,
                fingerprint=self.fingerprints.get(member),
            )
        except (RemoteError, ProtocolError) as exc:
            better = await self._explained(exc, member, timeout)
            if better is None:
                raise
            raise better from exc

    async def astream(
        self,
        member: str,
        arguments: Mapping[str, Any],
        constructor: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Call the generator ``member`` on the backend; yields its validated items.

        Raises what :meth:`acall` raises.
        """
        payload, target = self.request(member, arguments, constructor)
        items = self.client.astream(
            payload,
            returns=target.returns,
            timeout=timeout,
            member=member,
            fingerprint=self.fingerprints.get(member),
        )
        try:
            async for item in items:
                yield item
        except (RemoteError, ProtocolError) as exc:
            better = await self._explained(exc, member, timeout)
            if better is None:
                raise
            raise better from exc
        finally:
            await items.aclose()

    # the functions of a generated package call these
    call = blocking(acall)
    stream = blocking_iterator(astream)

    def _portal(self) -> Portal:
        return self.client._portal()

    async def _explained(
        self, error: RemoteError | ProtocolError, member: str, timeout: float | None
    ) -> Exception | None:
        """The error as the module declares it, or as an API change; None if neither."""
        if isinstance(error, RemoteError):
            declared = self.declared(error)
            if declared is not None:
                return declared
        if _may_be_a_change(error, self.fingerprints.get(member)):
            return await self._changed(member, timeout)
        return None

    @cached_property
    def shapes(self) -> dict[str, dict[str, Any]]:
        """The shape of each member as this package knows it (:mod:`~demessaging.core.versions`)."""
        return versions.shapes(api_info(self.models))

    @cached_property
    def fingerprints(self) -> dict[str, str]:
        """The fingerprint of each member as this package knows it."""
        return versions.fingerprints(self.shapes)

    async def _changed(self, member: str, timeout: float | None) -> APIChangedError | None:
        """What changed in the backend's ``member``, if anything did; None if unknown."""
        try:
            theirs = versions.shapes(await self.client.aapi_info(timeout))
        except DemessagingError:  # an old backend, or a broker in trouble: keep the error
            return None
        changes = versions.changes(self.shapes.get(member), theirs.get(member))
        return APIChangedError(member, changes) if changes else None

    def declared(self, error: RemoteError) -> Exception | None:
        """The error as the declared exception type it names, or None if it names none."""
        if error.declared not in self.errors:
            return None
        module = sys.modules[self.module_name]
        cls = getattr(module, error.declared, None) or getattr(builtins, error.declared, None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            return None
        made = cls.__new__(cls)  # not __init__: the message is made already
        made.args = (error.message,)
        return made

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


#: What a request cut short says (pydantic's words, which DASF's backends pass on too).
_BROKEN_JSON = ("Invalid JSON", "json_invalid")


def _may_be_a_change(error: RemoteError | ProtocolError, ours: str | None) -> bool:
    """Whether a changed member can explain the failure of a call.

    Only arguments the backend refused as invalid, and results that broke a type, can; and
    not when the backend said that its member's fingerprint is the client's. Anything else (a
    request the backend could not read, one cut short, a function that raised) keeps its own
    error.
    """
    if not isinstance(error, RemoteError):  # the reply broke the return type, or a stream
        return isinstance(error, ReplyMismatchError)
    if error.api_fingerprint is not None and error.api_fingerprint == ours:
        return False
    if error.stage == "result":
        return True
    if error.stage != "request" or any(words in error.message for words in _BROKEN_JSON):
        return False
    # ours name the error type; DASF's backends send text only
    return error.remote_type.endswith("ValidationError") or error.message.startswith(
        "error validating request"
    )

"""A transport error keeps what failed apart from the hint that may mend it."""

from __future__ import annotations

import pickle

from demessaging.errors import AuthorizationError, TransportError


def test_the_message_is_the_reason_and_the_hint() -> None:
    error = TransportError("the broker refused a message to t", hint="; make the topic first")
    assert str(error) == "the broker refused a message to t; make the topic first"
    assert error.reason == "the broker refused a message to t"
    assert error.hint == "; make the topic first"


def test_without_a_hint_the_message_is_the_reason() -> None:
    error = AuthorizationError("role may not consume")
    assert str(error) == error.reason == "role may not consume"
    assert error.hint == ""


def test_it_survives_pickling_with_its_message() -> None:  # errors cross process boundaries
    error = TransportError("refused", hint="; a hint")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TransportError
    assert str(copy) == "refused; a hint"

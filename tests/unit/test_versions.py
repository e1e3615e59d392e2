"""API versions: member fingerprints, what changed, and what a generated client is told."""

from __future__ import annotations

import textwrap
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from demessaging import APIChangedError, DemessagingWarning, RemoteError
from demessaging.backend import serve
from demessaging.client import RemoteModule
from demessaging.client.runtime import ReplyMismatchError
from demessaging.core import inspect_module
from demessaging.core.models import build_models
from demessaging.core.schema import api_info
from demessaging.core.versions import changes, fingerprint, shapes
from demessaging.errors import ProtocolError
from tests.helpers import generated_client

OLD = '''
import enum


class Unit(str, enum.Enum):
    """Units."""

    KG = "kg"


def weigh(item: str, unit: Unit = Unit.KG) -> float:
    """Weigh an item."""
    return 1.0


def price(item: str, amount: float) -> float:
    """Price of an amount."""
    return amount * 2


def label(item: str) -> str:
    """A label."""
    return item.upper()


def gone(item: str) -> str:
    """Removed later."""
    return item


def broken(item: str) -> int:
    """Breaks its own annotation."""
    return item  # type: ignore[return-value]


class Scale:
    """A scale."""

    def __init__(self, precision: int) -> None:
        self.precision = precision

    def read(self) -> float:
        """Read it."""
        return 0.0
'''

NEW = '''
import enum


class Unit(str, enum.Enum):
    """Units, with more words."""

    KG = "kg"
    LB = "lb"


def weigh(item: str, unit: Unit = Unit.LB, tare: float = 0.0) -> float:
    """Weigh an item, now with a tare and another default: compatible."""
    return 2.0


def price(item: int, amount: float, currency: str) -> list[float]:
    """Price, changed incompatibly."""
    return [amount]


def label(item: str) -> str:
    """Said differently, unchanged for callers."""
    return item.lower()


class Scale:
    """A scale."""

    def __init__(self, precision: int, model: str) -> None:
        self.precision = precision

    def read(self) -> float:
        """Read it."""
        return 0.0
'''


def _shapes(path: Path) -> dict[str, dict[str, object]]:
    return shapes(api_info(build_models(inspect_module(path))))


@pytest.fixture
def modules(tmp_path: Path) -> tuple[Path, Path]:
    tag = uuid.uuid4().hex[:8]
    old = tmp_path / f"shop_old_{tag}.py"
    new = tmp_path / f"shop_new_{tag}.py"
    old.write_text(textwrap.dedent(OLD))
    new.write_text(textwrap.dedent(NEW))
    return old, new


def test_words_and_defaults_leave_the_fingerprint_alone(modules: tuple[Path, Path]) -> None:
    old, new = (_shapes(p) for p in modules)
    assert fingerprint(old["label"]) == fingerprint(new["label"])
    assert changes(old["label"], new["label"]) == []
    assert fingerprint(old["weigh"]) != fingerprint(new["weigh"])  # a parameter, an enum value
    assert changes(old["weigh"], new["weigh"]) == [
        'parameter \'unit\' changed from {"enum":["kg"],"type":"string"} to '
        '{"enum":["kg","lb"],"type":"string"}'
    ]


def test_changes_name_what_a_caller_depends_on(modules: tuple[Path, Path]) -> None:
    old, new = (_shapes(p) for p in modules)
    assert changes(old["price"], new["price"]) == [
        "parameter 'currency' was added and is required",
        'parameter \'item\' changed from {"type":"string"} to {"type":"integer"}',
        'the return value changed from {"type":"number"} to '
        '{"items":{"type":"number"},"type":"array"}',
    ]
    assert changes(old["Scale.read"], new["Scale.read"]) == [
        "constructor argument 'model' was added and is required"
    ]
    assert changes(old["gone"], new.get("gone")) == ["the backend no longer serves it"]
    assert changes(new["price"], old["price"]) == [
        "parameter 'currency' was removed",
        'parameter \'item\' changed from {"type":"integer"} to {"type":"string"}',
        'the return value changed from {"items":{"type":"number"},"type":"array"} '
        'to {"type":"number"}',
    ]


def test_recursive_types_have_a_fingerprint(write_module: Callable[..., Path]) -> None:
    source = """
    from __future__ import annotations
    from pydantic import BaseModel

    class Tree(BaseModel):
        children: list[Tree] = []

    def size(tree: Tree) -> int:
        return 1
    """
    shape = shapes(api_info(build_models(inspect_module(write_module(source)))))["size"]
    assert len(fingerprint(shape)) == 16
    assert "Tree" in str(shape["parameters"])


@pytest.fixture
def old_client(modules: tuple[Path, Path], tmp_path: Path) -> Iterator[tuple[ModuleType, str]]:
    """A client generated from the old module, for a backend serving the new one."""
    tag = uuid.uuid4().hex[:8]
    url = f"memory://{tag}"
    with generated_client(
        modules[0], tmp_path / "client", name=f"shop-{tag}", topic="shop", broker_url=url
    ) as shop:
        yield shop, url


def test_a_generated_client_is_told_what_changed(
    modules: tuple[Path, Path], old_client: tuple[ModuleType, str]
) -> None:
    shop, url = old_client
    with serve(modules[1], broker_url=url, topic="shop"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert shop.label("Flour") == "flour"  # unchanged for callers: no warning
        with pytest.raises(APIChangedError) as changed:
            shop.price("flour", 2.0)
        assert changed.value.member == "price"
        assert "parameter 'currency' was added and is required" in str(changed.value)
        assert "Regenerate the client" in str(changed.value)
        assert isinstance(changed.value.__cause__, RemoteError)
        with pytest.raises(APIChangedError, match="no longer serves it"):
            shop.gone("x")
        with pytest.raises(APIChangedError, match="constructor argument 'model' was added"):
            shop.Scale(precision=2).read()
        with pytest.warns(DemessagingWarning, match="weigh has changed .* still worked"):
            assert shop.weigh("flour") == 2.0  # a compatible change: the call works
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert shop.weigh("sugar") == 2.0  # warned once


def test_an_unchanged_backend_fails_as_itself(
    modules: tuple[Path, Path], old_client: tuple[ModuleType, str]
) -> None:
    shop, url = old_client
    with serve(modules[0], broker_url=url, topic="shop"):
        with pytest.raises(RemoteError, match="does not match its return annotation") as failed:
            shop.broken("flour")
        assert failed.value.stage == "result"  # the schemas agree: nothing to blame on versions


#: What a backend says of a request it got only the first piece of (DASF's words).
CUT_SHORT = (
    "error validating request: 1 validation error for FuncPrice\n"
    "  Invalid JSON: EOF while parsing a string at line 1 column 524288 [type=json_invalid]"
)


def test_only_a_failure_a_change_explains_is_blamed_on_the_change(
    modules: tuple[Path, Path], old_client: tuple[ModuleType, str]
) -> None:
    shop, url = old_client
    remote: RemoteModule = shop._remote
    ours = remote.fingerprints["price"]

    def explained(error: RemoteError | ProtocolError) -> Exception | None:
        return remote._portal().run(remote._explained(error, "price", 10))

    with serve(modules[1], broker_url=url, topic="shop"):  # price changed there
        kept = [
            RemoteError("RemoteError", CUT_SHORT, "request"),  # a DASF backend's
            RemoteError("ValidationError", "Invalid JSON: EOF while parsing", "request"),
            RemoteError("ProtocolError", "the payload is not msgpack", "request"),
            RemoteError("ValueError", "unknown content type", "request"),
            RemoteError("ZeroDivisionError", "division by zero", "execution"),
            ProtocolError("a piece of the reply is missing"),
            # the backend says its member is the client's: whatever failed, not the API
            RemoteError("ValidationError", "x: bad", "result", api_fingerprint=ours),
        ]
        for error in kept:
            assert explained(error) is None, error
        blamed = [
            RemoteError("RemoteError", "error validating request: a valid string", "request"),
            RemoteError("ValidationError", "item: Input should be a valid integer", "request"),
            RemoteError("ValidationError", "returned a value that does not match", "result"),
            RemoteError("ValidationError", "x", "request", api_fingerprint="0123456789abcdef"),
            ReplyMismatchError("the reply to price does not match what the client expects"),
        ]
        for error in blamed:
            assert isinstance(explained(error), APIChangedError), error

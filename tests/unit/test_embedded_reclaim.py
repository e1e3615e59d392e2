"""The embedded broker's data is deleted once no call it carried can still be under way."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demessaging import embedded
from demessaging.errors import ConfigurationError

HOUR = 3600.0


def _data(folder: Path, *, age: float) -> int:
    """A stopped broker's data, last written ``age`` seconds ago; its size."""
    rocks = folder / "pulsar-lite.rocksdb"
    (rocks / "entrylog").mkdir(parents=True)
    files = {
        rocks / "entrylog" / "0.log": b"x" * 5000,
        rocks / "LOCK": b"",
        rocks / "000004.log": b"y" * 300,
        folder / "pulsar-lite.metadata.json": b'{"version": 2}',
    }
    then = time.time() - age
    for path, content in files.items():
        path.write_bytes(content)
        os.utime(path, (then, then))
    return sum(len(content) for content in files.values())


def test_old_data_is_deleted_with_its_topics(tmp_path: Path) -> None:
    size = _data(tmp_path, age=2 * HOUR)
    (tmp_path / "pulsar-lite.toml").write_text(embedded.CONFIG)
    assert embedded.data_size(tmp_path) == size
    assert embedded.reclaim(tmp_path, keep=HOUR) == size
    assert embedded.data_size(tmp_path) == 0
    assert not (tmp_path / "pulsar-lite.rocksdb").exists()
    assert not (tmp_path / "pulsar-lite.metadata.json").exists()
    assert (tmp_path / "pulsar-lite.toml").exists()  # not data: left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broker.lock", "pulsar-lite.toml"]


def test_data_that_cannot_be_moved_aside_is_kept_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = _data(tmp_path, age=2 * HOUR)
    (tmp_path / ".deleting-1-2").mkdir()  # left by a run that was interrupted
    rename = Path.rename

    def refuse(self: Path, target: Path) -> Path:  # as Windows does for files held open
        if self.name == "pulsar-lite.metadata.json":
            raise PermissionError("in use")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse)
    assert embedded.reclaim(tmp_path, keep=HOUR) == 0
    assert embedded.data_size(tmp_path) == size
    assert (tmp_path / "pulsar-lite.rocksdb" / "entrylog" / "0.log").exists()
    monkeypatch.undo()
    assert embedded.reclaim(tmp_path, keep=HOUR) == size
    assert not list(tmp_path.glob(".deleting-*"))


def test_recent_data_is_kept_calls_may_wait_for_it(tmp_path: Path) -> None:
    size = _data(tmp_path, age=HOUR / 2)
    assert embedded.reclaim(tmp_path, keep=HOUR) == 0
    assert embedded.data_size(tmp_path) == size


def test_one_recent_file_keeps_all(tmp_path: Path) -> None:
    size = _data(tmp_path, age=2 * HOUR)
    (tmp_path / "pulsar-lite.rocksdb" / "entrylog" / "0.log").touch()  # a message
    assert embedded.reclaim(tmp_path, keep=HOUR) == 0
    assert embedded.data_size(tmp_path) == size


def test_nothing_to_reclaim_in_an_empty_folder(tmp_path: Path) -> None:
    assert embedded.reclaim(tmp_path / "new", keep=0) == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks")
def test_data_a_process_holds_open_is_kept(tmp_path: Path) -> None:
    size = _data(tmp_path, age=2 * HOUR)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'r+b'); fcntl.lockf(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True); time.sleep(60)",
            str(tmp_path / "pulsar-lite.rocksdb" / "LOCK"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"locked"
        assert embedded.reclaim(tmp_path, keep=0) == 0
        assert embedded.data_size(tmp_path) == size
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
    assert embedded.reclaim(tmp_path, keep=0) == size  # once it has let go


def test_data_of_a_running_broker_is_kept(tmp_path: Path) -> None:
    size = _data(tmp_path, age=2 * HOUR)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        (tmp_path / "broker.json").write_text(json.dumps({"pid": os.getpid(), "port": port}))
        assert embedded.reclaim(tmp_path, keep=0) == 0
    assert embedded.data_size(tmp_path) == size


def test_keep_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedded.KEEP_VARIABLE, raising=False)
    assert embedded.keep_seconds() == embedded.DEFAULT_KEEP == HOUR
    monkeypatch.setenv(embedded.KEEP_VARIABLE, " 90.5 ")
    assert embedded.keep_seconds() == 90.5
    monkeypatch.setenv(embedded.KEEP_VARIABLE, "0")
    assert embedded.keep_seconds() == 0


@pytest.mark.parametrize("text", ["an hour", "-1", "nan", "inf", "1e400"])
def test_a_bad_keep_is_named(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv(embedded.KEEP_VARIABLE, text)
    with pytest.raises(ConfigurationError, match=f"DEMESSAGING_EMBEDDED_KEEP .*{text!r}"):
        embedded.keep_seconds()


def test_topics_are_read_from_pulsar_lites_list(tmp_path: Path) -> None:
    assert embedded.topics(tmp_path) == {}
    listing = {
        "version": 2,
        str(tmp_path / "pulsar-lite.metadata.json"): {
            "public": {
                "default": {
                    "persistent": {
                        "climate": {"subscriptions": {"demessaging-backend": {}}},
                        "climate_abcdefgh": {"subscriptions": {}},
                    },
                    "non-persistent": {"scratch": {"subscriptions": {}}},
                }
            },
            "research": {"x": {"persistent": {"t": {"subscriptions": {"b": {}, "a": {}}}}}},
        },
        "partitioned_topics": {},
    }
    (tmp_path / "pulsar-lite.metadata.json").write_text(json.dumps(listing))
    assert embedded.topics(tmp_path) == {
        "climate": ["demessaging-backend"],
        "climate_abcdefgh": [],
        "research/x/t": ["a", "b"],
    }
    (tmp_path / "pulsar-lite.metadata.json").write_text("{not json")
    assert embedded.topics(tmp_path) == {}


def test_cursor_writes_alone_do_not_keep_it(tmp_path: Path) -> None:
    size = _data(tmp_path, age=2 * HOUR)
    (tmp_path / "pulsar-lite.rocksdb" / "000004.log").touch()  # acknowledgements, not messages
    assert embedded.reclaim(tmp_path, keep=HOUR) == size


def test_only_the_process_that_started_a_broker_renews_it(tmp_path: Path) -> None:
    _data(tmp_path, age=2 * HOUR)
    (tmp_path / "pulsar-lite.rocksdb" / "entrylog" / "1.log").write_bytes(
        b"z" * embedded.RENEW_ABOVE
    )
    os.utime(tmp_path / "pulsar-lite.rocksdb" / "entrylog" / "1.log", (0, 0))
    found = embedded.EmbeddedBroker(url="pulsar://127.0.0.1:1", pid=os.getpid(), folder=tmp_path)
    assert found.renew(keep=0) == 0
    assert embedded.data_size(tmp_path) > embedded.RENEW_ABOVE


def test_a_small_database_is_not_worth_a_restart(tmp_path: Path) -> None:
    _data(tmp_path, age=2 * HOUR)
    broker = embedded.EmbeddedBroker(
        url="pulsar://127.0.0.1:1", pid=os.getpid(), folder=tmp_path, owned=True
    )
    assert broker.renew(keep=0) == 0  # nothing stopped: this process is no broker


def test_the_subscription_made_again_is_the_backends() -> None:
    from demessaging.backend.listener import DEFAULT_SUBSCRIPTION

    assert embedded.SERVED == DEFAULT_SUBSCRIPTION

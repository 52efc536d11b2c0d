"""Pipelined commands on one pooled connection, without redis-py's ``Pipeline`` object.

The store sends hundreds of commands per round trip. ``Pipeline`` costs ~25 µs of Python
per command (argument normalisation, response callbacks, bookkeeping); packing with
hiredis (or from cached fragments, :func:`bulk`) and reading raw replies costs a few.
Replies are returned as Redis sent them (bytes, ints, lists; no callbacks), and an error
reply is returned as its ``ResponseError`` value, after every reply has been read, so the
connection never goes back to the pool with unread data.

Like ``Pipeline.execute``, a connection or timeout error disconnects and retries the
whole round trip per the client's ``Retry`` policy: the store's commands are all safe to
send twice (reads; scripts idempotent per ``txn_id`` or guarded by a version check).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import hiredis
import redis
from redis._parsers import _HiredisParser
from redis.exceptions import ResponseError

# One command: the name, then its arguments (a tuple: what hiredis packs).
Command = tuple[bytes | str | int, ...]
# hiredis' stub types its argument as a 1-tuple; it takes any tuple of those.
pack = cast(Callable[[Command], bytes], hiredis.pack_command)
# Commands are sent as soon as this many bytes are packed: Redis runs them while the next
# ones are built. Big enough that the syscalls do not count (~1 per 100 commands).
CHUNK_BYTES = 64 * 1024


def bulk(text: str) -> bytes:
    """``text`` as one RESP bulk string: a piece of a command packed by hand, for
    arguments worth packing once and caching (the merchant window's field names)."""
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def head(n_args: int) -> bytes:
    """The RESP array header of a command of ``n_args`` parts (name included)."""
    return b"*%d\r\n" % n_args


def execute(client: redis.Redis, commands: Iterable[bytes]) -> list[Any]:
    """Send the packed commands on one connection and return their replies, errors as
    values. ``commands`` may be a generator: they are sent in chunks as they are built,
    so Redis runs the first ones while the rest are packed."""
    lazy = _Chunks(commands)
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        replies: list[Any] = conn.retry.call_with_retry(
            lambda: _round_trip(conn, lazy),
            lambda _error: conn.disconnect(),
        )
        return replies
    except BaseException:  # replies may be left unread (e.g. the builder failed part-way)
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


class _Chunks:
    """Packed commands joined into chunks of ~``CHUNK_BYTES``, built on first use and
    kept, so that a retry sends exactly the same commands again."""

    def __init__(self, commands: Iterable[bytes]) -> None:
        self._source = iter(commands)
        self._built: list[tuple[bytes, int]] = []  # (data, number of commands)

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        i = 0
        while True:
            if i == len(self._built):
                parts: list[bytes] = []
                size = 0
                for command in self._source:
                    parts.append(command)
                    size += len(command)
                    if size >= CHUNK_BYTES:
                        break
                if not parts:
                    return
                self._built.append((b"".join(parts), len(parts)))
            yield self._built[i]
            i += 1


def _round_trip(conn: Any, chunks: _Chunks) -> list[Any]:
    count = 0
    for data, n in chunks:
        conn.send_packed_command([data], check_health=not count)
        count += n
    if not count:
        return []
    read = _fast_read(conn)
    if read is None:
        return _read_replies(conn.read_response, count)
    try:
        return _read_replies(read, count)
    except OSError as exc:  # as Connection.read_response: a broken socket is a ConnectionError
        conn.disconnect()
        raise redis.exceptions.ConnectionError(f"Error while reading from Redis: {exc}") from exc
    except BaseException:  # a timeout, or a half-read reply: the socket is out of sync
        conn.disconnect()
        raise


def _fast_read(conn: Any) -> Callable[[], Any] | None:
    """The hiredis parser's own ``read_response`` (error replies come back as values; it
    handles RESP3 push messages itself), which skips ~1 µs per reply of
    ``Connection.read_response`` bookkeeping; None for any other parser, where the
    connection's method is used."""
    parser = getattr(conn, "_parser", None)
    if type(parser) is _HiredisParser:
        return cast(Callable[[], Any], parser.read_response)
    return None


def _read_replies(read: Callable[[], Any], count: int) -> list[Any]:
    replies: list[Any] = []
    append = replies.append
    for _ in range(count):
        try:
            append(read())
        except ResponseError as exc:  # an error reply; the connection stays in sync
            append(exc)
    return replies

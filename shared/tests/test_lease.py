"""The Redis lease: one holder at a time, a lapse lets another in, and giving it up never hangs
a stopping process."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from dalal_shared.lease import Lease


async def test_one_holder_and_a_release_lets_the_next_in(aredis: aioredis.Redis) -> None:
    first = Lease(aredis, "role", ttl_seconds=5, owner="a")
    second = Lease(aredis, "role", ttl_seconds=5, owner="b")
    assert await first.acquire() and await first.acquire()  # renews its own
    assert not await second.acquire()
    assert await first.holder() == "a"
    await second.release()  # not its lease: nothing happens
    assert await first.holder() == "a"
    await first.release()
    assert await second.acquire() and await second.holder() == "b"


async def test_a_release_against_a_silent_redis_gives_up_within_the_ttl() -> None:
    """A server that accepts the connection and never answers (a wedged socket): the release
    returns once the TTL has passed (the lease lapses by itself then) instead of hanging."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # read everything, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        lease = Lease(client, "role", ttl_seconds=0.3, owner="a")
        await asyncio.wait_for(lease.release(), timeout=10)  # raises if it hangs
    finally:
        await client.aclose()
        server.close()

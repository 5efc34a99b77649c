"""A service process's start-up objects are frozen once its app has started (`serve` wraps the
app's lifespan with `freeze_after_start`): a full garbage collection later walks only what the
process made since, so it no longer stalls a bar's step for tens of milliseconds."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from dalal_shared.service import freeze_after_start


async def test_what_the_app_built_to_start_is_frozen_once_it_has_started() -> None:
    seen: dict[str, int] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        seen["during_startup"] = gc.get_freeze_count()
        yield

    built = [[n] for n in range(50_000)]  # start-up objects the collector would walk
    app = FastAPI(lifespan=lifespan)
    freeze_after_start(app)
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):  # as uvicorn starts it
            frozen = gc.get_freeze_count()
            walked = {id(o) for o in gc.get_objects()}  # what a full collection goes over
            made_since = [[1]]
            walked_later = {id(o) for o in gc.get_objects()}
        assert seen["during_startup"] == 0  # the app's own start-up runs first
        assert frozen >= len(built)
        assert not any(id(o) in walked for o in built)
        assert id(made_since[0]) in walked_later  # what came after is collected as ever
        gc.unfreeze()
        assert all(id(o) in {id(x) for x in gc.get_objects()} for o in built[:10])
    finally:
        gc.unfreeze()

"""`POST /strategies/{name}/enable|disable`: switch one strategy instance's entries on or off.

A disabled instance proposes no new entries (its signals are recorded as refused with reason
`strategy_disabled` in `GET /signals`); exits, stop-losses and targets of what it holds keep
working. The switch is kept in the engine's store across restarts; `GET /engine/status` shows
each instance's `enabled`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from dalal_shared.errors import NotFoundError

router = APIRouter(prefix="/strategies", tags=["strategies"])

InstanceName = Annotated[str, Path(min_length=1, max_length=64)]


async def _switch(request: Request, name: str, enabled: bool) -> dict[str, Any]:
    live = request.app.state.live
    if name not in live.instances:
        known = ", ".join(sorted(live.instances)) or "none configured"
        raise NotFoundError(f"no strategy instance {name!r} (known: {known})")
    await request.app.state.gate.run(live.set_enabled, name, enabled)
    return {"name": name, "enabled": enabled}


@router.post("/{name}/enable", summary="Let a strategy instance enter positions again")
async def enable(name: InstanceName, request: Request) -> dict[str, Any]:
    return await _switch(request, name, True)


@router.post(
    "/{name}/disable", summary="No new entries from a strategy instance; its exits keep working"
)
async def disable(name: InstanceName, request: Request) -> dict[str, Any]:
    return await _switch(request, name, False)

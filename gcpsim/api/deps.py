"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gcpsim.sim import Sim


def get_sim(request: Request) -> Sim:
    """The simulator the app serves (`create_app` puts it on `app.state.sim`)."""
    sim: Sim = request.app.state.sim
    return sim


SimDep = Annotated[Sim, Depends(get_sim)]

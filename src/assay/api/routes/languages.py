"""/api/v1/languages: what programs may be written in, as the engine's image has them."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from assay.api.deps import EngineDep
from assay.api.schemas import LanguageList, LanguageOut
from assay.api.strict_json import StrictJsonRoute

__all__ = ["router"]

router = APIRouter(tags=["languages"], route_class=StrictJsonRoute)


@router.get("/languages", response_model=LanguageList)
async def languages(engine: EngineDep) -> LanguageList:
    """Each language's name, its toolchain's version (measured in the sandbox image), the
    file its program is stored as, and whether it is compiled."""
    return LanguageList(
        languages=[
            LanguageOut.model_validate(dataclasses.asdict(info))
            for info in await engine.languages()
        ]
    )

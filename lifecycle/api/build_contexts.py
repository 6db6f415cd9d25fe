"""`GET /build-contexts/{id}`: a Kubernetes build pod fetches its staged build context, once.

The pod has no lifecycle token, only the offer's build token (`X-Trackside-Build-Token`, see
lifecycle.deploy.kaniko_job): no `X-Racetrack-Auth` here. The token is never logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from lifecycle.deploy.context_handout import WrongToken
from lifecycle.deploy.kaniko_job import TOKEN_HEADER

from .dependencies import control_plane
from .errors import Forbidden, NotFound, Unauthenticated

logger = logging.getLogger("trackside.lifecycle.build_contexts")

router = APIRouter(tags=["builds"])

CHUNK = 256 * 1024


def _chunks(archive: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := archive.read(CHUNK):
            yield chunk
    finally:
        archive.close()


@router.get(
    "/build-contexts/{offer_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-tar": {}}, "description": "the build context, once"}},
)
def build_context(
    offer_id: str,
    request: Request,
    token: Annotated[str | None, Header(alias=TOKEN_HEADER)] = None,
) -> StreamingResponse:
    if not token:
        raise Unauthenticated(f"no build token: send it in the {TOKEN_HEADER} header")
    try:
        archive = control_plane(request).context_handout.take(offer_id, token)
    except WrongToken:
        logger.warning("build context %s: refused a wrong build token", offer_id)
        raise Forbidden(f"the build token is not the one of build context {offer_id}") from None
    if archive is None:
        raise NotFound(f"no build context {offer_id} (unknown, expired, withdrawn or fetched already)")
    try:
        # opened now: the builder may delete the file once it withdraws the offer
        opened = archive.open("rb")
    except OSError:
        logger.error("build context %s: its archive %s is gone", offer_id, archive)
        raise NotFound(f"build context {offer_id} is no longer on this lifecycle") from None
    size = os.fstat(opened.fileno()).st_size
    logger.info("build context %s handed out (%d bytes)", offer_id, size)
    return StreamingResponse(
        _chunks(opened),
        media_type="application/x-tar",
        headers={"Content-Length": str(size), "Cache-Control": "no-store"},
    )

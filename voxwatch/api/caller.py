"""Who may place a call from a browser, and the caller page.

- `caller_guard`: the dependency of `POST /v1/calls`. A request carrying an `Origin` other than the
  service's own must come from one of `calls.cors_origins` (403 otherwise, so a page elsewhere
  cannot place calls even without a preflight); the answer then carries the CORS headers. With
  `calls.token` set, callers send `Authorization: Bearer <token>` (401 otherwise).
- `OPTIONS /v1/calls`: the CORS preflight (204 with the headers for an allowed origin, 403 if not).
- `GET /call`: a page an on-call engineer opens to place a test call through the real edge
  (microphone or an audio file) and read the transcript and the reply of each turn.
- `GET /v1/calls/{call_id}/turns`: those turns; the call id (64 random bits, known only to the
  caller who got the answer) is the capability, plus the caller token when one is configured.

The policy is read from `ctx.settings` on every request, so a config reload changes it at once.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from voxwatch.config import CallerEndpoint

PAGE = Path(__file__).with_name("call_page.html")


def _policy(request: Request) -> CallerEndpoint:
    ctx = getattr(request.app.state, "ctx", None)
    return getattr(getattr(ctx, "settings", None), "calls", None) or CallerEndpoint()


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def cors_headers(request: Request) -> dict[str, str] | None:
    """The CORS headers for this request's Origin: {} for same-origin or no Origin, None if refused."""
    origin = request.headers.get("origin")
    if not origin or origin == _own_origin(request):
        return {}
    allowed = _policy(request).cors_origins
    if "*" in allowed or origin.rstrip("/") in allowed:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return None


def _check_token(request: Request, headers: dict[str, str]) -> None:
    token = _policy(request).token
    if not token:
        return
    auth = request.headers.get("authorization", "")
    scheme, _, given = auth.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(401, "this service asks callers for a token (calls.token)",
                            headers={**headers, "WWW-Authenticate": "Bearer"})


def caller_guard(request: Request, response: Response) -> dict[str, str]:
    """Dependency of POST /v1/calls: origin, then token; sets the CORS headers of the answer and
    returns them (for an error answer, which FastAPI builds afresh)."""
    headers = cors_headers(request)
    if headers is None:
        raise HTTPException(403, f"origin {request.headers.get('origin')} may not place calls "
                                 "(add it to calls.cors_origins)")
    _check_token(request, headers)
    response.headers.update(headers)
    return headers


def build_router(ctx) -> APIRouter:
    router = APIRouter(tags=["calls"])

    @router.options("/v1/calls", include_in_schema=False)
    @router.options("/v1/calls/{call_id}/turns", include_in_schema=False)
    def preflight(request: Request) -> Response:
        headers = cors_headers(request)
        if headers is None:
            return Response(status_code=403, content="origin not allowed (calls.cors_origins)")
        if headers:
            headers.update({
                "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": "content-type, authorization",
                "Access-Control-Max-Age": "600",
            })
        return Response(status_code=204, headers=headers)

    @router.get("/call", response_class=HTMLResponse, summary="A page to place a test call through the edge")
    def call_page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text())

    @router.get("/v1/calls/{call_id}/turns", summary="Transcript and reply of each turn of one call, for its caller")
    def turns(call_id: str, request: Request, response: Response) -> list[dict]:
        headers = cors_headers(request)
        if headers is None:
            raise HTTPException(403, "origin not allowed (calls.cors_origins)")
        _check_token(request, headers)
        response.headers.update(headers)
        voice = ctx.extras.get("voice")
        agent = getattr(voice, "agent", None)
        timings = [t for t in list(getattr(agent, "timings", [])) if t.call_id == call_id]
        return [{"turn": t.turn, "transcript": t.transcript, "intent": t.intent, "reply": t.reply,
                 "status": t.status} for t in timings]

    return router

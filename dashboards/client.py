"""The dashboards' only way to data: the query API over HTTP with a read token.

With the embedded store the serving process owns chdb's folder, so the dashboard never opens the store
itself; it asks `voxwatch serve` (VOXWATCH_API_URL, VOXWATCH_API_TOKEN).
"""

from __future__ import annotations

import os

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8000"


class ApiError(RuntimeError):
    """The API refused or failed a request; the message is the API's reason, fit to show on a page."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{reason} (HTTP {status})" if status else reason)
        self.status = status
        self.reason = reason


class QueryClient:
    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = (base_url or os.environ.get("VOXWATCH_API_URL") or DEFAULT_API_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("VOXWATCH_API_TOKEN", "")
        self._http = httpx.Client(base_url=self.base_url + "/api/v1", timeout=timeout,
                                  headers={"Authorization": f"Bearer {self.token}"} if self.token else {})

    def get(self, path: str, **params) -> dict:
        clean = {k: v for k, v in params.items() if v is not None and v != [] and v != ""}
        return self._call("GET", path, params=clean)

    def post(self, path: str, body: dict, token: str | None = None) -> dict:
        """POST; `token` acts as that person (their own token and scope) instead of the dashboard's."""
        return self._call("POST", path, json=body, token=token)

    def get_text(self, path: str, **params) -> str:
        """GET a text document (a Markdown report)."""
        return self._call("GET", path, params=params, text=True)

    def _call(self, method: str, path: str, token: str | None = None, text: bool = False, **kw):
        if token:
            kw["headers"] = {"Authorization": f"Bearer {token}"}
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"query API at {self.base_url} unreachable: {exc}") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            if isinstance(detail, list):  # FastAPI's 422: one entry per field
                detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
            raise ApiError(r.status_code, str(detail))
        return r.text if text else r.json()

"""An ASGI webview (Starlette) with HTTP and WebSocket routes, mounted at /api/v1/webview."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import JobRunner, write_job

ENTRYPOINT = """
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute


class WithUi:
    def perform(self):
        return "ok"

    def webview_app(self, base_url: str):
        async def index(request):
            return HTMLResponse(f'<a href="{base_url}/echo">echo</a> path={request.url.path}')

        async def echo(request):
            return JSONResponse({"got": await request.json(), "path": request.url.path})

        async def ws(websocket):
            await websocket.accept()
            text = await websocket.receive_text()
            await websocket.send_text(text.upper())
            await websocket.close()

        return Starlette(routes=[
            Route(base_url + "/", index),
            Route(base_url + "/echo", echo, methods=["POST"]),
            WebSocketRoute(base_url + "/ws", ws),
        ])
"""


def test_asgi_webview_http_and_websocket(tmp_path: Path, run_job: JobRunner) -> None:
    job = run_job(write_job(tmp_path / "ui", ENTRYPOINT, name="ui", files={"static/app.css": "p {}"}))
    canonical = "/pub/job/ui/1.2.3/api/v1/webview"

    page = job.client.get("/api/v1/webview/")
    assert page.status_code == 200
    assert f'href="{canonical}/echo"' in page.text and f"path={canonical}/" in page.text
    assert job.client.get("/pub/job/ui/latest/api/v1/webview/").text == page.text

    redirect = job.client.get("/pub/job/ui/1.2.3/api/v1/webview?x=1", follow_redirects=False)
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "/pub/job/ui/1.2.3/api/v1/webview/?x=1"

    echo = job.client.post("/api/v1/webview/echo", json={"a": 1})
    assert echo.json() == {"got": {"a": 1}, "path": f"{canonical}/echo"}
    assert job.client.get("/api/v1/webview/static/app.css").text == "p {}"
    assert job.client.get("/api/v1/webview/missing").status_code == 404
    metrics = job.client.get("/metrics").text
    assert 'job_requests_total{endpoint="/api/v1/webview",status="2XX"}' in metrics
    assert 'job_requests_total{endpoint="/api/v1/webview",status="4XX"}' in metrics

    import websockets

    async def talk() -> str:
        url = job.url.replace("http://", "ws://") + "/pub/job/ui/1.2.3/api/v1/webview/ws"
        async with websockets.connect(url) as ws:
            await ws.send("hello")
            return str(await ws.recv())

    assert asyncio.run(talk()) == "HELLO"

from collections.abc import Callable

import pytest

from tests.conftest import SAMPLE_JOBS, RunningJob
from tests.sample_jobs.api_docs import argument_types, assert_swagger_page, openapi_document, request_body

JOB = SAMPLE_JOBS / "webview"
BASE_URL = "/pub/job/webview/0.0.1/api/v1/webview"


def test_home_page_is_the_webview(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    home = job.client.get("/")
    assert home.status_code in (302, 307)
    assert home.headers["location"] == "/api/v1/webview"

    bare = job.client.get("/api/v1/webview")
    assert bare.status_code in (302, 307)
    assert bare.headers["location"] == "/api/v1/webview/"

    page = job.client.get("/", follow_redirects=True)
    assert page.status_code == 200
    assert "<h1>Greeter</h1>" in page.text

    prefixed_home = job.client.get("/pub/job/webview/0.0.1/")
    assert prefixed_home.headers["location"] == "/pub/job/webview/0.0.1/api/v1/webview"
    prefixed = job.client.get("/pub/job/webview/latest/api/v1/webview", follow_redirects=True)
    assert prefixed.url.path == "/pub/job/webview/latest/api/v1/webview/"
    assert "<h1>Greeter</h1>" in prefixed.text


@pytest.mark.parametrize("prefix", ["", "/pub/job/webview/0.0.1"])
def test_page_links_its_stylesheet_under_base_url(run_job: Callable[..., RunningJob], prefix: str) -> None:
    job = run_job(JOB)
    page = job.client.get(prefix + "/api/v1/webview/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert f'<link rel="stylesheet" href="{BASE_URL}/static/style.css">' in page.text
    assert f'action="{BASE_URL}/greet"' in page.text

    for css_url in (f"{BASE_URL}/static/style.css", "/api/v1/webview/static/style.css"):
        css = job.client.get(css_url)
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert css.content == (JOB / "static" / "style.css").read_bytes()


def test_form_post_renders_the_greeting_escaped(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    response = job.client.post(f"{BASE_URL}/greet", data={"name": "<b>Ada</b>"})
    assert response.status_code == 200
    assert '<p class="greeting">Hello, &lt;b&gt;Ada&lt;/b&gt;!</p>' in response.text

    empty = job.client.post("/api/v1/webview/greet", data={"name": "  "})
    assert empty.status_code == 400
    assert "name must not be empty" in empty.text


def test_json_post_and_unknown_routes(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    response = job.client.post("/api/v1/webview/greet", json={"name": "Grace"})
    assert response.status_code == 200
    assert response.json() == {"greeting": "Hello, Grace!"}

    assert job.client.get("/api/v1/webview/greet").status_code == 405
    assert job.client.get("/api/v1/webview/nowhere").status_code == 404
    assert job.client.get("/api/v1/webview/static/missing.css").status_code == 404
    assert job.client.get("/api/v1/webview/static/%2e%2e/entrypoint.py").status_code == 404


def test_webview_requests_are_logged(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    job.client.post(
        "/api/v1/webview/greet", json={"name": "Grace"}, headers={"X-Request-Tracing-Id": "wv-trace-1"}
    )
    job.wait_for_log('[wv-trace-1] trackside.access: "POST /api/v1/webview/greet" 200')


def test_perform_and_openapi(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    assert job.client.post("/api/v1/perform", json={"name": "Ada"}).json() == "Hello, Ada!"
    document = openapi_document(job)
    assert argument_types(document, "/api/v1/perform") == {"name": "string"}
    assert request_body(document, "/api/v1/perform")[1] == {"name": "Ada"}
    assert "/api/v1/webview/" in document["paths"]
    assert_swagger_page(job)

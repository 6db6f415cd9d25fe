from collections.abc import Callable

import pytest

from tests.conftest import SAMPLE_JOBS, RunningJob
from tests.sample_jobs.api_docs import argument_types, assert_swagger_page, openapi_document, request_body

JOB = SAMPLE_JOBS / "static-endpoints"
PREFIX = "/pub/job/static-endpoints/0.0.1"


@pytest.mark.parametrize("prefix", ["", PREFIX])
def test_single_file(run_job: Callable[..., RunningJob], prefix: str) -> None:
    job = run_job(JOB)
    response = job.client.get(prefix + "/api/v1/readme")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.content == (JOB / "README.md").read_bytes()


def test_file_with_explicit_mimetype(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    response = job.client.get("/api/v1/cities.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content == (JOB / "data" / "cities.data").read_bytes()
    assert response.text.splitlines()[0] == "city,country,population"


def test_directory_with_subfolder(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    for relative, content_type in [
        ("index.html", "text/html"),
        ("site.css", "text/css"),
        ("guides/getting-started.md", "text/markdown"),
    ]:
        for prefix in ("", PREFIX):
            response = job.client.get(f"{prefix}/api/v1/files/{relative}")
            assert response.status_code == 200, relative
            assert response.headers["content-type"].split(";")[0] == content_type
            assert response.content == (JOB / "public" / relative).read_bytes()


def test_head_returns_headers_only(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    response = job.client.head("/api/v1/files/site.css")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == (JOB / "public" / "site.css").stat().st_size


def test_nothing_else_is_served(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    for path in [
        "/api/v1/files/missing.html",
        "/api/v1/files/guides",
        "/api/v1/files/%2e%2e/job.yaml",
        "/api/v1/files/guides/%2e%2e/%2e%2e/entrypoint.py",
        "/api/v1/files/..%2fjob.yaml",
        "/api/v1/job.yaml",
        "/api/v1/data/cities.data",
    ]:
        response = job.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["type"] == "NotFound"


def test_static_endpoints_are_read_only(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    response = job.client.post("/api/v1/readme", json={})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_perform_reads_the_job_data(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    assert job.client.post("/api/v1/perform", json={"city": "delhi"}).json() == 33807000
    unknown = job.client.post("/api/v1/perform", json={"city": "Atlantis"})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "unknown city: Atlantis"


def test_openapi_lists_static_endpoints(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    document = openapi_document(job)
    assert argument_types(document, "/api/v1/perform") == {"city": "string"}
    assert request_body(document, "/api/v1/perform")[1] == {"city": "Tokyo"}
    for path in ("/api/v1/readme", "/api/v1/cities.csv", "/api/v1/files"):
        assert "get" in document["paths"][path]
    assert_swagger_page(job)

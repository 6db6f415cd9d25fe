import subprocess
from collections.abc import Callable

import pytest
import yaml

from tests.conftest import REPO, SAMPLE_JOBS, RunningJob
from tests.sample_jobs.api_docs import assert_swagger_page, openapi_document, request_body

JOB = SAMPLE_JOBS / "env-secret"
SECRET = "s3cr3t-Value-never-shown"


def manifest() -> dict:
    data: dict = yaml.safe_load((JOB / "job.yaml").read_text())
    return data


def template_names() -> list[str]:
    lines = (JOB / ".env.dist").read_text().splitlines()
    return [line.split("=", 1)[0] for line in lines if line.strip() and not line.startswith("#")]


def platform_env(**secrets: str) -> dict[str, str]:
    """What the platform injects: runtime_env from job.yaml plus the secret runtime env."""
    return {**{k: str(v) for k, v in manifest()["runtime_env"].items()}, **secrets}


def test_manifest_and_secret_template() -> None:
    data = manifest()
    assert data["secret_runtime_env_file"] == ".env"
    assert data["runtime_env"] == {"GREETING": "hello", "FEATURE_FLAGS": "fast,verbose"}
    assert template_names() == ["API_KEY", "DATABASE_PASSWORD"]


def test_secret_file_is_gitignored_and_template_is_not() -> None:
    def ignored(relative: str) -> bool:
        result = subprocess.run(
            ["git", "check-ignore", "-q", "--no-index", f"sample-jobs/env-secret/{relative}"], cwd=REPO
        )
        assert result.returncode in (0, 1)
        return result.returncode == 0

    assert ignored(".env")
    assert not ignored(".env.dist")


def test_reports_variables_without_revealing_secrets(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB, env=platform_env(API_KEY=SECRET, DATABASE_PASSWORD=""))
    response = job.client.post("/api/v1/perform", json={})
    assert response.status_code == 200
    assert response.json() == {
        "runtime_env": {"GREETING": "hello", "FEATURE_FLAGS": "fast,verbose"},
        "secrets": {
            "API_KEY": {"set": True, "length": len(SECRET)},
            "DATABASE_PASSWORD": {"set": False, "length": 0},
        },
    }
    assert SECRET not in response.text
    assert SECRET not in job.logs()


def test_without_injected_env(run_job: Callable[..., RunningJob], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*manifest()["runtime_env"], *template_names()]:
        monkeypatch.delenv(name, raising=False)
    job = run_job(JOB)
    assert job.client.post("/api/v1/perform", json={}).json() == {
        "runtime_env": {"GREETING": None, "FEATURE_FLAGS": None},
        "secrets": {"API_KEY": {"set": False, "length": 0}, "DATABASE_PASSWORD": {"set": False, "length": 0}},
    }


def test_openapi_and_docs(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB, env=platform_env(API_KEY=SECRET))
    document = openapi_document(job)
    schema, example = request_body(document, "/api/v1/perform")
    assert example == {}
    assert schema.get("properties", {}) == {}
    assert SECRET not in str(document)
    assert_swagger_page(job)

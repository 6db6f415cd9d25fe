import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import SAMPLE_JOBS, RunningJob
from tests.sample_jobs.api_docs import argument_types, assert_swagger_page, openapi_document, request_body

JOB = SAMPLE_JOBS / "model"


def true_price(area_m2: float, rooms: float) -> float:
    return 2.5 * area_m2 + 10 * rooms + 30


def test_predicts_with_the_committed_model(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    houses: list[tuple[float, float]] = [(100, 3), (55.5, 2), (180, 6)]
    response = job.client.post("/api/v1/perform", json={"houses": houses})
    assert response.status_code == 200
    predictions = response.json()
    assert len(predictions) == len(houses)
    for (area_m2, rooms), price in zip(houses, predictions, strict=True):
        assert price == pytest.approx(true_price(area_m2, rooms), abs=2)
    assert job.client.post("/api/v1/perform", json={"houses": []}).json() == []


def test_bad_rows(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    short = job.client.post("/api/v1/perform", json={"houses": [[100, 3], [100]]})
    assert short.status_code == 400
    assert short.json() == {"error": "each house needs 2 values: ['area_m2', 'rooms']", "type": "ValueError"}
    not_numbers = job.client.post("/api/v1/perform", json={"houses": [["big", 3]]})
    assert not_numbers.status_code == 422
    assert "houses" in not_numbers.json()["error"]


def load_model(job_dir: Path, pickle_path: Path) -> dict:
    """The pickled model's fields, read in a separate interpreter where the job's modules import."""
    script = (
        "import dataclasses, json, pickle, sys\n"
        "print(json.dumps(dataclasses.asdict(pickle.load(open(sys.argv[1], 'rb')))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(pickle_path)],
        cwd=job_dir,
        check=True,
        capture_output=True,
        text=True,
    )
    model: dict = json.loads(result.stdout)
    return model


def test_model_file_is_what_train_py_produces(tmp_path: Path) -> None:
    output = tmp_path / "retrained.pkl"
    subprocess.run([sys.executable, "train.py", str(output)], cwd=JOB, check=True, capture_output=True)
    committed = load_model(JOB, JOB / "model.pkl")
    retrained = load_model(JOB, output)
    assert committed["features"] == retrained["features"] == ["area_m2", "rooms"]
    assert committed["weights"] == pytest.approx(retrained["weights"])
    assert committed["bias"] == pytest.approx(retrained["bias"])
    assert committed["weights"] == pytest.approx([2.5, 10], abs=0.2)


def test_model_is_loaded_from_the_pickle(run_job: Callable[..., RunningJob], tmp_path: Path) -> None:
    job_dir = tmp_path / "model"
    shutil.copytree(JOB, job_dir, ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "import pickle, sys\n"
        "from linear_model import LinearModel\n"
        "pickle.dump(LinearModel(['area_m2', 'rooms'], [0.0, 1.0], 7.0), open(sys.argv[1], 'wb'))\n"
    )
    subprocess.run([sys.executable, "-c", script, "model.pkl"], cwd=job_dir, check=True)
    job = run_job(job_dir)
    assert job.client.post("/api/v1/perform", json={"houses": [[100, 3]]}).json() == [10.0]


def test_requirements_declare_numpy() -> None:
    manifest = yaml.safe_load((JOB / "job.yaml").read_text())
    requirements_path = manifest["jobtype_extra"]["requirements_path"]
    assert requirements_path == "requirements.txt"
    requirements = (JOB / requirements_path).read_text().splitlines()
    assert any(line.startswith("numpy") for line in requirements)


def test_openapi_and_docs(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    document = openapi_document(job)
    assert argument_types(document, "/api/v1/perform") == {"houses": [["number"]]}
    _, example = request_body(document, "/api/v1/perform")
    assert example == {"houses": [[100, 3], [55.5, 2]]}
    assert job.client.post("/api/v1/perform", json=example).status_code == 200
    assert_swagger_page(job)

"""Manifests used across the manifest tests: a valid one to vary, and Racetrack's own samples."""

from __future__ import annotations

import copy
from typing import Any

VALID: dict[str, Any] = {
    "name": "adder",
    "owner_email": "owner@example.com",
    "jobtype": "python3:latest",
    "version": "1.2.3",
    "git": {"remote": "https://github.com/example/jobs", "branch": "main", "directory": "adder"},
    "jobtype_extra": {"entrypoint_path": "entrypoint.py", "entrypoint_class": "Adder"},
    "runtime_env": {"GREETING": "hello"},
    "build_env": {"PIP_INDEX_URL": "https://pypi.example.com/simple"},
    "public_endpoints": ["/api/v1/perform"],
    "replicas": 2,
    "resources": {"memory_min": "256Mi", "memory_max": "1Gi", "cpu_min": "100m", "cpu_max": "1"},
    "labels": {"team": "maths"},
    "system_dependencies": ["libgomp1"],
    "infrastructure_target": "kubernetes",
}

DELETE = object()


def changed(changes: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of ``base`` (default VALID) with dotted paths set (or removed with DELETE)."""
    data = copy.deepcopy(VALID if base is None else base)
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
        if value is DELETE:
            target.pop(last, None)
        else:
            target[last] = value
    return data


# Racetrack's sample python3 jobs and documentation examples, verbatim
# (TheRacetrack/plugin-python-job-type sample/*/job.yaml, docs/job_python3.md,
# TheRacetrack/racetrack docs/manifest-schema.md).
RACETRACK_SAMPLES: dict[str, str] = {
    "python-class": """\
name: python-class
owner_email: sample@example.com
jobtype: python3:latest
version: 0.0.2

git:
  remote: https://github.com/TheRacetrack/plugin-python-job-type
  directory: sample/python-class

jobtype_extra:
  requirements_path: 'requirements.txt'
  entrypoint_path: 'entrypoint.py'
  entrypoint_class: 'AdderModel'
""",
    "python-env-secret": """\
name: python-env-secret
owner_email: sample@example.com
jobtype: python3:latest
version: 0.0.2

git:
  remote: https://github.com/TheRacetrack/plugin-python-job-type
  directory: sample/python-env-secret

jobtype_extra:
  requirements_path: 'requirements.txt'
  entrypoint_path: 'entrypoint.py'
  entrypoint_class: 'JobEntrypoint'

secret_build_env_file: .env
build_env:
  DEBIAN_FRONTEND: noninteractive

secret_runtime_env_file: .env
runtime_env:
  TORCH_MODEL_ZOO: zoo
""",
    "python-ui-flask": """\
name: python-ui-flask
owner_email: sample@example.com
jobtype: python3:latest
version: 0.0.2

git:
  remote: https://github.com/TheRacetrack/plugin-python-job-type
  directory: sample/python-ui-flask

jobtype_extra:
  requirements_path: 'requirements.txt'
  entrypoint_path: 'entrypoint.py'
  entrypoint_class: 'JobEntrypoint'

public_endpoints:
  - '/api/v1/webview'
""",
    "scikit-model": """\
name: scikit-sample
owner_email: sample@example.com
jobtype: python3:latest
version: 0.0.2

git:
  remote: https://github.com/TheRacetrack/plugin-python-job-type
  directory: sample/scikit-model

jobtype_extra:
  requirements_path: 'requirements.txt'
  entrypoint_path: 'model.py'
  entrypoint_class: 'ScikitDummyModel'

labels:
  model: linear-regression
""",
    "python-timeout": """\
name: windows12
version: '0.0.2'
owner_email: sample@example.com
jobtype: python3:latest

git:
  remote: https://github.com/TheRacetrack/plugin-python-job-type
  directory: sample/python-timeout

jobtype_extra:
  entrypoint_path: 'job.py'
  entrypoint_class: TimeoutJob
""",
    "python-async": """\
name: python-async
owner_email: sample@example.com
jobtype: python3:latest
git:
  remote: https://github.com/TheRacetrack/plugin-python-job-type
  directory: sample/python-async
jobtype_extra:
  entrypoint_path: 'entrypoint.py'
  entrypoint_class: 'JobEntrypoint'
""",
    # the deprecated spelling (lang + python), still accepted by Racetrack
    "python-static-endpoints": """\
name: python-static-endpoints
owner_email: sample@example.com
lang: python3:latest

git:
  remote: https://github.com/TheRacetrack/plugin-python-job-type
  directory: sample/python-static-endpoints

python:
  entrypoint_path: 'entrypoint.py'
  entrypoint_class: 'JobEntrypoint'
""",
    "python-logging-format": """\
name: python-logging-format
version: 0.0.1
owner_email: sample@example.com
lang: python3:latest

git:
  remote: https://github.com/TheRacetrack/plugin-python-job-type
  directory: sample/python-logging-format

python:
  entrypoint_path: 'entrypoint.py'
  entrypoint_class: 'JobEntrypoint'

runtime_env:
  LOG_STRUCTURED: 'true'
  LOG_CALLER_NAME: 'true'
""",
    "job_python3.md": """\
name: supersmart
owner_email: nobody@example.com
jobtype: python3:latest

git:
  remote: https://github.com/racetrack/supersmart-model
  branch: master

jobtype_extra:
  requirements_path: 'supersmart/requirements.txt'
  entrypoint_path: 'job_entrypoint.py'
  max_concurrency: 1
""",
}

# docs/manifest-schema.md: "not valid as a whole, but it contains all fields" (it extends
# ./base/job.yaml, which the test provides)
RACETRACK_SCHEMA_EXAMPLE = """\
name: skynet
jobtype: python3:latest
git:
  remote: https://github.com/racetrack/supersmart-model
  branch: master
  directory: 'examples/skynet'
owner_email: arnold@skynet.com
extends: './base/job.yaml'
version: '1.2.3-alpha'
jobtype_extra:
  requirements_path: 'python/requirements.txt'
  entrypoint_path: 'python/entrypoint.py'
  entrypoint_class: 'JobClazz'
build_env:
  DEBIAN_FRONTEND: 'noninteractive'
image_type: docker
infrastructure_target: kubernetes
labels:
  model: linear-regression
public_endpoints:
  - '/api/v1/perform'
  - '/api/v1/webview'
replicas: 1
resources:
  memory_min: 256Mi
  memory_max: 1Gi
  cpu_min: 10m
  cpu_max: 1000m
runtime_env:
  DJANGO_DEBUG: 'true'
  TORCH_MODEL_ZOO: zoo
secret_build_env_file: '.secrets/build.env'
secret_runtime_env_file: .secrets/runtime.env'
system_dependencies:
  - 'libgomp1'
"""

"""The Kaniko builder against a stand-in API server, with the build Job played by `FakeCluster`
(which fetches uploaded contexts from a real lifecycle over HTTP with the build token): the
objects it creates and deletes, the build log, and the errors a user sees."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lifecycle.api.app import create_app
from lifecycle.control_plane import ControlPlane
from lifecycle.deploy.builder import BuildError, BuildRequest
from lifecycle.deploy.kaniko_builder import KanikoBuilder, KanikoBuilderSettings
from lifecycle.deploy.kaniko_job import TOKEN_HEADER, KanikoSettings
from lifecycle.deploy.kubernetes_api import KubernetesApi
from tests.kubernetes.apiserver_standin import ApiServerStandIn
from tests.kubernetes.fake_cluster import NAMESPACE, FakeCluster, KanikoFailure
from tests.lifecycle.platform import lifecycle_config
from tests.served_app import served

REPO = Path(__file__).resolve().parents[2]
ADDER = REPO / "sample-jobs" / "adder"
REPOSITORY = "registry.test/trackside-jobs"
BUILD_SECRET = "pip-index-password-8d1f2e"
GIT_PASSWORD = "git-token-0c9a7b6e5d"


@dataclass
class Lifecycle:
    url: str
    plane: ControlPlane


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lifecycle]:
    plane = ControlPlane(
        lifecycle_config(tmp_path_factory.mktemp("kaniko")), pub_url="http://127.0.0.1:7200/pub"
    )
    try:
        with served(create_app(plane)) as url:
            yield Lifecycle(url, plane)
    finally:
        plane.stop()


@pytest.fixture
def cluster(standin: ApiServerStandIn, tmp_path: Path) -> Iterator[FakeCluster]:
    fake = FakeCluster(standin, tmp_path, kaniko=True)
    yield fake
    fake.close()


@pytest.fixture
def builder(standin: ApiServerStandIn, lifecycle: Lifecycle, tmp_path: Path) -> KanikoBuilder:
    api = KubernetesApi.connect(str(standin.kubeconfig(tmp_path / "kubeconfig")))
    settings = KanikoBuilderSettings(
        kaniko=KanikoSettings(repository=REPOSITORY, active_deadline_seconds=600, memory_limit="3Gi"),
        base_image="python:{python_version}-slim",
        lifecycle_url=lifecycle.url,
        build_env_key=b"k" * 32,
        poll_interval=0.05,
    )
    return KanikoBuilder(api, settings, lifecycle.plane.context_handout, tmp_path / "tmp")


def request(**changes: object) -> BuildRequest:
    values: dict[str, object] = {
        "job_name": "adder",
        "job_version": "0.0.1",
        "source_dir": ADDER,
        "python_version": "3.12",
        "requirements_path": None,
        "build_env": {"PIP_INDEX_PASSWORD": BUILD_SECRET},
        "check_requirements": False,
        "infrastructure": "kubernetes",
    }
    values.update(changes)
    return BuildRequest(**values)  # type: ignore[arg-type]


def posted(standin: ApiServerStandIn, plural: str) -> list[dict[str, Any]]:
    return [r.body for r in standin.requests if r.method == "POST" and r.plural == plural and r.body]


def leftovers(standin: ApiServerStandIn) -> list[str]:
    return [
        f"{plural}/{o['metadata']['name']}"
        for plural in ("jobs", "secrets", "pods")
        for o in standin.objects(plural, NAMESPACE)
    ]


def test_an_uploaded_context_is_built_pushed_and_cleaned_up(
    builder: KanikoBuilder, standin: ApiServerStandIn, cluster: FakeCluster, lifecycle: Lifecycle
) -> None:
    cluster.kaniko_log = ("INFO Retrieving image manifest python:3.12-slim", f"INFO env has {BUILD_SECRET}")
    lines: list[str] = []
    result = builder.build(request(), lines.append)

    tag, _, digest = result.image.partition("@") if result.image else ("", "", "")
    assert tag.startswith(f"{REPOSITORY}/adder:0.0.1-") and digest.startswith("sha256:")
    assert result.environment_id.startswith("kaniko:") and result.infrastructure == "kubernetes"
    assert result.code_dir == Path(result.image or "")
    # the pod got the staged context: the job's code and the Dockerfile template
    code = cluster.images[result.image or ""]
    assert (code / "entrypoint.py").read_text() == (ADDER / "entrypoint.py").read_text()
    assert (code.parent / "Dockerfile").is_file()

    posts = [(r.plural, (r.body or {})["metadata"]["name"]) for r in standin.requests if r.method == "POST"]
    assert [plural for plural, _ in posts] == ["secrets", "jobs"]
    job = posted(standin, "jobs")[0]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        f"--destination={tag}" in args
        and "--cache=true" in args
        and f"--cache-repo={REPOSITORY}/cache" in args
    )
    assert BUILD_SECRET not in str(job)  # only in the Secret
    secret = posted(standin, "secrets")[0]
    assert BUILD_SECRET in base64.b64decode(secret["data"]["build_env"]).decode()

    log = "\n".join(lines)
    assert "build environment variables: PIP_INDEX_PASSWORD (values hidden)" in log
    assert "the build pod downloads the build context" in log
    assert "fetched" in log and "INFO Retrieving image manifest python:3.12-slim" in log
    assert "INFO env has ****" in log and BUILD_SECRET not in log
    assert f"image {result.image} built and pushed" in log
    assert "the build's Job and Secrets are deleted" in log
    assert leftovers(standin) == []
    deleted = {
        (r.plural, r.body.get("propagationPolicy") if r.body else None)
        for r in standin.requests
        if r.method == "DELETE"
    }
    assert deleted == {("jobs", "Background"), ("secrets", "Background")}

    # the context was handed out once and then withdrawn: its address answers 404 now
    url = cluster.fetched_contexts[0]
    assert url.startswith(f"{lifecycle.url}/lifecycle/api/v1/build-contexts/")
    assert httpx.get(url, headers={TOKEN_HEADER: "x" * 43}).status_code == 404


def test_the_same_sources_give_the_same_tag_and_a_changed_build_secret_another(
    builder: KanikoBuilder, cluster: FakeCluster
) -> None:
    first = builder.build(request(), lambda line: None)
    second = builder.build(request(), lambda line: None)
    third = builder.build(request(build_env={"PIP_INDEX_PASSWORD": "rotated-password-55"}), lambda line: None)
    tag = (first.image or "").split("@")[0]
    assert (second.image or "").split("@")[0] == tag and first.environment_id == second.environment_id
    assert (third.image or "").split("@")[0] != tag


def test_a_git_deploy_is_cloned_in_the_pod_with_credentials_from_the_secret(
    builder: KanikoBuilder, standin: ApiServerStandIn, cluster: FakeCluster
) -> None:
    commit = hashlib.sha1(b"commit").hexdigest()
    lines: list[str] = []
    builder.build(
        request(
            git_commit=commit,
            git_remote="https://git.example.com/team/jobs.git",
            git_directory="sample-jobs/adder",
            git_credentials=("deployer", GIT_PASSWORD),
        ),
        lines.append,
    )
    job = posted(standin, "jobs")[0]
    init = job["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e.get("value") for e in init["env"]}
    assert env["GIT_REMOTE"] == "https://git.example.com/team/jobs.git" and env["GIT_COMMIT"] == commit
    assert "sample-jobs/adder" in init["command"][2]
    assert GIT_PASSWORD not in str(job)
    secrets = {s["metadata"]["name"]: s for s in posted(standin, "secrets")}
    scaffold = next(s for name, s in secrets.items() if name.endswith("-scaffold"))
    files = [item["path"] for item in job["spec"]["template"]["spec"]["volumes"][1]["secret"]["items"]]
    assert "Dockerfile" in files and not any(f.startswith("code/") for f in files)
    assert len(scaffold["data"]) == len(files)
    credentials = next(s for name, s in secrets.items() if name.endswith("-secrets"))
    assert base64.b64decode(credentials["data"]["git_password"]).decode() == GIT_PASSWORD
    assert any("the build pod clones https://git.example.com/team/jobs.git" in line for line in lines)
    assert GIT_PASSWORD not in "\n".join(lines)
    assert leftovers(standin) == []


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (
            KanikoFailure(
                log=("INFO Running pip install", "error building image: error building stage: exit status 1")
            ),
            "building the image failed (Error, exit code 1): error building image: error building stage: exit status 1",
        ),
        (
            KanikoFailure(reason="OOMKilled", exit_code=137, log=("INFO Unpacking rootfs",)),
            "the image build ran out of memory (OOMKilled in the kaniko container; its limit is 3Gi: "
            "raise TRACKSIDE_KANIKO_MEMORY_LIMIT)",
        ),
        (
            KanikoFailure(container="context", log=("wget: server returned error: HTTP/1.1 404 Not Found",)),
            "fetching the build context failed (Error, exit code 1): wget: server returned error: HTTP/1.1 404 Not Found",
        ),
        (
            KanikoFailure(job_reason="DeadlineExceeded", log=("INFO still building",)),
            "the image build took longer than 600 s and was stopped (DeadlineExceeded)",
        ),
        (
            KanikoFailure(waiting="ImagePullBackOff"),
            "the build pod cannot start: ImagePullBackOff: Back-off pulling image",
        ),
    ],
    ids=["error", "oom", "context", "deadline", "image-pull"],
)
def test_a_failed_build_says_why_and_leaves_nothing_behind(
    builder: KanikoBuilder,
    standin: ApiServerStandIn,
    cluster: FakeCluster,
    failure: KanikoFailure,
    expected: str,
) -> None:
    cluster.kaniko_failure = failure
    lines: list[str] = []
    with pytest.raises(BuildError) as error:
        builder.build(request(), lines.append)
    assert str(error.value) == expected
    assert leftovers(standin) == []
    assert "the build's Job and Secrets are deleted" in lines


def test_a_forbidden_job_names_the_role_and_removes_the_secrets_made_before(
    builder: KanikoBuilder, standin: ApiServerStandIn, cluster: FakeCluster
) -> None:
    message = 'jobs.batch is forbidden: User "system:serviceaccount:trackside:lifecycle" cannot create resource "jobs"'
    standin.fail("POST", "jobs", 403, "Forbidden", message)
    with pytest.raises(BuildError) as error:
        builder.build(request(), lambda line: None)
    text = str(error.value)
    assert text.startswith("cannot create the build's Job build-adder-0-0-1-")
    assert f"in namespace {NAMESPACE}: Forbidden (403): {message}" in text and "lifecycle-rbac.yaml" in text
    assert leftovers(standin) == []


def test_restore_needs_only_what_the_store_keeps(builder: KanikoBuilder) -> None:
    image = f"{REPOSITORY}/adder:0.0.1-0123456789ab@sha256:" + "f" * 64
    restored = builder.restore("kaniko:" + "a" * 64, Path(image))
    assert restored is not None and restored.image == image and restored.infrastructure == "kubernetes"
    assert builder.restore("image:" + "a" * 64, Path(image)) is None


def test_the_build_secrets_belong_to_the_job_so_they_go_with_it(
    builder: KanikoBuilder, standin: ApiServerStandIn, cluster: FakeCluster
) -> None:
    builder.build(request(), lambda line: None)
    [job] = posted(standin, "jobs")
    patches = [r for r in standin.requests if r.method == "PATCH" and r.plural == "secrets"]
    assert sorted(r.name or "" for r in patches) == sorted(
        s["metadata"]["name"] for s in posted(standin, "secrets")
    )
    for patch in patches:
        [owner] = (patch.body or {})["metadata"]["ownerReferences"]
        assert owner["kind"] == "Job" and owner["name"] == job["metadata"]["name"] and owner["uid"]


def test_builds_an_interrupted_lifecycle_left_are_removed(
    builder: KanikoBuilder, standin: ApiServerStandIn, cluster: FakeCluster
) -> None:
    labels = {
        "app.kubernetes.io/component": "build",
        "app.kubernetes.io/managed-by": "trackside-lifecycle",
    }
    standin.put_object(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "build-x-secrets", "namespace": NAMESPACE, "labels": labels},
        },
    )
    other = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "someone-elses", "namespace": NAMESPACE},
    }
    standin.put_object("secrets", other)
    assert builder.remove_leftovers() == 1
    assert [s["metadata"]["name"] for s in standin.objects("secrets", NAMESPACE)] == ["someone-elses"]


def test_a_build_job_deleted_by_someone_else_fails_the_build_saying_so(
    builder: KanikoBuilder, standin: ApiServerStandIn, cluster: FakeCluster
) -> None:
    cluster.kaniko_failure = KanikoFailure(waiting="PodInitializing")  # the build never ends by itself

    def delete_job_soon(api: ApiServerStandIn, job: dict[str, Any]) -> None:
        threading.Timer(0.5, api.delete_object, args=("jobs", NAMESPACE, job["metadata"]["name"])).start()

    standin.on_create("jobs", delete_job_soon)
    with pytest.raises(BuildError) as error:
        builder.build(request(), lambda line: None)
    assert str(error.value).startswith("the build Job build-adder-0-0-1-")
    assert str(error.value).endswith("was deleted before it ended")
    assert standin.objects("secrets", NAMESPACE) == []


def test_a_build_over_before_the_first_look_still_has_its_whole_log(
    builder: KanikoBuilder, standin: ApiServerStandIn, cluster: FakeCluster
) -> None:
    cluster.kaniko_at_once = True
    lines: list[str] = []
    builder.build(request(), lines.append)
    assert "INFO Retrieving image manifest python:3.12-slim" in lines  # the kaniko container's
    assert any(line.startswith("fetched ") for line in lines)  # the context container's
    assert lines.index("INFO Pushing image") > next(
        i for i, line in enumerate(lines) if line.startswith("fetched ")
    )

"""kustomize/: base and overlays rendered by `kubectl kustomize`, every object validated against the
Kubernetes schemas (strict, 1.29 and 1.33), and the properties an operator relies on checked on
what would be applied."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest

from lifecycle.config import KubernetesConfig
from tests.conftest import REPO

from .manifests import (
    JOBS_NAMESPACE,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    PLATFORM_NAMESPACE,
    PRODUCTION_DATABASE_URL,
    TREES,
    KustomizeTree,
    Obj,
    Rendered,
    matches,
    named,
    namespace_of,
    pod_labels,
    pod_spec,
    read_env_file,
    render,
    validator,
)
from .network_policy import OUTSIDE, Pod, allowed

COMPONENTS = ("lifecycle", "pub", "dashboard")  # the platform image's Deployments
PORTS = {"lifecycle": 7200, "pub": 7205, "dashboard": 7210}
# where each component's code reads its environment
COMPONENT_SOURCES = {
    "lifecycle": ["lifecycle"],
    "pub": ["pub"],
    "dashboard": ["dashboard"],
}
# settings that name a Secret (the value is its name, never a credential)
SECRET_NAMES = {"TRACKSIDE_K8S_REGISTRY_SECRET"}
MANAGED_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]
EXPECTED_RULES = {
    ("apps", "deployments"): MANAGED_VERBS,
    ("", "services"): MANAGED_VERBS,
    ("", "secrets"): MANAGED_VERBS,
    ("batch", "jobs"): MANAGED_VERBS,
    ("networking.k8s.io", "networkpolicies"): MANAGED_VERBS,
    ("policy", "poddisruptionbudgets"): MANAGED_VERBS,
    ("", "pods"): ["get", "list", "watch"],
    ("", "pods/log"): ["get"],
}


@pytest.fixture(scope="module")
def tree(module_tmp: Path) -> KustomizeTree:
    return KustomizeTree(module_tmp)


@pytest.fixture(scope="module")
def base(tree: KustomizeTree) -> Rendered:
    return tree.rendered["base"]


@pytest.fixture(scope="module")
def local(tree: KustomizeTree) -> Rendered:
    return tree.rendered["local"]


@pytest.fixture(scope="module")
def production(tree: KustomizeTree) -> Rendered:
    return tree.rendered["production"]


@pytest.fixture(scope="module", params=TREES)
def rendered(request: pytest.FixtureRequest, tree: KustomizeTree) -> Rendered:
    return tree.rendered[request.param]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, tree: KustomizeTree) -> Rendered:
    return tree.rendered[request.param]


def describe(obj: Obj) -> str:
    return f"{obj['kind']} {namespace_of(obj) or '-'}/{named(obj)}"


# ---- rendering and schemas ----------------------------------------------------------------------


def test_every_tree_renders_the_platform(rendered: Rendered) -> None:
    kinds = {o["kind"] for o in rendered.objects}
    assert {"Namespace", "Deployment", "Service", "ConfigMap", "NetworkPolicy", "Role"} <= kinds
    names = {(o["kind"], named(o)) for o in rendered.objects}
    for component in COMPONENTS:
        assert ("Deployment", component) in names
        assert ("Service", component) in names


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_for_kubernetes(rendered: Rendered, version: str) -> None:
    kubernetes_validate = validator()
    problems = []
    for obj in rendered.objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(p) for p in error.path)
            problems.append(f"{describe(obj)} at {where or '(top)'}: {error.message}")
    assert problems == []


def test_objects_name_their_namespace(rendered: Rendered) -> None:
    namespaces = {named(o) for o in rendered.of_kind("Namespace")}
    assert namespaces == {PLATFORM_NAMESPACE, JOBS_NAMESPACE}
    cluster_scoped = {"Namespace"}
    for obj in rendered.objects:
        if obj["kind"] not in cluster_scoped:
            assert namespace_of(obj) in namespaces, describe(obj)


def test_nothing_is_cluster_wide(rendered: Rendered) -> None:
    kinds = {o["kind"] for o in rendered.objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume"}


# ---- the lifecycle's permissions ----------------------------------------------------------------


def test_the_lifecycle_may_manage_exactly_its_objects_in_the_jobs_namespace(rendered: Rendered) -> None:
    (role,) = rendered.of_kind("Role")
    assert namespace_of(role) == JOBS_NAMESPACE
    granted: dict[tuple[str, str], list[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames, no nonResourceURLs"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert (group, resource) not in granted, f"{group}/{resource} granted twice"
                granted[(group, resource)] = sorted(rule["verbs"])
    assert granted == {key: sorted(verbs) for key, verbs in EXPECTED_RULES.items()}


def test_the_role_is_bound_to_the_lifecycle_and_only_to_it(rendered: Rendered) -> None:
    (role,) = rendered.of_kind("Role")
    (binding,) = rendered.of_kind("RoleBinding")
    assert namespace_of(binding) == JOBS_NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": named(role),
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "lifecycle", "namespace": PLATFORM_NAMESPACE}
    ]
    rendered.find("ServiceAccount", "lifecycle")
    lifecycle = pod_spec(rendered.find("Deployment", "lifecycle"))
    assert lifecycle["serviceAccountName"] == "lifecycle"
    for workload in rendered.workloads():
        if named(workload) != "lifecycle":
            spec = pod_spec(workload)
            assert spec.get("serviceAccountName", "default") == "default", describe(workload)
            assert spec.get("automountServiceAccountToken") is False, (
                f"{describe(workload)} needs no API token"
            )


# ---- every container ----------------------------------------------------------------------------


def test_every_container_has_probes_and_resources(rendered: Rendered) -> None:
    for workload, container in rendered.containers():
        where = f"{describe(workload)} container {container['name']}"
        assert "livenessProbe" in container, where
        assert "readinessProbe" in container, where
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
        assert "memory" in resources.get("limits", {}), where


def test_every_container_runs_unprivileged(rendered: Rendered) -> None:
    for workload, container in rendered.containers():
        where = f"{describe(workload)} container {container['name']}"
        pod = pod_spec(workload).get("securityContext", {})
        own = container.get("securityContext", {})
        assert own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
        assert own.get("runAsUser", pod.get("runAsUser", 0)) != 0, where
        assert own.get("allowPrivilegeEscalation") is False, where
        assert own.get("privileged", False) is False, where
        assert own.get("readOnlyRootFilesystem") is True, where
        assert own.get("capabilities") == {"drop": ["ALL"]}, where
        seccomp = own.get("seccompProfile", pod.get("seccompProfile"))
        assert seccomp == {"type": "RuntimeDefault"}, where
        assert not pod_spec(workload).get("hostNetwork") and not pod_spec(workload).get("hostPID"), where


def test_writable_paths_are_volumes(rendered: Rendered) -> None:
    for workload, container in rendered.containers():
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        claims = {named(c) for c in workload["spec"].get("volumeClaimTemplates", [])}
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{describe(workload)}: /tmp must be writable (read-only root)"
        for path, volume in mounts.items():
            assert volume in volumes or volume in claims, (
                f"{describe(workload)}: {path} mounts unknown {volume}"
            )
            if volume in volumes:
                kinds = set(volumes[volume]) - {"name"}
                assert kinds <= {"emptyDir", "persistentVolumeClaim"}, (
                    f"{describe(workload)} {volume}: {kinds}"
                )


def test_images_name_a_tag_other_than_latest(rendered: Rendered) -> None:
    for workload, container in rendered.containers():
        image = container["image"]
        assert re.search(r":[\w][\w.-]*$|@sha256:[0-9a-f]{64}$", image.split("/")[-1]), (
            describe(workload),
            image,
        )
        assert not image.endswith(":latest"), (describe(workload), image)


# ---- configuration and secrets ------------------------------------------------------------------


def test_references_resolve_to_rendered_objects(overlay: Rendered) -> None:
    for workload, container in overlay.containers():
        overlay.container_env(workload, container)  # fails on a missing ConfigMap, Secret or key


def test_config_maps_hold_no_secrets(tree: KustomizeTree, overlay: Rendered) -> None:
    secret_values = [v for v in read_env_file(tree.secrets_file(overlay.name)).values() if len(v) >= 8]
    assert secret_values
    for config_map in overlay.of_kind("ConfigMap"):
        for key, value in config_map.get("data", {}).items():
            where = f"{describe(config_map)} {key}"
            if key in SECRET_NAMES:
                assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?", value), f"{where}: not a name"
            else:
                assert not re.search(r"SECRET|TOKEN|PASSWORD|DATABASE_URL|CREDENTIAL", key), where
            assert "tst_" not in value, where
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), f"{where}: a URL with a password"
            for secret in secret_values:
                assert secret not in value, where


def test_secret_values_come_from_the_secret(overlay: Rendered) -> None:
    for workload, container in overlay.containers():
        for var in container.get("env", []):
            if re.search(r"SECRET|TOKEN|PASSWORD|DATABASE_URL", var["name"]):
                assert "secretKeyRef" in var.get("valueFrom", {}), f"{describe(workload)} {var['name']}"


def test_the_base_holds_no_secret(base: Rendered) -> None:
    assert base.of_kind("Secret") == []


def test_both_sides_of_the_gateway_credential_read_one_secret_key(overlay: Rendered) -> None:
    lifecycle = overlay.find("Deployment", "lifecycle")
    pub = overlay.find("Deployment", "pub")
    token = {
        named(d): overlay.container_env(d, pod_spec(d)["containers"][0])["TRACKSIDE_GATEWAY_TOKEN"]
        for d in (lifecycle, pub)
    }
    assert token["lifecycle"] == token["pub"]
    assert token["pub"].startswith("tst_") and len(token["pub"]) >= 4 + 32


# ---- the components' commands and settings -------------------------------------------------------


def container_of(rendered: Rendered, component: str) -> tuple[Obj, Obj]:
    deployment = rendered.find("Deployment", component)
    (container,) = pod_spec(deployment)["containers"]
    return deployment, container


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_deployment_runs_trackside_serve(rendered: Rendered, component: str) -> None:
    from trackside.cli.platform import Component

    _, container = container_of(rendered, component)
    port = PORTS[component]
    assert container["command"] == ["trackside", "serve", component, "--host", "0.0.0.0", "--port", str(port)]
    assert component in {c.value for c in Component}, f"`trackside serve {component}` does not exist"
    assert "args" not in container
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "http"] == [port]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http", probe
        assert container[probe]["httpGet"]["path"].startswith(f"/{component}/"), probe
    # liveness asks the process alone (for the dashboard: not a page, which may call the lifecycle)
    assert container["livenessProbe"]["httpGet"]["path"] == f"/{component}/live"


def strings_in(paths: list[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def sources(component: str) -> list[Path]:
    files = [REPO / "trackside" / "serve.py"]
    for package in COMPONENT_SOURCES[component]:
        files.extend(sorted((REPO / package).rglob("*.py")))
    return files


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_variable_given_is_one_the_component_reads(overlay: Rendered, component: str) -> None:
    deployment, container = container_of(overlay, component)
    given = set(overlay.container_env(deployment, container))
    read = strings_in(sources(component))
    assert sorted(given - read) == []


def test_the_lifecycle_keeps_its_data_on_its_data_volume(overlay: Rendered) -> None:
    deployment, container = container_of(overlay, "lifecycle")
    env = overlay.container_env(deployment, container)
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env["TRACKSIDE_DATA_DIR"] in mounts


def cluster_service(url: str) -> tuple[str, str, int]:
    """(service, namespace, port) of an in-cluster URL."""
    match = re.fullmatch(r"http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)(/.*)?", url)
    assert match, url
    return match[1], match[2], int(match[3])


def test_the_components_reach_the_lifecycle_by_its_service(rendered: Rendered) -> None:
    lifecycle = rendered.find("Service", "lifecycle")
    for component in ("pub", "dashboard"):
        _, container = container_of(rendered, component)
        url = rendered.find("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
        service, namespace, port = cluster_service(url["data"]["TRACKSIDE_LIFECYCLE_URL"])
        assert (service, namespace) == (named(lifecycle), namespace_of(lifecycle))
        assert port in {p["port"] for p in lifecycle["spec"]["ports"]}


def lifecycle_setting(rendered: Rendered, name: str) -> str:
    _, container = container_of(rendered, "lifecycle")
    config = rendered.find("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    return str(config["data"][name])


def test_the_base_gives_the_gateways_cluster_address(base: Rendered) -> None:
    service, namespace, port = cluster_service(lifecycle_setting(base, "TRACKSIDE_PUB_URL"))
    assert (service, namespace, port) == ("pub", PLATFORM_NAMESPACE, 7205)
    assert lifecycle_setting(base, "TRACKSIDE_PUB_URL").endswith("/pub")


def test_local_gives_users_the_gateways_node_port(local: Rendered) -> None:
    node_port = local.find("Service", "pub")["spec"]["ports"][0]["nodePort"]
    assert lifecycle_setting(local, "TRACKSIDE_PUB_URL") == f"http://localhost:{node_port}/pub"
    deployment, container = container_of(local, "dashboard")
    lifecycle_port = local.find("Service", "lifecycle")["spec"]["ports"][0]["nodePort"]
    assert (
        local.container_env(deployment, container)["TRACKSIDE_PUBLIC_URL"]
        == f"http://localhost:{lifecycle_port}"
    )


def test_services_select_their_pods_on_named_ports(rendered: Rendered) -> None:
    for service in rendered.of_kind("Service"):
        selected = [
            w
            for w in rendered.workloads()
            if namespace_of(w) == namespace_of(service)
            and matches({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
        ]
        assert len(selected) == 1, describe(service)
        ports = {
            p["name"]: p["containerPort"] for c in pod_spec(selected[0])["containers"] for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{describe(service)} targets {port['targetPort']}"


def test_deployment_selectors_match_their_templates(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        assert matches(workload["spec"]["selector"], pod_labels(workload)), describe(workload)


def test_the_lifecycle_never_overlaps_itself(rendered: Rendered) -> None:
    lifecycle = rendered.find("Deployment", "lifecycle")
    assert lifecycle["spec"]["replicas"] == 1
    assert lifecycle["spec"]["strategy"] == {"type": "Recreate"}


# ---- the gateway's availability -----------------------------------------------------------------


def test_the_gateway_runs_two_replicas_autoscaled_and_protected(rendered: Rendered) -> None:
    pub = rendered.find("Deployment", "pub")
    assert pub["spec"]["replicas"] == 2
    (hpa,) = rendered.of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "pub"}
    assert namespace_of(hpa) == namespace_of(pub)
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] > 2
    assert "cpu" in pod_spec(pub)["containers"][0]["resources"]["requests"], "CPU utilisation needs a request"
    (pdb,) = rendered.of_kind("PodDisruptionBudget")
    assert namespace_of(pdb) == namespace_of(pub)
    assert matches(pdb["spec"]["selector"], pod_labels(pub))
    assert pdb["spec"]["minAvailable"] == 1
    selected = [w for w in rendered.workloads() if matches(pdb["spec"]["selector"], pod_labels(w))]
    assert [named(w) for w in selected] == ["pub"]
    anti = pod_spec(pub)["affinity"]["podAntiAffinity"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in anti, (
        "preferred: a one-node cluster still runs two"
    )


# ---- network policies ---------------------------------------------------------------------------


def pod_of(rendered: Rendered, name: str) -> Pod:
    workload = next(w for w in rendered.workloads() if named(w) == name)
    return Pod(namespace_of(workload), pod_labels(workload))


JOB = Pod(JOBS_NAMESPACE, {"app.kubernetes.io/component": "job", "app.kubernetes.io/part-of": "trackside"})
BUILD = Pod(
    JOBS_NAMESPACE, {"app.kubernetes.io/component": "build", "app.kubernetes.io/part-of": "trackside"}
)
INGRESS_CONTROLLER = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
STRANGER = Pod("default", {"app": "something-else"})
DNS = Pod("kube-system", {"k8s-app": "kube-dns"})


def test_network_policies_select_pods_that_exist(rendered: Rendered) -> None:
    for policy in rendered.of_kind("NetworkPolicy"):
        selector = policy["spec"]["podSelector"]
        if namespace_of(policy) == JOBS_NAMESPACE:
            assert matches(selector, JOB.labels), f"{describe(policy)} must cover job pods"
            continue
        selected = [
            w
            for w in rendered.workloads()
            if namespace_of(w) == PLATFORM_NAMESPACE and matches(selector, pod_labels(w))
        ]
        assert selected, f"{describe(policy)} selects no pod"


def test_platform_connections(rendered: Rendered) -> None:
    policies = rendered.of_kind("NetworkPolicy")
    lifecycle, pub, dashboard = (pod_of(rendered, name) for name in COMPONENTS)
    # NodePort clients cannot be told apart from pods: the local overlay opens the entrances to all
    nodeports = rendered.name == "local"
    expected = {
        ("pub", "lifecycle", 7200): True,
        ("dashboard", "lifecycle", 7200): True,
        ("build", "lifecycle", 7200): True,
        ("job", "lifecycle", 7200): False,
        ("stranger", "lifecycle", 7200): nodeports,
        ("ingress", "lifecycle", 7200): True,
        ("ingress", "pub", 7205): True,
        ("ingress", "dashboard", 7210): True,
        ("job", "pub", 7205): True,
        ("stranger", "pub", 7205): nodeports,
        ("stranger", "dashboard", 7210): nodeports,
        ("job", "dashboard", 7210): False,
        ("lifecycle", "dashboard", 7210): nodeports,
        ("lifecycle", "pub", 7205): nodeports,
    }
    pods = {
        "lifecycle": lifecycle,
        "pub": pub,
        "dashboard": dashboard,
        "build": BUILD,
        "job": JOB,
        "stranger": STRANGER,
        "ingress": INGRESS_CONTROLLER,
    }
    actual = {(s, d, port): allowed(policies, pods[s], pods[d], port) for s, d, port in expected}
    assert actual == expected


@pytest.mark.parametrize("name", ["base", "local"])  # production: no PostgreSQL in the cluster
def test_only_the_lifecycle_reaches_postgres(tree: KustomizeTree, name: str) -> None:
    rendered = tree.rendered[name]
    policies = rendered.of_kind("NetworkPolicy")
    postgres = pod_of(rendered, "postgres")
    sources = {
        "lifecycle": pod_of(rendered, "lifecycle"),
        "pub": pod_of(rendered, "pub"),
        "dashboard": pod_of(rendered, "dashboard"),
        "job": JOB,
        "build": BUILD,
        "ingress": INGRESS_CONTROLLER,
        "outside": OUTSIDE,
    }
    reachable = {name: allowed(policies, pod, postgres, 5432) for name, pod in sources.items()}
    assert reachable == {name: name == "lifecycle" for name in sources}


def test_jobs_are_reached_by_the_platform_only_and_reach_only_the_gateway_and_dns(rendered: Rendered) -> None:
    policies = rendered.of_kind("NetworkPolicy")
    lifecycle, pub, dashboard = (pod_of(rendered, name) for name in COMPONENTS)
    other_job = Pod(
        JOBS_NAMESPACE, {"app.kubernetes.io/component": "job", "app.kubernetes.io/instance": "other"}
    )
    into_job = {
        "pub": allowed(policies, pub, JOB, 7000),
        "lifecycle": allowed(policies, lifecycle, JOB, 7000),
        "dashboard": allowed(policies, dashboard, JOB, 7000),
        "other job": allowed(policies, other_job, JOB, 7000),
        "build": allowed(policies, BUILD, JOB, 7000),
        "stranger": allowed(policies, STRANGER, JOB, 7000),
        "ingress": allowed(policies, INGRESS_CONTROLLER, JOB, 7000),
        "outside": allowed(policies, OUTSIDE, JOB, 7000),
    }
    assert into_job == {"pub": True, "lifecycle": True} | {
        k: False for k in into_job if k not in ("pub", "lifecycle")
    }
    out_of_job = {
        "gateway": allowed(policies, JOB, pub, 7205),
        "dns udp": allowed(policies, JOB, DNS, 53, "UDP"),
        "dns tcp": allowed(policies, JOB, DNS, 53, "TCP"),
        "lifecycle": allowed(policies, JOB, lifecycle, 7200),
        "dashboard": allowed(policies, JOB, dashboard, 7210),
        "other job": allowed(policies, JOB, other_job, 7000),
        "internet": allowed(policies, JOB, OUTSIDE, 443),
    }
    assert out_of_job == {"gateway": True, "dns udp": True, "dns tcp": True} | {
        k: False for k in out_of_job if k not in ("gateway", "dns udp", "dns tcp")
    }


def test_builds_may_fetch_from_outside(rendered: Rendered) -> None:
    policies = rendered.of_kind("NetworkPolicy")
    assert allowed(policies, BUILD, OUTSIDE, 443)
    assert not allowed(policies, OUTSIDE, BUILD, 443)


# ---- the local overlay ---------------------------------------------------------------------------


def test_local_exposes_the_platform_on_node_ports(local: Rendered) -> None:
    node_ports = {
        named(s): [p.get("nodePort") for p in s["spec"]["ports"]]
        for s in local.of_kind("Service")
        if s["spec"].get("type") == "NodePort"
    }
    assert node_ports == {"lifecycle": [30200], "pub": [30205], "dashboard": [30210], "registry": [30500]}
    policies = local.of_kind("NetworkPolicy")
    for component, port in PORTS.items():
        assert allowed(policies, OUTSIDE, pod_of(local, component), port), component
    assert allowed(policies, OUTSIDE, pod_of(local, "registry"), 5000)
    assert allowed(policies, BUILD, pod_of(local, "registry"), 5000)


def test_local_runs_postgres_in_the_cluster_and_points_the_lifecycle_at_it(local: Rendered) -> None:
    postgres = local.find("StatefulSet", "postgres")
    (claim,) = postgres["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(postgres)["containers"][0]["volumeMounts"]}
    assert mounts[named(claim)] == "/var/lib/postgresql/data"
    service = local.find("Service", postgres["spec"]["serviceName"])
    deployment, container = container_of(local, "lifecycle")
    env = local.container_env(deployment, container)
    password = local.container_env(postgres, pod_spec(postgres)["containers"][0])["POSTGRES_PASSWORD"]
    assert env["TRACKSIDE_DATABASE_URL"] == (
        f"postgresql://trackside:{password}@{named(service)}.{PLATFORM_NAMESPACE}.svc.cluster.local:"
        f"{service['spec']['ports'][0]['port']}/trackside"
    )


def test_local_pulls_the_platform_from_its_registry(local: Rendered) -> None:
    registry = local.find("Service", "registry")
    node_port = registry["spec"]["ports"][0]["nodePort"]
    for component in COMPONENTS:
        _, container = container_of(local, component)
        assert container["image"] == f"localhost:{node_port}/trackside:dev"
        assert container["imagePullPolicy"] == "Always", "the dev tag moves"


# ---- the production overlay ----------------------------------------------------------------------


def test_production_has_an_ingress_with_tls_to_the_three_services(production: Rendered) -> None:
    (ingress,) = production.of_kind("Ingress")
    spec = ingress["spec"]
    tls_hosts = {host for entry in spec["tls"] for host in entry["hosts"]}
    assert all(entry.get("secretName") for entry in spec["tls"])
    routes = {}
    for rule in spec["rules"]:
        assert rule["host"] in tls_hosts, f"{rule['host']} is served without TLS"
        for path in rule["http"]["paths"]:
            routes[path["path"]] = (path["pathType"], path["backend"]["service"])
    assert routes == {
        f"/{component}": ("Prefix", {"name": component, "port": {"name": "http"}}) for component in COMPONENTS
    }
    for component in COMPONENTS:
        service = production.find("Service", component)
        assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_production_uses_an_external_database(production: Rendered) -> None:
    assert production.of_kind("StatefulSet") == []
    assert production.of_kind("PersistentVolumeClaim") == []
    assert not production.has("Service", "postgres") and not production.has("NetworkPolicy", "postgres")
    deployment, container = container_of(production, "lifecycle")
    assert (
        production.container_env(deployment, container)["TRACKSIDE_DATABASE_URL"] == PRODUCTION_DATABASE_URL
    )


def test_production_pins_every_image_to_a_release(production: Rendered) -> None:
    from trackside import __version__

    for workload, container in production.containers():
        image = container["image"]
        tag = image.rpartition(":")[2]
        assert "@sha256:" in image or re.fullmatch(r"v?\d+\.\d+\.\d+", tag), (describe(workload), image)
        if named(workload) in COMPONENTS:
            assert tag == __version__, f"{image}: the release being deployed is {__version__}"
            assert container["imagePullPolicy"] == "IfNotPresent"


def ingress_host(rendered: Rendered) -> str:
    (ingress,) = rendered.of_kind("Ingress")
    (rule,) = ingress["spec"]["rules"]
    return str(rule["host"])


def test_production_tells_users_the_ingress_host(production: Rendered) -> None:
    host = ingress_host(production)
    assert lifecycle_setting(production, "TRACKSIDE_PUB_URL") == f"https://{host}/pub"
    deployment, container = container_of(production, "dashboard")
    assert production.container_env(deployment, container)["TRACKSIDE_PUBLIC_URL"] == f"https://{host}"


def test_the_production_host_is_named_once(tree: KustomizeTree, tmp_path: Path) -> None:
    overlay = tmp_path / "kustomize"
    shutil.copytree(tree.root, overlay)
    ingress = overlay / "overlays" / "production" / "ingress.yaml"
    text = ingress.read_text()
    assert text.count("- host: trackside.example.com") == 1
    ingress.write_text(text.replace("- host: trackside.example.com", "- host: ts.acme.test"))
    changed = Rendered("production", render(overlay / "overlays" / "production"))
    assert ingress_host(changed) == "ts.acme.test"
    (entry,) = changed.of_kind("Ingress")[0]["spec"]["tls"]
    assert entry["hosts"] == ["ts.acme.test"]
    assert lifecycle_setting(changed, "TRACKSIDE_PUB_URL") == "https://ts.acme.test/pub"
    deployment, container = container_of(changed, "dashboard")
    assert changed.container_env(deployment, container)["TRACKSIDE_PUBLIC_URL"] == "https://ts.acme.test"
    everything = json.dumps(changed.objects)
    assert "example.com" not in everything.replace("registry.example.com", "")


# ---- the kubernetes target -----------------------------------------------------------------------


def kubernetes_settings(rendered: Rendered) -> KubernetesConfig:
    """What the lifecycle's kubernetes target makes of its ConfigMap (the Secret has none of it)."""
    _, container = container_of(rendered, "lifecycle")
    config = rendered.find("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    return KubernetesConfig.from_env(config["data"])


def pod_port(rendered: Rendered, service: Obj, port: int) -> tuple[Pod, int]:
    """The pod behind a Service's port and the port it listens on (what NetworkPolicies name)."""
    (entry,) = [p for p in service["spec"]["ports"] if p["port"] == port]
    (workload,) = [
        w
        for w in rendered.workloads()
        if namespace_of(w) == namespace_of(service)
        and matches({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
    ]
    ports = {p["name"]: p["containerPort"] for c in pod_spec(workload)["containers"] for p in c["ports"]}
    target = entry["targetPort"]
    listening = ports[target] if isinstance(target, str) else int(target)
    return Pod(namespace_of(workload), pod_labels(workload)), listening


def test_the_kubernetes_target_works_in_the_trees_namespaces(rendered: Rendered) -> None:
    settings = kubernetes_settings(rendered)
    (role,) = rendered.of_kind("Role")
    (binding,) = rendered.of_kind("RoleBinding")
    assert settings.namespace == namespace_of(role) == JOBS_NAMESPACE, "jobs run where the Role allows"
    assert settings.platform_namespace == namespace_of(rendered.find("Deployment", "lifecycle"))
    assert binding["subjects"][0]["namespace"] == settings.platform_namespace
    assert settings.kubeconfig is None, "in a pod: the lifecycle's service account"
    assert settings.image_repository, "the target is refused without TRACKSIDE_IMAGE_REPOSITORY"


def test_jobs_call_the_gateway_by_its_service(rendered: Rendered) -> None:
    settings = kubernetes_settings(rendered)
    service, namespace, port = cluster_service(settings.pub_url_for_jobs)
    assert settings.pub_url_for_jobs.endswith(f":{port}/pub")
    pub = rendered.find("Service", service, namespace)
    assert named(pub) == "pub" and namespace == settings.platform_namespace
    gateway, listening = pod_port(rendered, pub, port)
    assert allowed(rendered.of_kind("NetworkPolicy"), JOB, gateway, listening)


def test_builds_fetch_their_context_from_the_lifecycle_by_its_service(rendered: Rendered) -> None:
    settings = kubernetes_settings(rendered)
    service, namespace, port = cluster_service(settings.lifecycle_url_for_builds)
    lifecycle = rendered.find("Service", service, namespace)
    assert named(lifecycle) == "lifecycle" and namespace == settings.platform_namespace
    pod, listening = pod_port(rendered, lifecycle, port)
    policies = rendered.of_kind("NetworkPolicy")
    assert allowed(policies, BUILD, pod, listening)
    assert not allowed(policies, JOB, pod, listening), "only builds (label component=build)"
    # and the lifecycle reaches a new job replica on its port (/live, input examples)
    assert allowed(policies, pod, JOB, 7000)


def test_local_pushes_and_pulls_job_images_through_its_registry(local: Rendered) -> None:
    settings = kubernetes_settings(local)
    registry = local.find("Service", "registry")
    (entry,) = registry["spec"]["ports"]
    host = f"{named(registry)}.{namespace_of(registry)}.svc.cluster.local:{entry['port']}"
    # Kaniko pushes by the cluster's DNS name; the node is configured to pull that name from the
    # NodePort (docs/kubernetes.md, test_kubernetes_docs)
    assert settings.image_repository == f"{host}/trackside-jobs"
    assert settings.insecure_registry, "the registry speaks plain HTTP"
    assert settings.registry_secret is None, "no credentials: no push Secret, no imagePullSecrets"
    pod, listening = pod_port(local, registry, entry["port"])
    policies = local.of_kind("NetworkPolicy")
    assert allowed(policies, BUILD, pod, listening)
    assert allowed(policies, OUTSIDE, pod, listening), f"the node pulls through {entry['nodePort']}"


def test_production_pushes_to_the_operators_registry_with_its_secret(production: Rendered) -> None:
    settings = kubernetes_settings(production)
    assert settings.image_repository == "registry.example.com/trackside-jobs", "the placeholder to replace"
    assert settings.registry_secret == "trackside-registry"
    assert not settings.insecure_registry
    assert not production.has("Secret", "trackside-registry", JOBS_NAMESPACE), "the operator makes it"


def test_overlays_run_jobs_on_kubernetes(overlay: Rendered) -> None:
    deployment, container = container_of(overlay, "lifecycle")
    env = overlay.container_env(deployment, container)
    assert env["TRACKSIDE_INFRASTRUCTURE_TARGET"] == "kubernetes"
    assert env["TRACKSIDE_ALLOW_FILE_REMOTES"] == "false", (
        "file:// remotes would read the lifecycle's own disk"
    )

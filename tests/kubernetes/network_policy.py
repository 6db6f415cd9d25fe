"""Whether rendered NetworkPolicies let one pod connect to another, by the Kubernetes rules.

A connection needs both sides: the destination's ingress (if any policy of type Ingress selects the
destination pod, one of their rules must admit the source and port) and the source's egress (the
same, for policies of type Egress selecting the source pod). A rule without `from`/`to` admits every
peer, without `ports` every port. A peer with only a podSelector means pods of the policy's own
namespace; with a namespaceSelector, pods of the matching namespaces; with both, pods matching both.
Something outside the cluster (a NodePort client, the internet) is matched only by ipBlock peers
or rules without peers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .manifests import matches


@dataclass(frozen=True)
class Pod:
    namespace: str | None  # None: outside the cluster
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def namespace_labels(self) -> dict[str, str]:
        # every namespace carries this label (Kubernetes >= 1.22), the policies select by it
        return {"kubernetes.io/metadata.name": self.namespace} if self.namespace else {}


OUTSIDE = Pod(None)


def allowed(
    policies: list[dict[str, Any]], source: Pod, destination: Pod, port: int, protocol: str = "TCP"
) -> bool:
    return _admits(policies, "Ingress", destination, source, port, protocol) and _admits(
        policies, "Egress", source, destination, port, protocol
    )


def _admits(
    policies: list[dict[str, Any]], direction: str, subject: Pod, peer: Pod, port: int, protocol: str
) -> bool:
    if subject.namespace is None:
        return True  # outside the cluster: no policy applies to it
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace") == subject.namespace
        and direction in _types(p)
        and matches(p["spec"].get("podSelector") or {}, subject.labels)
    ]
    if not selecting:
        return True
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            if _port_matches(rule.get("ports"), port, protocol) and _peer_matches(
                rule.get(peers_key), peer, policy["metadata"]["namespace"]
            ):
                return True
    return False


def _types(policy: dict[str, Any]) -> list[str]:
    declared = policy["spec"].get("policyTypes")
    if declared:
        return list(declared)
    return ["Ingress", "Egress"] if "egress" in policy["spec"] else ["Ingress"]


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        start = entry["port"]
        if not isinstance(start, int):
            raise AssertionError(f"named port {start!r} in a NetworkPolicy: give the number")
        if start <= port <= entry.get("endPort", start):
            return True
    return False


def _peer_matches(peers: list[dict[str, Any]] | None, pod: Pod, policy_namespace: str) -> bool:
    if not peers:  # missing or empty: every peer
        return True
    for peer in peers:
        if "ipBlock" in peer:
            if pod.namespace is None:
                return True
            continue
        if pod.namespace is None:
            continue
        if "namespaceSelector" in peer:
            if not matches(peer["namespaceSelector"], pod.namespace_labels):
                continue
        elif pod.namespace != policy_namespace:
            continue
        if matches(peer.get("podSelector") or {}, pod.labels):
            return True
    return False

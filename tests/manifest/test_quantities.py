"""Kubernetes quantities for ``resources``: parsed into cores and bytes, the written text kept."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.manifest.examples import changed
from trackside.manifest import (
    ManifestError,
    manifest_to_dict,
    parse_cpu,
    parse_manifest,
    parse_memory,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("0.5", Decimal("0.5")),
        ("1", Decimal(1)),
        (1, Decimal(1)),
        (0.25, Decimal("0.25")),
        ("512Mi", Decimal(512 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("1Ki", Decimal(1024)),
        ("2Ti", Decimal(2 * 2**40)),
        ("1G", Decimal(10**9)),
        ("500M", Decimal(5 * 10**8)),
        ("1k", Decimal(1000)),
        ("2e3", Decimal(2000)),
        ("1E3", Decimal(1000)),
        ("5e-1", Decimal("0.5")),
        ("1E", Decimal(10**18)),  # exa, not an exponent
        ("250u", Decimal("0.00025")),
        ("10n", Decimal("0.00000001")),
        (".5", Decimal("0.5")),
        ("1.", Decimal(1)),
        ("+2", Decimal(2)),
    ],
)
def test_parse_quantity(text: str | int | float, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["", "m", "1.5.2", "1 Gi", "1gi", "1KB", "1Ki5", "e3", "1e", "1e1.5", "nan", True, None, "1e400"]
)
def test_not_quantities(text: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)  # type: ignore[arg-type]


def test_cpu_and_memory() -> None:
    cpu = parse_cpu("100m")
    assert (cpu.text, cpu.cores, str(cpu)) == ("100m", Decimal("0.1"), "100m")
    memory = parse_memory("256Mi")
    assert (memory.text, memory.bytes) == ("256Mi", 256 * 2**20)
    assert isinstance(memory.bytes, int)
    with pytest.raises(ValueError, match="whole number of bytes"):
        parse_memory("1.5")
    with pytest.raises(ValueError, match="positive"):
        parse_cpu("0")
    with pytest.raises(ValueError, match="positive"):
        parse_memory("-1Gi")


def test_resources_in_a_manifest_keep_their_text() -> None:
    manifest = parse_manifest(
        changed({"resources": {"cpu_min": "500m", "cpu_max": 2, "memory_min": "1G", "memory_max": "1Gi"}})
    )
    resources = manifest.resources
    assert resources is not None and resources.cpu_max is not None and resources.memory_min is not None
    assert resources.cpu_max.cores == 2 and resources.memory_min.bytes == 10**9
    assert manifest_to_dict(manifest)["resources"] == {
        "memory_min": "1G",
        "memory_max": "1Gi",
        "cpu_min": "500m",
        "cpu_max": "2",
    }


@pytest.mark.parametrize(
    ("resources", "paths"),
    [
        ({"memory_min": "1Gi", "memory_max": "1G"}, ["resources.memory_min"]),  # 1Gi > 1G
        ({"cpu_min": "2", "cpu_max": "1500m"}, ["resources.cpu_min"]),
        (
            {"memory_min": "2G", "memory_max": "1G", "cpu_min": 3, "cpu_max": 2},
            ["resources.memory_min", "resources.cpu_min"],
        ),
        ({"memory_min": "1G", "memory_max": "1000M", "cpu_min": "1000m", "cpu_max": 1}, []),  # equal is fine
    ],
)
def test_min_may_not_exceed_max(resources: dict[str, object], paths: list[str]) -> None:
    data = changed({"resources": resources})
    if not paths:
        parse_manifest(data)
        return
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    assert caught.value.paths == paths

"""What the manifests set: only EBBTIDE_ variables that exist, the production values of a 3-broker
cluster over SASL_SSL, and every secret by reference (the Secrets themselves are the deployment's:
inputs.example.yaml lists each one with a placeholder, never a value)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.deploy.kube import (
    ADDED_IN_ISSUE_13,
    INPUTS,
    ROOT,
    SETTINGS_NAMES,
    container_env,
    containers,
    documents,
    generated_env,
    literal_env,
    mounted,
    resources,
    workloads,
)

pytestmark = pytest.mark.unit

SECRET_LIKE = re.compile(r"PASSWORD|TOKEN|DSN|SECRET")


def every_container() -> list[dict[str, Any]]:
    return [c for w in workloads() for c in containers(w)]


def test_every_ebbtide_variable_is_a_setting_or_one_issue_13_adds() -> None:
    set_here = {n for c in every_container() for n in container_env(c)}
    image = (ROOT / "deploy" / "container" / "Containerfile").read_text()
    set_here |= set(re.findall(r"\b(EBBTIDE_[A-Z0-9_]+)=", image))
    ours = {n for n in set_here if n.startswith("EBBTIDE_")}
    assert len(ours) > 10
    assert ours - SETTINGS_NAMES - ADDED_IN_ISSUE_13 == set()


def test_the_cluster_settings_are_the_production_values() -> None:
    shared = generated_env("ebbtide-settings")
    assert shared["EBBTIDE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert shared["EBBTIDE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert len(shared["EBBTIDE_KAFKA_BOOTSTRAP"].split(",")) == 3
    assert (shared["EBBTIDE_TOPIC_REPLICATION_FACTOR"], shared["EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS"]) == (
        "3",
        "2",
    )
    assert shared["EBBTIDE_HTTP_HOST"] == "0.0.0.0"
    assert shared["EBBTIDE_CLOCK_MODE"] == "wall"
    for container in every_container():
        env = literal_env(container)
        assert env["EBBTIDE_KAFKA_SASL_USERNAME"].startswith("ebbtide-")
        assert env["EBBTIDE_KAFKA_SASL_PASSWORD_FILE"] == "/etc/ebbtide/kafka/password"


def test_secret_values_come_from_secrets_only() -> None:
    assert [d["metadata"]["name"] for d in resources() if d["kind"] == "Secret"] == []
    assert [
        n for n in generated_env("ebbtide-settings") if SECRET_LIKE.search(n) and not n.endswith("_FILE")
    ] == []
    for container in every_container():
        for name, entry in container_env(container).items():
            if SECRET_LIKE.search(name) and not name.endswith("_FILE"):
                assert "secretKeyRef" in entry.get("valueFrom", {}), name


def test_every_secret_and_key_used_is_listed_with_a_placeholder_in_the_inputs() -> None:
    inputs = {
        (d["kind"], d["metadata"]["name"]): {**d.get("data", {}), **d.get("stringData", {})}
        for d in documents(INPUTS)
    }
    generated = {"ebbtide-settings", "ebbtide-policy", "ebbtide-vendors"}
    used: set[tuple[str, str, str | None]] = set()
    for workload in workloads():
        for kind, key in (("Secret", "secret"), ("ConfigMap", "configMap")):
            for name, keys in mounted(workload, key):
                used |= {(kind, name, k) for k in keys or [None]}
        for container in containers(workload):
            for entry in container_env(container).values():
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    used.add(("Secret", ref["name"], ref["key"]))
    missing = [
        u
        for u in used
        if u[1] not in generated and ((u[0], u[1]) not in inputs or u[2] not in (*inputs[u[:2]], None))
    ]
    assert missing == []
    assert {(k, n) for k, n, _ in used} - {("ConfigMap", g) for g in generated} == set(inputs), (
        "inputs unused"
    )
    values = [v for data in inputs.values() for v in data.values()]
    assert [v for v in values if not re.fullmatch(r"<[^<>]+>", v)] == []
    dsns = inputs[("Secret", "ebbtide-pg-dsn")].values()
    assert dsns and all("sslmode=verify-full" in dsn for dsn in dsns)

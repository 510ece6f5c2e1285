"""The Kubernetes manifests are valid objects of a recent Kubernetes (kubernetes-validate's bundled
schemas, strict: an unknown field fails), also as kustomize renders them, and every ConfigMap and
Secret they use is generated or listed in inputs.example.yaml."""

from __future__ import annotations

import copy
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.unit.deploy.kube import (
    INPUTS,
    KUBE,
    ROOT,
    documents,
    kustomization,
    pod_spec,
    resources,
    workloads,
)

pytestmark = pytest.mark.unit

KUBERNETES = "1.37"


def invalid(doc: dict[str, Any]) -> str | None:
    """Why ``doc`` is not a valid object of Kubernetes 1.37 (strict), or None."""
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}"
    return None


def test_every_manifest_and_input_is_a_valid_object() -> None:
    docs = resources() + documents(INPUTS)
    assert {d["kind"] for d in docs} >= {"StatefulSet", "Deployment", "Job", "Secret", "ConfigMap"}
    assert [why for doc in docs if (why := invalid(doc))] == []


def test_the_validation_refuses_a_misspelt_field() -> None:
    worker = copy.deepcopy(next(w for w in workloads() if w["kind"] == "StatefulSet"))
    probe = pod_spec(worker)["containers"][0]["livenessProbe"]["httpGet"]
    probe["paht"] = probe.pop("path")
    assert invalid(worker) is not None


def referenced(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of each ConfigMap and Secret a workload mounts or reads variables from."""
    spec = pod_spec(doc)
    found = set()
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            found.add(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            found.add(("Secret", volume["secret"]["secretName"]))
    for container in spec["containers"]:
        for source in container.get("envFrom", []):
            found.add(("ConfigMap", source["configMapRef"]["name"]))
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                found.add(("Secret", ref["name"]))
    return found


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its kustomize) is not installed")
def test_kustomize_renders_valid_objects_whose_references_resolve() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(KUBE)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    made_here = [d for d in docs if d["kind"] == "ConfigMap"]  # the rest: the test above
    assert len(made_here) == len(kustomization()["configMapGenerator"])
    assert [why for doc in made_here if (why := invalid(doc))] == []
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"ebbtide"}
    made = {(d["kind"], d["metadata"]["name"]) for d in docs}
    inputs = {(d["kind"], d["metadata"]["name"]) for d in documents(INPUTS)}
    used = set().union(*(referenced(d) for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")))
    assert used - made - inputs == set()
    generated = {g["name"] for g in kustomization()["configMapGenerator"]}
    # Each generated ConfigMap is used, under its name with the content hash kustomize gives it.
    assert {name.rsplit("-", 1)[0] for kind, name in used if (kind, name) in made} == generated


def test_the_policy_config_map_holds_the_shipped_policy_and_store_map() -> None:
    generator = next(g for g in kustomization()["configMapGenerator"] if g["name"] == "ebbtide-policy")
    shipped = ROOT / "streams" / "policy"
    files = {KUBE / name for name in generator["files"]}
    assert {f.name for f in files} == {"retention.v1.toml", "stores.v1.toml"}
    assert [f.name for f in files if f.read_bytes() != (shipped / f.name).read_bytes()] == [], (
        "copy streams/policy/ to deploy/kubernetes/config/"
    )

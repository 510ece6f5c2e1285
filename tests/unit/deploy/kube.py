"""The Kubernetes manifests of deploy/kubernetes/, read as the tests need them."""

from __future__ import annotations

import copy
import dataclasses
import functools
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from ebbtide.runtime.settings import Settings
from ebbtide.sinks import registry
from ebbtide.sinks.keys import kind as keys_kind
from ebbtide.streams.policy.stores import Store

ROOT = Path(__file__).resolve().parents[3]
KUBE = ROOT / "deploy" / "kubernetes"
INPUTS = KUBE / "inputs.example.yaml"

# The EBBTIDE_ variables other parts of issue 13 add (Kafka security, topic durability, the bind
# address of the HTTP endpoints): a manifest may set these besides the fields of Settings.
ADDED_IN_ISSUE_13 = frozenset(
    {
        "EBBTIDE_KAFKA_SECURITY_PROTOCOL",
        "EBBTIDE_KAFKA_SASL_MECHANISM",
        "EBBTIDE_KAFKA_SASL_USERNAME",
        "EBBTIDE_KAFKA_SASL_PASSWORD_FILE",
        "EBBTIDE_KAFKA_SSL_CAFILE",
        "EBBTIDE_TOPIC_REPLICATION_FACTOR",
        "EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS",
        "EBBTIDE_HTTP_HOST",
    }
)
SETTINGS_NAMES = frozenset(f"EBBTIDE_{f.name.upper()}" for f in dataclasses.fields(Settings))
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def sink_processes(stores: Iterable[Store]) -> dict[str, list[str]]:
    """The sink processes a deployment of ``stores`` runs, name -> ``ebbtide sink`` arguments: those
    the registry gives for the store map, and the key store's (no store of the map, always run)."""
    return {**registry.sink_processes(stores), **keys_kind.PROCESS}


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    return loaded


@functools.cache
def _parsed(path: Path) -> tuple[dict[str, Any], ...]:
    return tuple(doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def documents(path: Path) -> list[dict[str, Any]]:
    """The objects of a YAML file (a copy each time: a test may change its own)."""
    return copy.deepcopy(list(_parsed(path)))


def resources() -> list[dict[str, Any]]:
    """Every object of the kustomization's resource files (not the generated ConfigMaps)."""
    return [doc for name in kustomization()["resources"] for doc in documents(KUBE / name)]


def workloads() -> list[dict[str, Any]]:
    return [doc for doc in resources() if doc["kind"] in WORKLOADS]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_file(path: Path) -> dict[str, str]:
    """NAME=VALUE lines of an environment file (comments and blank lines skipped)."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value
    return pairs


def generated_env(name: str) -> dict[str, str]:
    """The data of a ConfigMap the kustomization generates from env files (``envs``)."""
    for generator in kustomization()["configMapGenerator"]:
        if generator["name"] == name:
            pairs: dict[str, str] = {}
            for env in generator.get("envs", []):
                pairs.update(env_file(KUBE / env))
            return pairs
    raise KeyError(name)


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each variable a container sets: name -> its entry (``value`` or ``valueFrom``), the settings
    ConfigMap it takes whole included (as plain values)."""
    found: dict[str, dict[str, Any]] = {}
    for source in container.get("envFrom", []):
        for name, value in generated_env(source["configMapRef"]["name"]).items():
            found[name] = {"name": name, "value": value}
    for entry in container.get("env", []):
        found[entry["name"]] = entry
    return found


def literal_env(container: dict[str, Any]) -> dict[str, str]:
    return {n: str(e["value"]) for n, e in container_env(container).items() if "value" in e}


def settings_of(container: dict[str, Any]) -> Settings:
    """The container's ports as Settings reads them (the file paths it names do not exist here)."""
    ports = {n: v for n, v in literal_env(container).items() if n.endswith("_PORT")}
    return Settings.from_env(ports)


def command(container: dict[str, Any]) -> list[str]:
    return [str(arg) for arg in container.get("command", []) + container.get("args", [])]


def show(container: dict[str, Any]) -> str:
    return shlex.join(["ebbtide", *command(container)])


def mounted(workload: dict[str, Any], kind: str) -> Iterator[tuple[str, list[str] | None]]:
    """(name, keys mounted or None for all) of each ``secret`` or ``configMap`` volume."""
    for volume in pod_spec(workload).get("volumes", []):
        source = volume.get(kind)
        if source is not None:
            name = source["secretName"] if kind == "secret" else source["name"]
            items = source.get("items")
            yield name, None if items is None else [item["key"] for item in items]

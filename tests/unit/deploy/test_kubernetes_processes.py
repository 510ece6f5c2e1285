"""The manifests run what the code has: one Deployment for each sink process the store map needs
(the sink registry says which), each with the keys and DSN of exactly its stores; the worker as a
StatefulSet with stable member ids; commands the ``ebbtide`` parser takes; probes and scrape
annotations on each process's own metrics port; only settings that exist."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ebbtide.cli import build_parser
from ebbtide.runtime.settings import Settings
from ebbtide.sinks import registry
from ebbtide.sinks.http.vendors import load_vendors
from ebbtide.sinks.postgres.table_map import load_table_map, map_path
from ebbtide.streams.engine.shredding import KEY_STORE
from ebbtide.streams.policy.stores import StoreMap, load_store_map
from tests.unit.deploy.kube import (
    KUBE,
    ROOT,
    command,
    container_env,
    containers,
    kustomization,
    literal_env,
    mounted,
    pod_spec,
    resources,
    settings_of,
    show,
    sink_processes,
    workloads,
)

pytestmark = pytest.mark.unit


def store_map() -> StoreMap:
    return load_store_map(KUBE / "config" / "stores.v1.toml")


def sinks() -> list[dict[str, Any]]:
    return [w for w in workloads() if command(containers(w)[0])[:1] == ["sink"]]


def local_copy(workload: dict[str, Any], path: str) -> Path:
    """The file of deploy/kubernetes/ that a generated ConfigMap mounts at ``path`` in the pod."""
    mounts = {m["name"]: m["mountPath"] for c in containers(workload) for m in c.get("volumeMounts", [])}
    for volume in pod_spec(workload)["volumes"]:
        if "configMap" in volume and mounts.get(volume["name"]) == str(Path(path).parent):
            for generator in kustomization()["configMapGenerator"]:
                if generator["name"] == volume["configMap"]["name"]:
                    return next(KUBE / f for f in generator["files"] if Path(f).name == Path(path).name)
    raise LookupError(f"nothing of deploy/kubernetes is mounted at {path}")


def served(workload: dict[str, Any]) -> list[str]:
    """The stores a sink Deployment's process serves, from its arguments and its config."""
    args = build_parser().parse_args(command(containers(workload)[0]))
    if args.kind == "postgres":
        return [load_table_map(map_path(args.map)).store]
    if args.kind == "http":
        vendors = load_vendors(local_copy(workload, args.config), environ={})
        return sorted(vendors if args.stores is None else args.stores.split(","))
    if args.kind == "keys":
        return [KEY_STORE]
    return [s.id for s in store_map().stores if s.kind == args.kind]


def test_one_deployment_for_each_sink_process_of_the_store_map() -> None:
    needed = sink_processes(store_map().stores)
    assert len(needed) >= 5 and ["keys"] in needed.values()
    deployed = [command(containers(w)[0])[1:] for w in sinks()]
    assert all(w["kind"] == "Deployment" for w in sinks())
    for title, args in needed.items():
        matching = [d for d in deployed if d[: len(args)] == args]
        assert len(matching) == 1, f"{title} (ebbtide sink {' '.join(args)}): {len(matching)} Deployments"
    assert len(deployed) == len(needed), "a sink Deployment that no store of the store map needs"


KEYS_DSN = {
    "name": "EBBTIDE_KEYS_DSN",
    "valueFrom": {"secretKeyRef": {"name": "ebbtide-keys-dsn", "key": "dsn"}},
}


def test_each_sink_has_the_keys_and_database_of_exactly_its_stores_and_the_key_store() -> None:
    kinds = {s.id: s.kind for s in store_map().stores} | {KEY_STORE: "keys"}
    covered = []
    for workload in sinks():
        stores = served(workload)
        assert stores and all(kinds[s] == kinds[stores[0]] for s in stores), workload["metadata"]["name"]
        keys = dict(mounted(workload, "secret"))["ebbtide-sink-keys"]
        assert sorted(keys or []) == sorted(f"sink-{s}.key" for s in stores), workload["metadata"]["name"]
        # every sink opens its commands' sealed record keys: each reads the key store as its own role
        env = container_env(containers(workload)[0])
        assert env.get("EBBTIDE_KEYS_DSN") == KEYS_DSN, workload["metadata"]["name"]
        assert "/etc/ebbtide/pg-ca" in {m["mountPath"] for m in containers(workload)[0]["volumeMounts"]}
        dsn = env.get("EBBTIDE_PG_DSN")
        if kinds[stores[0]] in ("http", "keys"):
            assert dsn is None
        else:
            assert dsn == {
                "name": "EBBTIDE_PG_DSN",
                "valueFrom": {"secretKeyRef": {"name": "ebbtide-pg-dsn", "key": stores[0]}},
            }
        covered += stores
    assert sorted(covered) == sorted(kinds), "every store is served once"


def test_the_vendors_file_covers_each_http_store_with_tokens_from_a_secret() -> None:
    (http,) = [w for w in sinks() if command(containers(w)[0])[1] == "http"]
    vendors = load_vendors(KUBE / "config" / "vendors.toml", environ={})
    for store in (s for s in store_map().stores if s.kind == "http"):
        assert store.id in vendors
        assert all(vendors[store.id].holds(h.category) for h in store.holds), store.id
    env = container_env(containers(http)[0])
    for vendor in vendors.values():
        assert vendor.auth_env and vendor.base_url.startswith("https://"), vendor.store
        ref = env[vendor.auth_env]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "ebbtide-vendor-tokens", "key": vendor.auth_env}


def test_the_worker_is_a_stateful_set_whose_pods_are_its_member_ids() -> None:
    (worker,) = [w for w in workloads() if command(containers(w)[0])[:1] == ["worker"]]
    assert worker["kind"] == "StatefulSet"
    env = container_env(containers(worker)[0])
    assert env["EBBTIDE_WORKER_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    partitions = int(literal_env(containers(worker)[0])["EBBTIDE_PARTITIONS"])
    assert 1 <= worker["spec"]["replicas"] <= partitions
    policy = build_parser().parse_args(command(containers(worker)[0])).policy
    assert local_copy(worker, policy).name == "retention.v1.toml"
    assert (
        local_copy(worker, literal_env(containers(worker)[0])["EBBTIDE_STORE_MAP"]).name == "stores.v1.toml"
    )


def metrics_port(container: dict[str, Any]) -> int:
    """The port the container's process serves /metrics on, as the code computes it."""
    settings: Settings = settings_of(container)
    args: argparse.Namespace = build_parser().parse_args(command(container))
    if args.command == "worker":
        return settings.worker_metrics_port
    if args.command == "sink":
        return registry.get(args.kind).port(settings, args)
    assert args.command == "clock" and args.mode == "wall", show(container)
    return settings.clock_metrics_port if args.metrics_port is None else int(args.metrics_port)


def test_probes_and_scrape_annotations_are_on_each_process_metrics_port() -> None:
    local = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in local["scrape_configs"]}
    scraped = set()
    for workload in workloads():
        if workload["kind"] == "Job":
            continue
        (container,) = containers(workload)
        port = metrics_port(container)
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": port}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        notes = workload["spec"]["template"]["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/port"] == str(port)
        assert notes["prometheus.io/job"] in jobs, "the job names the alert rules know"
        scraped.add(notes["prometheus.io/job"])
    assert scraped == jobs


def test_every_command_is_one_the_ebbtide_parser_takes() -> None:
    parser = build_parser()
    for workload in workloads():
        for container in containers(workload):
            parser.parse_args(command(container))  # exits (fails the test) on a wrong command


def test_topics_are_applied_by_a_job_as_the_kafka_administrator() -> None:
    (job,) = [w for w in workloads() if w["kind"] == "Job"]
    assert job["metadata"]["name"] == "ebbtide-topics-apply"
    (container,) = containers(job)
    assert command(container)[:2] == ["topics", "apply"]
    # the audit topics' retention comes from the rules the worker runs: the same file for both
    (worker,) = [w for w in workloads() if w["kind"] == "StatefulSet"]
    (worker_container,) = containers(worker)
    policy = build_parser().parse_args(command(worker_container)).policy
    assert policy and build_parser().parse_args(command(container)).policy == policy
    assert dict(mounted(job, "secret"))["ebbtide-kafka-passwords"] == ["admin"]
    others = [w for w in workloads() if w["kind"] != "Job"]
    assert all(
        "admin" not in (dict(mounted(w, "secret")).get("ebbtide-kafka-passwords") or []) for w in others
    )


def test_every_container_has_resources_and_runs_unprivileged() -> None:
    for workload in workloads():
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in containers(workload):
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, show(container)
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]


def test_the_cluster_scrape_config_reads_the_annotations_the_pods_carry() -> None:
    config = yaml.safe_load((KUBE / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["ebbtide.rules.yml"]
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["ebbtide"]}}]
    read = {label for step in job["relabel_configs"] for label in step.get("source_labels", [])}
    given = {
        "__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", note)
        for w in workloads()
        if w["kind"] != "Job"
        for note in w["spec"]["template"]["metadata"]["annotations"]
    }
    assert len(given) == 4 and given <= read
    targets = {step.get("target_label") for step in job["relabel_configs"]}
    assert {"__address__", "__metrics_path__", "job"} <= targets


def test_the_network_policy_admits_exactly_the_metrics_ports() -> None:
    (policy,) = [d for d in resources() if d["kind"] == "NetworkPolicy"]
    (rule,) = policy["spec"]["ingress"]
    ports = {metrics_port(c) for w in workloads() if w["kind"] != "Job" for c in containers(w)}
    assert {p["port"] for p in rule["ports"]} == ports
    assert "from" not in rule and policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "ebbtide"
    }

"""The schema registry of the local stack (Apicurio Registry, its Confluent-compatible API):
`ebbtide schemas register` puts every version in under BACKWARD, again without change, and the
registry itself refuses a breaking version; the worker's lookup sorts unknown ids, schemas that do
not resolve against ours, and a registry that cannot be reached."""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema

from ebbtide.cli import build_parser
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import LIFECYCLE_EVENT, InvalidMessage, codec_for
from ebbtide.schemas.codec import SCHEMA_DIR, versions_of
from ebbtide.schemas.registry import RegistrySchemas, client, subject
from ebbtide.schemas.wire import RegistryUnavailable
from ebbtide.tools.processes import free_port
from tests.integration.tools.test_publish_bounded import ebbtide, events_file, published
from tests.support import EVENT, state_dir


def registry_url() -> str:
    url = os.environ.get("EBBTIDE_SCHEMA_REGISTRY_URL")
    if not url:
        raise RuntimeError(
            "these tests need the local stack's schema registry: run `make test` or `make stack-up`"
        )
    return url


@pytest.fixture
def with_registry(settings: Settings) -> Settings:
    return replace(settings, schema_registry_url=registry_url())


def register(settings: Settings, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["schemas", "register", "--store", "customer_db", *extra])
    code = int(args.func(args, settings))
    out, err = capsys.readouterr()
    return code, out, err


def test_register_is_idempotent_and_the_registry_refuses_a_breaking_version(
    with_registry: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = subject(Topics(with_registry.topic_prefix).events)
    code, first, err = register(with_registry, capsys)
    assert code == 0, err
    assert [line.split()[0] for line in first.splitlines() if events in line] == [
        "lifecycle_event.v1.avsc",
        "lifecycle_event.v2.avsc",
        "lifecycle_event.v3.avsc",
    ]
    registry = client(registry_url())
    assert registry.get_versions(events) == [1, 2, 3]
    assert registry.get_compatibility(events) == "BACKWARD"

    code, again, err = register(with_registry, capsys)
    assert (code, again, err) == (0, first, "")  # the same ids, nothing new
    assert registry.get_versions(events) == [1, 2, 3]

    breaking = tmp_path / "schemas"
    breaking.mkdir()
    for schema in versions_of(LIFECYCLE_EVENT):
        shutil.copy(schema.path, breaking)
    v4 = json.loads((SCHEMA_DIR / "lifecycle_event.v3.avsc").read_text())
    v4["fields"].append({"name": "tenant", "type": "string"})  # required, no default: v4 cannot read v3 data
    (breaking / "lifecycle_event.v4.avsc").write_text(json.dumps(v4))
    code, out, err = register(with_registry, capsys, "--dir", str(breaking))
    assert code == 1
    assert err == (
        f"ebbtide schemas register: lifecycle_event.v4.avsc refused by the registry under {events}: "
        "incompatible with the subject's latest version (BACKWARD)\n"
    )
    assert registry.get_versions(events) == [1, 2, 3]  # the registry itself kept it out

    down = replace(with_registry, schema_registry_url=f"http://127.0.0.1:{free_port()}/apis/ccompat/v7")
    code, out, err = register(down, capsys)
    assert code == 1 and out == "" and len(err.splitlines()) == 1
    assert "cannot be reached (ConnectError)" in err


def test_the_worker_s_lookup_refuses_unknown_ids_and_schemas_that_do_not_resolve(
    with_registry: Settings,
) -> None:
    url = registry_url()
    registry = client(url)
    current = codec_for(LIFECYCLE_EVENT).current
    ours = registry.register_schema(
        subject(f"{with_registry.topic_prefix}.ours"), Schema(current.path.read_text(), "AVRO")
    )
    stranger = {
        "type": "record",
        "name": "LifecycleEvent",
        "namespace": "io.ebbtide.events",
        "fields": [{"name": "tenant", "type": "int"}],
    }
    theirs = registry.register_schema(
        subject(f"{with_registry.topic_prefix}.theirs"), Schema(json.dumps(stranger), "AVRO")
    )
    lookup = RegistrySchemas(url, codec_for(LIFECYCLE_EVENT))
    assert lookup.writer(ours) is not None and lookup.cached(ours)
    with pytest.raises(
        InvalidMessage, match=f"schema id {theirs} does not resolve against lifecycle_event v3"
    ):
        lookup.writer(theirs)
    with pytest.raises(InvalidMessage, match="unknown schema id 2147483647 \\(the registry has none\\)"):
        lookup.writer(2**31 - 1)
    assert lookup.cached(2**31 - 1)  # not asked again
    gone = RegistrySchemas(f"http://127.0.0.1:{free_port()}/apis/ccompat/v7", codec_for(LIFECYCLE_EVENT))
    with pytest.raises(RegistryUnavailable, match="cannot be reached"):
        gone.writer(ours)
    assert not gone.cached(ours)  # asked again next time


def test_the_registry_s_schemas_and_log_are_private() -> None:
    registry = state_dir() / "registry"
    if not (registry / "registry.pid").is_file():
        pytest.skip(
            f"no local stack's registry in {registry} (set EBBTIDE_STATE_DIR to the stack's state dir)"
        )
    assert stat.S_IMODE(registry.stat().st_mode) == 0o700
    for name in ("registry.log", "registry.pid", "db.mv.db"):
        assert stat.S_IMODE((registry / name).stat().st_mode) == 0o600, name


def test_publish_on_the_confluent_wire_format_says_when_the_schema_is_not_registered(
    with_registry: Settings, tmp_path: Path
) -> None:
    confluent = replace(with_registry, wire_format="confluent")  # its prefix's subjects are empty
    path = events_file(tmp_path / "events.jsonl", [EVENT])
    done = ebbtide(confluent, "publish", str(path))
    events = subject(Topics(confluent.topic_prefix).events)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(
        f"ebbtide publish: the schema registry at {registry_url()} does not hold lifecycle_event.v3.avsc "
        f"under {events} (HTTP 404: "
    )
    assert done.stderr.endswith("); run `ebbtide schemas register` first; nothing was published\n")
    assert len(done.stderr.splitlines()) == 1
    assert published(confluent) == 0

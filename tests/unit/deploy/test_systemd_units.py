"""The systemd units of deploy/systemd/: systemd's own checks (``systemd-analyze verify`` and the
offline ``security`` score), the hardening they promise, one example sink instance for each sink
process the store map needs, with arguments the ``ebbtide`` parser takes, and the separation of
the processes: a user and a state directory of each unit's own, each private key readable by its
own unit only, and every secret from a credential or a root-only file (docs/deployment.md,
"systemd", installs the files with the modes checked here)."""

from __future__ import annotations

import configparser
import dataclasses
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from ebbtide.cli import build_parser
from ebbtide.runtime.settings import Settings
from ebbtide.sinks import registry
from ebbtide.streams.engine.shredding import KEY_STORE
from ebbtide.streams.policy.stores import load_store_map
from tests.unit.deploy.kube import ADDED_IN_ISSUE_13, ROOT, SETTINGS_NAMES, env_file, sink_processes

pytestmark = pytest.mark.unit

UNITS = ROOT / "deploy" / "systemd"
ENV = UNITS / "env"
EXECUTABLE = "/opt/ebbtide/bin/ebbtide"  # the virtualenv the docs install the wheel into
SERVICES = ("ebbtide-worker.service", "ebbtide-clock.service", "ebbtide-sink@.service")
needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)  # keys repeat (EnvironmentFile)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def instances() -> list[str]:
    """The example sink instances: env/sink-<instance>.env."""
    return sorted(p.stem.removeprefix("sink-") for p in ENV.glob("sink-*.env"))


def as_installed(tmp_path: Path) -> list[str]:
    """The units copied with ExecStart's program pointing at a stand-in that exists (systemd checks
    that it is executable); the instance names to verify."""
    program = tmp_path / "bin" / "ebbtide"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    for name in SERVICES:
        (tmp_path / name).write_text((UNITS / name).read_text().replace(EXECUTABLE, str(program)))
    return ["ebbtide-worker.service", "ebbtide-clock.service"] + [
        f"ebbtide-sink@{i}.service" for i in instances()
    ]


@needs_systemd
def test_systemd_verifies_every_unit_without_a_warning(tmp_path: Path) -> None:
    names = as_installed(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.strip()) == (0, "")


@needs_systemd
def test_each_unit_is_hardened_to_an_exposure_of_at_most_2(tmp_path: Path) -> None:
    for name in as_installed(tmp_path)[:3]:
        done = subprocess.run(  # the threshold is the exposure times ten
            ["systemd-analyze", "security", "--offline=yes", "--threshold=20", name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout.splitlines()[-1]


@pytest.mark.parametrize("name", SERVICES)
def test_each_unit_runs_ebbtide_restarting_on_failure_with_its_settings(name: str) -> None:
    service = unit(name)["Service"]
    assert service["ExecStart"].startswith(f"{EXECUTABLE} ")
    assert service["Restart"] == "on-failure"
    assert service["StateDirectory"].startswith("ebbtide/")
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["DynamicUser"] == "yes"  # a user of its own (User= names it), no sysusers file
    files = [
        line.split("=", 1)[1]
        for line in (UNITS / name).read_text().splitlines()
        if "EnvironmentFile=" in line
    ]
    assert files[0] == "/etc/ebbtide/ebbtide.env" and len(files) == 2


def test_an_example_sink_instance_for_each_sink_process_of_the_store_map() -> None:
    needed = sink_processes(load_store_map().stores).values()
    assert ["keys"] in needed
    given = [shlex.split(env_file(ENV / f"sink-{i}.env")["SINK_ARGS"]) for i in instances()]
    for args in needed:
        assert len([g for g in given if g[: len(args)] == args]) == 1, args
    assert len(given) == len(needed)
    for args in given:
        build_parser().parse_args(["sink", *args])
    ports = [env_file(ENV / f"sink-{i}.env").get("EBBTIDE_SINK_METRICS_PORT") for i in instances()]
    assert len({p for p in ports if p}) == len([p for p in ports if p]), "one metrics port per sink"
    for i in instances():  # every sink opens sealed record keys: the key store's DSN, not its store's
        env = env_file(ENV / f"sink-{i}.env")
        assert env.get("EBBTIDE_KEYS_DSN") and env["EBBTIDE_KEYS_DSN"] != env.get("EBBTIDE_PG_DSN"), i


def test_the_env_files_set_only_settings_that_exist() -> None:
    other = {"SINK_ARGS"}  # the sink template's own: `ebbtide sink $SINK_ARGS`
    names = {n for f in ENV.glob("*.env") for n in env_file(f)}
    unknown = {n for n in names if n.startswith("EBBTIDE_")} - SETTINGS_NAMES - ADDED_IN_ISSUE_13
    assert unknown == set()
    assert {n for n in names if not n.startswith("EBBTIDE_")} - other == {
        f"{s.upper()}_TOKEN" for s in (x.id for x in load_store_map().stores if x.kind == "http")
    }


# -- the separation of the processes -------------------------------------------------------------

DOCS = ROOT / "docs" / "deployment.md"
STATE_ROOT = "/var/lib"  # %S of a system unit
CREDENTIALS = Path("/etc/ebbtide/credentials")  # the sources of LoadCredential=: root's only
SECRET_NAME = re.compile(r"(PASSWORD|_DSN|TOKEN|SECRET)$")
# Settings naming a file that holds a secret: a credential of the unit, or in its own state directory.
SECRET_FILES = (
    "EBBTIDE_KAFKA_SASL_PASSWORD_FILE",
    "EBBTIDE_KAFKA_SSL_KEYFILE",
    "EBBTIDE_CERTIFICATE_KEY",
    "EBBTIDE_SINK_KEY",
    "EBBTIDE_CLOCK_KEY",
    "EBBTIDE_HOLD_SIGNING_KEY",
)


@dataclasses.dataclass(frozen=True)
class Role:
    """One process as installed: the worker, the clock, or one instance of the sink template."""

    unit_name: str  # as systemd names it: ebbtide-sink@customer_db.service
    template: str  # the file in deploy/systemd/
    instance: str = ""

    def expand(self, value: str) -> str:
        return (
            value.replace("%i", self.instance)
            .replace("%S", STATE_ROOT)
            .replace("%d", str(self.credentials))
            .replace("%H", "host-1")
        )

    @property
    def credentials(self) -> Path:
        return Path("/run/credentials") / self.unit_name

    def directives(self, key: str) -> list[str]:
        """Every value of ``key`` in the unit's [Service] section, in order, specifiers expanded."""
        found, section = [], ""
        for line in (UNITS / self.template).read_text().splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "Service" and line.startswith(f"{key}="):
                found.append(self.expand(line.split("=", 1)[1]))
        return found

    def directive(self, key: str) -> str:
        (value,) = self.directives(key)
        return value

    @property
    def env_files(self) -> list[Path]:
        """The example files of the unit's EnvironmentFile= (/etc/ebbtide/X.env is env/X.env)."""
        return [ENV / Path(f).name for f in self.directives("EnvironmentFile")]

    @property
    def environment(self) -> dict[str, str]:
        """The process's environment as systemd makes it: Environment=, then the environment files
        (which override it)."""
        merged = dict(e.split("=", 1) for e in self.directives("Environment"))
        for path in self.env_files:
            merged.update(env_file(path))
        return merged

    @property
    def settings(self) -> Settings:
        """The process's Settings (typed as Settings.from_env types them, without its checks of
        files that exist only on an installed host)."""
        env, values = self.environment, {}
        for f in dataclasses.fields(Settings):
            raw = env.get(f"EBBTIDE_{f.name.upper()}")
            if raw:
                values[f.name] = Path(raw) if "Path" in str(f.type) else raw
        return Settings(**values)  # type: ignore[arg-type]

    @property
    def state_dir(self) -> Path:
        return Path(STATE_ROOT) / self.directive("StateDirectory")

    @property
    def loaded(self) -> dict[str, Path]:
        """LoadCredential=ID:SOURCE of the unit: ID -> SOURCE."""
        return {i: Path(s) for i, s in (c.split(":", 1) for c in self.directives("LoadCredential"))}

    def private_keys(self) -> list[Path]:
        """The private keys the process signs with (made on first start if missing)."""
        settings = self.settings
        if self.template == "ebbtide-worker.service":
            assert settings.hold_keys is not None, "the worker makes no holds.key of its own"
            return [settings.signing_key]
        if self.template == "ebbtide-clock.service":
            return [settings.clock_signing_key]
        args = shlex.split(self.environment["SINK_ARGS"])
        if args[:1] == ["keys"]:
            return [settings.sink_key_for(KEY_STORE)]
        served = [
            s.id
            for s in load_store_map().stores
            if any(args[: len(a)] == a for a in registry.sink_processes([s]).values())
        ]
        assert served, self.unit_name
        return [settings.sink_key_for(store) for store in served]


def roles() -> list[Role]:
    return [
        Role("ebbtide-worker.service", "ebbtide-worker.service"),
        Role("ebbtide-clock.service", "ebbtide-clock.service"),
        *(Role(f"ebbtide-sink@{i}.service", "ebbtide-sink@.service", i) for i in instances()),
    ]


def inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def installed_modes() -> dict[Path, int]:
    """The mode of each file and directory under /etc/ebbtide that the install steps of
    docs/deployment.md ("systemd") make: `install -m MODE SOURCES... DIR/` and `install -d -m MODE DIRS`."""
    section = DOCS.read_text().split("## systemd (virtual machines)", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    modes: dict[Path, int] = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0] != "install":
            continue
        mode = int(words[words.index("-m") + 1], 8)
        rest = [w for w in words[1:] if not w.startswith("-") and w != words[words.index("-m") + 1]]
        if "-d" in words:
            modes.update({Path(d): mode for d in rest})
            continue
        *sources, target = rest
        for source in sources:
            for found in ([] if source.startswith("/") else sorted(ROOT.glob(source))) or [Path(source)]:
                modes[Path(target) / found.name] = mode
    return modes


def test_no_two_units_share_a_user_or_a_state_directory() -> None:
    users, groups, states = [], [], []
    for role in roles():
        assert role.directive("DynamicUser") == "yes", role.unit_name
        # User= named: without it, every instance of the template would be the one user ebbtide-sink
        users.append(role.directive("User"))
        groups += role.directives("Group")
        states.append(role.state_dir)
        assert role.state_dir.parent == Path(STATE_ROOT) / "ebbtide", role.unit_name
        assert role.directive("WorkingDirectory") == str(role.state_dir)
        assert role.settings.state_dir == role.state_dir, "EBBTIDE_STATE_DIR is the unit's own"
        assert len(role.directive("User")) <= 31, "a user name systemd takes"
    assert len(set(users)) == len(users), users
    assert len(set(groups)) == len(groups), groups
    assert len(set(states)) == len(states), states
    assert not [(a, b) for a in states for b in states if a != b and inside(a, b)]


def test_each_private_key_is_readable_by_its_own_unit_only() -> None:
    everyone = roles()
    for role in everyone:
        for key in role.private_keys():
            assert inside(key, role.state_dir) or inside(key, role.credentials), (role.unit_name, key)
    for role in everyone:
        # No setting of a process points into another unit's state directory or credentials (a
        # private key there would be read, or made, by the wrong user).
        paths = [Path(v) for v in role.environment.values() if v.startswith("/")]
        paths += [Path(a) for a in shlex.split(role.environment.get("SINK_ARGS", "")) if a.startswith("/")]
        for other in everyone:
            if other is role:
                continue
            assert not [p for p in paths if inside(p, other.state_dir) or inside(p, other.credentials)], (
                role.unit_name,
                other.unit_name,
            )
        for name in SECRET_FILES:
            value = role.environment.get(name)
            if value:
                path = Path(value)
                assert inside(path, role.credentials) or inside(path, role.state_dir), (role.unit_name, name)


def test_the_public_keys_are_read_from_etc_ebbtide_not_from_a_state_directory() -> None:
    worker = roles()[0].settings
    assert worker.trusted_keys_dir == Path("/etc/ebbtide/keys")
    assert worker.hold_public_keys == (Path("/etc/ebbtide/hold-keys"),)  # a directory of theirs only
    for role in roles()[2:]:
        assert role.settings.command_public_key == Path("/etc/ebbtide/keys/certificate-signing.pub")


def test_each_kafka_password_is_a_credential_its_role_alone_loads() -> None:
    sources: dict[Path, set[str]] = {}
    for role in roles():
        env = role.environment
        assert "EBBTIDE_KAFKA_SASL_PASSWORD" not in env, "never the password itself"
        password = Path(env["EBBTIDE_KAFKA_SASL_PASSWORD_FILE"])
        assert password.parent == role.credentials, role.unit_name
        source = role.loaded[password.name]
        assert source.parent == CREDENTIALS, role.unit_name
        sources.setdefault(source, set()).add(env["EBBTIDE_KAFKA_SASL_USERNAME"])
    # one password file per Kafka user: no role can read another's (the sinks share ebbtide-sink)
    assert all(len(users) == 1 for users in sources.values()), sources
    users = [u for us in sources.values() for u in us]
    assert len(set(users)) == len(users) == len(sources)


def test_no_environment_file_overrides_what_the_unit_sets_for_its_own() -> None:
    """An environment file wins over Environment=: none may set the unit's state directory or
    credentials, or they would be shared again."""
    for role in roles():
        own = {e.split("=", 1)[0] for e in role.directives("Environment")}
        for path in role.env_files:
            assert own.isdisjoint(env_file(path)), (role.unit_name, path.name)


def test_every_secret_comes_from_a_root_only_place() -> None:
    modes = installed_modes()
    assert modes[CREDENTIALS] & 0o077 == 0, "the credentials' directory: root only"
    for role in roles():
        for value in role.directives("Environment"):
            name = value.split("=", 1)[0]
            assert not SECRET_NAME.search(name), (role.unit_name, name)  # a unit file is 0644
        for source in role.loaded.values():
            assert source.parent == CREDENTIALS, (role.unit_name, source)
        for path in role.env_files:
            secrets = [n for n, v in env_file(path).items() if SECRET_NAME.search(n) and v]
            installed = Path("/etc/ebbtide") / path.name
            if secrets:
                assert modes[installed] & 0o077 == 0, (path.name, secrets, oct(modes[installed]))
                assert "mode 0600, root:root" in path.read_text().splitlines()[0], path.name
            else:
                assert installed in modes, path.name
    assert [n for n in env_file(ENV / "ebbtide.env") if SECRET_NAME.search(n)] == []


def test_a_worker_stopped_mid_batch_stops_cleanly_and_one_whose_batch_failed_restarts() -> None:
    from ebbtide.streams.worker.batch import EXIT_BATCH_FAILED

    worker = unit("ebbtide-worker.service")["Service"]
    assert worker["SuccessExitStatus"] == worker["RestartForceExitStatus"] == str(EXIT_BATCH_FAILED)
    for name in ("ebbtide-clock.service", "ebbtide-sink@.service"):  # 0, or ended by SIGTERM
        assert "SuccessExitStatus" not in unit(name)["Service"]

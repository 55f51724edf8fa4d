"""docker/: the compose stack and the image, checked without a Docker engine.

Every service, published port, health check and dependency of compose.yaml;
every ``CSMS_*`` variable against the settings (and the few variables the
settlement adapter reads); every ``csms`` command line against the real CLI;
the load balancer and broker configs against the nodes' ports; the Dockerfile's
base image, user, entrypoint and health check; and that a regular (not
editable) install carries the migrations and the contract.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

from csms.cli import app
from csms.config import Settings

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
CSMS_IMAGE = "voltledger/csms:dev"
SERVICES_NEEDED = {"lb", "postgres", "mosquitto", "anvil", "contract-deploy", "settler"}


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def csms_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if s.get("image") == CSMS_IMAGE}


def nodes() -> dict[str, dict[str, Any]]:
    """The services running ``csms serve`` (the image's default command)."""
    return {name: s for name, s in csms_services().items()
            if "entrypoint" not in s and s.get("command", ["serve"])[:1] == ["serve"]}


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def known_env_vars() -> set[str]:
    """``CSMS_<FIELD>`` of the settings, and the ``CSMS_*`` names the code reads itself."""
    names = {f"CSMS_{f.name.upper()}" for f in fields(Settings)}
    for package in ("csms", "settlement"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(re.findall(r"[\"'](CSMS_[A-Z][A-Z0-9_]*)[\"']", path.read_text("utf-8")))
    return names


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: str(v) for k, v in env.items()}


# -- services ---------------------------------------------------------------------------
def test_every_service_of_the_stack_is_there() -> None:
    assert set(services()) >= SERVICES_NEEDED
    assert len(nodes()) == 2, "two central system nodes behind the load balancer"


def test_long_running_services_have_health_checks() -> None:
    for name, service in services().items():
        check = service.get("healthcheck", {})
        if one_shot(service):
            continue
        assert service.get("restart") == "unless-stopped", name
        assert not check.get("disable"), name
        test = check.get("test")
        assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, name
        for key in ("interval", "timeout"):
            assert re.fullmatch(r"\d+s", str(check.get(key, ""))), f"{name}: {key}"
        assert int(check.get("retries", 0)) >= 1, name


def test_dependencies_exist_and_wait_for_health_or_completion() -> None:
    all_services = services()
    for name, service in all_services.items():
        for dep, spec in service.get("depends_on", {}).items():
            assert dep in all_services, f"{name} depends on unknown {dep}"
            target = all_services[dep]
            if one_shot(target):
                assert spec["condition"] == "service_completed_successfully", (name, dep)
            else:
                assert spec["condition"] == "service_healthy", (name, dep)
                assert "healthcheck" in target, (name, dep)
    for name in nodes():
        assert {"postgres", "mosquitto"} <= set(all_services[name]["depends_on"])
    assert set(all_services["lb"]["depends_on"]) == set(nodes())
    settler = all_services["settler"]["depends_on"]
    assert settler["contract-deploy"]["condition"] == "service_completed_successfully"


def test_only_the_load_balancer_publishes_a_port_beyond_this_host() -> None:
    published = {name: s["ports"] for name, s in services().items() if "ports" in s}
    assert published.pop("lb") == ["9000:9000"]
    # the admin APIs and the chain: on the host's loopback only
    assert published == {"csms-1": ["127.0.0.1:9001:9001"], "csms-2": ["127.0.0.1:9002:9001"],
                         "anvil": ["127.0.0.1:8545:8545"]}
    for name in ("csms-1", "csms-2"):
        env = env_of(services()[name])
        settings = Settings.load(env=env)
        assert settings.admin_public and settings.admin_host == "0.0.0.0"
        assert published[name][0].endswith(f":{settings.admin_port}")


def test_the_chain_image_is_the_anvil_make_install_uses() -> None:
    makefile = (ROOT / "Makefile").read_text("utf-8")
    [version] = re.findall(r"@foundry-rs/anvil@(\S+)", makefile)
    assert services()["anvil"]["image"] == f"ghcr.io/foundry-rs/foundry:v{version}"


def test_volumes_and_mounted_files_exist() -> None:
    declared = set(compose().get("volumes", {}))
    for name, service in services().items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (DOCKER / source).is_file(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: volume {source}"


# -- settings and command lines ---------------------------------------------------------
def test_every_csms_variable_is_a_setting_the_code_reads() -> None:
    known = known_env_vars()
    for name, service in services().items():
        for var in env_of(service):
            if var.startswith("CSMS_"):
                assert var in known, f"{name}: {var} is read by nothing"


@pytest.mark.parametrize("name", sorted(nodes()))
def test_node_settings_load(name: str) -> None:
    env = env_of(nodes()[name])
    settings = Settings.load(env=env)  # coerces every value, raises on a bad one
    assert settings.db.startswith("postgresql://")
    assert settings.host == "0.0.0.0"
    assert settings.node_id == name
    assert settings.mqtt.startswith("mqtt://")
    assert not settings.chain, "settlement runs once, in the settler service"


def test_node_ids_are_distinct() -> None:
    ids = [env_of(s)["CSMS_NODE_ID"] for s in nodes().values()]
    assert len(set(ids)) == len(ids)


def _resolve(args: list[str]) -> tuple[Any, list[str], str]:
    """The Typer (click) command an argument list names, and the arguments left."""
    command: Any = typer.main.get_command(app)
    path = "csms"
    rest = list(args)
    while hasattr(command, "commands"):  # a group: the next word is a subcommand
        assert rest and not rest[0].startswith("-"), f"{path} needs a subcommand"
        assert rest[0] in command.commands, f"{path} has no command {rest[0]!r}"
        command = command.commands[rest[0]]
        path += f" {rest.pop(0)}"
    return command, rest, path


@pytest.mark.parametrize("name", sorted(csms_services()))
def test_command_lines_parse_with_the_real_cli(name: str) -> None:
    service = csms_services()[name]
    if "entrypoint" in service:
        return  # not the csms command (the one-shot operator script)
    args = [str(a) for a in service.get("command", ["serve"])]
    command, rest, path = _resolve(args)
    # parses and converts every option as `csms` would, without running anything
    ctx = command.make_context(path, rest)
    assert not ctx.args, f"{path}: unexpected arguments {ctx.args}"


def test_the_contract_is_deployed_at_start_on_the_stack_chain() -> None:
    deploy = services()["contract-deploy"]["command"]
    assert deploy[:4] == ["contract", "deploy", "--chain", "http://anvil:8545"]
    settler = services()["settler"]["command"]
    assert settler[:4] == ["settle", "worker", "--chain", "http://anvil:8545"]
    for command in (deploy, settler):
        keystore = command[command.index("--keystore") + 1]
        password = command[command.index("--password-file") + 1]
        operator = services()["operator"]["command"]
        assert Path(keystore).parent == Path(password).parent == Path(operator[0])


# -- ports between the services --------------------------------------------------------
def _anvil_port() -> int:
    command = services()["anvil"]["command"]
    return int(command[command.index("--port") + 1])


def test_ports_agree_between_services() -> None:
    cfg = (DOCKER / "haproxy.cfg").read_text("utf-8")
    # the load balancer listens where it is published, on the nodes' OCPP port
    assert re.search(r"^\s*bind :9000$", cfg, re.M)
    backends = dict(re.findall(r"^\s*server (\S+) (\S+)$", cfg, re.M))
    assert set(backends) == set(nodes())
    for name, service in nodes().items():
        assert backends[name] == f"{name}:{env_of(service)['CSMS_PORT']}"
        admin = env_of(service)["CSMS_ADMIN_PORT"]
        assert f"127.0.0.1:{admin}/health" in " ".join(service["healthcheck"]["test"])
    lb_check = " ".join(services()["lb"]["healthcheck"]["test"])
    port = re.search(r"bind :(\d+)\n\s*monitor-uri (\S+)", cfg)
    assert port is not None and f"127.0.0.1:{port[1]}{port[2]}" in lb_check
    # the broker
    mosquitto = (DOCKER / "mosquitto.conf").read_text("utf-8")
    [listener] = re.findall(r"^listener (\d+)$", mosquitto, re.M)
    for service in nodes().values():
        url = urlsplit(env_of(service)["CSMS_MQTT"])
        assert (url.hostname, url.port) == ("mosquitto", int(listener))
    # the database
    pg = env_of(services()["postgres"])
    pg_check = services()["postgres"]["healthcheck"]["test"]
    for service in csms_services().values():
        if "CSMS_DB" not in env_of(service):
            continue
        url = urlsplit(env_of(service)["CSMS_DB"])
        assert (url.hostname, url.port, url.username, url.password, url.path) == (
            "postgres", 5432, pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"],
            "/" + pg["POSTGRES_DB"])
        assert pg_check[pg_check.index("-p") + 1] == str(url.port)
    # the chain
    anvil = f"http://anvil:{_anvil_port()}"
    assert f"127.0.0.1:{_anvil_port()}" in " ".join(services()["anvil"]["healthcheck"]["test"])
    assert services()["operator"]["command"][1] == anvil
    for name in ("contract-deploy", "settler"):
        command = services()[name]["command"]
        assert command[command.index("--chain") + 1] == anvil


def test_every_service_that_stores_uses_the_database_and_data_folder() -> None:
    for name in [*nodes(), "contract-deploy", "settler"]:
        env = env_of(services()[name])
        assert env["CSMS_DATA_DIR"] == "/var/lib/voltledger", name
        assert env["CSMS_DB"].startswith("postgresql://"), name


# -- the image --------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text("utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile() -> None:
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert ("ENTRYPOINT", '["csms"]') in instructions
    assert instructions[-1] == ("CMD", '["serve"]')
    assert any(word == "HEALTHCHECK" and "/health" in rest for word, rest in instructions)
    assert ("EXPOSE", "9000") in instructions
    installs = [rest for word, rest in instructions if word == "RUN" and "pip install" in rest]
    assert installs and all("-e " not in r and "--editable" not in r for r in installs)


def test_dockerfile_copies_what_exists_and_the_ignore_file_keeps_it() -> None:
    # a root .dockerignore: the classic builder reads no Dockerfile-specific one
    assert not (DOCKER / "Dockerfile.dockerignore").exists()
    ignore = (ROOT / ".dockerignore").read_text("utf-8").splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for word, rest in dockerfile():
        if word != "COPY":
            continue
        *sources, _ = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") in kept, f"{source} is excluded from the build context"


def test_dockerfile_environment_is_valid_settings() -> None:
    env: dict[str, str] = {}
    for word, rest in dockerfile():
        if word == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", rest))
    csms = {k: v for k, v in env.items() if k.startswith("CSMS_")}
    assert set(csms) <= known_env_vars()
    settings = Settings.load(env=csms)
    assert (settings.host, settings.port, settings.admin_port) == ("0.0.0.0", 9000, 9001)


def test_a_regular_install_carries_migrations_and_the_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    package_data: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    needed = {
        "csms.storage": sorted((ROOT / "csms" / "storage").glob("migrations/*/*.sql")),
        "settlement": sorted((ROOT / "settlement").glob("contracts/*.vy")),
    }
    for package, files in needed.items():
        assert files, package
        base = ROOT.joinpath(*package.split("."))
        for path in files:
            rel = path.relative_to(base).as_posix()
            assert any(fnmatch.fnmatch(rel, glob) and rel.count("/") == glob.count("/")
                       for glob in package_data.get(package, [])), f"{rel} not packaged"

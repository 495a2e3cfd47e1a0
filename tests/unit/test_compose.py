"""docker-compose.yml: valid against the Compose Specification's JSON schema (as vendored by the
check-jsonschema package), runnable as documented, and running exactly the processes of
stack/processes.py, each with a command that exists in this project."""
import importlib.util
import json
import re
import shutil
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

from stack.processes import stack_processes

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
VENV_BIN = Path(sys.executable).parent


def compose_schema() -> dict:
    return json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())


def interpolate(value):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, with nothing set: defaults, or a stand-in."""
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)(?::?-([^}]*)|:?\?[^}]*)?\}", lambda m: m.group(2) or "set-by-operator", value)
    return value


@pytest.fixture(scope="module")
def compose() -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()))


def test_compose_file_follows_the_compose_specification(compose):
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file(compose):
    schema = compose_schema()
    broken = {**compose, "services": {**compose["services"], "api": {**compose["services"]["api"], "ports": 8000}}}
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


def normalized(argv) -> list[str]:
    """A command line with deployment-specific values (addresses, ports, paths, secrets, sizes) masked."""
    masked_options = {"--host", "--port", "--db", "--dir", "--schedule", "--concurrency", "--address", "--basic-auth"}
    out, mask_next = [], False
    for token in argv:
        if mask_next:
            out.append("*")
            mask_next = False
        elif "=" in token and token.split("=", 1)[0] in masked_options:
            out.append(token.split("=", 1)[0] + "=*")
        else:
            out.append(token)
            mask_next = token in masked_options
    return out


def test_compose_runs_every_process_of_the_stack_with_its_command_line(compose):
    services = compose["services"]
    for spec in stack_processes("DATA"):
        assert spec.name in services, f"{spec.name} (stack/processes.py) has no service"
        assert normalized(services[spec.name]["command"]) == normalized(spec.argv), spec.name


def app_commands(compose) -> list[tuple[str, list[str]]]:
    """Every command the app image runs: service commands and healthchecks."""
    commands = []
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        if "command" in service:
            commands.append((name, service["command"]))
        test = service.get("healthcheck", {}).get("test")
        if test:
            assert test[0] == "CMD", f"{name}: exec-form healthchecks only (no shell in the probe)"
            commands.append((f"{name} healthcheck", test[1:]))
    return commands


def test_every_command_refers_to_a_program_and_module_of_this_project(compose):
    commands = app_commands(compose)
    assert len(commands) >= 12
    for where, argv in commands:
        program = argv[0]
        assert program == "python" or (VENV_BIN / program).exists() or shutil.which(program), f"{where}: {program}"
        if program == "python" and argv[1] == "-m":
            assert importlib.util.find_spec(argv[2]) is not None, f"{where}: no module {argv[2]}"
        if program == "celery":
            assert argv[1:3] == ["-A", "wsgi.celery"], where
        if program == "gunicorn":
            config = argv[argv.index("--config") + 1]
            assert (ROOT / config).is_file(), f"{where}: {config}"
            module, _, attribute = argv[-1].partition(":")
            assert (ROOT / f"{module}.py").is_file() and attribute, f"{where}: {argv[-1]}"
        if program == "flask":
            assert argv[1:3] == ["--app", "wsgi"], where


def test_probes_wait_for_what_each_process_needs(compose):
    services = compose["services"]
    app_services = [n for n, s in services.items() if "build" in s and n != "migrate"]
    for name in app_services:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    for name in ("api", "worker-booking", "worker-payments", "worker-maintenance", "worker-admission", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_workers_scale_and_redis_keeps_its_queues(compose):
    services = compose["services"]
    for name in ("worker-booking", "worker-payments", "worker-maintenance", "worker-admission"):
        service = services[name]
        assert "container_name" not in service and "ports" not in service, f"{name} must scale with --scale"
        grace = int(service["stop_grace_period"].rstrip("s"))
        import celeryconfig
        assert grace > celeryconfig.worker_soft_shutdown_timeout, name
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command
    assert "redis-data:/data" in services["redis"]["volumes"]


def test_dockerfile_installs_the_pins_and_runs_as_a_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile
    assert re.search(r"^USER \w+", dockerfile, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_the_published_api_port_serves_metrics_only_with_the_token():
    """Compose publishes the API port, so /metrics needs METRICS_TOKEN, and the file makes it required."""
    raw = yaml.safe_load(COMPOSE.read_text())
    token = raw["services"]["api"]["environment"]["METRICS_TOKEN"]
    assert re.fullmatch(r"\$\{METRICS_TOKEN:\?[^}]+\}", token), token

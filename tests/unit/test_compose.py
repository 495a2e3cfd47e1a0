"""docker-compose.yml: valid against the Compose Specification's JSON schema (as vendored by the
check-jsonschema package), runnable as documented, and running exactly the processes of
stack/processes.py, each with a command that exists in this project. The same checks hold for it
merged with docker-compose.rabbitmq.yml (RabbitMQ as the broker), which must also bring every
broker user to RabbitMQ."""
import importlib.util
import json
import re
import shutil
import sys
from urllib.parse import urlsplit
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

from stack.processes import stack_processes

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
RABBITMQ_OVERRIDE = ROOT / "docker-compose.rabbitmq.yml"
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


# Sequences an override replaces rather than extends, and those merged by a key (compose-spec,
# "Merge and override").
REPLACED = {"command", "entrypoint", "test"}
UNIQUE = {"volumes": lambda v: v["target"] if isinstance(v, dict) else v.split(":")[1 if ":" in v else 0],
          "ports": lambda p: p if isinstance(p, str) else (p.get("host_ip"), p.get("published"), p["target"]),
          "secrets": lambda s: s if isinstance(s, str) else s.get("target", s["source"]),
          "configs": lambda c: c if isinstance(c, str) else c.get("target", c["source"])}


def as_mapping(key: str, value):
    """environment, labels and depends_on may be written as lists: compose merges them as mappings."""
    if not isinstance(value, list) or key not in ("environment", "labels", "depends_on"):
        return value
    if key == "depends_on":
        return {name: {"condition": "service_started"} for name in value}
    return dict(item.split("=", 1) if "=" in item else (item, None) for item in value)


def merge(base, override, key: str | None = None):
    """docker compose's merge of an override file into a base (compose-spec, "Merge and override"):
    mappings merge key by key, sequences are appended to, except commands and healthcheck tests
    (replaced) and volumes, ports, secrets and configs (one entry per target)."""
    if key is not None:
        base, override = as_mapping(key, base), as_mapping(key, override)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for k, value in override.items():
            merged[k] = merge(base[k], value, k) if k in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED:
        if key in UNIQUE:
            entries = {UNIQUE[key](entry): entry for entry in [*base, *override]}
            return list(entries.values())
        return [*base, *override]
    return override


def load(*paths: Path) -> dict:
    """The files as `docker compose -f ... -f ...` reads them: each interpolated, then merged in order."""
    files = [interpolate(yaml.safe_load(path.read_text())) for path in paths]
    merged = files[0]
    for override in files[1:]:
        merged = merge(merged, override)
    return merged


STACKS = {"base": (COMPOSE,), "rabbitmq": (COMPOSE, RABBITMQ_OVERRIDE)}


@pytest.fixture(scope="module", params=sorted(STACKS))
def compose(request) -> dict:
    """Every check of the stack holds for docker-compose.yml alone and with the RabbitMQ override."""
    return load(*STACKS[request.param])


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


# --- docker-compose.rabbitmq.yml ------------------------------------------------------------------
# The processes that publish, consume or watch steps: the API and every Celery process.
BROKER_USERS = {spec.name for spec in stack_processes("DATA") if spec.argv[0] in ("gunicorn", "celery")}


@pytest.fixture(scope="module")
def rabbitmq_stack() -> dict:
    return load(COMPOSE, RABBITMQ_OVERRIDE)


def test_the_override_alone_follows_the_compose_specification():
    """docker compose validates each file before it merges them."""
    schema = compose_schema()
    override = interpolate(yaml.safe_load(RABBITMQ_OVERRIDE.read_text()))
    errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(override))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_merge_follows_the_compose_rules():
    base = {"services": {"w": {"command": ["a", "b"], "environment": {"A": "1", "B": "2"},
                               "depends_on": ["redis"], "volumes": ["d:/data", "e:/e"], "dns": ["x"]}}}
    override = {"services": {"w": {"command": ["c"], "environment": ["B=3", "C=4"],
                                   "depends_on": {"mq": {"condition": "service_healthy"}},
                                   "volumes": ["f:/data"], "dns": ["y"]},
                             "mq": {"image": "m"}}}
    merged = merge(base, override)
    assert merged["services"]["w"] == {
        "command": ["c"], "environment": {"A": "1", "B": "3", "C": "4"},
        "depends_on": {"redis": {"condition": "service_started"}, "mq": {"condition": "service_healthy"}},
        "volumes": ["f:/data", "e:/e"], "dns": ["x", "y"]}
    assert merged["services"]["mq"] == {"image": "m"}
    assert base["services"]["w"]["command"] == ["a", "b"]  # the inputs stay as they were


def rabbitmq_problems(stack: dict) -> list[str]:
    """What keeps a merged stack from running on RabbitMQ: a broker user without a BROKER_URL to the
    rabbitmq service or without waiting for its health, Redis gone, the broker's data not kept."""
    services, problems = stack["services"], []
    rabbitmq = services.get("rabbitmq", {})
    vhost = rabbitmq.get("environment", {}).get("RABBITMQ_DEFAULT_VHOST")
    limits = set()
    for name in sorted(BROKER_USERS):
        service = services[name]
        env = service.get("environment", {})
        url = urlsplit(env.get("BROKER_URL", ""))
        if (url.scheme, url.hostname, url.port, url.path.lstrip("/")) != ("amqp", "rabbitmq", 5672, vhost):
            problems.append(f"{name}: BROKER_URL is not amqp://...@rabbitmq:5672/{vhost}")
        elif not (url.username and url.password):
            problems.append(f"{name}: BROKER_URL without credentials")
        if service.get("depends_on", {}).get("rabbitmq", {}).get("condition") != "service_healthy":
            problems.append(f"{name}: does not wait for a healthy rabbitmq")
        if not env.get("REDIS_URL", "").startswith("redis://redis:"):
            problems.append(f"{name}: no REDIS_URL (the shared state stays on Redis)")
        limits.add(env.get("BROKER_DELIVERY_LIMIT"))
    if len(limits) != 1 or not str(next(iter(limits))).isdigit():
        problems.append(f"BROKER_DELIVERY_LIMIT differs between processes: {limits}")
    if rabbitmq.get("healthcheck", {}).get("test") != ["CMD", "rabbitmq-diagnostics", "-q", "ping"]:
        problems.append("rabbitmq: no rabbitmq-diagnostics ping healthcheck")
    data = [v.split(":")[0] for v in rabbitmq.get("volumes", []) if v.endswith(":/var/lib/rabbitmq")]
    if not data or data[0] not in stack.get("volumes", {}):
        problems.append("rabbitmq: /var/lib/rabbitmq is not a named volume")
    if not rabbitmq.get("hostname"):
        problems.append("rabbitmq: no fixed hostname (the node's name, under which its data is kept)")
    return problems


def test_with_the_override_every_broker_user_uses_rabbitmq(rabbitmq_stack):
    assert BROKER_USERS == {"api", "beat", "flower", "worker-booking", "worker-payments", "worker-maintenance",
                            "worker-admission", "worker-notify"}
    assert not rabbitmq_problems(rabbitmq_stack)
    services = rabbitmq_stack["services"]
    # The override adds to the base's dependencies: the database migrated and Redis and the
    # gateway healthy, as before.
    for name in BROKER_USERS - {"flower"}:
        assert {"migrate", "redis", "gateway", "rabbitmq"} <= set(services[name]["depends_on"]), name
    # The migration and the servers of their own never talk to the broker: left as they are.
    for name in ("migrate", "gateway", "mail-sink"):
        assert "BROKER_URL" not in services[name]["environment"], name
        assert "rabbitmq" not in services[name].get("depends_on", {}), name
    image, _, tag = services["rabbitmq"]["image"].partition(":")
    assert image == "rabbitmq" and re.fullmatch(r"(3\.1[0-9]|4\.\d+)(\.\d+)?-management", tag), tag


def test_the_rabbitmq_check_catches_a_broken_override(rabbitmq_stack):
    services = rabbitmq_stack["services"]
    payments = services["worker-payments"]
    broken = {**rabbitmq_stack, "services": {
        **services,
        "worker-payments": {**payments, "environment": {k: v for k, v in payments["environment"].items()
                                                        if k != "BROKER_URL"}},
        "beat": {**services["beat"], "depends_on": {**services["beat"]["depends_on"],
                                                     "rabbitmq": {"condition": "service_started"}}},
        "rabbitmq": {**services["rabbitmq"], "volumes": ["/var/lib/rabbitmq"]},
    }}
    problems = rabbitmq_problems(broken)
    assert any(p.startswith("worker-payments: BROKER_URL") for p in problems), problems
    assert any(p.startswith("beat: does not wait") for p in problems), problems
    assert any(p.startswith("rabbitmq: /var/lib/rabbitmq") for p in problems), problems
    # The base file alone is the Redis stack: the check refuses it.
    assert rabbitmq_problems(load(COMPOSE))


def test_rabbitmq_credentials_are_required_and_shared_by_the_broker_and_its_clients():
    raw = yaml.safe_load(RABBITMQ_OVERRIDE.read_text())
    server = raw["services"]["rabbitmq"]["environment"]
    for variable, setting in (("RABBITMQ_USER", "RABBITMQ_DEFAULT_USER"), ("RABBITMQ_PASSWORD", "RABBITMQ_DEFAULT_PASS")):
        required = re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", server[setting])
        assert required, server[setting]
        for name in BROKER_USERS:
            assert required.group(0) in raw["services"][name]["environment"]["BROKER_URL"], name


def test_rabbitmq_keeps_a_delivery_longer_than_a_step_may_run(rabbitmq_stack):
    """A delivery unacked past consumer_timeout closes its channel and goes to another worker: the
    timeout must exceed task_time_limit, or a slow step would run twice at once."""
    import celeryconfig
    rabbitmq = rabbitmq_stack["services"]["rabbitmq"]
    (mount,) = rabbitmq["configs"]
    assert mount["target"].startswith("/etc/rabbitmq/conf.d/") and mount["target"].endswith(".conf")
    content = rabbitmq_stack["configs"][mount["source"]]["content"]
    settings = dict(line.split(" = ", 1) for line in content.splitlines() if line and not line.startswith("#"))
    assert int(settings["consumer_timeout"]) > 1000 * celeryconfig.task_time_limit

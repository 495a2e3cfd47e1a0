"""deploy/: every manifest valid against the Kubernetes 1.37 schemas (offline, shipped by the
kubernetes-validate package, strict: unknown fields fail), KEDA ScaledObjects against a schema
written from KEDA's CRD, and the operational promises checked: probes, requests, autoscaling on
the right queues, a disruption budget, a migration Job, grace periods long enough to drain."""
import copy
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

import celeryconfig
from stack.processes import stack_processes
from tests.unit.test_compose import BROKER_USERS, normalized

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.37.0"

# The rabbitmq scaler's metadata as KEDA's docs list it (keda.sh/docs/latest/scalers/rabbitmq-queue):
# every parameter, so a misspelt or a redis one fails. The rates need the management API (http).
NUMBER = {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"}
BOOLEAN = {"enum": ["true", "false"]}
RABBITMQ_TRIGGER_METADATA = {
    "type": "object",
    "required": ["queueName", "mode", "value"],
    "additionalProperties": False,
    "properties": {
        "host": {"type": "string"}, "hostFromEnv": {"type": "string"},
        "usernameFromEnv": {"type": "string"}, "passwordFromEnv": {"type": "string"},
        "protocol": {"enum": ["auto", "amqp", "http"]},
        "mode": {"enum": ["QueueLength", "MessageRate", "DeliverGetRate", "PublishedToDeliveredRatio",
                          "ExpectedQueueConsumptionTime"]},
        "value": NUMBER, "activationValue": NUMBER,
        "queueName": {"type": "string", "minLength": 1}, "vhostName": {"type": "string"},
        "useRegex": BOOLEAN, "excludeUnacknowledged": BOOLEAN, "unsafeSsl": BOOLEAN,
        "pageSize": {"type": "string", "pattern": "^[0-9]+$"},
        "operation": {"enum": ["sum", "max", "avg"]},
        "timeout": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "if": {"required": ["protocol"], "properties": {"protocol": {"const": "amqp"}}},
    "then": {"properties": {"mode": {"const": "QueueLength"}}},
}

# The parts of KEDA's ScaledObject CRD (keda.sh/v1alpha1, keda/config/crd/bases) that we use,
# with its required fields and types; the redis and rabbitmq scalers' metadata as their docs list it.
SCALED_OBJECT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                                   "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                                  "apiVersion": {"type": "string"},
                                                  "envSourceContainerName": {"type": "string"}}},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer"},
                "pollingInterval": {"type": "integer"},
                "cooldownPeriod": {"type": "integer"},
                "initialCooldownPeriod": {"type": "integer"},
                "advanced": {"type": "object"},
                "fallback": {"type": "object"},
                "triggers": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"}, "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "authenticationRef": {"type": "object", "required": ["name"]},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                        "allOf": [
                            {"if": {"properties": {"type": {"const": "redis"}}},
                             "then": {"properties": {"metadata": {
                                 "required": ["listName"],
                                 "anyOf": [{"required": ["address"]}, {"required": ["addressFromEnv"]},
                                           {"required": ["host"]}, {"required": ["hostFromEnv"]}],
                                 "properties": {"listLength": {"pattern": "^[0-9]+$"},
                                                "activationListLength": {"pattern": "^[0-9]+$"},
                                                "databaseIndex": {"pattern": "^[0-9]+$"}},
                             }}}},
                            {"if": {"properties": {"type": {"const": "rabbitmq"}}},
                             "then": {"anyOf": [{"required": ["authenticationRef"]},
                                                {"properties": {"metadata": {"anyOf": [{"required": ["host"]},
                                                                                       {"required": ["hostFromEnv"]}]}}}],
                                      "properties": {"metadata": RABBITMQ_TRIGGER_METADATA}}},
                        ],
                    },
                },
            },
        },
    },
}


# The parts of the Prometheus Operator's ServiceMonitor CRD (monitoring.coreos.com/v1) that we use.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "additionalProperties": False,
                             "properties": {"matchLabels": {"type": "object",
                                                            "additionalProperties": {"type": "string"}},
                                            "matchExpressions": {"type": "array"}}},
                "namespaceSelector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"}, "targetPort": {}, "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "authorization": {
                                "type": "object", "additionalProperties": False,
                                "properties": {
                                    "type": {"type": "string"},
                                    "credentials": {"type": "object", "required": ["key"],
                                                    "additionalProperties": False,
                                                    "properties": {"name": {"type": "string"},
                                                                   "key": {"type": "string"},
                                                                   "optional": {"type": "boolean"}}},
                                },
                            },
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
}
CUSTOM_KINDS = {"ScaledObject", "ServiceMonitor"}


def documents() -> list[dict]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    docs = documents()
    kustomization = next(d for d in docs if d["kind"] == "Kustomization")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    return [d for d in docs if d["kind"] != "Kustomization"]


def by_kind(manifests, kind) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in manifests if d["kind"] == kind}


def test_every_kubernetes_manifest_is_valid_against_the_schemas(manifests):
    checked = 0
    for doc in manifests:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 10


def test_the_schema_check_catches_a_misspelt_field(manifests):
    api = dict(by_kind(manifests, "Deployment")["api"])
    api["spec"] = {**api["spec"], "replica": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, K8S_VERSION, strict=True)


def test_keda_scaled_objects_follow_the_crd_and_scale_workers_on_their_own_queues(manifests):
    deployments, scaled = by_kind(manifests, "Deployment"), by_kind(manifests, "ScaledObject")
    assert set(scaled) == {"worker-booking", "worker-payments", "worker-maintenance"}
    for name, obj in scaled.items():
        jsonschema.validate(obj, SCALED_OBJECT_SCHEMA)
        target = deployments[obj["spec"]["scaleTargetRef"]["name"]]
        command = target["spec"]["template"]["spec"]["containers"][0]["command"]
        consumed = set(command[command.index("-Q") + 1].split(","))
        lists = {t["metadata"]["listName"] for t in obj["spec"]["triggers"] if t["type"] == "redis"}
        assert lists == consumed, name
        assert lists <= set(celeryconfig.CONTEXTS)
    broken = {**scaled["worker-payments"], "spec": {"scaleTargetRef": {"name": "x"},
                                                    "triggers": [{"type": "redis", "metadata": {"listName": "p"}}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)


def test_deployments_have_probes_requests_and_time_to_drain(manifests):
    deployments = by_kind(manifests, "Deployment")
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert "livenessProbe" in container, name
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"], name
    api = deployments["api"]["spec"]["template"]["spec"]
    assert api["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["terminationGracePeriodSeconds"] > 30  # gunicorn graceful_timeout
    for name in ("worker-booking", "worker-payments", "worker-maintenance", "worker-admission"):
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > celeryconfig.worker_soft_shutdown_timeout, name
        assert pod["containers"][0]["livenessProbe"]["exec"]["command"] == ["python", "-m", "tasks.probe", "worker"]
    beat = deployments["beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"  # never two beats
    assert beat["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]["command"][-1] == "beat"


def test_api_autoscales_and_keeps_a_pod_through_disruptions(manifests):
    hpa = by_kind(manifests, "HorizontalPodAutoscaler")["api"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "api" and hpa["spec"]["minReplicas"] >= 2
    pdb = by_kind(manifests, "PodDisruptionBudget")["api"]
    labels = by_kind(manifests, "Deployment")["api"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_containers_run_the_command_lines_of_the_stack(manifests):
    commands = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["command"]
                for d in manifests if d["kind"] in ("Deployment", "Job")}
    for spec in stack_processes("DATA"):
        assert normalized(commands[spec.name]) == normalized(spec.argv), spec.name


def test_only_the_scraper_reaches_the_api_metrics(manifests):
    """/metrics needs the bearer token of the Secret the ServiceMonitor scrapes with (issue 10)."""
    (monitor,) = by_kind(manifests, "ServiceMonitor").values()
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**monitor, "spec": {**monitor["spec"], "endpoint": []}}, SERVICE_MONITOR_SCHEMA)

    service = by_kind(manifests, "Service")["api"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and endpoint["authorization"]["type"] == "Bearer"

    pod = by_kind(manifests, "Deployment")["api"]["spec"]["template"]
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    # The API's token is the scraper's: same Secret, same key, and never a literal in the manifest.
    assert env["METRICS_TOKEN"]["valueFrom"]["secretKeyRef"] == endpoint["authorization"]["credentials"]
    assert "value" not in env["METRICS_TOKEN"]
    # No annotation-based scrape of the API: it could not send the token.
    assert not any(k.startswith("prometheus.io/") for k in pod["metadata"].get("annotations", {}))


# --- deploy/rabbitmq: the kustomize Component for RabbitMQ as the broker -------------------------
RABBITMQ_COMPONENT = DEPLOY / "rabbitmq"
BROKER_SECRET = {"name": "boxoffice-secrets", "key": "broker-url"}


def kustomize_build(tmp_path, components: list[Path]) -> list[dict]:
    """`kubectl kustomize` of an overlay of deploy/ with these components, as an operator writes it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the overlay cannot be built")
    overlay = tmp_path / f"overlay-{len(components)}"
    overlay.mkdir()
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": [os.path.relpath(DEPLOY, overlay)],
                     "components": [os.path.relpath(c, overlay) for c in components]}
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    built = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


@pytest.fixture(scope="module")
def rabbitmq_manifests(tmp_path_factory) -> list[dict]:
    return kustomize_build(tmp_path_factory.mktemp("kustomize"), [RABBITMQ_COMPONENT])


def container(manifests, name) -> dict:
    kind = "Job" if name == "migrate" else "Deployment"
    return by_kind(manifests, kind)[name]["spec"]["template"]["spec"]["containers"][0]


def rabbitmq_problems(manifests) -> list[str]:
    """What keeps a built deploy/ from running on RabbitMQ: a broker user without BROKER_URL from
    the Secret, a ScaledObject that still reads Redis or does not scale on its worker's queues."""
    problems = []
    for name in sorted(BROKER_USERS):
        env = {e["name"]: e for e in container(manifests, name).get("env", [])}
        broker = env.get("BROKER_URL", {})
        if broker.get("valueFrom", {}).get("secretKeyRef") != BROKER_SECRET or "value" in broker:
            problems.append(f"{name}: BROKER_URL is not the Secret's {BROKER_SECRET['key']}")
    for name, obj in by_kind(manifests, "ScaledObject").items():
        target = container(manifests, obj["spec"]["scaleTargetRef"]["name"])
        consumed = set(target["command"][target["command"].index("-Q") + 1].split(","))
        triggers = obj["spec"]["triggers"]
        if any(t["type"] != "rabbitmq" for t in triggers):
            problems.append(f"{name}: a trigger other than rabbitmq")
        queues = {t["metadata"].get("queueName") for t in triggers if t["type"] == "rabbitmq"}
        if queues != consumed:
            problems.append(f"{name}: scales on {sorted(queues)}, consumes {sorted(consumed)}")
        env = {e["name"] for e in target.get("env", [])}
        for trigger in triggers:
            if trigger["metadata"].get("hostFromEnv") not in env:
                problems.append(f"{name}: KEDA's hostFromEnv is not the container's BROKER_URL")
    limit = by_kind(manifests, "ConfigMap")["boxoffice-config"]["data"].get("BROKER_DELIVERY_LIMIT", "")
    if not limit.isdigit():
        problems.append("boxoffice-config: no BROKER_DELIVERY_LIMIT")
    return problems


def test_the_rabbitmq_component_is_a_component_for_an_external_cluster():
    (kustomization,) = yaml.safe_load_all((RABBITMQ_COMPONENT / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert kustomization["kind"] == "Component"
    # RabbitMQ itself runs outside these manifests: the component only patches what deploy/ has.
    assert "resources" not in kustomization
    patched = [d for d in yaml.safe_load_all((RABBITMQ_COMPONENT / "broker.yaml").read_text()) if d]
    assert {d["metadata"]["name"] for d in patched if d["kind"] == "Deployment"} == BROKER_USERS


def test_the_overlay_with_the_rabbitmq_component_builds_valid_manifests(rabbitmq_manifests):
    kinds = {d["kind"] for d in rabbitmq_manifests}
    assert {"Deployment", "Job", "ScaledObject", "ConfigMap", "ServiceMonitor"} <= kinds
    for doc in rabbitmq_manifests:
        if doc["kind"] == "ScaledObject":
            jsonschema.validate(doc, SCALED_OBJECT_SCHEMA)
        elif doc["kind"] == "ServiceMonitor":
            jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_with_the_component_every_broker_user_reaches_rabbitmq_and_workers_scale_on_its_queues(
        rabbitmq_manifests):
    assert not rabbitmq_problems(rabbitmq_manifests)
    assert set(by_kind(rabbitmq_manifests, "ScaledObject")) == {"worker-booking", "worker-payments",
                                                                "worker-maintenance"}
    # Redis stays configured as before (the shared state): the Secret still reaches every pod.
    for name in (*BROKER_USERS, "migrate"):
        assert {"secretRef": {"name": "boxoffice-secrets"}} in container(rabbitmq_manifests, name)["envFrom"]
    # The migration and the servers of their own never talk to the broker: left as they are.
    for name in ("migrate", "gateway", "mail-sink"):
        assert "BROKER_URL" not in {e["name"] for e in container(rabbitmq_manifests, name).get("env", [])}


def test_the_rabbitmq_check_catches_a_broken_build(rabbitmq_manifests, manifests):
    broken = copy.deepcopy(rabbitmq_manifests)
    payments = container(broken, "worker-payments")
    payments["env"] = [e for e in payments["env"] if e["name"] != "BROKER_URL"]
    booking = by_kind(broken, "ScaledObject")["worker-booking"]
    booking["spec"]["triggers"] = booking["spec"]["triggers"][:2]
    problems = rabbitmq_problems(broken)
    assert any(p.startswith("worker-payments: BROKER_URL") for p in problems), problems
    assert any(p.startswith("worker-booking: scales on") for p in problems), problems
    # deploy/ alone is the Redis deployment: the check refuses it.
    assert rabbitmq_problems(manifests)


def test_the_component_changes_only_the_broker(tmp_path, rabbitmq_manifests):
    """Everything else of the build is that of deploy/ alone: same objects, same settings."""
    def without_broker(docs):
        docs = copy.deepcopy(docs)
        for doc in docs:
            if doc["kind"] == "ScaledObject":
                doc["spec"]["triggers"] = []
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "boxoffice-config":
                doc["data"].pop("BROKER_DELIVERY_LIMIT", None)
            for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                c["env"] = [e for e in c.get("env", []) if e["name"] != "BROKER_URL"]
        return docs
    assert without_broker(rabbitmq_manifests) == without_broker(kustomize_build(tmp_path, []))


def test_the_schema_check_catches_a_wrong_rabbitmq_trigger(manifests):
    scaled = by_kind(manifests, "ScaledObject")["worker-payments"]
    good = {"protocol": "amqp", "hostFromEnv": "BROKER_URL", "mode": "QueueLength", "value": "20",
            "queueName": "payments"}

    def with_metadata(metadata):
        return {**scaled, "spec": {**scaled["spec"], "triggers": [{"type": "rabbitmq", "metadata": metadata}]}}
    jsonschema.validate(with_metadata(good), SCALED_OBJECT_SCHEMA)
    for wrong in ({k: v for k, v in good.items() if k != "queueName"},      # which queue?
                  {k: v for k, v in good.items() if k != "hostFromEnv"},    # which broker?
                  {**good, "listName": "payments"},                         # a redis parameter
                  {**good, "mode": "MessageRate"},                          # rates need protocol http
                  {**good, "value": "twenty"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(with_metadata(wrong), SCALED_OBJECT_SCHEMA)

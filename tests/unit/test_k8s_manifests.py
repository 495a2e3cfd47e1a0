"""deploy/: every manifest valid against the Kubernetes 1.37 schemas (offline, shipped by the
kubernetes-validate package, strict: unknown fields fail), KEDA ScaledObjects against a schema
written from KEDA's CRD, and the operational promises checked: probes, requests, autoscaling on
the right queues, a disruption budget, a migration Job, grace periods long enough to drain."""
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

import celeryconfig
from stack.processes import stack_processes
from tests.unit.test_compose import normalized

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.37.0"

# The parts of KEDA's ScaledObject CRD (keda.sh/v1alpha1, keda/config/crd/bases) that we use,
# with its required fields and types; the redis scaler's metadata as its docs list it.
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
                        "if": {"properties": {"type": {"const": "redis"}}},
                        "then": {"properties": {"metadata": {
                            "required": ["listName"],
                            "anyOf": [{"required": ["address"]}, {"required": ["addressFromEnv"]},
                                      {"required": ["host"]}, {"required": ["hostFromEnv"]}],
                            "properties": {"listLength": {"pattern": "^[0-9]+$"},
                                           "activationListLength": {"pattern": "^[0-9]+$"},
                                           "databaseIndex": {"pattern": "^[0-9]+$"}},
                        }}},
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

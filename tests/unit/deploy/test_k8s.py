"""deploy/k8s against the Kubernetes API schemas (kubernetes-validate, offline) and against the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import API_PORTS, DOCKERFILES, K8S, assert_worker_command, defines_app, entry_module_file

pytestmark = pytest.mark.unit

KUBERNETES_VERSION = "1.30.0"  # the oldest minor still supported by the big managed offerings; newer accept it
# KEDA's custom resources are not in the Kubernetes API schemas: keda.yaml is checked on its own (below).
KEDA = K8S / "keda.yaml"
MANIFESTS = sorted(path for path in K8S.glob("*.yaml") if path.name not in ("kustomization.yaml", KEDA.name))
WORKERS = {"cpu-worker": ("harvest", "curate"), "train-worker": ("train",)}
# Applied by hand, not by kustomization.yaml: the Secret is created with kubectl, each multi-worker Job is a run.
NOT_APPLIED = {"secret.example.yaml", "train-multiworker.yaml"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def all_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects = {}
    for path in MANIFESTS:
        for document in documents(path):
            key = (document["kind"], document["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = document
    return objects


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec = deployment["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(deployment)["containers"]
    assert len(containers) == 1
    container = containers[0]
    assert isinstance(container, dict)
    return container


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    for document in documents(path):
        for version in (KUBERNETES_VERSION, kubernetes_validate.latest_version()):
            kubernetes_validate.validate(document, version, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    deployment = documents(K8S / "inference.yaml")[0]
    only_container(deployment)["ports"][0]["containerPort"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = documents(K8S / "inference.yaml")[0]
    only_container(deployment)["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest_but_the_example_secret_and_the_runs() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = set(kustomization["resources"])
    assert resources == {path.name for path in MANIFESTS} - NOT_APPLIED
    assert KEDA.name not in resources, "KEDA's CRDs may not be installed: keda.yaml is applied on its own"
    images = {f"{image['name']}:{image['newTag']}" for image in kustomization["images"]}
    used = {container["image"] for (kind, _), obj in all_objects().items()
            if kind in ("Deployment", "StatefulSet") for container in pod_spec(obj)["containers"]}
    ours = {image for image in used if image.startswith("sporeprint/")}
    assert ours == images, "every sporeprint image is listed in kustomization.yaml and nothing else"
    assert {image.split(":")[0].removeprefix("sporeprint/") for image in ours} == {
        path.name.removesuffix(".Dockerfile") for path in DOCKERFILES.glob("*.Dockerfile")}


@pytest.mark.parametrize("api", sorted(API_PORTS))
def test_each_api_has_a_deployment_and_a_service_on_its_port(api: str) -> None:
    objects = all_objects()
    deployment, service = objects[("Deployment", api)], objects[("Service", api)]
    port = API_PORTS[api]
    container = only_container(deployment)
    assert container["image"].startswith(f"sporeprint/{api}:")
    args = container["args"]
    assert args[:2] == ["uvicorn", f"services.{api}.main:app"]
    assert defines_app(entry_module_file(args[1])), f"{args[1]} has no `app`"
    assert args[args.index("--port") + 1] == str(port)
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ready = "/ready" if api == "inference" else "/health"
    assert container["readinessProbe"]["httpGet"] == {"path": ready, "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_inference_scales_horizontally() -> None:
    objects = all_objects()
    hpa = objects[("HorizontalPodAutoscaler", "inference")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "inference"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert "cpu" in only_container(objects[("Deployment", "inference")])["resources"]["requests"], (
        "a CPU utilisation target needs a CPU request")


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_workers_run_the_shared_worker_on_their_queues(worker: str) -> None:
    assert_worker_command(only_container(all_objects()[("Deployment", worker)])["command"], WORKERS[worker])


def test_training_worker_runs_on_gpu_nodes() -> None:
    deployment = all_objects()[("Deployment", "train-worker")]
    spec, container = pod_spec(deployment), only_container(deployment)
    assert container["image"].startswith("sporeprint/trainer-gpu:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    for (kind, name), obj in all_objects().items():
        if kind == "Deployment" and name != "train-worker":
            assert "nvidia.com/gpu" not in str(obj), f"{name} should not ask for a GPU"


def test_settings_and_secrets_are_settings_fields(env_names: dict) -> None:
    objects = all_objects()
    config = objects[("ConfigMap", "sporeprint-settings")]["data"]
    secret = objects[("Secret", "sporeprint-secrets")]["stringData"]
    unknown = sorted(key for key in [*config, *secret] if key not in env_names)
    assert not unknown, f"not a field of any settings class: {unknown}"
    assert set(secret) == {"SPOREPRINT_API_TOKEN", "SPOREPRINT_S3_ACCESS_KEY", "SPOREPRINT_S3_SECRET_KEY",
                           "SPOREPRINT_REDIS_PASSWORD"}
    assert not set(config) & set(secret)
    for api, port in API_PORTS.items():
        assert config[f"SPOREPRINT_{api.upper()}_URL"] == f"http://{api}:{port}"
    redis = objects[("Service", "redis")]["spec"]["ports"][0]["port"]
    assert config["SPOREPRINT_REDIS_URL"] == f"redis://redis:{redis}/0"


def test_every_pod_gets_the_settings_and_runs_as_non_root() -> None:
    for (kind, name), obj in all_objects().items():
        if kind not in ("Deployment", "StatefulSet"):
            continue
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert only_container(obj)["securityContext"]["allowPrivilegeEscalation"] is False, name
        if name == "redis":
            continue
        assert spec["securityContext"]["runAsUser"] == 10001, f"{name}: the images' user"
        sources = only_container(obj)["envFrom"]
        assert {"configMapRef": {"name": "sporeprint-settings"}} in sources, name
        assert {"secretRef": {"name": "sporeprint-secrets"}} in sources, name


def test_images_are_pinned_and_match_compose(compose: dict) -> None:
    compose_images = {service["image"] for service in compose["services"].values() if "build" not in service}
    for (kind, name), obj in all_objects().items():
        if kind not in ("Deployment", "StatefulSet"):
            continue
        image = only_container(obj)["image"]
        tag = image.rpartition(":")[2]
        assert tag and tag != "latest", f"{name}: pin {image}"
        if not image.startswith("sporeprint/"):
            assert image in compose_images, f"{name}: {image} differs from docker-compose.yml"
            assert re.fullmatch(r"[\w./-]+:\d[\w.-]*@sha256:[0-9a-f]{64}", image), f"{name}: pin {image} by digest"


def test_redis_starts_as_compose_starts_it_with_only_the_acl_user(compose_raw: dict) -> None:
    redis = only_container(all_objects()[("StatefulSet", "redis")])
    assert redis["command"][:2] == ["sh", "-c"] and redis["command"][3] == "redis"
    assert redis["command"][2] == compose_raw["x-redis-start"].replace("$$", "$"), (
        "deploy/k8s/redis.yaml and docker-compose.yml must start Redis the same way")
    env = {item["name"]: item["valueFrom"] for item in redis["env"]}
    assert env["SPOREPRINT_REDIS_PASSWORD"]["secretKeyRef"] == {"name": "sporeprint-secrets",
                                                                 "key": "SPOREPRINT_REDIS_PASSWORD"}
    assert env["REDISCLI_AUTH"] == env["SPOREPRINT_REDIS_PASSWORD"]
    assert "--user" in " ".join(redis["readinessProbe"]["exec"]["command"])


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "teach _selects this operator"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _pod_labels() -> dict[str, dict[str, str]]:
    return {name: obj["spec"]["template"]["metadata"]["labels"] for (kind, name), obj in all_objects().items()
            if kind in ("Deployment", "StatefulSet")}


def _allowed_from(target: str, source: str) -> set[int]:
    """The ports of pod ``target`` that pod ``source`` (same namespace) may reach under the NetworkPolicies."""
    labels = _pod_labels()
    ports: set[int] = set()
    for (kind, _), policy in all_objects().items():
        if kind != "NetworkPolicy" or not _selects(policy["spec"]["podSelector"], labels[target]):
            continue
        for rule in policy["spec"].get("ingress", []):
            if any("podSelector" in peer and _selects(peer["podSelector"], labels[source]) for peer in rule["from"]):
                ports |= {port["port"] for port in rule["ports"]}
    return ports


def test_network_policies_let_only_the_services_and_workers_reach_redis() -> None:
    objects = all_objects()
    deny = objects[("NetworkPolicy", "default-deny-ingress")]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    clients = [*API_PORTS, *WORKERS]
    for client in clients:
        assert _allowed_from("redis", client) == {6379}, f"{client} must reach Redis"
    outsider = {"app.kubernetes.io/name": "debug-shell", "app.kubernetes.io/part-of": "sporeprint"}
    for (kind, _), policy in objects.items():
        if kind == "NetworkPolicy" and _selects(policy["spec"]["podSelector"], _pod_labels()["redis"]):
            for rule in policy["spec"].get("ingress", []):
                assert not any(_selects(peer.get("podSelector", {"matchLabels": {"x": "never"}}), outsider)
                               for peer in rule["from"]), "an unlabelled pod of the namespace reaches Redis"
                assert not any("namespaceSelector" in peer for peer in rule["from"]), "no other namespace"


def test_network_policies_let_the_apis_reach_each_other_on_their_ports() -> None:
    for api, port in API_PORTS.items():
        for source in [*API_PORTS, *WORKERS]:
            assert port in _allowed_from(api, source), f"{source} -> {api}:{port}"
        assert _allowed_from(api, "redis") >= {port}  # part of the system; redis never calls out, harmless
    assert not _allowed_from("cpu-worker", "downloader"), "the workers take no connections"


@pytest.mark.parametrize("api", sorted(API_PORTS))
def test_prometheus_finds_each_apis_metrics(api: str) -> None:
    annotations = all_objects()[("Deployment", api)]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(API_PORTS[api]),
                           "prometheus.io/path": "/metrics"}


# --- workers: rollouts, probes, disruption budgets ------------------------------------------------------------

def test_workers_are_left_to_the_autoscaler_and_the_gpu_worker_is_recreated() -> None:
    objects = all_objects()
    for worker in WORKERS:
        assert "replicas" not in objects[("Deployment", worker)]["spec"], f"{worker}: a re-apply would fight KEDA"
    train = objects[("Deployment", "train-worker")]["spec"]
    assert train["strategy"] == {"type": "Recreate"}, "a rolling update of a one-GPU pod waits for a second GPU"


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_worker_liveness_is_its_rq_heartbeat(worker: str) -> None:
    container = only_container(all_objects()[("Deployment", worker)])
    for probe in ("startupProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command == ["python", "-m", "shared.worker_probe"], (worker, probe)
    assert (K8S.parents[1] / "shared" / "worker_probe.py").is_file()
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 120, "longer than an idle worker's wait"


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_worker_disruption_budgets_never_block_a_drain(worker: str) -> None:
    objects = all_objects()
    budget = objects[("PodDisruptionBudget", worker)]["spec"]
    labels = objects[("Deployment", worker)]["spec"]["template"]["metadata"]["labels"]
    assert _selects(budget["selector"], labels)
    assert "minAvailable" not in budget, "a running job resumes from its checkpoint; nothing to wait for"
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert budget["maxUnavailable"] == ("100%" if worker == "train-worker" else 1)


# --- one job over several hosts: the indexed Job -----------------------------------------------------------

def test_the_multi_worker_job_gives_every_pod_its_name_and_its_peers(tmp_path: Path) -> None:
    from services.trainer.multiworker import indexed_job_addresses, load_spec

    objects = all_objects()
    job = objects[("Job", "train-multiworker")]["spec"]
    service = objects[("Service", "train-multiworker")]["spec"]
    pod = job["template"]["spec"]
    container = pod["containers"][0]
    assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"] >= 2
    assert pod["restartPolicy"] == "Never" and pod["subdomain"] == "train-multiworker"
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True
    assert _selects({"matchLabels": service["selector"]}, job["template"]["metadata"]["labels"])
    assert container["command"] == ["python", "-m", "services.trainer.multiworker"]
    assert (K8S.parents[1] / "services" / "trainer" / "multiworker.py").is_file()
    args = container["args"]
    workers, template = int(args[args.index("--workers") + 1]), args[args.index("--address-template") + 1]
    assert workers == job["completions"]
    port = service["ports"][0]["port"]
    # an indexed Job's pod is named <job>-<index>; with the subdomain, <job>-<index>.<service> resolves
    assert indexed_job_addresses(workers, template) == [f"train-multiworker-{index}.train-multiworker:{port}"
                                                        for index in range(workers)]
    assert container["ports"] == [{"name": "grpc", "containerPort": port}]
    peers = objects[("NetworkPolicy", "train-multiworker-peers")]["spec"]
    assert _selects(peers["podSelector"], job["template"]["metadata"]["labels"])
    assert peers["ingress"] == [{"from": [{"podSelector": peers["podSelector"]}],
                                 "ports": [{"protocol": "TCP", "port": port}]}]
    assert container["resources"]["limits"]["nvidia.com/gpu"]
    assert {"configMapRef": {"name": "sporeprint-settings"}} in container["envFrom"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    mount = next(m for m in container["volumeMounts"] if m["name"] == "spec")
    spec_arg = Path(args[args.index("--spec") + 1])
    assert spec_arg.parent == Path(mount["mountPath"])
    spec_json = objects[("ConfigMap", "train-multiworker-spec")]["data"][spec_arg.name]
    (tmp_path / "spec.json").write_text(spec_json)
    assert load_spec(tmp_path / "spec.json").distribution == "mirrored"  # pinned, mirrored: what workers demand
    rules = job["podFailurePolicy"]["rules"]
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules


# --- KEDA (keda.yaml): structure, since kubernetes-validate has no schemas for its CRDs ----------------------

KEDA_REQUIRED = {"ScaledObject": ("scaleTargetRef", "triggers"), "ScaledJob": ("jobTargetRef", "triggers"),
                 "TriggerAuthentication": ()}


def keda_objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(document["kind"], document["metadata"]["name"]): document for document in documents(KEDA)}


def test_keda_objects_are_well_formed() -> None:
    for (kind, name), document in keda_objects().items():
        if not document["apiVersion"].startswith("keda.sh/"):
            kubernetes_validate = pytest.importorskip("kubernetes_validate")
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
            continue
        assert document["apiVersion"] == "keda.sh/v1alpha1", name
        assert kind in KEDA_REQUIRED, f"{kind}: teach this test its required fields"
        assert set(document) == {"apiVersion", "kind", "metadata", "spec"}, name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
        spec = document["spec"]
        missing = [field for field in KEDA_REQUIRED[kind] if field not in spec]
        assert not missing, f"{kind}/{name} lacks {missing}"
        for trigger in spec.get("triggers", []):
            assert set(trigger) <= {"type", "metadata", "authenticationRef", "name", "metricType"}, trigger
            assert isinstance(trigger["type"], str) and isinstance(trigger["metadata"], dict)
            assert all(isinstance(value, str) for value in trigger["metadata"].values()), (
                f"{name}: KEDA trigger metadata values are strings")
        for ref in spec.get("secretTargetRef", []):
            assert set(ref) == {"parameter", "name", "key"}, ref
        if kind == "ScaledObject":
            assert 0 <= spec["minReplicaCount"] < spec["maxReplicaCount"]


def test_keda_scales_each_worker_to_zero_on_its_queues_with_the_redis_acl_user() -> None:
    from rq import Queue

    from shared.job_metrics import QUEUE_FIGURES

    objects, keda = all_objects(), keda_objects()
    config = objects[("ConfigMap", "sporeprint-settings")]["data"]
    secret = objects[("Secret", "sporeprint-secrets")]["stringData"]
    redis_port = objects[("Service", "redis")]["spec"]["ports"][0]["port"]
    figures = {name for name, _ in QUEUE_FIGURES}
    for worker, queues in WORKERS.items():
        scaled = keda[("ScaledObject", worker)]["spec"]
        assert scaled["scaleTargetRef"] == {"name": worker} and ("Deployment", worker) in objects
        assert scaled["minReplicaCount"] == 0, f"{worker} scales to zero"
        redis = [trigger for trigger in scaled["triggers"] if trigger["type"] == "redis"]
        assert sorted(trigger["metadata"]["listName"] for trigger in redis) == sorted(
            Queue.redis_queue_namespace_prefix + queue for queue in queues)
        for trigger in redis:
            metadata = trigger["metadata"]
            assert metadata["address"] == f"redis.sporeprint.svc:{redis_port}"
            assert metadata["usernameFromEnv"] in config, "the ACL user comes from the worker's settings"
            assert int(metadata["listLength"]) >= 1
            auth = keda[("TriggerAuthentication", trigger["authenticationRef"]["name"])]["spec"]
            assert auth["secretTargetRef"] == [{"parameter": "password", "name": "sporeprint-secrets",
                                                "key": "SPOREPRINT_REDIS_PASSWORD"}]
            assert "SPOREPRINT_REDIS_PASSWORD" in secret
        # running jobs keep their worker: RQ takes a job off the list when it starts
        (prometheus,) = [trigger for trigger in scaled["triggers"] if trigger["type"] == "prometheus"]
        query = prometheus["metadata"]["query"]
        assert "sporeprint_rq_started_jobs" in query and "sporeprint_rq_queued_jobs" in query
        assert set(re.findall(r"sporeprint_\w+", query)) <= figures
        assert all(queue in query for queue in queues)


def test_only_kedas_operator_reaches_redis_from_another_namespace() -> None:
    policy = keda_objects()[("NetworkPolicy", "redis-from-keda")]["spec"]
    assert _selects(policy["podSelector"], _pod_labels()["redis"])
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}
    assert peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "keda-operator"}}
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]

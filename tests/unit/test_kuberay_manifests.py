"""configs/kuberay/*.yaml against KubeRay v1.7's CRD schemas (strict: an unknown field is an error),
the RayService's serveConfigV2 against Ray Serve's own schema and the repo's Serve config, and the
manifests against the jobs, the image and the PodMonitors they go with.

The schemas lie beside the clone (../shared/schemas/kuberay-v1.7), like the MovieLens files: the
tests that need them skip with the reason when they are absent, and fail instead under
FAIRFLEET_REQUIRE_DATA=1 (set by .ci/run)."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Union, get_args, get_origin

import jsonschema
import pytest
import ray
import yaml
from pydantic import BaseModel
from ray.serve.schema import ServeDeploySchema

from configs import load_config
from tests.conftest import REPO_ROOT

SCHEMAS = REPO_ROOT.parent / "shared" / "schemas" / "kuberay-v1.7"
SCHEMA_FILES = {"RayJob": "rayjob_v1.json", "RayService": "rayservice_v1.json", "RayCluster": "raycluster_v1.json"}
MANIFESTS = sorted((REPO_ROOT / "configs" / "kuberay").glob("*.yaml"))
KUBERAY_SERVE_CONFIG = REPO_ROOT / "configs" / "serve" / "retriever_kuberay.yaml"
LOCAL_SERVE_CONFIG = REPO_ROOT / "configs" / "serve" / "retriever_synthetic.yaml"
PODMONITORS = REPO_ROOT / "configs" / "monitoring" / "kubernetes" / "podmonitors.yaml"
IMAGE_ROOT = "/home/ray/fairfleet"  # where the Dockerfile puts the checkout (its WORKDIR)

# Kubernetes ObjectMeta as a manifest writes it (the CRD schemas leave `metadata` open).
OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _schemas_folder() -> Path:
    if not (SCHEMAS / SCHEMA_FILES["RayJob"]).exists():
        reason = f"KubeRay CRD schemas not found at {SCHEMAS}"
        if os.environ.get("FAIRFLEET_REQUIRE_DATA") == "1":
            pytest.fail(reason + " and FAIRFLEET_REQUIRE_DATA=1")
        pytest.skip(reason)
    return SCHEMAS


def strict(node):
    """Every object schema that lists properties rejects any other (the files already do; this
    keeps it so if a regenerated schema forgets)."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node


@functools.cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    schema = copy.deepcopy(json.loads((_schemas_folder() / SCHEMA_FILES[kind]).read_text()))
    schema["properties"].update(apiVersion={"const": "ray.io/v1"}, kind={"const": kind}, metadata=OBJECT_META)
    schema["required"] = sorted({"apiVersion", "kind", "metadata", "spec", *schema.get("required", [])})
    strict(schema)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(doc: dict) -> list[str]:
    kind = doc.get("kind")
    if kind not in SCHEMA_FILES:
        return [f"kind {kind!r} is not a KubeRay resource"]
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in crd_validator(kind).iter_errors(doc)]


def documents(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no manifest"
    return docs


def manifest(name: str) -> dict:
    (doc,) = documents(REPO_ROOT / "configs" / "kuberay" / name)
    return doc


def cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]["rayClusterConfig"]


def pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """(node type, pod template) of the head and every worker group."""
    spec = cluster_spec(doc)
    return [("head", spec["headGroupSpec"]["template"]),
            *[("worker", group["template"]) for group in spec.get("workerGroupSpecs", [])]]


def ray_container(template: dict) -> dict:
    return template["spec"]["containers"][0]  # KubeRay's Ray container is the first


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def quantity(cpu: str | int) -> float:
    text = str(cpu)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def entrypoint(doc: dict) -> tuple[Path, list[str], dict[str, str], list[str]]:
    """The RayJob's script (as a repo path), its raw arguments, its --option values and its --set items."""
    words = shlex.split(doc["spec"]["entrypoint"])
    assert words[0] == "python" and words[1].startswith(IMAGE_ROOT + "/"), words
    script = REPO_ROOT / words[1][len(IMAGE_ROOT) + 1:]
    options, sets, rest = {}, [], words[2:]
    for option, value in zip(rest[::2], rest[1::2]):
        assert option.startswith("--"), rest
        if option == "--set":
            sets.append(value)
        else:
            options[option] = value
    return script, rest, options, sets


def in_repo(image_path: str) -> Path:
    assert image_path.startswith(IMAGE_ROOT + "/"), image_path
    return REPO_ROOT / image_path[len(IMAGE_ROOT) + 1:]


# ---------------------------------------------------------------- CRD schemas

def test_the_manifests_exist():
    names = {p.name for p in MANIFESTS}
    assert {"rayjob-fl-sim.yaml", "rayjob-rf2-matrix.yaml", "rayservice-retriever.yaml"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_matches_the_kuberay_v17_schema(path):
    for doc in documents(path):
        assert schema_errors(doc) == []


def _rename(doc: dict, keys: tuple, new: str) -> None:
    *parents, last = keys
    node = doc
    for key in parents:
        node = node[key]
    node[new] = node.pop(last)


def _set(doc: dict, keys: tuple, value) -> None:
    *parents, last = keys
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value


HEAD_CONTAINER = ("spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "containers", 0)


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: _rename(d, ("spec", "entrypoint"), "entrypont"), "entrypont"),
    (lambda d: _rename(d, ("spec", "shutdownAfterJobFinishes"), "shutdownAfterJobFinish"), "shutdownAfterJobFinish"),
    (lambda d: _rename(d, (*HEAD_CONTAINER, "imagePullPolicy"), "imagePulPolicy"), "imagePulPolicy"),
    (lambda d: _rename(d, ("metadata", "labels"), "lables"), "lables"),
    (lambda d: _set(d, ("spec", "rayClusterSpec", "workerGroupSpecs", 0, "replicas"), "3"), "'3' is not of type 'integer'"),
    (lambda d: _set(d, ("spec", "rayClusterSpec", "authOptions", "mode"), "tokens"), "'tokens' is not one of"),
    (lambda d: _set(d, ("spec", "rayClusterSpec", "headGroupSpec", "rayStartParams", "num-cpus"), 0), "0 is not of type 'string'"),
    (lambda d: _set(d, ("apiVersion",), "ray.io/v1alpha1"), "'ray.io/v1' was expected"),
])
def test_a_typo_or_a_wrong_type_fails_the_schema(mutate, needle):
    doc = manifest("rayjob-fl-sim.yaml")
    assert schema_errors(doc) == []
    mutate(doc)
    errors = schema_errors(doc)
    assert errors and any(needle in e for e in errors), errors


# ---------------------------------------------------------------- serveConfigV2

def unknown_keys(model: type[BaseModel], data, where: str = "") -> list[str]:
    """Keys of ``data`` that ``model`` (Ray's pydantic schema) has no field for, recursively.
    ServeDeploySchema ignores unknown keys, so a misspelt optional setting would pass it silently."""
    if not isinstance(data, dict):
        return []
    names = {field.alias or name: name for name, field in model.model_fields.items()}
    problems = []
    for key, value in data.items():
        if key not in names:
            problems.append(f"{where}{key}")
            continue
        inner = _models(model.model_fields[names[key]].annotation)
        if len(inner) == 1:
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                problems += unknown_keys(inner[0], item, f"{where}{key}{f'[{i}]' if isinstance(value, list) else ''}.")
    return problems


def _models(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, list, tuple) or get_args(annotation):
        return [m for arg in get_args(annotation) for m in _models(arg)]
    return []


def serve_config_v2(doc: dict) -> dict:
    return yaml.safe_load(doc["spec"]["serveConfigV2"])


def test_serve_config_v2_is_the_repo_serve_config_and_valid_for_ray_serve():
    (doc,) = [d for p in MANIFESTS for d in documents(p) if d["kind"] == "RayService"]
    config = serve_config_v2(doc)
    assert config == yaml.safe_load(KUBERAY_SERVE_CONFIG.read_text()), \
        "serveConfigV2 drifted from configs/serve/retriever_kuberay.yaml"
    ServeDeploySchema.model_validate(config)
    assert unknown_keys(ServeDeploySchema, config) == []
    assert config["http_options"]["host"] == "0.0.0.0", "the Kubernetes Service must reach the proxies"


def test_the_cluster_serve_config_serves_the_same_app_as_the_local_one():
    cluster = yaml.safe_load(KUBERAY_SERVE_CONFIG.read_text())["applications"]
    local = yaml.safe_load(LOCAL_SERVE_CONFIG.read_text())["applications"]
    for app in cluster:  # only where files go differs: a shared store instead of the local disk
        app["args"]["overrides"] = [o for o in app["args"]["overrides"] if not o.startswith("storage=")]
        assert app["args"]["overrides"] == []
    assert cluster == local


def test_the_serve_config_app_builds_from_the_image_working_dir(monkeypatch):
    """What the replica does in the pod (workingDir = the checkout): build_app with the args."""
    from serve.app import build_app

    monkeypatch.chdir(REPO_ROOT)
    for path in (KUBERAY_SERVE_CONFIG, LOCAL_SERVE_CONFIG):
        for app in yaml.safe_load(path.read_text())["applications"]:
            module, _, attr = app["import_path"].partition(":")
            assert (module, attr) == ("serve.app", "build_app")
            built = build_app(app["args"])
            assert built is not None


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: _rename(c["applications"][0], ("route_prefix",), "route_prefx"), "applications[0].route_prefx"),
    (lambda c: _rename(c, ("proxy_location",), "proxy_locaton"), "proxy_locaton"),
    (lambda c: _rename(c["http_options"], ("port",), "prot"), "http_options.prot"),
])
def test_a_serve_config_typo_is_caught(mutate, needle):
    config = yaml.safe_load(KUBERAY_SERVE_CONFIG.read_text())
    mutate(config)
    ServeDeploySchema.model_validate(config)  # Ray's schema lets these through...
    assert needle in unknown_keys(ServeDeploySchema, config)  # ...this check does not
    missing = yaml.safe_load(KUBERAY_SERVE_CONFIG.read_text())
    del missing["applications"][0]["import_path"]
    with pytest.raises(ValueError, match="import_path"):
        ServeDeploySchema.model_validate(missing)


# ---------------------------------------------------------------- the jobs, the image, the pods

def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_every_pod_runs_the_project_image_with_the_installed_ray():
    image = f"fairfleet:{_pyproject()['project']['version']}"
    workdir = re.search(r"^WORKDIR\s+(\S+)", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)[1]
    assert workdir == IMAGE_ROOT
    for path in MANIFESTS:
        for doc in documents(path):
            spec = cluster_spec(doc)
            assert spec["rayVersion"] == ray.__version__, path.name
            assert spec["authOptions"]["mode"] == "token", "Ray 2.60 needs one token on every pod"
            for _, template in pod_templates(doc):
                pod = template["spec"]
                for container in pod["containers"] + pod.get("initContainers", []):
                    assert container["image"] == image, (path.name, container["name"])
                assert ray_container(template)["workingDir"] == IMAGE_ROOT


def test_the_head_points_the_dashboard_at_grafana_and_prometheus():
    for path in MANIFESTS:
        for doc in documents(path):
            (head,) = [t for node, t in pod_templates(doc) if node == "head"]
            env = env_of(ray_container(head))
            for name in ("RAY_GRAFANA_HOST", "RAY_GRAFANA_IFRAME_HOST", "RAY_PROMETHEUS_HOST"):
                assert re.match(r"^https?://[^/]+$", env.get(name) or ""), (path.name, name)
            assert env.get("RAY_PROMETHEUS_NAME"), path.name


def test_the_rayservice_runs_haproxy_on_every_node():
    (doc,) = documents(REPO_ROOT / "configs" / "kuberay" / "rayservice-retriever.yaml")
    for node, template in pod_templates(doc):
        container = ray_container(template)
        assert env_of(container).get("RAY_SERVE_ENABLE_HA_PROXY") == "1", node
        assert {"name": "serve", "containerPort": 8000} in container["ports"], node


def test_the_fl_sim_job_runs_fl_sim_with_s3_storage_and_enough_workers():
    doc = manifest("rayjob-fl-sim.yaml")
    assert doc["spec"]["shutdownAfterJobFinishes"] is True
    script, rest, options, sets = entrypoint(doc)
    assert script == REPO_ROOT / "jobs" / "fl_sim.py" and script.exists()
    assert options["--storage"].startswith("s3://")
    from jobs.fl_sim import parse_args

    assert parse_args(rest).storage == options["--storage"]  # the job's own parser takes the line
    cfg = load_config(in_repo(options["--config"]), sets)
    actors_cpus = cfg.fl.runtime.workers_per_tier * len(cfg.tiers.profiles) * cfg.fl.runtime.worker_num_cpus
    spec = cluster_spec(doc)
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0" and cfg.fl.runtime.worker_num_cpus > 0, \
        "client workers must ask for CPUs, or they all land on the head"
    worker_cpus = sum(g["replicas"] * quantity(ray_container(g["template"])["resources"]["requests"]["cpu"])
                      for g in spec["workerGroupSpecs"])
    assert worker_cpus >= actors_cpus, f"{actors_cpus} CPUs of client workers, {worker_cpus} in the worker group"
    assert all(g["minReplicas"] == g["replicas"] == g["maxReplicas"] for g in spec["workerGroupSpecs"])


def test_the_rf2_matrix_job_has_the_data_on_every_pod():
    doc = manifest("rayjob-rf2-matrix.yaml")
    assert doc["spec"]["shutdownAfterJobFinishes"] is True
    script, _, options, sets = entrypoint(doc)
    assert script == REPO_ROOT / "jobs" / "rf2_matrix.py" and script.exists()
    assert options["--storage"].startswith("s3://")
    cfg = load_config(in_repo(options["--config"]), sets)
    assert cfg.model.is_click and cfg.data.source == "movielens"
    for node, template in pod_templates(doc):
        (init,) = template["spec"]["initContainers"]
        words = init["command"]
        assert in_repo(words[1]) == REPO_ROOT / "jobs" / "download_movielens.py"
        archive, cache = words[2], words[words.index("--cache-dir") + 1]
        # GroupLens' zip holds one top folder of the archive's name
        assert str(cfg.data.path) == f"{cache}/{archive}/{archive}", node
        mounts = {m["name"]: m["mountPath"] for m in ray_container(template)["volumeMounts"]}
        init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
        assert cache in init_mounts.values() and init_mounts.items() <= mounts.items(), node
    cells_cpus = sum(g["replicas"] * quantity(ray_container(g["template"])["resources"]["requests"]["cpu"])
                     for g in cluster_spec(doc)["workerGroupSpecs"])
    assert cells_cpus >= 8, "the matrix's 90 cells need the cluster's CPUs"


def test_the_podmonitors_select_every_pod_and_its_metrics_port():
    monitors = documents(PODMONITORS)
    assert {m["kind"] for m in monitors} == {"PodMonitor"}
    for path in MANIFESTS:
        for doc in documents(path):
            for node, template in pod_templates(doc):
                labels = {**template["metadata"]["labels"], "ray.io/node-type": node}  # KubeRay adds the node type
                chosen = [m for m in monitors if m["spec"]["selector"]["matchLabels"].items() <= labels.items()]
                assert len(chosen) == 1, (path.name, node, [m["metadata"]["name"] for m in chosen])
                ports = {p["name"]: p["containerPort"] for p in ray_container(template)["ports"]}
                for endpoint in chosen[0]["spec"]["podMetricsEndpoints"]:
                    assert endpoint["port"] in ports, (path.name, node, endpoint["port"])
                assert ports["metrics"] == 8080  # KubeRay's --metrics-export-port

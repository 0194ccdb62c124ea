#!/usr/bin/env python3
"""Offline checks of deploy/ (`make deploy-check`): no cluster needed.

1. `kubectl kustomize` builds every overlay.
2. Built-in kinds: `kubernetes-validate` in strict mode (unknown fields are errors) for each
   Kubernetes version in KUBERNETES_VERSIONS.
3. Custom resources: JSON Schema validation against the openAPIV3Schema of their CRD in
   deploy/crds/, with unknown fields treated as errors like the API server's strict validation.
4. yamllint over deploy/.
5. Every service under services/ (except the dev-only ones) has its folder, is in the
   production overlay with all its objects, and has a broker user in the generated
   definitions; nothing dev-only is in any overlay.
6. Every environment variable a Deployment sets (env and envFrom ConfigMaps) is one the
   binary's --help lists; probes, grace period, security context and resources as required.
7. Every orderbus metric an alert or the dashboard uses is one the code registers.
8. Secrets: only in the local overlay, and only with placeholder values.

Exit status 1 and one line per problem when anything fails.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSIONS = ["1.33.0", "1.37.0"]
DEV_ONLY_SERVICES = {"erp-sim", "sandbox"}
# Objects every deployed service must have (HorizontalPodAutoscaler only where it can scale).
REQUIRED_KINDS = {
    "Deployment",
    "Service",
    "ConfigMap",
    "ServiceAccount",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "ServiceMonitor",
}
PLACEHOLDER = "CHANGE-ME"

problems: list[str] = []


def problem(text: str) -> None:
    problems.append(text)


def build(overlay: Path) -> list[dict]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True
    )
    if result.returncode != 0:
        problem(f"{overlay.name}: kubectl kustomize failed: {result.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def name_of(obj: dict) -> str:
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')}/{meta.get('name')}"


# --- custom resources ----------------------------------------------------------------------


def strict(schema: dict) -> dict:
    """Unknown fields are errors, except where the schema preserves them."""
    schema = copy.deepcopy(schema)

    def walk(node: dict) -> None:
        if not isinstance(node, dict):
            return
        props = node.get("properties")
        if (
            isinstance(props, dict)
            and not node.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in node
        ):
            node["additionalProperties"] = False
        for key in ("properties",):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key])
        for key in ("anyOf", "oneOf", "allOf"):
            for child in node.get(key, []):
                walk(child)

    walk(schema)
    # metadata is checked by Kubernetes itself, not by the CRD.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


def load_crd_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in sorted((DEPLOY / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                api_version = f"{group}/{version['name']}"
                schemas[(api_version, kind)] = strict(
                    version["schema"]["openAPIV3Schema"]
                )
    return schemas


def is_builtin(api_version: str) -> bool:
    group = api_version.split("/")[0] if "/" in api_version else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def validate_objects(overlay: str, objects: list[dict], crds: dict) -> None:
    for obj in objects:
        api_version = obj.get("apiVersion", "")
        kind = obj.get("kind", "")
        where = f"{overlay}: {name_of(obj)}"
        if is_builtin(api_version):
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = "/".join(str(p) for p in e.path)
                    problem(f"{where}: Kubernetes {version}: {path}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError:
                    problem(f"{where}: Kubernetes {version} has no {api_version} {kind}")
            continue
        schema = crds.get((api_version, kind))
        if schema is None:
            problem(f"{where}: no CRD schema for {api_version} {kind} in deploy/crds/")
            continue
        validator = jsonschema.Draft7Validator(schema)
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
            path = "/".join(str(p) for p in error.path)
            problem(f"{where}: {path}: {error.message}")


# --- services and their manifests ----------------------------------------------------------


def deployed_services() -> list[str]:
    return sorted(
        p.name
        for p in (ROOT / "services").iterdir()
        if p.is_dir() and (p / "Cargo.toml").exists() and p.name not in DEV_ONLY_SERVICES
    )


def check_services(built: dict[str, list[dict]]) -> None:
    production = built.get("production", [])
    definitions = json.loads((DEPLOY / "generated" / "definitions.json").read_text())
    broker_users = {p["user"] for p in definitions.get("permissions", [])}
    for service in deployed_services():
        if not (DEPLOY / "base" / service / "kustomization.yaml").exists():
            problem(f"services/{service} has no deploy/base/{service}/kustomization.yaml")
        kinds = {
            o["kind"]
            for o in production
            if o.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/name")
            == service
        }
        for missing in sorted(REQUIRED_KINDS - kinds):
            problem(f"production overlay: no {missing} for services/{service}")
        if service not in broker_users:
            problem(
                f"services/{service} has no broker user in deploy/generated/definitions.json "
                "(add it to deployed_services() in tests/src/bin/orderbus-deploy-gen.rs)"
            )
    for overlay, objects in built.items():
        for obj in objects:
            text = json.dumps(obj)
            for dev in DEV_ONLY_SERVICES:
                if re.search(rf"(orderbus-)?\b{re.escape(dev)}\b", text):
                    problem(f"{overlay}: {name_of(obj)} mentions the dev-only {dev}")


def help_env_names(binary: Path) -> tuple[set[str], list[str]]:
    """Environment variable names (and NAME_* prefixes) that `binary --help` lists."""
    result = subprocess.run([str(binary), "--help"], capture_output=True, text=True)
    if result.returncode != 0:
        problem(f"{binary} --help failed: {result.stderr.strip()}")
        return set(), []
    text = result.stdout
    names = set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", text))
    prefixes = re.findall(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_)\*", text)
    return names, prefixes


def binary_dir() -> Path:
    if "DEPLOY_CHECK_BIN_DIR" in os.environ:
        return Path(os.environ["DEPLOY_CHECK_BIN_DIR"])
    target = os.environ.get(
        "CARGO_TARGET_DIR", str(Path.home() / ".cache" / "orderbus" / "target")
    )
    return Path(target) / "debug"


def parse_seconds(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def check_deployments(overlay: str, objects: list[dict]) -> None:
    config_maps = {
        o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"
    }
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        where = f"{overlay}: {name_of(obj)}"
        pod = obj["spec"]["template"]["spec"]
        grace = pod.get("terminationGracePeriodSeconds")
        for c in pod.get("containers", []):
            command = c.get("command") or []
            if not command:
                problem(f"{where}: container {c['name']} names no command (the binary)")
                continue
            binary = binary_dir() / Path(command[0]).name
            if not binary.exists():
                problem(f"{where}: {binary} not built (make deploy-check builds it)")
                continue
            names, prefixes = help_env_names(binary)
            env: dict[str, str | None] = {e["name"]: e.get("value") for e in c.get("env", [])}
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref not in config_maps:
                    problem(f"{where}: envFrom ConfigMap {ref} is not in the overlay")
                    continue
                env.update(config_maps[ref])
            for var in sorted(env):
                if var not in names and not any(var.startswith(p) for p in prefixes):
                    problem(f"{where}: sets {var}, which `{binary.name} --help` does not list")
            probes = {
                "livenessProbe": "/healthz",
                "readinessProbe": "/readyz",
            }
            for probe, path in probes.items():
                got = c.get(probe, {}).get("httpGet", {}).get("path")
                if got != path:
                    problem(f"{where}: {probe} must GET {path} (has {got})")
            pre_stop = c.get("lifecycle", {}).get("preStop", {})
            pause = pre_stop.get("sleep", {}).get("seconds")
            if not pause:
                problem(f"{where}: no preStop pause before SIGTERM")
            shutdown = parse_seconds(env.get("ORDERBUS_SHUTDOWN_GRACE_SECS")) or 20
            if grace is None or grace <= shutdown + (pause or 0):
                problem(
                    f"{where}: terminationGracePeriodSeconds {grace} must exceed the preStop "
                    f"pause ({pause}) + ORDERBUS_SHUTDOWN_GRACE_SECS ({shutdown})"
                )
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(f"{where}: allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problem(f"{where}: readOnlyRootFilesystem must be true")
            if not (sc.get("runAsNonRoot") or pod.get("securityContext", {}).get("runAsNonRoot")):
                problem(f"{where}: runAsNonRoot must be true")
            resources = c.get("resources", {})
            for part, keys in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
                for key in keys:
                    if key not in resources.get(part, {}):
                        problem(f"{where}: resources.{part}.{key} missing")


def check_secrets(built: dict[str, list[dict]]) -> None:
    for overlay, objects in built.items():
        for obj in objects:
            if obj["kind"] != "Secret":
                continue
            if overlay != "local":
                problem(f"{overlay}: {name_of(obj)}: Secrets belong in the local example only")
                continue
            values = {**obj.get("stringData", {}), **obj.get("data", {})}
            secret_keys = {"password", "uri"}
            for key in secret_keys & values.keys():
                if PLACEHOLDER not in values[key]:
                    problem(f"{overlay}: {name_of(obj)}: {key} is not a {PLACEHOLDER} placeholder")


# --- metrics -------------------------------------------------------------------------------

METRIC_MACRO = re.compile(r'(?:counter|gauge|histogram)!\(\s*"([a-z_][a-z0-9_]*)"')
OWN_METRIC = re.compile(r"\b((?:orderbus|storefront|payments|tracking|fulfilment|ops)_[a-z0-9_]+)")


def code_metrics() -> set[str]:
    names = set()
    for folder in ("shared", "services"):
        for path in (ROOT / folder).rglob("*.rs"):
            names.update(METRIC_MACRO.findall(path.read_text(errors="replace")))
    return names


def used_metrics(objects: list[dict]) -> set[str]:
    used = set()
    for obj in objects:
        if obj["kind"] == "PrometheusRule":
            for group in obj["spec"]["groups"]:
                for rule in group.get("rules", []):
                    used.update(OWN_METRIC.findall(str(rule.get("expr", ""))))
        if obj["kind"] == "ConfigMap" and obj["metadata"].get("labels", {}).get("grafana_dashboard"):
            for text in obj.get("data", {}).values():
                for panel in json.loads(text).get("panels", []):
                    for target in panel.get("targets", []):
                        used.update(OWN_METRIC.findall(target.get("expr", "")))
    return used


def check_metrics(objects: list[dict]) -> None:
    known = code_metrics()
    for metric in sorted(used_metrics(objects)):
        base = re.sub(r"_(bucket|sum|count)$", "", metric)
        if metric not in known and base not in known:
            problem(f"alerts/dashboard use {metric}, which no counter!/gauge!/histogram! registers")


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    crds = load_crd_schemas()
    overlays = sorted(p for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
    built = {overlay.name: build(overlay) for overlay in overlays}
    for overlay, objects in built.items():
        validate_objects(overlay, objects, crds)
        check_deployments(overlay, objects)
    check_services(built)
    check_secrets(built)
    check_metrics(built.get("production", []))
    lint = subprocess.run(
        [
            sys.executable,
            "-m",
            "yamllint",
            "--strict",
            "-c",
            ".yamllint",
            ".",
        ],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
    )
    if lint.returncode != 0:
        problem("yamllint:\n" + lint.stdout.strip())
    counts = ", ".join(f"{name}: {len(objs)} objects" for name, objs in built.items())
    if problems:
        for p in problems:
            print(f"deploy-check: {p}", file=sys.stderr)
        print(f"deploy-check: {len(problems)} problem(s) ({counts})", file=sys.stderr)
        return 1
    print(f"deploy-check: ok ({counts}; Kubernetes {', '.join(KUBERNETES_VERSIONS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Checks helm/inferpush without a cluster; scripts/check-chart.sh runs it with its tools.

1. `helm lint --strict` (Helm v4's library, helm-python-sdk);
2. renders every value set of helm/inferpush/ci/ and checks the result: each manifest
   validates against the Kubernetes schemas of a current release (kubernetes-validate),
   and checkov's manifest scan passes (exceptions in helm/inferpush/.checkov.yaml, justified
   in the chart's README);
3. values that must be refused are, with a message that names the value;
4. the chart and the binaries agree: every variable the chart sets on the api and the
   workers is one the binary reads (its --help), and the binary accepts the rendered
   settings (`--check-config`, with the secrets' values stood in for).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import helm_python as helm
import kubernetes_validate
import kubernetes_validate.utils
import yaml
from helm_python import Chart

CHART = pathlib.Path("helm/inferpush")
# The newest release whose schemas the pinned kubernetes-validate carries.
KUBERNETES_VERSION = kubernetes_validate.utils.latest_version()
# What the secrets hold, for --check-config (the chart refers to them by name only).
SECRET_STAND_INS = {
    "amqp-url": "amqp://inferpush:password@rabbitmq:5672/%2f",
    "redis-url": "redis://redis:6379",
    "redis-password": "a-redis-password",
    "sentinel-password": "a-sentinel-password",
    "app-key": "k" * 20,
    "app-secret": "s" * 40,
    "encryption-master-key": "A" * 43 + "=",
    "hs256-secret": "a-long-random-jwt-secret-of-at-least-32-bytes",
    "rs256-public-key.pem": "",
    "webhook-secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "mqtt-username": "inferpush-worker",
    "mqtt-password": "a-broker-password",
}
# Values that must not install, and a word the refusal must contain.
REFUSED = [
    ({"pusher": {"key": "app-key", "secret": "app-secret"}}, "well-known"),
    ({"pusher": {"secret": "short"}}, "shorter than 16"),
    ({"soketi": {"enabled": False}}, "pusher.host"),
    ({"auth": {"jwt": {"hs256Secret": "x" * 40}}}, "issuer"),
    ({"auth": {"jwt": {"hs256Secret": "x" * 31, "issuer": "i", "audience": "a"}}}, "hs256Secret"),
    ({"workers": [{"name": "cpu", "models": ["GPT 17"]}]}, "models"),
    ({"modelRepository": {"files": {"source": "pvc"}}}, "claimName"),
    ({"modelRepository": {"cardsConfigMap": "cards"}}, "modelRepository.cards"),
    ({"workers": [{"name": "gpu", "models": ["echo"], "device": "tpu"}]}, "device"),
    ({"api": {"replicas": "two"}}, "replicas"),
    ({"delivery": {"sinks": ["pusher", "mqtt"]}}, "delivery.mqtt.url"),
    ({"delivery": {"sinks": ["fax"]}}, "sinks"),
    ({"redis": {"sentinel": {"hosts": ["sentinel-1:26379"]}}}, "masterName"),
    ({"redis": {"sentinel": {"hosts": ["s:26379"], "masterName": "m"}, "cluster": {"nodes": ["r:6379"]}}}, "not both"),
    ({"redis": {"cluster": {"nodes": ["redis-0"]}}}, "nodes"),
    ({"pushServer": "pusher"}, "pushServer"),
]

failures: list[str] = []


# Settings both binaries read before parsing their flags (so `--help` does not list them).
READ_AT_START = {"INFERPUSH_LOG_FORMAT", "INFERPUSH_METRICS", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "RUST_LOG"}

def fail(message: str) -> None:
    failures.append(message)
    print(f"FAIL {message}")


def render(values: dict) -> list[dict]:
    with Chart.load(str(CHART)) as chart:
        out = chart.render(values=values, name="inferpush", namespace="inferpush", is_install=True)
    docs = []
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def versions() -> None:
    """The chart's appVersion is the release the images are tagged with."""
    app = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    cargo = re.search(r'^version = "([^"]+)"', pathlib.Path("Cargo.toml").read_text(), re.M).group(1)
    if app != cargo:
        fail(f"Chart.yaml appVersion {app} is not the workspace version {cargo}")


def lint() -> None:
    report = helm.lint(str(CHART), strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    errors = report["errors"] + [m["error"] for m in report["messages"] if m["severity"] >= 2]
    for error in errors:
        fail(f"lint: {error}")
    print(f"lint: {len(report['messages'])} messages, {len(errors)} warnings or errors")


def validate(name: str, docs: list[dict]) -> None:
    for doc in docs:
        kind = doc["kind"]
        if doc["apiVersion"].startswith("keda.sh/"):
            # KEDA's kinds are custom resources: not in Kubernetes' schemas.
            check_keda(name, doc)
            continue
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            check_service_monitor(name, doc, docs)
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            fail(f"{name}: {kind} {doc['metadata']['name']}: {error.message} at {list(error.path)}")


def check_keda(name: str, doc: dict) -> None:
    """The fields KEDA needs, since no schema of its custom resources is at hand."""
    spec = doc.get("spec", {})
    if doc["kind"] == "ScaledObject":
        ok = spec.get("scaleTargetRef", {}).get("name") and spec.get("triggers")
        for trigger in spec.get("triggers", []):
            ok = ok and trigger["type"] == "rabbitmq" and trigger["metadata"].get("queueName")
            ok = ok and trigger["metadata"].get("mode") == "QueueLength" and trigger.get("authenticationRef")
    else:
        ok = bool(spec.get("secretTargetRef"))
    if not ok:
        fail(f"{name}: {doc['kind']} {doc['metadata']['name']} lacks what KEDA needs")


def check_service_monitor(name: str, doc: dict, docs: list[dict]) -> None:
    """A ServiceMonitor (the Prometheus Operator's custom resource) selects a rendered
    Service by its labels and scrapes a port that Service names."""
    spec = doc.get("spec", {})
    wanted = spec.get("selector", {}).get("matchLabels", {})
    ports = {e.get("port") for e in spec.get("endpoints", [])}
    services = [d for d in docs if d["kind"] == "Service"
                and wanted.items() <= d["metadata"].get("labels", {}).items()]
    if not wanted or not services or not all(
        ports <= {p.get("name") for p in s["spec"]["ports"]} for s in services
    ):
        fail(f"{name}: ServiceMonitor {doc['metadata']['name']} selects no Service with its ports {ports}")


def scan(name: str, docs: list[dict], checkov: str, network_policies: bool) -> None:
    # Without the chart's NetworkPolicies (optional: their peers differ per cluster) the
    # check that every pod has one cannot pass; the value sets that turn them on run it.
    skip = yaml.safe_load((CHART / ".checkov.yaml").read_text())["skip-check"]
    if not network_policies:
        skip.append("CKV2_K8S_6")
    with tempfile.TemporaryDirectory() as folder:
        for i, doc in enumerate(docs):
            pathlib.Path(folder, f"{i:02d}-{doc['kind']}.yaml").write_text(yaml.safe_dump(doc))
        result = subprocess.run(
            [checkov, "--quiet", "--compact", "--skip-download", "--framework", "kubernetes",
             "--directory", folder, "--skip-check", ",".join(skip)],
            capture_output=True, text=True,
        )
    if result.returncode != 0:
        fail(f"{name}: checkov found problems:\n{result.stdout}{result.stderr}")


def refusals() -> None:
    for values, word in REFUSED:
        try:
            render(values)
        except Exception as error:  # the library raises its render or values error
            if word not in str(error):
                fail(f"{values} was refused, but the message does not say `{word}`: {error}")
            continue
        fail(f"{values} rendered; it must be refused")


def secret_value(ref: dict) -> str:
    return SECRET_STAND_INS[ref["secretKeyRef"]["key"]]


def agreement(name: str, docs: list[dict], bin_dir: pathlib.Path) -> None:
    helps: dict[str, str] = {}
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        container = doc["spec"]["template"]["spec"]["containers"][0]
        binary = {"api": "inferpush-api", "worker": "inferpush-worker"}.get(container["name"])
        if binary is None:
            continue
        if binary not in helps:
            helps[binary] = subprocess.run(
                [bin_dir / binary, "--help"], capture_output=True, text=True, check=True
            ).stdout
        # Read by the logging and tracing set-up before the flags are parsed.
        known = set(re.findall(r"\[env: ([A-Z0-9_]+)", helps[binary])) | READ_AT_START
        env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "error"}
        with tempfile.TemporaryDirectory() as files:
            for variable in container.get("env", []):
                if variable["name"] not in known:
                    fail(f"{name}: {doc['metadata']['name']} sets {variable['name']}, which {binary} does not read")
                value = variable.get("value")
                if value is None:
                    value = secret_value(variable["valueFrom"])
                if variable["name"] == "INFERPUSH_MODEL_REPOSITORY":
                    # The images' repository: the checkout's, whose cards and files they carry.
                    value = str(pathlib.Path("models").resolve())
                elif value.startswith("/etc/inferpush/"):
                    # A mounted file: stand one in with content the binary accepts.
                    value = stand_in_file(files, value)
                env[variable["name"]] = value
            result = subprocess.run([bin_dir / binary, "--check-config"], env=env, capture_output=True, text=True)
        if result.returncode != 0 or "configuration ok" not in result.stdout:
            fail(f"{name}: {binary} refuses the settings of {doc['metadata']['name']}: {result.stderr.strip()}")


def stand_in_file(folder: str, path: str) -> str:
    target = pathlib.Path(folder, pathlib.Path(path).name)
    if path.endswith("api-keys"):
        target.write_text("alice:" + "0" * 64 + "\n")
    elif path.endswith(".pem"):
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-out", f"{target}.key"], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", f"{target}.key", "-pubout", "-out", str(target)], check=True,
                       capture_output=True)
    else:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", f"{target}.key", "-out", str(target), "-days", "1",
                        "-subj", "/CN=stand-in CA"], check=True, capture_output=True)
    return str(target)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", type=pathlib.Path, required=True)
    parser.add_argument("--checkov", default="checkov")
    args = parser.parse_args()
    for binary in ("inferpush-api", "inferpush-worker"):
        if not (args.bin_dir / binary).is_file():
            print(f"{args.bin_dir / binary} is missing: build the workspace first (cargo build --workspace)")
            return 1
    versions()
    lint()
    value_sets = sorted((CHART / "ci").glob("*.yaml"))
    for values_file in value_sets:
        name = values_file.name
        values = yaml.safe_load(values_file.read_text()) or {}
        docs = render(values)
        print(f"{name}: {len(docs)} manifests: " + ", ".join(sorted({d['kind'] for d in docs})))
        validate(name, docs)
        scan(name, docs, args.checkov, values.get("networkPolicy", {}).get("enabled", False))
        agreement(name, docs, args.bin_dir)
    refusals()
    if failures:
        print(f"\nchart check: {len(failures)} failures")
        return 1
    print(f"\nchart check: lint, {len(value_sets)} value sets rendered, validated against Kubernetes "
          f"{KUBERNETES_VERSION}, scanned by checkov, agreeing with the binaries; {len(REFUSED)} bad value sets refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())

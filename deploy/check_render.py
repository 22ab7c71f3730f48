#!/usr/bin/env python3
"""Checks what `make k8s-render` rendered, offline, and the other deploy files.

    check_render.py RENDER_DIR        (RENDER_DIR holds <overlay>.yaml from `kubectl kustomize`)

- every rendered object validates (strictly: unknown fields are errors) against the Kubernetes
  JSON schemas shipped by `kubernetes-validate`, for the oldest and newest versions we support;
  Prometheus Operator kinds (PrometheusRule, PodMonitor) have no schema there and are skipped, but
  the rule's PromQL is parsed and every metric it names must be one the services export;
- the prod render has, per service, >= 2 replicas, liveness/readiness/startup probes, an HPA, a
  PodDisruptionBudget and a NetworkPolicy admitting exactly the service's callers;
- every Deployment is hardened and its terminationGracePeriodSeconds exceeds grace + drain;
- deploy/compose.yaml validates against the compose-spec schema (vendored by check-jsonschema);
- the Dockerfile parses (BuildKit's own parser), is multi-stage and ends non-root;
- negative controls: a broken manifest and a broken compose file must fail, so a validator that
  silently accepts everything cannot pass.

Prints one line per failure and ends with "check_render: N passed, M failed, K skipped"; exits 1
on any failure.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import pathlib
import re
import sys

import dockerfile
import jsonschema
import kubernetes_validate
import promql_parser
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSIONS = ["1.29.0", "1.37.0"]  # oldest and newest cluster versions we validate against
CRD_GROUPS = ("monitoring.coreos.com/",)

# Who calls whom (README § Architecture); the NetworkPolicies must say exactly this.
GRPC_PORTS = {"auth": 50051, "bag-registry": 50052, "scan": 50053, "billing": 50054, "stats": 50055}
SERVICES = [*GRPC_PORTS, "gateway"]
CALLERS = {
    "auth": {"gateway", "bag-registry", "scan", "billing", "stats"},
    "bag-registry": {"gateway", "scan", "billing", "stats"},
    "scan": {"gateway"},
    "billing": {"gateway", "stats"},
    "stats": {"gateway"},
}
UPSTREAMS = {
    "gateway": set(GRPC_PORTS),
    "scan": {"auth", "bag-registry"},
    "billing": {"auth", "bag-registry"},
    "bag-registry": {"auth"},
    "stats": {"auth", "bag-registry", "billing"},
    "auth": set(),
}
REQUIRED_ALERT_METRICS = [
    ("grpc error rate", r'grpc_server_handled_total\{code!="OK"\}'),
    ("grpc latency", r"grpc_server_handling_seconds_bucket"),
    ("http 5xx", r'http_requests_total\{status=~"5\.\."\}'),
    ("outbox age", r"outbox_oldest_unpublished_age_seconds"),
    ("consumer lag", r"consumer_lag_events"),
    ("consumer lag seen by the publisher", r"outbox_group_lag"),
    ("parked events", r"consumer_parked_events"),
    (
        "lockout storm",
        r'grpc_server_handled_total\{method="/tracetrack\.auth\.v1\.AuthService/Login",code="PERMISSION_DENIED"\}',
    ),
]


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f": {detail}" if detail else ""))
        return ok

    def skip(self, what: str) -> None:
        self.skipped += 1
        print(f"SKIP {what}")


def load_all(path: pathlib.Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def ident(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def named(docs: list[dict], kind: str, name: str) -> dict | None:
    return next((d for d in by_kind(docs, kind) if d["metadata"]["name"] == name), None)


def selects(selector: dict, labels: dict) -> bool:
    """matchLabels semantics (all we use); an empty selector selects everything."""
    match = (selector or {}).get("matchLabels") or {}
    if (selector or {}).get("matchExpressions"):
        return False
    return all(labels.get(k) == v for k, v in match.items())


def k8s_validate(doc: dict, version: str) -> str | None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
        return None
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return f"{path}: {e.message}"


# --- schemas ------------------------------------------------------------------------------------


def check_schemas(c: Checks, overlay: str, docs: list[dict]) -> None:
    for doc in docs:
        if doc.get("apiVersion", "").startswith(CRD_GROUPS):
            c.skip(
                f"{overlay}: {ident(doc)} ({doc['apiVersion']}) is a Prometheus Operator CRD; "
                "kubernetes-validate ships no schema for it (its content is checked below)"
            )
            continue
        for version in K8S_VERSIONS:
            err = k8s_validate(doc, version)
            c.check(err is None, f"{overlay}: {ident(doc)} valid for Kubernetes {version}", err or "")


def check_negative_controls(c: Checks, docs: list[dict], compose_schema: dict) -> None:
    dep = copy.deepcopy(by_kind(docs, "Deployment")[0])
    dep["spec"]["replicaz"] = 2
    c.check(
        k8s_validate(dep, K8S_VERSIONS[-1]) is not None,
        "negative control: a Deployment with an unknown field fails strict validation",
    )
    dep = copy.deepcopy(by_kind(docs, "Deployment")[0])
    dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "grpc"
    c.check(
        k8s_validate(dep, K8S_VERSIONS[-1]) is not None,
        "negative control: a Deployment with a string containerPort fails validation",
    )
    bad = {"services": {"x": {"image": "a", "restart_policy": "always"}}}
    c.check(
        not jsonschema.validators.validator_for(compose_schema)(compose_schema).is_valid(bad),
        "negative control: a compose file with an unknown service key fails the compose schema",
    )


# --- workloads ----------------------------------------------------------------------------------


def env_of(docs: list[dict], pod_spec: dict, container: dict) -> dict[str, str]:
    """The literal environment a container gets: envFrom ConfigMaps, then env values."""
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef")
        if ref:
            cm = named(docs, "ConfigMap", ref["name"])
            if cm:
                env.update(cm.get("data", {}))
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
    return env


def check_hardened(c: Checks, where: str, pod_spec: dict) -> None:
    psc = pod_spec.get("securityContext", {})
    c.check(
        psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        f"{where}: pod seccompProfile RuntimeDefault",
    )
    c.check(pod_spec.get("automountServiceAccountToken") is False, f"{where}: no API token mounted")
    for ctr in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        sc = ctr.get("securityContext", {})
        name = f"{where} container {ctr['name']}"
        c.check(
            sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
            and (sc.get("runAsUser", psc.get("runAsUser")) or 1) != 0,
            f"{name}: runAsNonRoot",
        )
        c.check(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation false")
        c.check(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem")
        c.check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{name}: capabilities drop ALL")
        res = ctr.get("resources", {})
        c.check(
            all(k in res.get("requests", {}) for k in ("cpu", "memory"))
            and all(k in res.get("limits", {}) for k in ("cpu", "memory")),
            f"{name}: cpu/memory requests and limits",
        )


def check_deployments(c: Checks, overlay: str, docs: list[dict]) -> None:
    for dep in by_kind(docs, "Deployment"):
        where = f"{overlay}: {ident(dep)}"
        pod = dep["spec"]["template"]["spec"]
        check_hardened(c, where, pod)
        ctr = pod["containers"][0]
        env = env_of(docs, pod, ctr)
        grace_s = int(env.get("TRACETRACK_SHUTDOWN__GRACE_MS", "0")) / 1000
        drain_s = int(env.get("TRACETRACK_SHUTDOWN__DRAIN_TIMEOUT_MS", "20000")) / 1000
        tgps = pod.get("terminationGracePeriodSeconds", 30)
        c.check(
            tgps > grace_s + drain_s,
            f"{where}: terminationGracePeriodSeconds > grace + drain",
            f"{tgps} <= {grace_s} + {drain_s}",
        )
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            c.check(probe in ctr, f"{where}: has a {probe}")
    for kind in ("Job", "CronJob"):
        for job in by_kind(docs, kind):
            spec = job["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else job["spec"]
            check_hardened(c, f"{overlay}: {ident(job)}", spec["template"]["spec"])


URL_VARS = {
    "TRACETRACK_AUTH__URL": "auth",
    "TRACETRACK_REGISTRY_URL": "bag-registry",
    "TRACETRACK_SCAN_URL": "scan",
    "TRACETRACK_BILLING_URL": "billing",
    "TRACETRACK_STATS_URL": "stats",
}


def check_wiring(c: Checks, overlay: str, docs: list[dict]) -> None:
    """Listeners bind the pod's address on the declared ports; upstream URLs name real Services."""
    for dep in by_kind(docs, "Deployment"):
        where = f"{overlay}: {ident(dep)}"
        pod = dep["spec"]["template"]["spec"]
        ctr = pod["containers"][0]
        env = env_of(docs, pod, ctr)
        ports = ports_of(ctr)
        public = "TRACETRACK_HTTP_ADDR" if "http" in ports else "TRACETRACK_GRPC_ADDR"
        public_port = ports.get("http", ports.get("grpc"))
        c.check(
            env.get(public) == f"0.0.0.0:{public_port}",
            f"{where}: {public} listens on the pod address, port {public_port}",
            str(env.get(public)),
        )
        c.check(
            env.get("TRACETRACK_ADMIN_ADDR") == f"0.0.0.0:{ports.get('metrics')}",
            f"{where}: admin/metrics listener on the pod address, port {ports.get('metrics')}",
            str(env.get("TRACETRACK_ADMIN_ADDR")),
        )
        name = dep["metadata"]["name"]
        if name in UPSTREAMS:
            configured = {t for v, t in URL_VARS.items() if v in env}
            c.check(
                configured == UPSTREAMS[name],
                f"{where}: configured with exactly its upstreams' URLs",
                f"{sorted(configured)}",
            )
        for var, target in URL_VARS.items():
            if var not in env:
                continue
            for url in env[var].split(","):
                m = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", url.strip())
                svc = named(docs, "Service", m.group(1)) if m else None
                c.check(
                    svc is not None
                    and m.group(1) == target
                    and any(p["port"] == int(m.group(2)) for p in svc["spec"]["ports"]),
                    f"{where}: {var} names the {target} Service and its port",
                    url,
                )


def ports_of(ctr: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in ctr.get("ports", []) if "name" in p}


def check_prod_service(c: Checks, docs: list[dict], svc: str) -> None:
    where = f"prod: {svc}"
    dep = named(docs, "Deployment", svc)
    if not c.check(dep is not None, f"{where}: Deployment exists"):
        return
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    c.check(dep["spec"].get("replicas", 1) >= 2, f"{where}: >= 2 replicas", str(dep["spec"].get("replicas")))
    ctr = dep["spec"]["template"]["spec"]["containers"][0]
    ports = ports_of(ctr)
    c.check(ctr.get("command") == [f"tracetrack-{svc}"], f"{where}: runs tracetrack-{svc}")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        c.check(probe in ctr, f"{where}: has a {probe}")
    svc_obj = named(docs, "Service", svc)
    if svc in GRPC_PORTS:
        c.check(ports.get("grpc") == GRPC_PORTS[svc], f"{where}: container port `grpc` is {GRPC_PORTS[svc]}")
        c.check(
            ctr.get("readinessProbe", {}).get("grpc", {}).get("port") == GRPC_PORTS[svc],
            f"{where}: readiness is a native gRPC probe on the gRPC port",
        )
        c.check(
            svc_obj is not None
            and svc_obj["spec"].get("clusterIP") == "None"
            and any(p.get("name") == "grpc" for p in svc_obj["spec"]["ports"]),
            f"{where}: headless Service with a port named grpc",
        )
        job = named(docs, "Job", f"{svc}-migrate")
        if c.check(job is not None, f"{where}: migration Job exists"):
            jctr = job["spec"]["template"]["spec"]["containers"][0]
            c.check(
                jctr.get("command") == [f"tracetrack-{svc}"] and jctr.get("args") == ["migrate"],
                f"{where}: migration Job runs `tracetrack-{svc} migrate`",
            )
            keys = {
                e["valueFrom"]["secretKeyRef"]["key"]
                for e in jctr.get("env", [])
                if e["name"] == "TRACETRACK_DATABASE__URL" and "valueFrom" in e
            }
            rkeys = {
                e["valueFrom"]["secretKeyRef"]["key"]
                for e in ctr.get("env", [])
                if e["name"] == "TRACETRACK_DATABASE__URL" and "valueFrom" in e
            }
            c.check(
                keys == {"migrate-url"} and rkeys == {"url"},
                f"{where}: migrations use the DDL role's URL, the runtime another",
                f"job {keys}, deployment {rkeys}",
            )
    else:
        c.check(
            svc_obj is not None
            and svc_obj["spec"].get("clusterIP") != "None"
            and any(p.get("name") == "http" for p in svc_obj["spec"]["ports"]),
            f"{where}: ClusterIP Service with a port named http",
        )
    hpas = [
        h
        for h in by_kind(docs, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"].get("kind") == "Deployment" and h["spec"]["scaleTargetRef"]["name"] == svc
    ]
    c.check(
        len(hpas) == 1 and hpas[0]["apiVersion"] == "autoscaling/v2" and hpas[0]["spec"].get("minReplicas", 1) >= 2,
        f"{where}: one autoscaling/v2 HPA with minReplicas >= 2",
    )
    pdbs = [p for p in by_kind(docs, "PodDisruptionBudget") if selects(p["spec"].get("selector"), pod_labels)]
    c.check(len(pdbs) == 1, f"{where}: one PodDisruptionBudget selects its pods", f"{len(pdbs)} found")
    own = [
        p
        for p in by_kind(docs, "NetworkPolicy")
        if (p["spec"].get("podSelector") or {}).get("matchLabels")
        and selects(p["spec"]["podSelector"], pod_labels)
    ]
    if not c.check(len(own) >= 1, f"{where}: a NetworkPolicy selects its pods"):
        return
    check_reachability(c, docs, svc, own, ports)


def peer_services(peers: list[dict]) -> set[str]:
    return {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for p in peers
        if "podSelector" in p and "namespaceSelector" not in p and "ipBlock" not in p
    }


def check_reachability(c: Checks, docs, svc: str, policies: list[dict], ports: dict[str, int]) -> None:
    where = f"prod: {svc}"
    callers: set[str] = set()
    outside_ok = True
    # Only the gateway serves outside the namespace; every pod's metrics port is scraped from it.
    allowed_outside = {"http", "metrics"} if svc == "gateway" else {"metrics"}
    for pol in policies:
        c.check(
            set(pol["spec"].get("policyTypes", [])) == {"Ingress", "Egress"},
            f"{where}: {ident(pol)} restricts ingress and egress",
        )
        for rule in pol["spec"].get("ingress", []):
            peers = rule.get("from")
            rule_ports = {str(p.get("port")) for p in rule.get("ports", [])}
            if not peers:
                outside_ok = False  # open to everything
                continue
            callers |= peer_services(peers)
            external = [p for p in peers if "namespaceSelector" in p or "ipBlock" in p]
            if external and not rule_ports <= allowed_outside:
                outside_ok = False
    c.check(outside_ok, f"{where}: reachable from outside the namespace only on {sorted(allowed_outside)}")
    if svc in CALLERS:
        c.check(callers == CALLERS[svc], f"{where}: admits exactly its callers", f"{sorted(callers)}")
    egress_to: set[str] = set()
    for pol in policies:
        for rule in pol["spec"].get("egress", []):
            egress_to |= peer_services(rule.get("to", []))
    c.check(egress_to == UPSTREAMS[svc], f"{where}: egress to exactly its upstreams", f"{sorted(egress_to)}")


def check_namespace_isolation(c: Checks, overlay: str, docs: list[dict]) -> None:
    deny = [
        p
        for p in by_kind(docs, "NetworkPolicy")
        if p["spec"].get("podSelector") == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    c.check(len(deny) == 1, f"{overlay}: a default-deny NetworkPolicy for the namespace")


# --- alerts -------------------------------------------------------------------------------------


def exported_metrics() -> set[str]:
    names: set[str] = set()
    pat = re.compile(r'(?:counter|gauge|histogram)!\(\s*"([a-z_:][a-z0-9_:]*)"')
    for src in list((ROOT / "services").rglob("*.rs")) + list((ROOT / "gateway").rglob("*.rs")):
        names |= set(pat.findall(src.read_text(errors="replace")))
    return names


def metric_names(expr: str) -> set[str]:
    # Identifiers directly followed by a selector or range (string literals removed first), minus
    # PromQL's functions.
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    found = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[)", bare))
    return {n for n in found if n not in {"rate", "irate", "increase", "sum", "max", "min", "avg"}}


def check_alerts(c: Checks, docs: list[dict]) -> None:
    rules = by_kind(docs, "PrometheusRule")
    if not c.check(len(rules) == 1, "prod: one PrometheusRule"):
        return
    exported = exported_metrics()
    exprs = []
    for group in rules[0]["spec"]["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            expr = rule["expr"]
            exprs.append(re.sub(r"\s+", "", expr))
            try:
                promql_parser.parse(expr)
                parsed = True
            except ValueError as e:
                parsed = False
                print(f"     {name}: {e}")
            c.check(parsed, f"prod: alert {name} parses as PromQL")
            c.check(
                rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}
                and "summary" in rule.get("annotations", {}),
                f"prod: alert {name} has a severity and a summary",
            )
            for metric in metric_names(expr):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                c.check(
                    metric in exported or base in exported,
                    f"prod: alert {name} uses metric {metric}, which the services export",
                )
    for what, pat in REQUIRED_ALERT_METRICS:
        c.check(any(re.search(pat, e) for e in exprs), f"prod: an alert covers {what}")


# --- compose and Dockerfile ---------------------------------------------------------------------


def compose_schema() -> dict:
    res = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(res.read_text())


def check_compose(c: Checks, schema: dict) -> None:
    path = DEPLOY / "compose.yaml"
    doc = yaml.safe_load(path.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)  # the schema's own draft (2020-12)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    c.check(
        not errors,
        "compose.yaml validates against the compose-spec schema",
        "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5]),
    )
    services = doc.get("services", {})
    for svc in SERVICES:
        s = services.get(svc)
        if not c.check(s is not None, f"compose: service {svc}"):
            continue
        c.check(s.get("command", [None])[0] == f"tracetrack-{svc}", f"compose: {svc} runs tracetrack-{svc}")
        env = s.get("environment", {})
        if svc in GRPC_PORTS:
            c.check("TRACETRACK_DATABASE__URL" in env, f"compose: {svc} has its database URL")
            c.check(env.get("TRACETRACK_DATABASE__MIGRATE_ON_START") == "true", f"compose: {svc} migrates on start")
            c.check("healthcheck" in s, f"compose: {svc} has a healthcheck")
        c.check(
            env.get("TRACETRACK_TELEMETRY__OTLP_ENDPOINT", "").startswith("http://otel-collector:"),
            f"compose: {svc} exports traces to the collector",
        )
        c.check(s.get("read_only") is True and s.get("user") == "10001:10001", f"compose: {svc} read-only, non-root")
    c.check(
        any(p.endswith(":8080") for p in services.get("gateway", {}).get("ports", [])),
        "compose: the gateway is published on 8080",
    )
    for infra in ("postgres", "redis", "otel-collector", "jaeger"):
        c.check(infra in services, f"compose: service {infra}")
    for s in services.values():
        for vol in s.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("./"):
                c.check((DEPLOY / src).exists(), f"compose: mounted file {src} exists")


def check_dockerfile(c: Checks) -> None:
    path = DEPLOY / "docker" / "Dockerfile"
    try:
        cmds = dockerfile.parse_file(str(path))
    except dockerfile.GoParseError as e:
        c.check(False, "Dockerfile parses", str(e))
        return
    c.check(True, "Dockerfile parses")
    froms = [cmd for cmd in cmds if cmd.cmd == "FROM"]
    c.check(len(froms) >= 2, "Dockerfile is multi-stage")
    last = max(i for i, cmd in enumerate(cmds) if cmd.cmd == "FROM")
    final = cmds[last:]
    base = froms[-1].value[0]
    c.check("distroless" in base or "slim" in base, "Dockerfile: small runtime base", base)
    users = [cmd.value[0] for cmd in final if cmd.cmd == "USER"]
    c.check(users and users[-1].split(":")[0] == "10001", "Dockerfile: runtime runs as uid 10001")
    runs = " ".join(" ".join(cmd.flags + cmd.value) for cmd in cmds[:last] if cmd.cmd == "RUN")
    c.check("build-binaries.sh fetch" in runs and "build-binaries.sh build" in runs, "Dockerfile: fetch, then build")
    c.check("--network=none" in runs, "Dockerfile: the build step runs without network")
    envs = " ".join(" ".join(cmd.value) for cmd in cmds[:last] if cmd.cmd == "ENV")
    c.check("SQLX_OFFLINE" in envs, "Dockerfile: SQLX_OFFLINE set in the builder")
    script = (DEPLOY / "docker" / "build-binaries.sh").read_text()
    c.check("--locked" in script and "--release" in script, "build-binaries.sh: --release --locked")
    listed = set(re.findall(r"^\s+(tracetrack-[a-z-]+)$", script, re.M))
    wanted = {f"tracetrack-{s}" for s in SERVICES}
    c.check(listed == wanted, "build-binaries.sh builds exactly the six binaries", f"{sorted(listed)}")
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().split()
    c.check("target" in ignore and ".git" in ignore, "Dockerfile.dockerignore leaves out target/ and .git/")


# --- gRPC over TLS (components/tls, rendered as the prod-tls overlay) -----------------------------


def check_grpc_tls(c: Checks, overlay: str, docs: list[dict]) -> None:
    """Every process mounts the Secret as a directory (no subPath: rotation reaches the files),
    is configured with files inside it, and no gRPC service keeps the kubelet's grpc: probe (it
    cannot speak TLS): readiness is `tracetrack-<svc> health`, which can."""
    readme = (ROOT / "README.md").read_text()
    c.check("`tracetrack-grpc-tls`" in readme, f"{overlay}: README documents the Secret tracetrack-grpc-tls")
    for svc in SERVICES:
        dep = named(docs, "Deployment", svc)
        if not c.check(dep is not None, f"{overlay}: {svc}: Deployment exists"):
            continue
        pod = dep["spec"]["template"]["spec"]
        ctr = pod["containers"][0]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        secret = vols.get("grpc-tls", {}).get("secret", {}).get("secretName")
        c.check(secret == "tracetrack-grpc-tls", f"{overlay}: {svc}: mounts the Secret tracetrack-grpc-tls", str(secret))
        mounts = [m for m in ctr.get("volumeMounts", []) if m.get("name") == "grpc-tls"]
        c.check(
            len(mounts) == 1 and "subPath" not in mounts[0],
            f"{overlay}: {svc}: the Secret is mounted as a directory (no subPath)",
            str(mounts),
        )
        where = mounts[0]["mountPath"] if mounts else "?"
        env = env_of(docs, pod, ctr)
        for var, key in (("CERT_FILE", "tls.crt"), ("KEY_FILE", "tls.key"), ("CA_FILE", "ca.crt")):
            c.check(
                env.get(f"TRACETRACK_TLS__GRPC__{var}") == f"{where}/{key}",
                f"{overlay}: {svc}: TRACETRACK_TLS__GRPC__{var} is {key} in the mount",
                str(env.get(f"TRACETRACK_TLS__GRPC__{var}")),
            )
        probes = [ctr.get(p, {}) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
        c.check(all("grpc" not in p for p in probes), f"{overlay}: {svc}: no kubelet grpc: probe")
        if svc in GRPC_PORTS:
            cmd = ctr.get("readinessProbe", {}).get("exec", {}).get("command")
            c.check(
                cmd == [f"tracetrack-{svc}", "health"],
                f"{overlay}: {svc}: readiness runs tracetrack-{svc} health",
                str(cmd),
            )


# --- secrets are documented ---------------------------------------------------------------------


def check_secrets_documented(c: Checks, docs: list[dict]) -> None:
    readme = (ROOT / "README.md").read_text()
    refs: set[tuple[str, str]] = set()

    def walk(node):
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                refs.add((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(docs)
    deploy = readme.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0] if "\n## Deploy\n" in readme else ""
    for name, key in sorted(refs):
        c.check(
            f"`{name}`" in deploy and f"`{key}`" in deploy,
            f"README § Deploy documents Secret {name}, key {key}",
        )


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    render_dir = pathlib.Path(sys.argv[1])
    c = Checks()
    renders = {p.stem: load_all(p) for p in sorted(render_dir.glob("*.yaml"))}
    if not c.check({"dev", "prod"} <= set(renders), "renders of the dev and prod overlays exist", str(list(renders))):
        return 1
    schema = compose_schema()
    for overlay, docs in renders.items():
        check_schemas(c, overlay, docs)
        check_deployments(c, overlay, docs)
        check_wiring(c, overlay, docs)
        check_namespace_isolation(c, overlay, docs)
        check_secrets_documented(c, docs)
    if c.check("prod-tls" in renders, "a render of the prod-tls overlay (components/tls) exists"):
        check_grpc_tls(c, "prod-tls", renders["prod-tls"])
    prod = renders["prod"]
    for svc in SERVICES:
        check_prod_service(c, prod, svc)
    check_alerts(c, prod)
    check_compose(c, schema)
    check_dockerfile(c)
    check_negative_controls(c, prod, schema)
    print(f"check_render: {c.passed} passed, {c.failed} failed, {c.skipped} skipped")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())

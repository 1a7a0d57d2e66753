#!/usr/bin/env python3
"""Offline validation of oms deploy artefacts (run by scripts/check-deploy, inside its venv).

Subcommands (each exits 0 when everything passes, 1 on any finding, printing one line each):

  manifests --k8s-version 1.32 FILE...   rendered multi-document YAML streams:
      * built-in kinds against the Kubernetes OpenAPI schema, strict (kubernetes-validate:
        unknown fields are errors, as `kubectl apply --validate=strict` would make them);
      * custom resources (ServiceMonitor, PrometheusRule, KafkaTopic) against
        deploy/schemas/*.json;
      * oms policy: the properties deploy/README.md promises (Guaranteed QoS, probes, shutdown
        timeline, hardening, secrets only by reference, selectors that match).
  cluster --min-replicas 3 --topics TOPICS_FILE FILE
                                         a rendered overlay runs oms in cluster mode the way
      deploy/README.md ("Scaling") describes: a StatefulSet of >= N replicas (and no more than
      the `orders` partitions of TOPICS_FILE), PodDisruptionBudget, zone/host spread,
      readiness on /ready, OMS_CLUSTER/OMS_NODE_ID/OMS_ADVERTISE_URL, the headless Service,
      peer traffic allowed by the NetworkPolicy, no autoscaler fighting the node count.
  topics STRIMZI_FILE JOB_FILE           the two topic definitions agree.
  dockerfile FILE                        the Dockerfile rules hadolint does not cover.

Policy findings are what a schema cannot see: a Burstable pod validates fine and then cannot
be pinned; a literal Mongo URL validates fine and leaks a password.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv

SCHEMAS = pathlib.Path(__file__).resolve().parent.parent / "schemas"
CUSTOM = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.schema.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.schema.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafkatopic.schema.json",
}
# Settings whose values carry credentials or topology that belongs in a Secret.
SECRET_ENV = {"OMS_KAFKA_BROKERS", "OMS_REDIS_URL", "OMS_MONGO_URL", "OMS_JWT_SECRET"}


def load_stream(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def name_of(doc: dict) -> str:
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


# --- schema -----------------------------------------------------------------------------------

def schema_findings(doc: dict, version: str) -> list[str]:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CUSTOM:
        schema = json.loads((SCHEMAS / CUSTOM[key]).read_text(encoding="utf-8"))
        validator = jsonschema.Draft202012Validator(schema)
        return [
            f"{name_of(doc)}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
        ]
    try:
        kv.validate(doc, version, strict=True)
    except kv.SchemaNotFoundError as e:
        return [f"{name_of(doc)}: {e.message}"]
    except jsonschema.ValidationError as e:
        path = "/".join(map(str, e.absolute_path)) or "<root>"
        return [f"{name_of(doc)}: {path}: {e.message}"]
    return []


# --- policy -----------------------------------------------------------------------------------

def quantity_cpu(q) -> float:
    s = str(q)
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


def image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def pod_spec_of(doc: dict) -> dict | None:
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def env_value_of(stream: list[dict], container: dict, var: str) -> str | None:
    for e in container.get("env") or []:
        if e.get("name") == var and "value" in e:
            return str(e["value"])
    cms = {d["metadata"]["name"]: d for d in stream if d.get("kind") == "ConfigMap"}
    for ef in container.get("envFrom") or []:
        ref = (ef.get("configMapRef") or {}).get("name")
        if ref in cms and var in (cms[ref].get("data") or {}):
            return str(cms[ref]["data"][var])
    return None


def workload_findings(doc: dict, stream: list[dict]) -> list[str]:
    out: list[str] = []
    n = name_of(doc)
    pod = pod_spec_of(doc)
    psc = pod.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        out.append(f"{n}: pod securityContext.runAsNonRoot must be true")
    cm_names = {d["metadata"]["name"] for d in stream if d.get("kind") == "ConfigMap"}
    for c in pod.get("containers") or []:
        cn = f"{n}[{c.get('name')}]"
        sc = c.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{cn}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{cn}: allowPrivilegeEscalation must be false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            out.append(f"{cn}: capabilities.drop must contain ALL")
        if not image_pinned(str(c.get("image", ""))):
            out.append(f"{cn}: image {c.get('image')!r} needs an explicit tag (not latest) or digest")
        for e in c.get("env") or []:
            if e.get("name") in SECRET_ENV and "secretKeyRef" not in (e.get("valueFrom") or {}):
                out.append(f"{cn}: {e.get('name')} must come from a secretKeyRef, never a literal")
        for ef in c.get("envFrom") or []:
            ref = ef.get("configMapRef") or {}
            if ref and not ref.get("optional") and cm_names and ref.get("name") not in cm_names:
                out.append(f"{cn}: envFrom ConfigMap {ref.get('name')!r} is not in the rendered set")
        out += env_reference_findings(cn, c, stream)
    if doc.get("kind") in ("Deployment", "StatefulSet"):
        out += controller_findings(doc, stream)
    return out


def env_reference_findings(cn: str, container: dict, stream: list[dict]) -> list[str]:
    """`$(VAR)` in an env value expands only variables defined before it (envFrom, then the
    earlier env entries); any other reference stays literally `$(VAR)`, silently."""
    known: set[str] = set()
    cms = {d["metadata"]["name"]: d for d in stream if d.get("kind") == "ConfigMap"}
    for ef in container.get("envFrom") or []:
        ref = (ef.get("configMapRef") or {}).get("name")
        known |= set(((cms.get(ref) or {}).get("data") or {}).keys())
    out = []
    for e in container.get("env") or []:
        for var in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(e.get("value", ""))):
            if var not in known:
                out.append(f"{cn}: env {e.get('name')} refers to $({var}), which is not defined "
                           "before it (it would stay literal)")
        known.add(e.get("name"))
    return out


def controller_findings(doc: dict, stream: list[dict]) -> list[str]:
    out: list[str] = []
    n = name_of(doc)
    spec = doc["spec"]
    pod = spec["template"]["spec"]
    if doc["kind"] == "Deployment":
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        if (spec.get("strategy") or {}).get("type") != "RollingUpdate" or ru.get("maxSurge") != 1 \
                or ru.get("maxUnavailable") != 0:
            out.append(f"{n}: strategy must be RollingUpdate maxSurge 1 / maxUnavailable 0")
    else:
        # StatefulSet: RollingUpdate replaces one pod at a time (OnDelete would leave updates to
        # whoever deletes pods; maxUnavailable > 1 takes several nodes down at once).
        us = spec.get("updateStrategy") or {}
        ru = us.get("rollingUpdate") or {}
        if us.get("type", "RollingUpdate") != "RollingUpdate" or ru.get("maxUnavailable", 1) not in (1, "1"):
            out.append(f"{n}: updateStrategy must be RollingUpdate, one pod at a time "
                       "(no maxUnavailable above 1)")
    keys = [(t.get("topologyKey")) for t in pod.get("topologySpreadConstraints") or []]
    if "topology.kubernetes.io/zone" not in keys:
        out.append(f"{n}: needs a topologySpreadConstraint across topology.kubernetes.io/zone")
    if len(keys) != len(set(keys)):
        out.append(f"{n}: duplicate topologyKey in topologySpreadConstraints {keys}")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    for c in pod.get("containers") or []:
        cn = f"{n}[{c.get('name')}]"
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for r in ("cpu", "memory"):
            if r not in req or r not in lim or str(req[r]) != str(lim[r]):
                out.append(f"{cn}: {r} requests must equal limits (Guaranteed QoS)")
        if "cpu" in req and not quantity_cpu(req["cpu"]).is_integer():
            out.append(f"{cn}: cpu request {req['cpu']!r} must be a whole number of cores "
                       "(static CPU manager gives exclusive cores only to integer requests)")
        probes = {
            "readinessProbe": "/ready", "livenessProbe": "/health", "startupProbe": None,
        }
        for probe, path in probes.items():
            p = c.get(probe)
            if not p:
                out.append(f"{cn}: missing {probe}")
            elif path and (p.get("httpGet") or {}).get("path") != path:
                out.append(f"{cn}: {probe} must GET {path}")
        pre = ((c.get("lifecycle") or {}).get("preStop") or {})
        sleep_s = (pre.get("sleep") or {}).get("seconds")
        if sleep_s is None and "exec" in pre:
            cmd = pre["exec"].get("command") or []
            sleep_s = int(cmd[1]) if len(cmd) == 2 and cmd[0].endswith("sleep") else None
        if not sleep_s:
            out.append(f"{cn}: preStop must sleep so the ALB deregisters the target first")
            continue
        drain = env_value_of(stream, c, "OMS_SHUTDOWN_DRAIN_MS")
        drain_s = int(drain) / 1000 if drain else 0
        if not grace > sleep_s + drain_s:
            out.append(f"{cn}: terminationGracePeriodSeconds {grace} must exceed preStop "
                       f"{sleep_s}s + drain {drain_s}s")
    return out


def selector_findings(stream: list[dict]) -> list[str]:
    """Services, PDBs, NetworkPolicies and HPAs must actually find the workload."""
    out: list[str] = []
    deps = {d["metadata"]["name"]: d for d in stream
            if d.get("kind") in ("Deployment", "StatefulSet")}
    pod_labels = [((d["spec"]["template"].get("metadata") or {}).get("labels") or {})
                  for d in deps.values()]

    def matches(sel: dict) -> bool:
        return any(all(lbls.get(k) == v for k, v in sel.items()) for lbls in pod_labels)

    services = {d["metadata"]["name"]: d for d in stream if d.get("kind") == "Service"}
    for d in deps.values():
        if d["kind"] != "StatefulSet":
            continue
        svc = services.get(d["spec"].get("serviceName"))
        if svc is None:
            out.append(f"{name_of(d)}: serviceName {d['spec'].get('serviceName')!r} is not a "
                       "Service in the rendered set (no per-pod DNS names)")
        elif (svc.get("spec") or {}).get("clusterIP") != "None":
            out.append(f"{name_of(d)}: serviceName {svc['metadata']['name']!r} must be headless "
                       "(clusterIP: None)")
    # A ServiceMonitor that selects two Services over the same pods scrapes every pod twice
    # (every series doubled, differing only in the `service` label).
    for m in (d for d in stream if d.get("kind") == "ServiceMonitor"):
        want = (((m.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
        picked = sorted(
            name for name, svc in services.items()
            if all(((svc["metadata"].get("labels") or {}).get(k) == v) for k, v in want.items())
        )
        sels = [tuple(sorted(((services[p].get("spec") or {}).get("selector") or {}).items()))
                for p in picked]
        if len(sels) != len(set(sels)):
            out.append(f"{name_of(m)}: selects Services {picked} over the same pods "
                       "(each pod would be scraped once per Service)")

    for d in stream:
        kind, spec = d.get("kind"), d.get("spec") or {}
        sel = None
        if kind == "Service":
            sel = spec.get("selector") or {}
        elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
            sel = ((spec.get("selector") or spec.get("podSelector") or {}).get("matchLabels")) or {}
        elif kind == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            if ref.get("kind") in ("Deployment", "StatefulSet") and ref.get("name") not in deps:
                out.append(f"{name_of(d)}: scaleTargetRef {ref.get('name')!r} not in the rendered set")
        if sel is not None and deps and not matches(sel):
            out.append(f"{name_of(d)}: selector {sel} matches no pod template")
    for d in stream:
        if d.get("kind") == "ConfigMap":
            leaked = SECRET_ENV & set((d.get("data") or {}).keys())
            if leaked:
                out.append(f"{name_of(d)}: {sorted(leaked)} belong in a Secret, not a ConfigMap")
        if d.get("kind") == "Secret" and (d.get("data") or d.get("stringData")):
            out.append(f"{name_of(d)}: no Secret with values may be committed or rendered")
    return out


def topic_findings(doc: dict) -> list[str]:
    spec = doc.get("spec") or {}
    cfg = spec.get("config") or {}
    out = []
    if spec.get("replicas") != 3:
        out.append(f"{name_of(doc)}: replicas must be 3 (one per AZ)")
    if cfg.get("min.insync.replicas") != 2:
        out.append(f"{name_of(doc)}: min.insync.replicas must be 2")
    return out


def cmd_manifests(version: str, files: list[str]) -> int:
    bad = 0
    for path in files:
        try:
            stream = load_stream(path)
        except yaml.YAMLError as e:
            print(f"FAIL {path}: not YAML: {e}")
            bad += 1
            continue
        findings: list[str] = []
        if not stream:
            findings.append("no documents")
        for doc in stream:
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                findings.append(f"document without apiVersion/kind: {str(doc)[:60]}")
                continue
            findings += schema_findings(doc, version)
            if findings:
                continue  # policy on a schema-invalid object only adds noise
            if pod_spec_of(doc) is not None:
                findings += workload_findings(doc, stream)
            if doc.get("kind") == "KafkaTopic":
                findings += topic_findings(doc)
        if not findings:
            findings += selector_findings(stream)
        for f in findings:
            print(f"FAIL {path} (k8s {version}): {f}")
        if findings:
            bad += 1
        else:
            print(f"ok   {path} (k8s {version}): {len(stream)} objects")
    return 1 if bad else 0


# --- cluster mode ---------------------------------------------------------------------------

def scaled(value, total: int) -> int:
    """An int-or-percent PDB field as a pod count (Kubernetes rounds percentages up)."""
    s = str(value)
    if s.endswith("%"):
        return -(-int(s[:-1]) * total // 100)
    return int(s)


def env_entry(container: dict, var: str) -> tuple[int, dict] | None:
    for i, e in enumerate(container.get("env") or []):
        if e.get("name") == var:
            return i, e
    return None


def allows_peers(rules: list[dict], side: str, pod_labels: dict) -> bool:
    """Some ingress (side="from") or egress (side="to") rule admits the oms pods themselves
    (a podSelector, no namespaceSelector: same namespace) on 8080."""
    for r in rules:
        peers = r.get(side)
        ports = r.get("ports")
        port_ok = not ports or any(str(p.get("port")) in ("8080", "http") for p in ports)
        peer_ok = peers is None or any(
            "podSelector" in p and "namespaceSelector" not in p and "ipBlock" not in p
            and all(pod_labels.get(k) == v
                    for k, v in ((p["podSelector"] or {}).get("matchLabels") or {}).items())
            for p in peers
        )
        if port_ok and peer_ok:
            return True
    return False


def cluster_findings(stream: list[dict], min_replicas: int, partitions: int) -> list[str]:
    out: list[str] = []
    sts = [d for d in stream if d.get("kind") == "StatefulSet"
           and ((d.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/name") == "oms"]
    deps = [d for d in stream if d.get("kind") == "Deployment"]
    if len(sts) != 1 or deps:
        return [f"oms must run as exactly one StatefulSet (stable node ids, per-pod DNS), found "
                f"{len(sts)} StatefulSet(s) and {len(deps)} Deployment(s)"]
    d = sts[0]
    n = name_of(d)
    spec = d["spec"]
    pod = spec["template"]["spec"]
    labels = (spec["template"].get("metadata") or {}).get("labels") or {}
    sel = (spec.get("selector") or {}).get("matchLabels") or {}

    def selects_pods(s: dict) -> bool:
        return bool(s) and all(labels.get(k) == v for k, v in s.items())

    # Node count.
    replicas = spec.get("replicas", 1)
    if replicas < min_replicas:
        out.append(f"{n}: replicas {replicas} < {min_replicas}: cluster mode needs >= "
                   f"{min_replicas} nodes")
    if replicas > partitions:
        out.append(f"{n}: replicas {replicas} > {partitions} partitions of `orders`: "
                   f"{replicas - partitions} node(s) would lead no partition")
    if spec.get("podManagementPolicy") != "Parallel":
        out.append(f"{n}: podManagementPolicy must be Parallel (nodes start independently)")
    for h in (x for x in stream if x.get("kind") == "HorizontalPodAutoscaler"):
        ref = (h.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("name") == d["metadata"]["name"]:
            lo, hi = h["spec"].get("minReplicas", 1), h["spec"].get("maxReplicas")
            if lo < min_replicas or hi > partitions:
                out.append(f"{name_of(h)}: bounds {lo}..{hi} must stay within "
                           f"{min_replicas}..{partitions} (nodes vs. `orders` partitions)")

    # Disruptions: never two nodes down at once.
    pdbs = [p for p in stream if p.get("kind") == "PodDisruptionBudget"
            and selects_pods(((p.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})]
    if not pdbs:
        out.append(f"{n}: no PodDisruptionBudget selects the oms pods")
    for p in pdbs:
        ps = p["spec"]
        if "maxUnavailable" in ps:
            down = scaled(ps["maxUnavailable"], replicas)
        else:
            down = replicas - scaled(ps.get("minAvailable", 0), replicas)
        if down > 1 or down < 1 and replicas > 1:
            out.append(f"{name_of(p)}: allows {down} of {replicas} pods down at once; needs "
                       "exactly 1 (maxUnavailable: 1, or minAvailable: replicas - 1)")

    # Placement: spread over zones (hard) and hosts.
    tsc = {t.get("topologyKey"): t for t in pod.get("topologySpreadConstraints") or []}
    z = tsc.get("topology.kubernetes.io/zone")
    if not z:
        out.append(f"{n}: needs a topologySpreadConstraint across topology.kubernetes.io/zone")
    else:
        if z.get("whenUnsatisfiable") != "DoNotSchedule" or z.get("maxSkew") != 1:
            out.append(f"{n}: zone spread must be maxSkew 1 / DoNotSchedule")
        if not selects_pods(((z.get("labelSelector") or {}).get("matchLabels")) or {}):
            out.append(f"{n}: zone spread labelSelector does not select the oms pods")
    if "kubernetes.io/hostname" not in tsc:
        out.append(f"{n}: needs a topologySpreadConstraint across kubernetes.io/hostname")

    # Per container: readiness = ownership, cluster settings.
    svc_name = spec.get("serviceName")
    for c in pod.get("containers") or []:
        cn = f"{n}[{c.get('name')}]"
        rp = c.get("readinessProbe") or {}
        if (rp.get("httpGet") or {}).get("path") != "/ready":
            out.append(f"{cn}: readinessProbe must GET /ready (it carries the ownership check)")
        if env_value_of(stream, c, "OMS_CLUSTER") != "true":
            out.append(f"{cn}: OMS_CLUSTER must be true")
        if env_value_of(stream, c, "OMS_LOG") != "kafka":
            out.append(f"{cn}: cluster mode needs OMS_LOG=kafka")
        kb = env_entry(c, "OMS_KAFKA_BROKERS")
        if not kb or "secretKeyRef" not in (kb[1].get("valueFrom") or {}):
            out.append(f"{cn}: cluster mode needs OMS_KAFKA_BROKERS (from the Secret)")
        node = env_entry(c, "OMS_NODE_ID")
        field = ((node[1].get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") if node else None
        if field != "metadata.name":
            out.append(f"{cn}: OMS_NODE_ID must come from the pod name (fieldRef metadata.name)")
        adv = env_entry(c, "OMS_ADVERTISE_URL")
        url = str(adv[1].get("value", "")) if adv else ""
        if not adv:
            out.append(f"{cn}: OMS_ADVERTISE_URL must be set")
        elif not re.fullmatch(rf"http://\$\(OMS_NODE_ID\)\.{re.escape(str(svc_name))}\.[^/:]+:8080/?", url):
            out.append(f"{cn}: OMS_ADVERTISE_URL {url!r} must be "
                       f"http://$(OMS_NODE_ID).{svc_name}.<namespace>...:8080 (the pod's DNS name "
                       "under the headless Service)")
        elif node and adv[0] < node[0]:
            out.append(f"{cn}: OMS_ADVERTISE_URL is defined before OMS_NODE_ID: $(OMS_NODE_ID) "
                       "would stay literal")

    # The headless Service behind the per-pod DNS names.
    svcs = {x["metadata"]["name"]: x for x in stream if x.get("kind") == "Service"}
    hs = svcs.get(svc_name)
    if hs is None or (hs.get("spec") or {}).get("clusterIP") != "None":
        out.append(f"{n}: needs a headless Service (clusterIP: None) named by serviceName "
                   f"({svc_name!r})")
    else:
        if not selects_pods((hs.get("spec") or {}).get("selector") or {}):
            out.append(f"{name_of(hs)}: selector does not select the oms pods")
        if not any(p.get("port") == 8080 for p in hs["spec"].get("ports") or []):
            out.append(f"{name_of(hs)}: must expose port 8080 (forwarding)")

    # Pod-to-pod forwarding on 8080 through every NetworkPolicy that selects the pods.
    for np in (x for x in stream if x.get("kind") == "NetworkPolicy"):
        ns = np.get("spec") or {}
        if not selects_pods((ns.get("podSelector") or {}).get("matchLabels") or {}):
            continue
        types = ns.get("policyTypes") or ["Ingress"]
        if "Ingress" in types and not allows_peers(ns.get("ingress") or [], "from", labels):
            out.append(f"{name_of(np)}: ingress from the oms pods on 8080 not allowed "
                       "(peers forward requests to the owner)")
        if "Egress" in types and not allows_peers(ns.get("egress") or [], "to", labels):
            out.append(f"{name_of(np)}: egress to the oms pods on 8080 not allowed "
                       "(peers forward requests to the owner)")
    return out


def orders_partitions(topics_file: str) -> int:
    for t in load_stream(topics_file):
        if t.get("kind") == "KafkaTopic" and \
                (t["spec"].get("topicName") or t["metadata"]["name"]) == "orders":
            return int(t["spec"]["partitions"])
    raise SystemExit(f"{topics_file}: no KafkaTopic `orders`")


def cmd_cluster(min_replicas: int, topics_file: str, files: list[str]) -> int:
    partitions = orders_partitions(topics_file)
    bad = 0
    for path in files:
        findings = cluster_findings(load_stream(path), min_replicas, partitions)
        for f in findings:
            print(f"FAIL {path} (cluster): {f}")
        if findings:
            bad += 1
        else:
            print(f"ok   {path} (cluster): >= {min_replicas} nodes, <= {partitions} partitions")
    return 1 if bad else 0


# --- topics -----------------------------------------------------------------------------------

def job_flags(args: list[str]) -> dict[str, str]:
    return {a: b for a, b in zip(args, args[1:]) if a.startswith("--")}


def cmd_topics(strimzi: str, job: str) -> int:
    topics = [d for d in load_stream(strimzi) if d.get("kind") == "KafkaTopic"]
    jobs = [d for d in load_stream(job) if d.get("kind") == "Job"]
    out = []
    names = sorted((t["spec"].get("topicName") or t["metadata"]["name"]) for t in topics)
    want = sorted(["orders", "executions", "order-updates", "prices", "risk-events", "members", "audit"])
    if names != want:
        out.append(f"KafkaTopics {names} != the topics of ARCHITECTURE §6 {want}")
    if len(jobs) != 1:
        out.append(f"expected one create-topics Job, found {len(jobs)}")
    else:
        c = jobs[0]["spec"]["template"]["spec"]["containers"][0]
        args = [str(a) for a in (c.get("args") or [])]
        if args[:2] != ["admin", "create-topics"]:
            out.append(f"Job must run `oms admin create-topics`, runs {args[:2]}")
        flags = job_flags(args)
        for t in topics:
            s = t["spec"]
            if (s.get("topicName") or t["metadata"]["name"]) == "members":
                # Cluster mode's leader directory: always one partition (one total order of
                # announcements), whatever --partitions says (docs/scale-out.md).
                if s.get("partitions") != 1:
                    out.append(f"{name_of(t)}: members must have 1 partition, has {s.get('partitions')}")
                continue
            expect = {
                "--partitions": str(s.get("partitions")),
                "--replication-factor": str(s.get("replicas")),
                "--min-insync-replicas": str((s.get("config") or {}).get("min.insync.replicas")),
            }
            for flag, val in expect.items():
                if flags.get(flag) != val:
                    out.append(f"{name_of(t)}: Job {flag} {flags.get(flag)} != KafkaTopic {val}")
        if "--kafka-brokers" not in flags:
            out.append("Job must pass --kafka-brokers")
    for f in out:
        print(f"FAIL topics: {f}")
    if not out:
        print(f"ok   topics: {len(topics)} KafkaTopics agree with the create-topics Job")
    return 1 if out else 0


# --- dockerfile -------------------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        out.append((op.upper(), rest.strip()))
    return out


def cmd_dockerfile(path: str) -> int:
    ins = dockerfile_instructions(pathlib.Path(path).read_text(encoding="utf-8"))
    args: dict[str, str] = {}
    out: list[str] = []
    stages: list[dict] = []
    for op, rest in ins:
        if op == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args.setdefault(k.strip(), v.strip().strip('"'))
        elif op == "FROM":
            image = shlex.split(rest)[0]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
            if not image_pinned(image) and image != "scratch" and "$" not in image:
                out.append(f"FROM {image}: base image needs an explicit version tag (not latest)")
            stages.append({"image": image, "user": None, "ops": []})
        elif stages:
            stages[-1]["ops"].append((op, rest))
            if op == "USER":
                stages[-1]["user"] = rest.split(":")[0]
        if op == "RUN" and "apt-get install" in rest:
            if "--no-install-recommends" not in rest:
                out.append("apt-get install without --no-install-recommends")
            if "rm -rf /var/lib/apt/lists" not in rest:
                out.append("apt-get install without removing /var/lib/apt/lists in the same RUN")
        if op == "HEALTHCHECK":
            out.append("HEALTHCHECK: probes belong to Kubernetes (/health, /ready)")
    if len(stages) < 2:
        out.append("expected a multi-stage build (builder + runtime)")
    if stages:
        final = stages[-1]
        if final["user"] in (None, "root", "0"):
            out.append("final stage must switch to a non-root USER")
        elif not final["user"].isdigit():
            out.append("final USER should be numeric so runAsNonRoot can verify it")
        ep = [json.loads(r) for o, r in final["ops"] if o == "ENTRYPOINT" and r.startswith("[")]
        cmd = [json.loads(r) for o, r in final["ops"] if o == "CMD" and r.startswith("[")]
        argv = (ep[-1] if ep else []) + (cmd[-1] if cmd else [])
        if len(argv) < 2 or not argv[0].endswith("/oms") or argv[1] != "serve":
            out.append(f"default command must be `oms serve` in exec form, is {argv}")
    for f in out:
        print(f"FAIL {path}: {f}")
    if not out:
        print(f"ok   {path}: {len(stages)} stages, final USER {stages[-1]['user']}")
    return 1 if out else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "manifests" and argv[1] == "--k8s-version":
        return cmd_manifests(argv[2], argv[3:])
    if len(argv) >= 6 and argv[0] == "cluster" and argv[1] == "--min-replicas" \
            and argv[3] == "--topics":
        return cmd_cluster(int(argv[2]), argv[4], argv[5:])
    if len(argv) == 3 and argv[0] == "topics":
        return cmd_topics(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "dockerfile":
        return cmd_dockerfile(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

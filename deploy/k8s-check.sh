#!/usr/bin/env bash
# Renders the Kubernetes manifests (k8s/base and every k8s/overlays/*) with
# `kubectl kustomize` and checks each render:
#   1. schema: kubernetes-validate (from .venv, see tests/python/requirements.txt) in strict
#      mode against Kubernetes $K8S_VERSION: unknown fields, wrong types, missing required
#      fields. A kind it has no schema for (a CRD) is an error here, not a warning.
#   2. invariants (a short Python pass over the render): probes, resources and hardening on
#      every workload, selectors that match, references that resolve, no secret values
#      outside the dev overlay.
# Prints one summary line per render; exits non-zero on the first failing render.
#
#   deploy/k8s-check.sh            (make k8s-check)
#   K8S_VERSION=1.33.0 deploy/k8s-check.sh
# Works offline once .venv is installed (kubectl embeds kustomize).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

K8S_VERSION=${K8S_VERSION:-1.32.0}
# Renders that may contain Secrets with values (generated, obviously dev-only ones).
SECRETS_ALLOWED_IN=("overlays/dev")

die() { echo "k8s-check: $*" >&2; exit 1; }

command -v kubectl >/dev/null || die "kubectl not found (it provides kustomize)"
deploy/dev/pyenv.sh >&2 # installs kubernetes-validate into .venv; quick when current
[[ -x .venv/bin/kubernetes-validate ]] || die ".venv/bin/kubernetes-validate missing after deploy/dev/pyenv.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

targets=(k8s/base)
for dir in k8s/overlays/*/; do
    [[ -f $dir/kustomization.yaml ]] && targets+=("${dir%/}")
done

for target in "${targets[@]}"; do
    name=${target#k8s/}
    file="$work/${name//\//_}.yaml"

    if ! kubectl kustomize "$target" >"$file" 2>"$work/render.err"; then
        cat "$work/render.err" >&2
        die "$name: kubectl kustomize failed"
    fi

    # kubernetes-validate exits 0 on a kind it has no schema for (it prints WARN): treat
    # any WARN/ERROR/FATAL line as a failure.
    rc=0
    .venv/bin/kubernetes-validate -k "$K8S_VERSION" --strict --quiet "$file" >"$work/validate.log" 2>&1 || rc=$?
    if ((rc != 0)) || grep -qE '^(WARN|ERROR|FATAL)' "$work/validate.log"; then
        sed "s|$work/||" "$work/validate.log" >&2
        die "$name: schema validation failed (kubernetes-validate exit $rc)"
    fi

    allow_secrets=0
    for allowed in "${SECRETS_ALLOWED_IN[@]}"; do
        [[ $name == "$allowed" ]] && allow_secrets=1
    done

    .venv/bin/python - "$file" "$name" "$K8S_VERSION" "$allow_secrets" <<'PY' || die "$name: invariant check failed"
import sys

import yaml

path, name, version, allow_secrets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
docs = [d for d in yaml.safe_load_all(open(path)) if d]
problems = []


def bad(obj, msg):
    problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {msg}")


def by_kind(*kinds):
    return [d for d in docs if d["kind"] in kinds]


def matches(selector, labels):
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        have = e["key"] in labels
        if e["operator"] == "In" and (not have or labels[e["key"]] not in e["values"]):
            return False
        if e["operator"] == "NotIn" and have and labels[e["key"]] in e["values"]:
            return False
        if e["operator"] == "Exists" and not have:
            return False
        if e["operator"] == "DoesNotExist" and have:
            return False
    return True


workloads = by_kind("Deployment", "StatefulSet", "Job")
names = {(d["kind"], d["metadata"]["name"]) for d in docs}
external_secrets = set()

for w in workloads:
    pod = w["spec"]["template"]["spec"]
    pod_sc = pod.get("securityContext") or {}
    # Rookery's own processes (not the dev overlay's Postgres and Redis).
    rookery = w["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/name", "").startswith("rookery-")
    if pod.get("automountServiceAccountToken") is not False:
        bad(w, "automountServiceAccountToken is not false")
    containers = [("container", c) for c in pod["containers"]]
    containers += [("initContainer", c) for c in pod.get("initContainers") or []]
    for what, c in containers:
        where = f"{what} {c['name']}"
        sc = c.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            bad(w, f"{where}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad(w, f"{where}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            bad(w, f"{where}: capabilities do not drop ALL")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            bad(w, f"{where}: runAsNonRoot is not set")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad(w, f"{where}: no seccompProfile")
        res = c.get("resources") or {}
        if not {"cpu", "memory"} <= set(res.get("requests") or {}):
            bad(w, f"{where}: missing cpu/memory requests")
        if "memory" not in (res.get("limits") or {}):
            bad(w, f"{where}: missing memory limit")
        if what == "container" and w["kind"] != "Job":
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    bad(w, f"{where}: no {probe}")
        # ConfigMaps must come from the same render; Secrets that do not are created by
        # the operator and listed in the summary ("?" = optional).
        refs = []
        for e in c.get("envFrom") or []:
            if "configMapRef" in e:
                refs.append(("ConfigMap", e["configMapRef"]))
            if "secretRef" in e:
                refs.append(("Secret", e["secretRef"]))
        for e in c.get("env") or []:
            src = e.get("valueFrom") or {}
            if "configMapKeyRef" in src:
                refs.append(("ConfigMap", src["configMapKeyRef"]))
            if "secretKeyRef" in src:
                refs.append(("Secret", src["secretKeyRef"]))
        for kind, ref in refs:
            if (kind, ref["name"]) in names:
                continue
            if kind == "ConfigMap":
                bad(w, f"{where}: ConfigMap {ref['name']} is not in the render")
            else:
                key = f"/{ref['key']}" if "key" in ref else " (envFrom)"
                external_secrets.add(f"{ref['name']}{key}{'?' if ref.get('optional') else ''}")
    for v in pod.get("volumes") or []:
        if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in names:
            bad(w, f"volume {v['name']}: ConfigMap {v['configMap']['name']} is not in the render")
        if "persistentVolumeClaim" in v and ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) not in names:
            bad(w, f"volume {v['name']}: PVC {v['persistentVolumeClaim']['claimName']} is not in the render")
    if rookery and w["kind"] == "Deployment":
        ann = w["spec"]["template"]["metadata"].get("annotations") or {}
        ports = {p["containerPort"] for c in pod["containers"] for p in c.get("ports") or []}
        if ann.get("prometheus.io/scrape") != "true" or int(ann.get("prometheus.io/port", 0)) not in ports:
            bad(w, "prometheus.io/scrape+port annotations missing or not a container port")
        main = pod["containers"][0]
        sleep = (((main.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds")
        if not sleep:
            bad(w, "no lifecycle.preStop.sleep")
        # preStop + 10 s request drain must fit in the grace period.
        if pod.get("terminationGracePeriodSeconds", 30) < (sleep or 0) + 10:
            bad(w, "terminationGracePeriodSeconds shorter than preStop + 10 s drain")
        keys = {t["topologyKey"] for t in pod.get("topologySpreadConstraints") or []}
        if not {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys:
            bad(w, "topologySpreadConstraints lack zone and hostname")
    if w["kind"] == "Job":
        for field in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
            if field not in w["spec"]:
                bad(w, f"no {field}")

pod_labels = {(w["kind"], w["metadata"]["name"]): w["spec"]["template"]["metadata"].get("labels") or {}
              for w in workloads}
for w in by_kind("Deployment", "StatefulSet"):
    if not matches(w["spec"]["selector"], pod_labels[(w["kind"], w["metadata"]["name"])]):
        bad(w, "selector does not match its pod template")
for s in by_kind("Service"):
    sel = s["spec"].get("selector")
    hits = [k for k, labels in pod_labels.items() if sel and matches({"matchLabels": sel}, labels)]
    if [k for k in hits if k[0] == "Job"]:
        bad(s, f"selector also matches Job pods {[k[1] for k in hits if k[0] == 'Job']}")
    if not [k for k in hits if k[0] != "Job"]:
        bad(s, "selector matches no workload")
for p in by_kind("PodDisruptionBudget"):
    if not [k for k, labels in pod_labels.items() if k[0] != "Job" and matches(p["spec"]["selector"], labels)]:
        bad(p, "selector matches no workload")
for h in by_kind("HorizontalPodAutoscaler"):
    ref = h["spec"]["scaleTargetRef"]
    if (ref["kind"], ref["name"]) not in names:
        bad(h, f"scaleTargetRef {ref['kind']}/{ref['name']} is not in the render")
    elif [d for d in by_kind("Deployment") if d["metadata"]["name"] == ref["name"] and "replicas" in d["spec"]]:
        bad(h, "its Deployment sets spec.replicas (every apply would fight the HPA)")
for i in by_kind("Ingress"):
    for tls in i["spec"].get("tls") or []:
        if ("Secret", tls["secretName"]) not in names:
            external_secrets.add(f"{tls['secretName']} (TLS)")
    for rule in i["spec"].get("rules") or []:
        for p in rule["http"]["paths"]:
            if ("Service", p["backend"]["service"]["name"]) not in names:
                bad(i, f"backend Service {p['backend']['service']['name']} is not in the render")
for s in by_kind("Secret"):
    if not allow_secrets and (s.get("data") or s.get("stringData")):
        bad(s, "Secret with values: only the dev overlay may generate Secrets")
namespaces = {d["metadata"].get("namespace") for d in docs}
if name.startswith("overlays/") and (len(namespaces) != 1 or None in namespaces):
    problems.append(f"resources are not all in one namespace: {sorted(map(str, namespaces))}")

if problems:
    for p in problems:
        print(f"k8s-check: {name}: {p}", file=sys.stderr)
    sys.exit(1)

ns = next(iter(namespaces)) or "-"
kinds = {}
for d in docs:
    kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
print(f"k8s-check: {name}: {len(docs)} resources validated (Kubernetes {version}, strict), "
      f"invariants ok; namespace {ns}; "
      f"{kinds.get('Deployment', 0)} Deployments, {kinds.get('Job', 0)} Jobs; "
      f"external Secrets: {', '.join(sorted(external_secrets)) or 'none'}")
PY
done

#!/usr/bin/env bash
# Checks the observability assets in this folder; run from anywhere:
#   deploy/observability/check.sh
#
# With promtool on PATH (Debian: apt-get install prometheus):
#   - promtool check config prometheus/prometheus.yml (and prometheus/scrape-cadvisor.yml)
#   - promtool check rules  prometheus/rules/*.yml
#   - promtool test rules   prometheus/tests/*.yml
#   - every PromQL `expr` of the Grafana dashboard, through promtool check rules
# Always:
#   - the dashboard is valid JSON with the expected structure (datasource variable, ids)
#   - the metric names used by rules and dashboard are exported by crates/*/src (or are
#     Prometheus/Kubernetes metrics, or recording rules defined here)
#   - the OTel collector config parses as YAML and its pipelines name defined components
#     (needs PyYAML: python3's, or the repo's .venv; skipped with a message otherwise)
# Exits non-zero on the first failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
repo="$(cd ../.. && pwd)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step() { printf '==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
fail() { printf '    FAILED: %s\n' "$*" >&2; exit 1; }
indented() { "$@" 2>&1 | sed 's/^/    /'; return "${PIPESTATUS[0]}"; }

command -v python3 >/dev/null || fail "python3 is required"

# A Python with PyYAML, if there is one.
yaml_py=""
for py in python3 "$repo/.venv/bin/python"; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml' 2>/dev/null; then
        yaml_py="$py"
        break
    fi
done

# ---------------------------------------------------------------------------- dashboard
step "grafana/rookery-dashboard.json: JSON and structure"
python3 - grafana/rookery-dashboard.json "$tmp/dashboard-rules.yml" <<'PY'
import json, re, sys

path, rules_out = sys.argv[1], sys.argv[2]
with open(path) as f:
    d = json.load(f)  # raises on invalid JSON
errors = []
for key in ("uid", "title", "schemaVersion", "panels", "templating"):
    if key not in d:
        errors.append(f"missing top-level key {key!r}")
variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    errors.append("no `datasource` template variable of type datasource/prometheus")
for name in ("service", "route"):
    if name not in variables:
        errors.append(f"no `{name}` template variable")
ids, exprs = set(), []
for p in d.get("panels", []):
    pid = p.get("id")
    if pid in ids:
        errors.append(f"duplicate panel id {pid}")
    ids.add(pid)
    if p.get("type") == "row":
        continue
    if p.get("datasource", {}).get("uid") != "${datasource}":
        errors.append(f"panel {p.get('title')!r}: datasource is not ${{datasource}}")
    for t in p.get("targets", []):
        if t.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"panel {p.get('title')!r} target {t.get('refId')}: datasource is not ${{datasource}}")
        e = t.get("expr", "").strip()
        if not e:
            errors.append(f"panel {p.get('title')!r} target {t.get('refId')}: empty expr")
        exprs.append((p.get("title"), t.get("refId"), e))
if errors:
    print("\n".join("    FAILED: " + e for e in errors), file=sys.stderr)
    sys.exit(1)

# Grafana variables -> something PromQL accepts, for the syntax check.
def concrete(e):
    e = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", e)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?", ".+", e)

with open(rules_out, "w") as f:
    f.write("groups:\n  - name: dashboard-exprs\n    rules:\n")
    for i, (title, ref, e) in enumerate(exprs):
        f.write(f"      # {title} / {ref}\n")
        f.write(f"      - record: dashboard:expr_{i}\n        expr: {json.dumps(concrete(e))}\n")
print(f"    ok: {len(d['panels'])} panels, {len(exprs)} queries, variables: {', '.join(variables)}")
PY

# ---------------------------------------------------------------------------- metric names
step "metric names used by rules and dashboard exist"
python3 - "$repo" prometheus/rules/*.yml grafana/rookery-dashboard.json <<'PY'
import glob, json, os, re, sys

repo, files = sys.argv[1], sys.argv[2:]
exprs, recorded = [], set()
for path in files:
    text = open(path).read()
    if path.endswith(".json"):
        for p in json.loads(text)["panels"]:
            exprs += [t["expr"] for t in p.get("targets", [])]
    else:
        # No YAML parser needed: rule files here keep `record:` and `expr:` simple.
        recorded |= set(re.findall(r"^\s*- record:\s*(\S+)", text, re.M))
        for m in re.finditer(r"^(\s*)expr:\s*(\|)?(.*)$", text, re.M):
            if m.group(2):
                indent, body = None, []
                for line in text[m.end() + 1:].splitlines():
                    if not line.strip():
                        body.append(line); continue
                    ind = len(line) - len(line.lstrip())
                    if indent is None:
                        indent = ind
                    if ind < indent:
                        break
                    body.append(line)
                exprs.append("\n".join(body))
            else:
                exprs.append(m.group(3))

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan"}
names = set()
for e in exprs:
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)          # string literals
    e = re.sub(r"\{[^}]*\}", "", e)                      # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                     # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?!\w)(\s*\()?", e):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)

sources = ""
for path in glob.glob(os.path.join(repo, "crates", "*", "src", "**", "*.rs"), recursive=True):
    sources += open(path, encoding="utf-8", errors="replace").read()
EXTERNAL = re.compile(r"^(up|kube_\w+|container_\w+)$")
missing = []
for name in sorted(names):
    if ":" in name:
        if name not in recorded:
            missing.append(f"{name} (recording rule not defined)")
        continue
    if EXTERNAL.match(name):
        continue
    base = re.sub(r"_(bucket|count|sum)$", "", name)
    if not sources:
        continue
    if f'"{base}"' not in sources and f'"{name}"' not in sources:
        missing.append(f"{name} (not found in crates/*/src)")
if missing:
    print("\n".join("    FAILED: unknown metric: " + m for m in missing), file=sys.stderr)
    sys.exit(1)
where = "crates/*/src" if sources else "no crates/ found: Rookery names not cross-checked"
print(f"    ok: {len(names)} metric names ({where})")
PY

# ---------------------------------------------------------------------------- collector
step "otel-collector/config.yaml"
if [[ -z "$yaml_py" ]]; then
    printf '    skipped: no Python with PyYAML (python3 or %s)\n' "$repo/.venv/bin/python"
else
    "$yaml_py" - otel-collector/config.yaml <<'PY'
import sys, yaml

c = yaml.safe_load(open(sys.argv[1]))
errors = []
service = c.get("service") or {}
for ext in service.get("extensions", []):
    if ext not in (c.get("extensions") or {}):
        errors.append(f"service.extensions: {ext!r} not defined under extensions")
pipelines = service.get("pipelines") or {}
if not pipelines:
    errors.append("service.pipelines is empty")
for name, p in pipelines.items():
    for kind in ("receivers", "processors", "exporters"):
        for comp in p.get(kind, []):
            if comp not in (c.get(kind) or {}):
                errors.append(f"pipeline {name}: {kind[:-1]} {comp!r} not defined under {kind}")
    if not p.get("receivers") or not p.get("exporters"):
        errors.append(f"pipeline {name}: needs receivers and exporters")
    procs = p.get("processors", [])
    if "memory_limiter" in procs and procs[0] != "memory_limiter":
        errors.append(f"pipeline {name}: memory_limiter must come first")
if "logging" in (c.get("exporters") or {}):
    errors.append("exporter `logging` was removed from the collector: use `debug`")
if errors:
    print("\n".join("    FAILED: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"    ok: parses; pipelines {', '.join(pipelines)} reference defined components")
PY
fi

# ---------------------------------------------------------------------------- promtool
if ! command -v promtool >/dev/null 2>&1; then
    step "promtool not installed; skipping promtool check config/rules and promtool test rules"
    echo "    (Debian/Ubuntu: apt-get install prometheus)"
    echo "All checks passed (promtool checks skipped)."
    exit 0
fi
step "promtool: $(promtool --version 2>&1 | head -n1)"

# Debian's prometheus package is built without Kubernetes service discovery: its promtool
# rejects kubernetes_sd_configs outright. With such a promtool, configs are checked as a
# copy whose kubernetes_sd_configs blocks (their `role` checked here) become an empty
# static_configs: everything else (relabelling, rule files, the other jobs) is still
# checked by promtool.
printf 'scrape_configs:\n  - job_name: probe\n    kubernetes_sd_configs:\n      - role: pod\n' > "$tmp/probe.yml"
k8s_sd=yes
probe_out="$(promtool check config "$tmp/probe.yml" 2>&1 || true)"
if [[ "$probe_out" == *"kubernetes_sd_configs not found"* ]]; then
    k8s_sd=no
    echo "    this promtool has no Kubernetes service discovery (Debian build): configs are checked without their kubernetes_sd_configs blocks"
fi

check_config() { # file [stand-in service-account files: yes|no]
    local file="$1" stand_in="${2:-no}"
    if [[ "$k8s_sd" == yes && "$stand_in" == no ]]; then
        promtool check config "$file" 2>&1 | sed 's/^/    /'
        return "${PIPESTATUS[0]}"
    fi
    [[ -n "$yaml_py" ]] || { echo "    FAILED: checking a modified copy needs a Python with PyYAML" >&2; return 1; }
    : > "$tmp/stand-in-token"
    : > "$tmp/stand-in-ca.crt"
    local copy
    copy="$tmp/checked-$(basename "$file")"
    "$yaml_py" - "$file" "$copy" "$tmp" "$k8s_sd" "$stand_in" <<'PY' || return 1
import os, sys, yaml

src, dst, tmp, k8s_sd, stand_in = sys.argv[1:6]
base = os.path.dirname(os.path.abspath(src))
c = yaml.safe_load(open(src))
# The copy lives elsewhere: rule_files stay relative to the original.
c["rule_files"] = [p if os.path.isabs(p) else os.path.join(base, p) for p in c.get("rule_files") or []]
roles = {"pod", "node", "service", "endpoints", "endpointslice", "ingress"}
for job in c.get("scrape_configs") or []:
    if k8s_sd == "no" and "kubernetes_sd_configs" in job:
        for entry in job.pop("kubernetes_sd_configs"):
            if entry.get("role") not in roles:
                sys.exit(f"    FAILED: job {job.get('job_name')}: kubernetes_sd_configs role {entry.get('role')!r}")
        job.setdefault("static_configs", [])
    if stand_in == "yes":
        # Service-account files exist only inside a pod.
        auth = job.get("authorization") or {}
        if str(auth.get("credentials_file", "")).startswith("/var/run/secrets/"):
            auth["credentials_file"] = os.path.join(tmp, "stand-in-token")
        tls = job.get("tls_config") or {}
        if str(tls.get("ca_file", "")).startswith("/var/run/secrets/"):
            tls["ca_file"] = os.path.join(tmp, "stand-in-ca.crt")
yaml.safe_dump(c, open(dst, "w"), sort_keys=False)
PY
    promtool check config "$copy" 2>&1 | sed "s|$tmp/checked-||; s/^/    /"
    return "${PIPESTATUS[0]}"
}

step "promtool check config prometheus/prometheus.yml"
check_config prometheus/prometheus.yml || fail "prometheus/prometheus.yml"

step "promtool check config prometheus/scrape-cadvisor.yml (stand-in service-account token)"
check_config prometheus/scrape-cadvisor.yml yes || fail "prometheus/scrape-cadvisor.yml"

step "promtool check rules prometheus/rules/*.yml"
indented promtool check rules prometheus/rules/*.yml || fail "rules"

step "promtool test rules prometheus/tests/*.yml"
indented promtool test rules prometheus/tests/*.yml || fail "rule unit tests"

step "promtool check rules <dashboard queries>"
(cd "$tmp" && indented promtool check rules dashboard-rules.yml) \
    || fail "dashboard queries (rule N is the dashboard's Nth query; $tmp is removed on exit)"

echo "All checks passed."

#!/usr/bin/env python3
"""Generates src/k8s_proto_fields.json: the protobuf field numbers of the Kubernetes built-in
types the simulator serves, so it can read the protobuf request bodies of client-go's typed
clients (kubectl create configmap, ...).

Reads the generated.proto files of k8s.io/api and k8s.io/apimachinery at a release tag from
bare git mirrors:

    scripts/gen-proto-fields.py API_GIT_DIR APIMACHINERY_GIT_DIR TAG > src/k8s_proto_fields.json

Output: {"source": ..., "kinds": {"apps/v1/Deployment": "k8s.io.api.apps.v1.Deployment", ...},
"messages": {"<full name>": [[number, "jsonName", "type", flags], ...]}} where type is a scalar
("string", "bool", "int32", "int64", "double", "bytes", ...), "map:<key>:<value>" or a fully
qualified message name; jsonName is "" for a Go struct embedded with `json:",inline"` (its
fields appear in the parent's JSON); flags: 1 repeated, 2 `omitempty`, 4 Go pointer. JSON names,
inlining, omitempty and pointers come from the Go struct tags of the same packages (matched by
message name and field number). Only messages reachable from the served kinds are kept.
"""
import json
import re
import subprocess
import sys

API_FILES = {
    "": "core/v1", "apps": "apps/v1", "batch": "batch/v1", "autoscaling": "autoscaling/v2",
    "networking.k8s.io": "networking/v1", "rbac.authorization.k8s.io": "rbac/v1",
    "certificates.k8s.io": "certificates/v1", "policy": "policy/v1", "storage.k8s.io": "storage/v1",
    "admissionregistration.k8s.io": "admissionregistration/v1", "scheduling.k8s.io": "scheduling/v1",
    "coordination.k8s.io": "coordination/v1", "discovery.k8s.io": "discovery/v1",
}
EXTRA_API_FILES = ["autoscaling/v1"]
MACHINERY_FILES = ["pkg/apis/meta/v1", "pkg/api/resource", "pkg/util/intstr", "pkg/runtime", "pkg/runtime/schema"]
KINDS = {
    "": ["Namespace", "ConfigMap", "Secret", "Service", "ServiceAccount", "Pod", "ResourceQuota", "LimitRange",
         "PersistentVolumeClaim", "PersistentVolume", "Endpoints", "Event", "Node", "ReplicationController"],
    "apps": ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ControllerRevision"],
    "autoscaling": ["HorizontalPodAutoscaler"],
    "batch": ["Job", "CronJob"],
    "certificates.k8s.io": ["CertificateSigningRequest"],
    "networking.k8s.io": ["NetworkPolicy", "Ingress", "IngressClass"],
    "policy": ["PodDisruptionBudget"],
    "rbac.authorization.k8s.io": ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"],
    "storage.k8s.io": ["StorageClass"],
    "admissionregistration.k8s.io": ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"],
    "scheduling.k8s.io": ["PriorityClass"],
    "coordination.k8s.io": ["Lease"],
    "discovery.k8s.io": ["EndpointSlice"],
}
FIELD = re.compile(r"^\s*(optional|repeated)?\s*(map<\s*([\w.]+)\s*,\s*([\w.]+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;")
SCALARS = {"string", "bool", "int32", "int64", "uint32", "uint64", "double", "float", "bytes", "sint32", "sint64", "fixed32", "fixed64"}


def show(git_dir, tag, path):
    return subprocess.run(["git", "-C", git_dir, "show", f"{tag}:{path}"], check=True, capture_output=True, text=True).stdout


def parse(text, messages):
    package = re.search(r"^package ([\w.]+);", text, re.M).group(1)
    current = None
    for line in text.splitlines():
        start = re.match(r"^message (\w+) \{", line)
        if start:
            current = f"{package}.{start.group(1)}"
            messages[current] = []
            continue
        if line.startswith("}"):
            current = None
            continue
        match = FIELD.match(line)
        if current and match:
            label, whole, key, value, name, number = match.groups()

            def qualify(type_name):
                if type_name in SCALARS:
                    return type_name
                if type_name.startswith("."):
                    return type_name[1:]
                return f"{package}.{type_name}"

            if key:
                kind = f"map:{qualify(key)}:{qualify(value)}"
            else:
                kind = qualify(whole)
            messages[current].append([int(number), name, kind, 1 if label == "repeated" else 0])
    return package


GO_FIELD = re.compile(r"^\s+(?:(\w+)\s+)?(\*?)[\w.\[\]*]+\s+`([^`]*)`")
JSON_TAG = re.compile(r'json:"([^"]*)"')
PROTO_TAG = re.compile(r'protobuf:"\w+,(\d+),')
GO_STRUCT = re.compile(r"^type (\w+) struct \{")


def go_tags(git_dir, tag, directory, package, tags):
    """Reads json tags of every struct field with a protobuf tag in the package's .go files."""
    listing = subprocess.run(["git", "-C", git_dir, "ls-tree", "--name-only", f"{tag}:{directory}"], check=True, capture_output=True, text=True).stdout.split()
    for name in listing:
        if not name.endswith(".go") or name.endswith("_test.go") or name.startswith("zz_generated") or name == "generated.pb.go":
            continue
        struct = None
        for line in show(git_dir, tag, f"{directory}/{name}").splitlines():
            start = GO_STRUCT.match(line)
            if start:
                struct = f"{package}.{start.group(1)}"
                continue
            if line.startswith("}"):
                struct = None
                continue
            match = GO_FIELD.match(line) if struct else None
            json_tag = JSON_TAG.search(match.group(3)) if match else None
            proto_tag = PROTO_TAG.search(match.group(3)) if match else None
            if json_tag and proto_tag:
                parts = json_tag.group(1).split(",")
                tags[(struct, int(proto_tag.group(1)))] = (parts[0], "omitempty" in parts[1:], match.group(2) == "*")


def main():
    api_dir, machinery_dir, tag = sys.argv[1:4]
    messages = {}
    packages = {}
    tags = {}
    for group, path in API_FILES.items():
        packages[group] = parse(show(api_dir, tag, f"{path}/generated.proto"), messages)
        go_tags(api_dir, tag, path, packages[group], tags)
    for path in EXTRA_API_FILES:
        go_tags(api_dir, tag, path, parse(show(api_dir, tag, f"{path}/generated.proto"), messages), tags)
    for path in MACHINERY_FILES:
        go_tags(machinery_dir, tag, path, parse(show(machinery_dir, tag, f"{path}/generated.proto"), messages), tags)
    untagged = []
    for name, fields in messages.items():
        for field in fields:
            json_name, omitempty, pointer = tags.get((name, field[0]), (field[1], True, False))
            if (name, field[0]) not in tags:
                untagged.append(f"{name}.{field[1]}")
            field[1] = json_name
            field[3] = (1 if field[3] else 0) | (2 if omitempty else 0) | (4 if pointer else 0)
    kinds = {}
    roots = []
    for group, names in KINDS.items():
        version = API_FILES[group].split("/")[1]
        for kind in names:
            full = f"{packages[group]}.{kind}"
            assert full in messages, full
            kinds[f"{group}/{version}/{kind}" if group else f"{version}/{kind}"] = full
            roots.append(full)
    meta = "k8s.io.apimachinery.pkg.apis.meta.v1"
    kinds["DeleteOptions"] = f"{meta}.DeleteOptions"
    kinds["autoscaling/v1/Scale"] = "k8s.io.api.autoscaling.v1.Scale"
    roots += [f"{meta}.DeleteOptions", "k8s.io.api.autoscaling.v1.Scale"]
    keep = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in keep or name not in messages:
            continue
        keep.add(name)
        for _, _, kind, _ in messages[name]:
            for part in kind.split(":"):
                if part in messages:
                    stack.append(part)
    untagged = [field for field in untagged if field.rsplit(".", 1)[0] in keep]
    print(f"fields without Go tags (proto name used): {untagged}", file=sys.stderr)
    output = {
        "source": {"api": f"k8s.io/api {tag}", "apimachinery": f"k8s.io/apimachinery {tag}", "generator": "scripts/gen-proto-fields.py"},
        "kinds": dict(sorted(kinds.items())),
        "messages": {name: messages[name] for name in sorted(keep)},
    }
    text = json.dumps(output, separators=(",", ":"))
    # One message per line keeps diffs readable.
    text = text.replace('],"k8s.io', '],\n"k8s.io').replace('{"k8s.io', '{\n"k8s.io')
    print(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generate crates/emco-patch/src/k8s_patch_metadata.json from the Kubernetes OpenAPI definitions.

The strategic-merge-patch engine in crates/emco-patch needs, for the Kubernetes built-in types,
which lists merge by key (x-kubernetes-patch-strategy / x-kubernetes-patch-merge-key), which maps
replace (patch strategy "replace"), the list types and list map keys, and the type of each nested
field so it can walk down an object. This script extracts only those facts from the JSON-schema
definitions shipped in the PyPI package `kubernetes-validate` and writes them as a small,
reviewable JSON file (one line per field).

Usage (from the repository root):

    python3 scripts/gen-patch-metadata.py                      # pip-downloads the wheel itself
    python3 scripts/gen-patch-metadata.py --wheel PATH.whl     # use an already downloaded wheel
    python3 scripts/gen-patch-metadata.py --check [--wheel ..] # exit 1 if the checked-in file is stale

The output is deterministic (sorted keys, fixed formatting), so re-running it on the same wheel
gives a byte-identical file; `--check` compares instead of writing.

What is kept:
  * "kinds": apiVersion/kind ("apps/v1/Deployment", core group as "v1/Pod") -> definition name,
    from x-kubernetes-group-version-kind (meta.v1 helper kinds such as DeleteOptions are skipped);
  * "types": for every definition reachable from those kinds, the fields that are arrays, maps,
    carry patch/list metadata, or lead (transitively) to a definition that has such fields.
    Plain scalar fields are left out: the engine treats an unlisted field as untyped, which for a
    scalar or a struct without lists/maps gives exactly the same patch result.
  * a field's "type" is "scalar", "any" (free-form object), a definition name, or
    {"items": T} / {"values": T} for arrays and maps.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "kubernetes-validate"
PACKAGE_VERSION = "1.37.0"
SCHEMA_VERSION = "v1.33.0-local"
DEFS_PATH = f"kubernetes_validate/kubernetes-json-schema/{SCHEMA_VERSION}/_definitions.json"
REF_PREFIX = "#/$defs/"
META_PREFIX = "io.k8s.apimachinery.pkg.apis.meta.v1."
# meta.v1 types that are real parts of objects (ObjectMeta etc.) stay; only their GVK entries go.
OUTPUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "crates", "emco-patch", "src", "k8s_patch_metadata.json"
)
FIELD_META_KEYS = [
    ("x-kubernetes-patch-strategy", "patchStrategy"),
    ("x-kubernetes-patch-merge-key", "patchMergeKey"),
    ("x-kubernetes-list-type", "listType"),
    ("x-kubernetes-list-map-keys", "listMapKeys"),
]


def load_definitions(wheel):
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(DEFS_PATH)
    return raw, json.loads(raw)["$defs"]


def download_wheel(directory):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--dest", directory, f"{PACKAGE}=={PACKAGE_VERSION}"],
        check=True,
    )
    for name in os.listdir(directory):
        if name.endswith(".whl"):
            return os.path.join(directory, name)
    raise SystemExit("pip download produced no wheel")


def types_of(schema):
    kind = schema.get("type")
    if kind is None:
        return set()
    return set(kind) if isinstance(kind, list) else {kind}


def is_struct(defs, name):
    return bool(defs[name].get("properties"))


def raw_type(defs, schema):
    """The field's value type before pruning: def name, "scalar", "any", {"items"}, {"values"}."""
    if "$ref" in schema:
        name = schema["$ref"][len(REF_PREFIX):]
        if is_struct(defs, name):
            return name
        # Quantity, Time, IntOrString, ... are scalars; RawExtension / JSON are free-form.
        kinds = types_of(defs[name]) - {"null"}
        if "oneOf" in defs[name] or (kinds and kinds <= {"string", "integer", "number", "boolean"}):
            return "scalar"
        return "any"
    kinds = types_of(schema)
    if "array" in kinds:
        return {"items": raw_type(defs, schema.get("items", {}))}
    if "object" in kinds:
        if isinstance(schema.get("additionalProperties"), dict):
            return {"values": raw_type(defs, schema["additionalProperties"])}
        return "any"
    return "scalar"


def referenced_defs(texpr):
    if isinstance(texpr, dict):
        return referenced_defs(next(iter(texpr.values())))
    if texpr in ("scalar", "any"):
        return []
    return [texpr]


def build(defs):
    kinds = {}
    for name, definition in defs.items():
        if name.startswith(META_PREFIX):
            continue
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            kinds[f"{api_version}/{gvk['kind']}"] = name

    # Every struct definition reachable from a kind, with each field's raw type and metadata.
    fields = {}
    pending = sorted(set(kinds.values()))
    while pending:
        name = pending.pop()
        if name in fields or not is_struct(defs, name):
            continue
        fields[name] = {}
        for field, schema in sorted(defs[name]["properties"].items()):
            texpr = raw_type(defs, schema)
            meta = {out: schema[key] for key, out in FIELD_META_KEYS if key in schema}
            fields[name][field] = (texpr, meta)
            pending.extend(d for d in referenced_defs(texpr) if d not in fields)

    # A definition is kept if one of its fields is an array, a map or carries metadata, or refers
    # to a kept definition (fixpoint: the definitions are recursive, e.g. JSONSchemaProps).
    def direct_interest(texpr, meta):
        return bool(meta) or isinstance(texpr, dict)

    kept = {name for name, fs in fields.items() if any(direct_interest(t, m) for t, m in fs.values())}
    changed = True
    while changed:
        changed = False
        for name, fs in fields.items():
            if name not in kept and any(set(referenced_defs(t)) & kept for t, _ in fs.values()):
                kept.add(name)
                changed = True

    def prune(texpr):
        """Replace references to dropped (boring) definitions by "any": same patch behaviour."""
        if isinstance(texpr, dict):
            (key, inner), = texpr.items()
            return {key: prune(inner)}
        if texpr in ("scalar", "any") or texpr in kept:
            return texpr
        return "any"

    types = {}
    for name in sorted(kept):
        entries = {}
        for field, (texpr, meta) in fields[name].items():
            if direct_interest(texpr, meta) or set(referenced_defs(texpr)) & kept:
                entries[field] = dict(type=prune(texpr), **meta)
        types[name] = entries
    return {k: v for k, v in sorted(kinds.items())}, types


def render(source, kinds, types):
    """Stable, diff-friendly JSON: one line per kind and per field."""
    dump = lambda value: json.dumps(value, sort_keys=True, separators=(", ", ": "))
    lines = ["{", f'  "source": {dump(source)},', '  "kinds": {']
    lines += [f"    {dump(k)}: {dump(v)}," for k, v in kinds.items()]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["  },", '  "types": {']
    for index, (name, entries) in enumerate(types.items()):
        lines.append(f"    {dump(name)}: {{")
        lines += [f"      {dump(f)}: {dump(e)}," for f, e in entries.items()]
        lines[-1] = lines[-1].rstrip(",")
        lines.append("    }" + ("," if index + 1 < len(types) else ""))
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", help=f"path to {PACKAGE}-{PACKAGE_VERSION} wheel (default: pip download it)")
    parser.add_argument("--check", action="store_true", help="compare with the checked-in file instead of writing")
    parser.add_argument("--output", default=OUTPUT, help="where to write (default: the crate's file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        wheel = args.wheel or download_wheel(scratch)
        raw, defs = load_definitions(wheel)
    source = {
        "package": f"{PACKAGE}=={PACKAGE_VERSION}",
        "file": DEFS_PATH,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "generator": "scripts/gen-patch-metadata.py",
    }
    kinds, types = build(defs)
    text = render(source, kinds, types)
    if args.check:
        with open(args.output, encoding="utf-8") as current:
            if current.read() != text:
                print(f"{args.output} is stale: re-run scripts/gen-patch-metadata.py", file=sys.stderr)
                return 1
        print(f"{args.output} is up to date")
        return 0
    with open(args.output, "w", encoding="utf-8") as out:
        out.write(text)
    print(f"wrote {args.output}: {len(kinds)} kinds, {len(types)} types, "
          f"{sum(len(e) for e in types.values())} fields")
    return 0


if __name__ == "__main__":
    sys.exit(main())

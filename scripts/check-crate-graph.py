#!/usr/bin/env python3
"""Checks that the workspace's crates depend on each other only one way (ARCHITECTURE.md), and
that the sans-IO crates pull in no IO crate. Reads `cargo metadata`; exits 1 naming each
violation."""
import json
import subprocess
import sys

# Normal (non-dev) dependencies each workspace crate may have on the others.
ALLOWED = {
    "mimi-content": set(),
    "mimi-proto": set(),
    "mimi-adapters": {"mimi-content", "mimi-proto"},
    "mimi-mls-storage": set(),
    "mimi-listen": set(),
    "mimi-engine": {"mimi-content", "mimi-proto", "mimi-mls-storage"},
    "mimi-client": {"mimi-content", "mimi-proto", "mimi-mls-storage"},
    "mimi-session": {"mimi-client", "mimi-content", "mimi-proto"},
    "mimi-bridges": {"mimi-adapters", "mimi-client", "mimi-session", "mimi-listen", "mimi-content", "mimi-proto", "mimi-mls-storage"},
    "mimi-gateway": {"mimi-engine", "mimi-bridges", "mimi-listen", "mimi-adapters", "mimi-content", "mimi-proto"},
    "mimi-tools": {"mimi-gateway", "mimi-bridges", "mimi-adapters", "mimi-engine", "mimi-session", "mimi-client", "mimi-content", "mimi-proto"},
    "mimi": {"mimi-gateway", "mimi-tools", "mimi-bridges", "mimi-adapters", "mimi-content", "mimi-proto"},
    "mimi-conformance": {"mimi-tools", "mimi-session", "mimi-client", "mimi-content", "mimi-proto"},
}
# Crates that must stay free of IO (checked over their whole normal dependency tree).
SANS_IO = ["mimi-content", "mimi-proto", "mimi-adapters", "mimi-mls-storage", "mimi-engine", "mimi-client"]
IO_CRATES = {"tokio", "mio", "quinn", "h3", "h3-quinn", "hyper", "redb", "tokio-postgres", "reqwest"}

meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--locked"]))
members = {p["id"]: p for p in meta["packages"] if p["id"] in meta["workspace_members"]}
names = {p["name"] for p in members.values()}
errors = []
for p in members.values():
    name = p["name"]
    if name not in ALLOWED:
        errors.append(f"{name}: not in the crate graph of scripts/check-crate-graph.py")
        continue
    for d in p["dependencies"]:
        if d["name"] in names and d["kind"] is None and d["name"] not in ALLOWED[name]:
            errors.append(f"{name} must not depend on {d['name']} (see ARCHITECTURE.md)")

# Each sans-IO crate's normal dependencies with the features it enables itself (`cargo tree -p`
# resolves features for that crate alone; the workspace-wide resolve of `cargo metadata` would
# charge it with features another crate turns on, such as the bridges' async XML reader).
for name in SANS_IO:
    out = subprocess.check_output(
        ["cargo", "tree", "-p", name, "-e", "normal", "--prefix", "none", "--format", "{p}", "--locked"],
        text=True)
    deps = {line.split(" ")[0] for line in out.splitlines() if line.strip()}
    bad = sorted(deps & IO_CRATES)
    if bad:
        errors.append(f"{name} must stay sans-IO but depends on {', '.join(bad)}")

for e in errors:
    print(e, file=sys.stderr)
sys.exit(1 if errors else 0)

#!/usr/bin/env python3
"""Proves the security group's power: each check of the gateway is broken on purpose, in a
scratch copy of the committed tree, and the attack aimed at it must then FAIL (while it
passes on the intact tree). Prints one line per mutation and a Markdown table for
conformance/TESTS.md.

    scripts/security-mutations.py [--only ID]

Each mutation rebuilds the gateway (incrementally, in target/mutations) and runs the one
attack through scripts/conformance-selftest.sh; allow about a minute per mutation.
Not part of the test command (it takes ~20 minutes); rerun it when a check changes.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (attack ID, file, text to find exactly once, replacement, what is broken)
MUTATIONS = [
    ("sec-submit-foreign-sender", "gateway/engine/src/hub/submit.rs",
     "if !caller.speaks_for(&sender) {", "if false && !caller.speaks_for(&sender) {",
     "/submitMessage: sendingUri must belong to the calling provider"),
    ("sec-submit-non-member", "gateway/engine/src/hub/submit.rs",
     "        if !allowed {", "        if false && !allowed {",
     "/submitMessage: the sender must be a participant allowed to send"),
    ("sec-add-third-provider-device", "gateway/engine/src/hub/commit.rs",
     "self.check_kp_route(room, kp, &user)?;", "let _ = self.check_kp_route(room, kp, &user);",
     "an added device's KeyPackage must have come through this hub from its provider"),
    ("sec-add-hub-user-device", "gateway/engine/src/hub/commit.rs",
     "self.check_kp_route(room, kp, &user)?;", "let _ = self.check_kp_route(room, kp, &user);",
     "(same check, a device claiming the hub's own user)"),
    ("sec-remove-without-right", "gateway/engine/src/policy/rules.rs",
     "if !has(before, actor, capability::CAN_REMOVE_PARTICIPANT) || !may(before, actor, from, 0) {",
     "if false {",
     "room policy: removing a participant needs canRemoveParticipant"),
    ("sec-external-join-closed", "gateway/engine/src/policy/rules.rs",
     "        (Some(t), Some(r0)) if r0.may_change(0, t.to) => Ok(()),",
     "        (Some(_), _) => Ok(()),",
     "room policy: a new user joins by external commit only when the room is open"),
    ("sec-km-foreign-requester", "gateway/engine/src/hub/key_material.rs",
     "Caller::Peer(p) if km.requester.is_of(p) => false,", "Caller::Peer(_) => false,",
     "/keyMaterial: requestingUser must belong to the calling provider"),
    ("sec-km-missing-room", "gateway/engine/src/hub/key_material.rs",
     "            if !allowed {", "            if false && !allowed {",
     "/keyMaterial: a named room hosted here must exist"),
    ("sec-km-room-without-requester", "gateway/engine/src/hub/key_material.rs",
     "            if !allowed {", "            if false && !allowed {",
     "/keyMaterial: a named room hosted here must hold the requester"),
    ("sec-groupinfo-foreign-requester", "gateway/engine/src/hub/group_info.rs",
     "if !caller.speaks_for(&user) {", "if false && !caller.speaks_for(&user) {",
     "/groupInfo: the requester must belong to the calling provider"),
    ("sec-notify-not-hub", "gateway/engine/src/follower/notify.rs",
     "        if !room.is_of(peer) {", "        if false && !room.is_of(peer) {",
     "/notify: only the room's hub may notify"),
    ("sec-report-foreign-reporter", "gateway/engine/src/hub/abuse.rs",
     "if !caller.speaks_for(&user) {", "if false && !caller.speaks_for(&user) {",
     "/reportAbuse: the reporter must belong to the calling provider"),
    ("sec-report-anonymous-empty", "gateway/engine/src/hub/abuse.rs",
     "        if report.messages.is_empty() {", "        if false && report.messages.is_empty() {",
     "/reportAbuse: a report carries franked evidence"),
    ("sec-report-oversize", "gateway/engine/src/hub/abuse.rs",
     "if body.len() > self.cfg.limits.abuse_report_bytes {", "if false {",
     "/reportAbuse: a report is bounded in bytes"),
    ("sec-proxy-download-escapes", "gateway/engine/src/hub/download.rs",
     "        let Some(owner) = owner else {", "        let Some(owner) = owner.or_else(|| Domain::parse(host).ok()) else {",
     "/proxyDownload: only asset hosts of peers (not an open proxy)"),
    ("sec-identifier-partial", "gateway/engine/src/follower/identifier.rs",
     "if !self.cfg.partial_name_search {", "if false {",
     "/identifierQuery: partial-name search off by default"),
    ("sec-from-mismatch", "proto/src/head.rs",
     "            Some(d) if d.eq_ignore_ascii_case(peer) => {}",
     "            Some(_) => {}",
     "federation: a From that contradicts the certificate is refused"),
]


def run(cmd, cwd, env=None, check=True):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return r


def attack_result(tree, target_dir, attack):
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir, ROLES="security", SUITE=attack)
    run(["scripts/conformance-selftest.sh"], tree, env, check=False)
    report = os.path.join(tree, "target", "conformance", "security-h3.json")
    with open(report) as f:
        data = json.load(f)
    tests = data["tests"] if isinstance(data, dict) else data
    for t in tests:
        if t["id"] == attack:
            return t["result"], t.get("reason", "")
    return "missing", ""


def attack_results(tree, target_dir):
    """Every attack's result on the intact tree (one run of the whole group)."""
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir, ROLES="security")
    run(["scripts/conformance-selftest.sh"], tree, env, check=False)
    with open(os.path.join(tree, "target", "conformance", "security-h3.json")) as f:
        return {t["id"]: t["result"] for t in json.load(f)["tests"]}


def main():
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    tree = tempfile.mkdtemp(prefix="mimi-mutations-")
    target_dir = os.path.join(ROOT, "target", "mutations")
    run(["git", "worktree", "add", "--detach", tree, "HEAD"], ROOT)
    rows = []
    intact_all = None
    try:
        for attack, path, find, replace, what in MUTATIONS:
            if only and attack != only:
                continue
            run(["git", "checkout", "--", "."], tree)
            if intact_all is None:
                intact_all = attack_results(tree, target_dir)
            intact = intact_all.get(attack, "missing")
            full = os.path.join(tree, path)
            src = open(full).read()
            n = src.count(find)
            if n < 1:
                raise SystemExit(f"{attack}: {find!r} not found in {path}")
            open(full, "w").write(src.replace(find, replace))
            broken, reason = attack_result(tree, target_dir, attack)
            caught = intact == "pass" and broken == "fail"
            print(f"{attack}: intact {intact}, broken {broken} -> {'CAUGHT' if caught else 'MISSED'}", flush=True)
            rows.append((attack, what, path, intact, broken, reason, caught))
    finally:
        run(["git", "checkout", "--", "."], tree, check=False)
        run(["git", "worktree", "remove", "--force", tree], ROOT, check=False)
        shutil.rmtree(tree, ignore_errors=True)
    print("\n| attack | check broken on purpose | file | intact | broken | caught |")
    print("|---|---|---|---|---|---|")
    for attack, what, path, intact, broken, _, caught in rows:
        print(f"| `{attack}` | {what} | `{path}` | {intact} | {broken} | {'yes' if caught else '**no**'} |")
    missed = [r for r in rows if not r[6]]
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()

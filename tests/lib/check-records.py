#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Checks sim devices' own records (STATE/sim/NAME.record.jsonl, docs/sim.md) against plans and the safety invariants.
"""Usage (RECORD[@LINE]: a record file, LINE = how many lines to skip, from record_mark):

  check-records.py seq RECORD[@LINE] [--irqs] [--teardown]
        the device's arcs (and SET_IRQS, disable_irqs), one per line: "arc STOP->RESUMING", "set_irqs", ...
  check-records.py plan PLAN.json ROLE RECORD[@LINE]
        exit 1 unless the role's recorded arcs and SET_IRQS/teardown order equal the plan's
        (migctl --json policy explain); prints both on a mismatch
  check-records.py s1 SOURCE[@LINE] DESTINATION[@LINE]
        S1: from the destination's first non-running state on, never both devices running at once
  check-records.py s2 DESTINATION[@LINE]
        S2: once the destination left its running states it never entered one again
  check-records.py count RECORD[@LINE] EVENT [KEY=VALUE...]
        how many events of that kind (with those fields; values compared as JSON or as strings)
  check-records.py state RECORD[@LINE]
        the device's state after the last event
"""
import json
import sys

RUNNING = {"RUNNING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P", "RESUMING_RUNNING"}


def load(spec):
    path, _, skip = spec.partition("@")
    skip = int(skip) if skip else 0
    events = []
    try:
        with open(path) as f:
            for i, line in enumerate(f):
                if i < skip or not line.strip():
                    continue
                events.append(json.loads(line))
    except FileNotFoundError:
        pass
    return events


def full_state_before(spec):
    """The state the device was in at the mark: replays the whole file up to LINE."""
    path, _, skip = spec.partition("@")
    skip = int(skip) if skip else 0
    state = None
    try:
        with open(path) as f:
            for i, line in enumerate(f):
                if i >= skip:
                    break
                if line.strip():
                    state = state_after(state, json.loads(line))
    except FileNotFoundError:
        pass
    return state


def state_after(state, ev):
    kind = ev.get("event")
    if kind == "arc":
        return ev["to"] if ev.get("ok") else ev.get("state", state)
    if kind == "reset":
        return "RUNNING"
    if kind in ("created", "restored", "arc_refused"):
        return ev.get("state", state)
    return state


def sequence(events, irqs=True, teardown=True):
    out = []
    for ev in events:
        kind = ev.get("event")
        if kind == "arc" and ev.get("ok"):
            item = "arc %s->%s" % (ev["from"], ev["to"])
        elif kind == "arc":
            item = "failed-arc %s->%s" % (ev["from"], ev["to"])
        elif kind == "set_irqs" and irqs:
            item = "set_irqs"
        elif kind == "disable_irqs" and teardown:
            item = "disable_irqs"
        else:
            continue
        # One plan step configures (or tears down) every index the guest uses: one item per run.
        if item in ("set_irqs", "disable_irqs") and out and out[-1] == item:
            continue
        out.append(item)
    return out


def plan_sequence(plan, role):
    out = []
    for step in plan[role]:
        if "from" in step:
            out.append("arc %s->%s" % (step["from"], step["state"]))
        elif step.get("action") == "set_irqs":
            out.append("set_irqs")
        elif step.get("action") == "teardown_irqs":
            out.append("disable_irqs")
    return out


def intervals(spec):
    """[(start, end)] where the device was in a running state; end None = still running.

    A reset (the only way out of ERROR) puts a VFIO device in RUNNING with its state discarded: until its
    next arc it holds nothing of the migrated device, so such a blank interval does not count for S1/S2.
    """
    state = full_state_before(spec)
    events = load(spec)
    out = []
    start = None
    blank = False
    if state in RUNNING:
        start = events[0]["t_usec"] if events else 0
    for ev in events:
        new = state_after(state, ev)
        t = ev["t_usec"]
        if new in RUNNING and start is None:
            start = t
            blank = ev.get("event") == "reset"
        elif new not in RUNNING and start is not None:
            if not blank:
                out.append((start, t))
            start = None
            blank = False
        state = new
    if start is not None and not blank:
        out.append((start, None))
    return out, events


def first_stop(spec):
    state = full_state_before(spec)
    events = load(spec)
    if state is not None and state not in RUNNING:
        return events[0]["t_usec"] if events else 0
    for ev in events:
        state = state_after(state, ev)
        if state not in RUNNING and state is not None:
            return ev["t_usec"]
    return None


def fmt(iv):
    return "[%d, %s)" % (iv[0], "end" if iv[1] is None else iv[1])


def cmd_s1(src, dst):
    t0 = first_stop(dst)
    if t0 is None and not any(e.get("event") == "arc" for e in load(dst)):
        return 0  # the target was never touched: it is not part of this migration
    if t0 is None:
        print("S1: the destination never left its running states")
        return 1
    a, _ = intervals(src)
    b, _ = intervals(dst)
    inf = float("inf")
    bad = 0
    for x in a:
        for y in b:
            lo = max(x[0], y[0], t0)
            hi = min(x[1] if x[1] is not None else inf, y[1] if y[1] is not None else inf)
            if lo < hi:
                print("S1 violated: source running %s, destination running %s" % (fmt(x), fmt(y)))
                bad = 1
    return bad


def cmd_s2(dst):
    t0 = first_stop(dst)
    b, _ = intervals(dst)
    bad = 0
    for y in b:
        if t0 is not None and (y[1] is None or y[1] > t0) and y[0] >= t0:
            print("S2 violated: the destination ran %s after it stopped at %d" % (fmt(y), t0))
            bad = 1
    return bad


def matches(ev, conds):
    for c in conds:
        key, _, want = c.partition("=")
        if key not in ev:
            return False
        have = ev[key]
        try:
            wantv = json.loads(want)
        except ValueError:
            wantv = want
        if have != wantv and str(have) != want:
            return False
    return True


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd = argv[1]
    if cmd == "seq":
        ev = load(argv[2])
        print("\n".join(sequence(ev, "--irqs" in argv or "--teardown" not in argv,
                                 "--teardown" in argv or "--irqs" not in argv)))
        return 0
    if cmd == "plan":
        with open(argv[2]) as f:
            plan = json.load(f)
        role = argv[3]
        want = plan_sequence(plan, role)
        have = sequence(load(argv[4]))
        # The destination's prepare step walks an idle (RUNNING) target to the plan's first state (STOP) by
        # the kernel's shortest path before the plan starts: leave those arcs out.
        start = plan[role][0]["state"]
        if "arc ->%s" % start not in have and any(h.endswith("->" + start) for h in have) and \
                full_state_before(argv[4]) != start:
            while have and have[0].startswith("arc ") and not have[0].endswith("->" + start):
                have.pop(0)
            if have and have[0].endswith("->" + start):
                have.pop(0)
        if want == have:
            return 0
        print("plan:   " + " | ".join(want))
        print("record: " + " | ".join(have))
        return 1
    if cmd == "s1":
        return cmd_s1(argv[2], argv[3])
    if cmd == "s2":
        return cmd_s2(argv[2])
    if cmd == "count":
        ev = load(argv[2])
        print(sum(1 for e in ev if e.get("event") == argv[3] and matches(e, argv[4:])))
        return 0
    if cmd == "state":
        state = full_state_before(argv[2])
        for ev in load(argv[2]):
            state = state_after(state, ev)
        print(state)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

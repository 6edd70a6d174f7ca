#!/usr/bin/python3
"""Compares two builds run after run (./scripts/bench-ab REV): on a shared machine the noise
between two separate ./scripts/bench runs is larger than most changes, so this alternates
BENCH_CORE runs of the other revision and of this tree, ROUNDS times each, and prints the median
of each figure and ratio for both. The other revision is built (Release) in .run/bench-ab/<rev>.
Environment: BENCH_AB_ROUNDS (default 3), BENCH_SECONDS (per measurement)."""
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, **kw)


def prepare(rev):
    tree = os.path.join(ROOT, ".run", "bench-ab", rev)
    if not os.path.isdir(tree):
        sh("git", "-C", ROOT, "worktree", "add", "--detach", tree, rev)
    # The driver and load generator of this tree, so both sides are measured the same way.
    for f in ("bench/run.py", "bench/loadgen.cc"):
        sh("cp", os.path.join(ROOT, f), os.path.join(tree, f))
    env = dict(os.environ, BUILD_DIR=os.path.join(tree, "build-release"), BUILD_TYPE="Release")
    sh(os.path.join(tree, "scripts", "build"), cwd=tree, env=env, stdout=subprocess.DEVNULL)
    return tree


def run(tree, out):
    env = dict(os.environ, BUILD_DIR=os.path.join(tree, "build-release"), BENCH_CORE="1",
               BENCH_OUT=out)
    sh("/usr/bin/python3", os.path.join(tree, "bench", "run.py"), cwd=tree, env=env,
       stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def figures(d):
    def sc(name, c):
        return next(s for s in d["scenarios"] if s["scenario"] == name and s["concurrency"] == c)
    out = {"echo p50 ms (1 in flight)": d["baselines"]["echo"][0]["p50_us"] / 1000,
           "single-row commit ms (1 client)": d["baselines"]["pg_commit"][0]["latency_ms"],
           "search_cached calls/s (8)": sc("search_cached", 8)["throughput_per_s"],
           "hold p50 ms (1)": sc("hold", 1)["p50_us"] / 1000,
           "hold calls/s (8)": sc("hold", 8)["throughput_per_s"],
           "create_referral p50 ms (1)": sc("create_referral", 1)["p50_us"] / 1000,
           "create_referral p99 ms (8)": sc("create_referral", 8)["p99_us"] / 1000,
           "record_payment calls/s (8)": sc("record_payment", 8)["throughput_per_s"]}
    out.update(d["ratios"])
    # The routing scenarios (absent from, or timed out in, runs of older drivers or builds).
    for k in ("routing_per_second_one_process", "routing_per_second_two_processes",
              "offer_on_stream_p99_ms_at_20_per_s", "emergency_offer_ms_with_5000_waiting"):
        v = d.get(k)
        out[k] = float("nan") if v is None else v
    return out


def main():
    if len(sys.argv) != 2:
        print("usage: scripts/bench-ab REV", file=sys.stderr)
        return 2
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", sys.argv[1]], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip()
    rounds = int(os.environ.get("BENCH_AB_ROUNDS", "3"))
    other = prepare(rev)
    outdir = os.path.join(ROOT, ".run", "bench-ab", "results")
    os.makedirs(outdir, exist_ok=True)
    runs = {rev: [], "this tree": []}
    for i in range(rounds):
        for name, tree in ((rev, other), ("this tree", ROOT)):
            print(f"round {i + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
            safe = name.replace(" ", "_")
            runs[name].append(figures(run(tree, os.path.join(outdir, f"{safe}-{i + 1}.json"))))
    print(f"| median of {rounds} alternating runs | {rev} | this tree |\n|---|---|---|")
    for k in runs["this tree"][0]:
        a = statistics.median(r.get(k, float("nan")) for r in runs[rev])
        b = statistics.median(r.get(k, float("nan")) for r in runs["this tree"])
        print(f"| {k} | {a:.3f} | {b:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""SafeHarbor benchmarks (./scripts/bench): starts a private stack on loopback from the Release
build (PostgreSQL with real, fsync'ed commits; Redis), loads data, measures baselines and
scenarios with bench/safeharbor-loadgen, and writes a table and a JSON file.

Absolute numbers on a shared machine are noise; the ratios to the baselines measured in the same
run are the point. Environment: BUILD_DIR (the Release tree), BENCH_SECONDS (per measurement,
default 5), BENCH_QUICK=1 (smaller sweep, for a smoke run), BENCH_CORE=1 (baselines, the
per-call scenarios and the routing scenarios only, about 6 minutes: for comparing two builds run
after run), BENCH_OUT (JSON path), BENCH_ROUTING_ONLY=1 (the stack and the routing scenarios only:
to try them), BENCH_ONLY=hold:1,create_referral:8 (the stack and only these scenario:concurrency
pairs, each BENCH_REPEAT times, default 1: for A/B runs of one scenario), BENCH_PERF=DIR (with
BENCH_ONLY: `perf record -g` on the scenario's service process while it runs, one perf.data per
pair under DIR, a system-wide one (PostgreSQL's backends: `perf report --comm postgres`), `perf
stat` syscall and context-switch counts, and pg_stat_statements' heaviest statements).
"""
import csv
import datetime
import json
import os
import platform
import random
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "integration-tests"))
import grpc  # noqa: E402
from harness import SERVERS, Service, Stack, free_port, referral_secrets, shclient  # noqa: E402

BUILD_DIR = shclient.BUILD_DIR
LOADGEN = os.path.join(BUILD_DIR, "bench", "safeharbor-loadgen")
ECHO = os.path.join(BUILD_DIR, "bench", "bench-echo-server")
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
CORE = os.environ.get("BENCH_CORE") == "1"
ROUTING_ONLY = os.environ.get("BENCH_ROUTING_ONLY") == "1"
ONLY = [tuple(x.split(":")) for x in os.environ.get("BENCH_ONLY", "").split(",") if x]
REPEAT = int(os.environ.get("BENCH_REPEAT", "1"))
PERF_DIR = os.environ.get("BENCH_PERF", "")
PG_BIN = sorted(d for d in os.listdir("/usr/lib/postgresql"))[-1]
PGBENCH = f"/usr/lib/postgresql/{PG_BIN}/bin/pgbench"
RUN = f"b{int(time.time())}"

d_pb2 = shclient._module("safeharbor.directory.v1.directory_pb2")
b_pb2 = shclient._module("safeharbor.beds.v1.beds_pb2")
f_pb2 = shclient._module("safeharbor.fees.v1.fees_pb2")
r_pb2 = shclient._module("safeharbor.referrals.v1.referrals_pb2")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def counties():
    with open(os.path.join(ROOT, "data", "wa_counties.csv")) as f:
        rows = [r for r in csv.reader(line for line in f if not line.startswith("#"))]
    return [(r[0], r[1], float(r[2]), float(r[3])) for r in rows[1:]]


COUNTIES = counties()


def psql(stack, db, sql, stdin=None):
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(stack.pg_port), "-U", "postgres", "-d", db,
                    "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql], input=stdin, check=True,
                   stdout=subprocess.PIPE, text=isinstance(stdin, str) or stdin is None)


def psql_value(stack, db, sql):
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(stack.pg_port), "-U", "postgres",
                          "-d", db, "-qAt", "-c", sql], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip()


def copy_rows(stack, db, table, columns, rows):
    """COPY rows (tuples of str/None) into a table: bulk data for the scale sweep."""
    def esc(v):
        if v is None:
            return "\\N"
        return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    data = "".join("\t".join(esc(v) for v in r) + "\n" for r in rows)
    psql(stack, db, f"COPY {table} ({', '.join(columns)}) FROM STDIN", stdin=data)


def bytea(b):
    return "\\x" + b.hex()


def pg_array(values):
    return "{" + ",".join(str(v) for v in values) + "}"


def random_place(rng):
    fips, _, lat, lon = rng.choice(COUNTIES)
    return fips, lat + rng.uniform(-0.25, 0.25), lon + rng.uniform(-0.35, 0.35)


def load_directory(stack, db, start, end, seed):
    """Providers start..end-1, each with a location and one CSEC advocacy service, open 24/7."""
    rng = random.Random(seed + start)
    orgs, locs, svcs = [], [], []
    cats = [d_pb2.SERVICE_CATEGORY_CSEC_ADVOCACY, d_pb2.SERVICE_CATEGORY_MENTAL_HEALTH,
            d_pb2.SERVICE_CATEGORY_EMERGENCY_YOUTH_SHELTER, d_pb2.SERVICE_CATEGORY_LEGAL_ADVOCACY]
    for i in range(start, end):
        oid = f"bulk-org-{i:06d}"
        fips, lat, lon = random_place(rng)
        org = d_pb2.Organization(
            id=oid, kind=d_pb2.ORGANIZATION_KIND_SERVICE_PROVIDER, name=f"[BENCH] Provider {i}",
            county_fips=fips, locations=[d_pb2.Location(id="main", name="Main", address_1=f"{i} Bench St",
                                                        city="Bench", latitude=lat, longitude=lon,
                                                        county_fips=fips)],
            phones=[d_pb2.Phone(number="+1 360-555-0100")])
        orgs.append((oid, d_pb2.ORGANIZATION_KIND_SERVICE_PROVIDER, org.name, fips,
                     bytea(org.SerializeToString())))
        locs.append((oid, "main", lat, lon, fips))
        cat = cats[i % len(cats)]
        sid = f"bulk-svc-{i:06d}"
        svc = d_pb2.Service(
            id=sid, organization_id=oid, name="Bench service", category=cat,
            csec_specialized=i % 3 == 0, minimum_age=10, maximum_age=24, languages=["en"],
            schedule=d_pb2.Schedule(open_24_7=True, time_zone="America/Los_Angeles"),
            service_area_county_fips=[fips], status=d_pb2.SERVICE_STATUS_ACTIVE,
            accepting_referrals=True, location_id="main")
        svcs.append((sid, oid, "main", cat, "t" if svc.csec_specialized else "f", 10, 24, "{}", "{en}",
                     "t", "America/Los_Angeles", pg_array([fips]), d_pb2.SERVICE_STATUS_ACTIVE, "t",
                     lat, lon, bytea(svc.SerializeToString())))
    copy_rows(stack, db, "organizations", ["id", "kind", "name", "county_fips", "body"], orgs)
    copy_rows(stack, db, "locations", ["org_id", "id", "latitude", "longitude", "county_fips"], locs)
    copy_rows(stack, db, "services", ["id", "org_id", "location_id", "category", "csec_specialized",
                                      "minimum_age", "maximum_age", "genders", "languages",
                                      "open_24_7", "time_zone", "area_counties", "status",
                                      "accepting_referrals", "latitude", "longitude", "body"], svcs)
    psql(stack, db, "ANALYZE")


def load_beds(stack, db, start, end, seed, capacity=10, prefix="bulk-fac"):
    rng = random.Random(seed + 7 * start + 1)
    facs, inv = [], []
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    for i in range(start, end):
        fid = f"{prefix}-{i:06d}"
        fips, lat, lon = random_place(rng)
        f = b_pb2.Facility(id=fid, organization_id=f"bulk-org-{i:06d}", name=f"[BENCH] Facility {i}",
                           placement_type=b_pb2.PLACEMENT_TYPE_HOPE_CENTER, routable=True,
                           county_fips=fips, latitude=lat, longitude=lon, minimum_age=12,
                           maximum_age=17, csec_specialized=i % 2 == 0,
                           bed_types=[b_pb2.BedTypeCapacity(bed_type=b_pb2.BED_TYPE_GENERAL,
                                                            licensed_capacity=capacity)])
        facs.append((fid, f.organization_id, f.placement_type, "t", fips, lat, lon, 12, 17, "{}",
                     "t" if f.csec_specialized else "f", bytea(f.SerializeToString()), now, now))
        inv.append((fid, b_pb2.BED_TYPE_GENERAL, capacity, 0, 0, now))
    copy_rows(stack, db, "facilities", ["id", "org_id", "placement_type", "routable", "county_fips",
                                        "latitude", "longitude", "minimum_age", "maximum_age",
                                        "genders", "csec_specialized", "body", "create_time",
                                        "update_time"], facs)
    copy_rows(stack, db, "bed_inventory", ["facility_id", "bed_type", "licensed_capacity", "occupied",
                                           "out_of_service", "confirmed_at"], inv)
    psql(stack, db, "ANALYZE")


def load_payments(stack, db, template_assessment, count, per_assessment=10, batch=100000):
    """Clones the ledger of one real payment (made through the service) `count` times, in
    batches, over assessments cloned from its assessment: the same rows the service writes."""
    pay = psql_value(stack, db, f"SELECT id || ',' || txn_id || ',' || amount_cents FROM payments "
                     f"WHERE assessment_id = '{template_assessment}' LIMIT 1").split(",")
    pay_id, pay_txn = pay[0], pay[1]
    done = int(psql_value(stack, db, "SELECT count(*) FROM payments WHERE id LIKE 'bulk-pay-%'"))
    while done < count:
        n = min(batch, count - done)
        first_a, last_a = done // per_assessment, (done + n - 1) // per_assessment
        sql = f"""
BEGIN;
INSERT INTO assessments (id, court_org, case_number, jurisdiction, statute, fee_type, priors,
  offense_count, scheduled_cents, ordered_cents, finding, hosting_agency, offense_date, assessed_date)
SELECT 'bulk-a-' || g, court_org, 'BULK-' || g, jurisdiction, statute, fee_type, priors, offense_count,
  scheduled_cents, ordered_cents, finding, hosting_agency, offense_date, assessed_date
FROM assessments, generate_series({first_a}, {last_a}) g
WHERE id = '{template_assessment}' AND NOT EXISTS (SELECT 1 FROM assessments x WHERE x.id = 'bulk-a-' || g);
WITH t AS (
  INSERT INTO ledger_txns (kind, assessment_id, payment_id, jurisdiction, court_org, effective_date)
  SELECT 'payment', 'bulk-a-' || ((g) / {per_assessment}), 'bulk-pay-' || g, jurisdiction, court_org,
         effective_date
  FROM ledger_txns, generate_series({done}, {done + n - 1}) g WHERE id = {pay_txn}
  RETURNING id, assessment_id, payment_id),
e AS (
  INSERT INTO ledger_entries (txn_id, account, recipient_kind, amount_cents)
  SELECT t.id, le.account, le.recipient_kind, le.amount_cents FROM t, ledger_entries le
  WHERE le.txn_id = {pay_txn})
INSERT INTO payments (id, assessment_id, amount_cents, paid_date, policy_id, txn_id)
SELECT t.payment_id, t.assessment_id, p.amount_cents, p.paid_date, p.policy_id, t.id
FROM t, payments p WHERE p.id = '{pay_id}';
COMMIT;"""
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(stack.pg_port), "-U", "postgres", "-d", db,
                        "-v", "ON_ERROR_STOP=1", "-q"], input=sql, text=True, check=True,
                       stdout=subprocess.DEVNULL)
        done += n
    psql(stack, db, "ANALYZE")


def loadgen(target, scenario, concurrency, cert="client-law_enforcement", ids=None, seconds=None,
            warmup=2.0):
    args = [LOADGEN, f"--target=localhost:{target}", f"--certs_dir={STACK.certs}", f"--cert={cert}",
            f"--scenario={scenario}", f"--concurrency={concurrency}", f"--warmup_s={warmup}",
            f"--duration_s={seconds or SECONDS}", f"--run_id={RUN}-{scenario}-{concurrency}"]
    if ids:
        args.append("--ids=" + ",".join(ids))
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True).stdout
    r = json.loads(out)
    log(f"  {scenario:22s} c={concurrency:<3d} {r['throughput_per_s']:9.0f}/s  p50 {r['p50_us']/1000:7.2f} ms"
        f"  p99 {r['p99_us']/1000:7.2f} ms  {r['codes']}")
    return r


def linger(services):
    """BENCH_LINGER=seconds: the stack stays up that long after the scenarios (to trace a
    service by hand); its processes and ports are printed."""
    seconds = float(os.environ.get("BENCH_LINGER", "0"))
    if seconds <= 0:
        return
    for n, s in services.items():
        log(f"  {n}: pid {s.proc.pid} port {s.port}")
    log(f"  PostgreSQL port {STACK.pg_port}, certificates {STACK.certs}; lingering {seconds:.0f} s")
    time.sleep(seconds)


def track_statements(st, dbs):
    """pg_stat_statements in every database (PostgreSQL restarted with it preloaded; before the
    services start)."""
    psql(st, "postgres", "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    subprocess.run([SERVERS, "pg-stop", os.path.join(st.dir, "pg")], check=True)
    subprocess.run([SERVERS, "pg-start", os.path.join(st.dir, "pg"), str(st.pg_port)], check=True)
    psql(st, "postgres", "ALTER SYSTEM SET pg_stat_statements.track = 'all'")
    psql(st, "postgres", "SELECT pg_reload_conf()")
    for db in dbs:
        psql(st, db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def heaviest_statements(db, path):
    rows = psql_value(STACK, db, "SELECT calls || ' calls, ' || round(total_exec_time::numeric, 1) "
                      "|| ' ms total, ' || round(mean_exec_time::numeric, 3) || ' ms mean, ' || "
                      "round(wal_bytes / greatest(calls, 1)) || ' WAL bytes and ' || "
                      "round(wal_fpi::numeric / greatest(calls, 1), 2) || ' full pages each: ' || "
                      "regexp_replace(left(query, 220), '\\s+', ' ', 'g') FROM pg_stat_statements "
                      "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                      "ORDER BY total_exec_time DESC LIMIT 25")
    with open(path, "w") as f:
        f.write(rows + "\n")


def profiled(svc, db, tag, run):
    """run() while `perf record -g` (the service's process, and the whole machine for
    PostgreSQL's backends) and `perf stat` (syscalls, context switches) watch, when BENCH_PERF
    names a directory; the statements' server time from pg_stat_statements. run() alone
    otherwise."""
    if not PERF_DIR:
        return run()
    os.makedirs(PERF_DIR, exist_ok=True)
    pid = str(svc.proc.pid)
    out = lambda ext: os.path.join(PERF_DIR, f"{tag}.{ext}")  # noqa: E731
    psql(STACK, db, "SELECT pg_stat_statements_reset()")
    perfs = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for args in (
        ["perf", "record", "-g", "-F", "999", "-p", pid, "-o", out("data")],
        ["perf", "record", "-g", "-F", "499", "-a", "-o", out("all.data")],
        ["perf", "stat", "-e", "raw_syscalls:sys_enter,context-switches,task-clock", "-p", pid,
         "-o", out("stat")])]
    try:
        r = run()
    finally:
        for p in perfs:
            p.send_signal(2)  # SIGINT: perf writes its file and exits
            p.wait()
    heaviest_statements(db, out("pgss"))
    with open(out("json"), "w") as f:
        json.dump(r, f)
    return r


def pgbench(db, clients):
    script = os.path.join(STACK.dir, "commit.sql")
    with open(script, "w") as f:
        f.write("INSERT INTO bench_commit (v) VALUES (1);\n")
    out = subprocess.run([PGBENCH, "-h", "127.0.0.1", "-p", str(STACK.pg_port), "-U", "postgres", "-n",
                          "-f", script, "-c", str(clients), "-j", str(clients), "-T", str(int(SECONDS)),
                          db], check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
    lat = float(re.search(r"latency average = ([0-9.]+) ms", out).group(1))
    log(f"  pgbench single-row commit c={clients}: {tps:.0f} tps, {lat:.3f} ms")
    return {"clients": clients, "tps": tps, "latency_ms": lat}


def redis_auth():
    """redis-benchmark's password option (a revision run by scripts/bench-ab may have none)."""
    password = getattr(STACK, "redis_password", "")
    return ["-a", password] if password else []


def redis_bench(clients):
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(STACK.redis_port),
                          *redis_auth(), "-t", "get",
                          "-n", "50000" if not QUICK else "5000", "-c", str(clients), "-P", "1", "--csv"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    rows = list(csv.reader(out.strip().splitlines()))
    head, vals = rows[0], rows[-1]
    r = dict(zip(head, vals))
    res = {"clients": clients, "rps": float(r["rps"]), "p50_ms": float(r.get("p50_latency_ms", "nan")),
           "avg_ms": float(r.get("avg_latency_ms", "nan"))}
    log(f"  redis GET c={clients}: {res['rps']:.0f}/s, avg {res['avg_ms']:.3f} ms")
    return res


def rss(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # MiB
    return 0.0


# --- Routing: time to offer on the provider's stream, priorities, throughput ---------------------

WATCH_ORG = "bench-watch-provider"
# No bulk provider offers this category: the watched provider is the only candidate of the
# referrals asking for it, and the bulk referrals (CSEC advocacy) never reach it.
WATCH_CATEGORY = d_pb2.SERVICE_CATEGORY_MEDICAL_FORENSIC_EXAM
SEATTLE = (47.6062, -122.3321)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(len(ordered) * p + 0.999999) - 1))]


def watched_provider(st, admin_dir):
    """The provider whose WatchReferrals stream the scenarios time, and its certificate."""
    admin_dir.CreateOrganization(d_pb2.CreateOrganizationRequest(
        request_id="watch-org", organization=d_pb2.Organization(
            id=WATCH_ORG, kind=d_pb2.ORGANIZATION_KIND_SERVICE_PROVIDER, name="[BENCH] Watched",
            county_fips="53033", phones=[d_pb2.Phone(number="+1 206-555-0199")],
            locations=[d_pb2.Location(id="main", name="Main", address_1="1 Watch St", city="Seattle",
                                      latitude=SEATTLE[0], longitude=SEATTLE[1],
                                      county_fips="53033")])), timeout=10)
    admin_dir.CreateService(d_pb2.CreateServiceRequest(request_id="watch-svc", service=d_pb2.Service(
        id="bench-watch-svc", organization_id=WATCH_ORG, name="Forensic exam", category=WATCH_CATEGORY,
        csec_specialized=True, minimum_age=10, maximum_age=24, languages=["en"],
        schedule=d_pb2.Schedule(open_24_7=True, time_zone="America/Los_Angeles"),
        service_area_county_fips=["53033"], status=d_pb2.SERVICE_STATUS_ACTIVE,
        accepting_referrals=True, location_id="main")), timeout=10)
    return st.client_cert("client-bench-watch", WATCH_ORG, "provider")


def watched_referral(rid, urgency=r_pb2.URGENCY_ROUTINE):
    return r_pb2.CreateReferralRequest(
        request_id=rid, referrer_contact=r_pb2.ReferrerContact(name="Bench", phone="+1 206-555-0142"),
        youth=r_pb2.YouthProfile(youth_reference=rid, age=15, gender=d_pb2.GENDER_FEMALE, languages=["en"]),
        county_fips="53033", location=d_pb2.GeoPoint(latitude=SEATTLE[0], longitude=SEATTLE[1]),
        needs=r_pb2.Needs(service_categories=[WATCH_CATEGORY]), urgency=urgency)


class OfferWatch:
    """The watched provider's WatchReferrals stream: when each referral's offer arrived."""

    def __init__(self, channel):
        stub = shclient.stub("referrals", channel)[0]
        self.arrived = {}
        self.cond = threading.Condition()
        self.call = stub.WatchReferrals(r_pb2.WatchReferralsRequest(cursor=""), timeout=3600)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for ev in self.call:
                if ev.referral.status == r_pb2.REFERRAL_STATUS_OFFERED:
                    now = time.monotonic()
                    with self.cond:
                        self.arrived.setdefault(ev.referral.id, now)
                        self.cond.notify_all()
        except grpc.RpcError:
            pass

    def wait(self, ids, timeout):
        """Arrival times of those offers that arrive within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(i in self.arrived for i in ids) and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            return {i: self.arrived[i] for i in ids if i in self.arrived}

    def close(self):
        self.call.cancel()


def offers_at_rate(officer, watch, rate, seconds, tag):
    """Open loop: CreateReferral at `rate` a second whatever the answers; for each, the time from
    its answer to its offer on the provider's stream."""
    n, returned, lock = max(1, int(rate * seconds)), {}, threading.Lock()
    futures = []
    t0 = time.monotonic()
    for i in range(n):
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        f = officer.CreateReferral.future(watched_referral(f"{RUN}-{tag}-{i}"), timeout=10)

        def done(fut):
            at = time.monotonic()
            if fut.exception() is None:
                with lock:
                    returned[fut.result().referral.id] = at
        f.add_done_callback(done)
        futures.append(f)
    failed = sum(1 for f in futures if f.exception() is not None)
    arrived = watch.wait(list(returned), 30)
    lat = [1000 * max(0.0, arrived[i] - returned[i]) for i in returned if i in arrived]
    missed = len(returned) - len(lat)
    lat += [30000.0] * missed  # not within 30 s: counted as 30 s (a lower bound)
    r = {"referrals": n, "per_second": rate, "create_failed": failed, "missed": missed,
         "p50_ms": percentile(lat, 0.5) if lat else None,
         "p99_ms": percentile(lat, 0.99) if lat else None}
    log(f"  offer on stream at {rate}/s: {n} referrals, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
        f" ({missed} not within 30 s, {failed} intake failed)")
    return r


def load_waiting(st, prefix, count, seed):
    """`count` routine referrals waiting for routing (CSEC advocacy anywhere in the state), as
    intake stores them, in one COPY: they all wait from the same moment."""
    rng = random.Random(seed)
    at = datetime.datetime.now(datetime.timezone.utc).isoformat()
    rows = []
    for i in range(count):
        rid = f"{prefix}-{i:06d}"
        fips, lat, lon = random_place(rng)
        body = r_pb2.Referral(
            id=rid, referrer_organization_id="bench-le", county_fips=fips,
            referrer_contact=r_pb2.ReferrerContact(name="Bench", phone="+1 360-555-0100"),
            youth=r_pb2.YouthProfile(youth_reference=rid, age=15, gender=d_pb2.GENDER_FEMALE, languages=["en"]),
            location=d_pb2.GeoPoint(latitude=lat, longitude=lon),
            needs=r_pb2.Needs(service_categories=[d_pb2.SERVICE_CATEGORY_CSEC_ADVOCACY]),
            urgency=r_pb2.URGENCY_ROUTINE, status=r_pb2.REFERRAL_STATUS_REQUESTED)
        rows.append((rid, "bench-le", "law_enforcement", fips, 1, 1, "f", bytea(body.SerializeToString()),
                     at, at, at))
    copy_rows(st, "bench_referrals", "referrals",
              ["id", "referrer_org", "referrer_role", "county_fips", "status", "urgency", "needs_placement",
               "body", "create_time", "update_time", "route_after"], rows)


def waiting(st, prefix):
    return int(psql_value(st, "bench_referrals",
                          f"SELECT count(*) FROM referrals WHERE status = 1 AND id LIKE '{prefix}-%'"))


def set_aside(st, where):
    """Referrals still waiting are cancelled (a new revision: a router holding one finds it
    changed), so that they do not load the measurements after them."""
    psql(st, "bench_referrals", f"UPDATE referrals SET status = 9, route_after = NULL, "
         f"revision = revision + 1 WHERE status = 1 AND {where}")


def intake_only(st, port, c):
    """CreateReferral with the routing of the referrals it creates held back: a bench-only
    trigger stores them set aside (cancelled, never routable: outside the routing queue's index,
    so the workers each intake wakes find nothing to walk past). Intake's own cost, without the
    routing of the scenario's own referrals competing for the same cores and WAL flushes.
    Reported beside the measurement with routing, which the targets are judged on."""
    psql(st, "bench_referrals",
         "CREATE OR REPLACE FUNCTION bench_hold_routing() RETURNS trigger LANGUAGE plpgsql AS "
         "$$ BEGIN NEW.status := 9; NEW.route_after := NULL; RETURN NEW; END $$; "
         "CREATE TRIGGER bench_hold_routing BEFORE INSERT ON referrals "
         "FOR EACH ROW EXECUTE FUNCTION bench_hold_routing()")
    try:
        r = loadgen(port, "create_referral", c)
    finally:
        psql(st, "bench_referrals", "DROP TRIGGER bench_hold_routing ON referrals")
    r["scenario"] = "create_referral_intake_only"
    return r


def drain_rate(st, prefix, start_n, limit_s):
    """Referrals routed per second from `start_n` waiting, until none waits or `limit_s`."""
    t0 = time.monotonic()
    left = start_n
    while time.monotonic() - t0 < limit_s:
        time.sleep(0.25)
        left = waiting(st, prefix)
        if left == 0:
            break
    elapsed = time.monotonic() - t0
    return {"waiting_at_start": start_n, "routed": start_n - left, "seconds": round(elapsed, 2),
            "per_second": round((start_n - left) / elapsed, 1)}


def emergency_while_waiting(st, officer, watch, count):
    """An emergency referral's time to offer while `count` routine referrals wait; then how fast
    one process routes the rest."""
    prefix = f"{RUN}-wait1"
    load_waiting(st, prefix, count, 11)
    time.sleep(1.5)  # The workers find the backlog on their tick and are busy with it.
    before = waiting(st, prefix)
    t0 = time.monotonic()
    rid = officer.CreateReferral(watched_referral(f"{RUN}-emergency", r_pb2.URGENCY_EMERGENCY),
                                 timeout=10).referral.id
    returned = time.monotonic()
    arrived = watch.wait([rid], 30).get(rid)
    ms = round(1000 * (arrived - returned), 1) if arrived else None
    ahead = before - waiting(st, prefix)
    log(f"  emergency referral offered {ms} ms after intake answered, {before} routine waiting "
        f"({ahead} routed meanwhile; intake took {1000 * (returned - t0):.1f} ms)")
    drain = drain_rate(st, prefix, waiting(st, prefix), 25 if not QUICK else 10)
    log(f"  one process routed {drain['routed']} in {drain['seconds']} s: {drain['per_second']}/s")
    set_aside(st, f"id LIKE '{prefix}-%'")
    return {"routine_waiting": before, "offer_ms": ms, "routine_routed_meanwhile": ahead}, drain


def two_replicas_rate(st, dbs, extra_args, count):
    """Routing throughput with a second referral-service process on the same database."""
    second = Service(st, "referrals", "referral-service", dbs["referrals"], extra_args).start()
    try:
        prefix = f"{RUN}-wait2"
        load_waiting(st, prefix, count, 12)
        drain = drain_rate(st, prefix, count, 20 if not QUICK else 10)
        set_aside(st, f"id LIKE '{prefix}-%'")
    finally:
        second.terminate()
    log(f"  two processes routed {drain['routed']} in {drain['seconds']} s: {drain['per_second']}/s")
    return drain


def routing_scenarios(st, res, admin_dir, referrals, dbs, referral_args):
    log("routing: offers on the provider's stream, an emergency behind a backlog, throughput ...")
    set_aside(st, "true")  # What the intake scenarios left waiting.
    cert = watched_provider(st, admin_dir)
    officer = shclient.stub("referrals", st.channel(referrals.port, "client-law_enforcement"))[0]
    watch = OfferWatch(st.channel(referrals.port, cert))
    try:
        warm = officer.CreateReferral(watched_referral(f"{RUN}-warm"), timeout=10).referral.id
        if not watch.wait([warm], 30):
            log("  the warm-up referral's offer never arrived: routing scenarios skipped")
            return
        rate_s = 2 if QUICK else max(15.0, 3 * SECONDS)
        stream = offers_at_rate(officer, watch, 20, rate_s, "rate20")
        waiting_n = 200 if QUICK else 5000
        emergency, one = emergency_while_waiting(st, officer, watch, waiting_n)
    finally:
        watch.close()
    two = two_replicas_rate(st, dbs, referral_args, 200 if QUICK else 5000)
    res["routing"] = {"offer_on_stream": stream, "emergency": emergency, "one_process": one,
                      "two_processes": two}
    res["routing_per_second_one_process"] = one["per_second"]
    res["routing_per_second_two_processes"] = two["per_second"]
    res["offer_on_stream_p50_ms_at_20_per_s"] = stream["p50_ms"]
    res["offer_on_stream_p99_ms_at_20_per_s"] = stream["p99_ms"]
    res["emergency_offer_ms_with_5000_waiting"] = emergency["offer_ms"]


def main():
    global STACK
    started = time.time()
    STACK = st = Stack(fast=False)
    try:
        return run(st, started)
    finally:
        st.close()


def run(st, started):
    res = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                    if l.startswith("model name")), "?")},
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "seconds_per_measurement": SECONDS, "baselines": {}, "scenarios": [], "sweep": [],
           "reports": [], "memory_mib": {}}
    log("starting the stack (Release build, durable PostgreSQL) ...")
    dbs = {n: st.database(f"bench_{n}") for n in ("directory", "beds", "referrals", "fees")}
    if ONLY and PERF_DIR:
        track_statements(st, [f"bench_{n}" for n in dbs])
    directory = Service(st, "directory", "directory-service", dbs["directory"]).start()
    dir_arg = f"--directory_address=localhost:{directory.port}"
    # The hold scenarios measure throughput, not the per-organization cap on active holds.
    beds = Service(st, "beds", "beds-service", dbs["beds"],
                   [dir_arg, "--max_active_holds_per_organization=100000000"]).start()
    # A second replica (the routing scenarios) needs the same secrets.
    referral_args = [dir_arg, f"--beds_address=localhost:{beds.port}", *referral_secrets()]
    referrals = Service(st, "referrals", "referral-service", dbs["referrals"], referral_args).start()
    fees = Service(st, "fees", "fee-service", dbs["fees"], [dir_arg]).start()
    services = {"directory": directory, "beds": beds, "referrals": referrals, "fees": fees}
    echo_port = free_port()
    echo = subprocess.Popen([ECHO, f"--port={echo_port}", f"--certs_dir={st.certs}", "--cert=directory"])
    st.procs.append(echo)
    time.sleep(0.5)
    time.sleep(2)
    res["memory_mib"]["idle_empty"] = {n: round(rss(s.proc.pid, "VmRSS"), 1) for n, s in services.items()}

    # Data: 1k providers with a service and a facility each, the hold facilities, fee cases.
    sizes = [1000, 10000] if QUICK else [1000, 10000, 100000]
    admin_dir = shclient.stub("directory", st.channel(directory.port, "client-directory_admin"))[0]
    admin_beds = shclient.stub("beds", st.channel(beds.port, "client-directory_admin"))[0]
    log("loading 1k providers and facilities ...")
    load_directory(st, "bench_directory", 0, sizes[0], 1)
    load_beds(st, "bench_beds", 0, sizes[0], 1)
    # The on-call office for escalations, created through the service (also invalidates caches).
    admin_dir.CreateOrganization(d_pb2.CreateOrganizationRequest(request_id="cw", organization=d_pb2.Organization(
        id="demo-cw-king", kind=d_pb2.ORGANIZATION_KIND_CHILD_WELFARE_OFFICE, name="On call", county_fips="53033",
        locations=[d_pb2.Location(id="main", name="main", latitude=47.6, longitude=-122.3, county_fips="53033")])),
        timeout=10)
    # The fee cases' court (serves King County) and hosting agency.
    for oid, kind in (("demo-court-king", d_pb2.ORGANIZATION_KIND_COURT),
                      ("demo-le-seattle-pd", d_pb2.ORGANIZATION_KIND_LAW_ENFORCEMENT_AGENCY)):
        admin_dir.CreateOrganization(d_pb2.CreateOrganizationRequest(request_id=oid, organization=d_pb2.Organization(
            id=oid, kind=kind, name=oid, county_fips="53033")), timeout=10)
    hold_ids = [f"hold-fac-{i:06d}" for i in range(50)]
    load_beds(st, "bench_beds", 0, 50, 2, capacity=1000, prefix="hold-fac")
    load_beds(st, "bench_beds", 0, 1, 3, capacity=5, prefix="race-fac")
    clerk = shclient.stub("fees", st.channel(fees.port, "client-court_clerk"))[0]
    assessments = []
    for i in range(64):
        a = clerk.RecordAssessment(f_pb2.RecordAssessmentRequest(request_id=f"a{i}", assessment=f_pb2.Assessment(
            case_number=f"BENCH-{i}", jurisdiction_fips="53033", statute=f_pb2.STATUTE_PATRONIZING,
            ordered_cents=150000, hosting_agency_organization_id="demo-le-seattle-pd",
            offense_date=f_pb2.Date(year=2026, month=3, day=1),
            assessed_date=f_pb2.Date(year=2026, month=4, day=1))), timeout=10).assessment
        assessments.append(a.id)
    # The template for the bulk ledger: one ordinary payment, split by the service.
    tmpl = clerk.RecordAssessment(f_pb2.RecordAssessmentRequest(request_id="tmpl", assessment=f_pb2.Assessment(
        case_number="BENCH-TEMPLATE", jurisdiction_fips="53033", statute=f_pb2.STATUTE_PATRONIZING,
        ordered_cents=150000, hosting_agency_organization_id="demo-le-seattle-pd",
        offense_date=f_pb2.Date(year=2026, month=3, day=1),
        assessed_date=f_pb2.Date(year=2026, month=4, day=1))), timeout=10).assessment
    clerk.RecordPayment(f_pb2.RecordPaymentRequest(request_id="tmpl-pay", assessment_id=tmpl.id,
                                                   amount_cents=10000,
                                                   paid_date=f_pb2.Date(year=2026, month=5, day=1)),
                        timeout=10)
    psql(st, "bench_fees", "CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, v int)")
    time.sleep(2)
    res["memory_mib"]["idle_loaded"] = {n: round(rss(s.proc.pid, "VmRSS"), 1) for n, s in services.items()}
    if ROUTING_ONLY:
        routing_scenarios(st, res, admin_dir, referrals, dbs, referral_args)
        return finish(res, started)
    if ONLY:
        targets = {"hold": (beds, "referrals", hold_ids), "create_referral": (referrals, None, None),
                   "record_payment": (fees, "client-court_clerk", assessments),
                   "search_cached": (directory, None, None),
                   "availability": (beds, "client-child_welfare", None)}
        for name, c in ONLY:
            if name == "create_referral_intake_only":
                for rep in range(REPEAT):
                    res["scenarios"].append(profiled(
                        referrals, "bench_referrals", f"{name}-c{c}-{rep}",
                        lambda: intake_only(st, referrals.port, int(c))))
                continue
            svc, cert, ids = targets[name]
            for rep in range(REPEAT):
                kw = {"cert": cert} if cert else {}
                res["scenarios"].append(profiled(
                    svc, f"bench_{svc.name}", f"{name}-c{c}-{rep}",
                    lambda: loadgen(svc.port, name, int(c), ids=ids, **kw)))
        linger(services)
        return finish(res, started)

    log("baselines ...")
    res["baselines"]["echo"] = [loadgen(echo_port, "echo", c, cert="client-auditor") for c in (1, 8, 64)]
    res["baselines"]["pg_commit"] = [pgbench("bench_fees", c) for c in (1, 8)]
    res["baselines"]["redis_get"] = [redis_bench(c) for c in (1, 8)]

    log("scenarios ...")
    sc = res["scenarios"]
    for c in (1, 8, 64):
        sc.append(loadgen(directory.port, "search_cached", c))
    for c in (1, 8, 64):
        sc.append(loadgen(directory.port, "search_uncached", c))
    for c in (1, 8, 64):
        sc.append(loadgen(beds.port, "availability", c, cert="client-child_welfare"))
    for c in (1, 8):
        sc.append(loadgen(beds.port, "hold", c, cert="referrals", ids=hold_ids))
    # 64 clients race for 5 beds from the first call (no warm-up: the winners are counted).
    race = loadgen(beds.port, "hold", 64, cert="referrals", ids=["race-fac-000000"],
                   warmup=0.0)
    race["scenario"] = "hold_contended"
    got = admin_beds.GetFacility(b_pb2.GetFacilityRequest(id="race-fac-000000"), timeout=10)
    race["beds"] = 5
    race["held_after"] = got.beds[0].held
    race["over_booked"] = max(0, got.beds[0].held + got.beds[0].occupied - 5)
    log(f"  hold race: {race['codes'].get('OK', 0)} won, held {race['held_after']} of 5, "
        f"over-booked {race['over_booked']}")
    sc.append(race)
    # The fee scenarios before any referral is created: nothing is routed meanwhile.
    for c in (1, 8):
        sc.append(loadgen(fees.port, "record_payment", c, cert="client-court_clerk", ids=assessments))
    sc.append(loadgen(fees.port, "disbursement_report", 1, cert="client-fiscal"))
    for c in (1, 8):
        sc.append(intake_only(st, referrals.port, c))
    for c in (1, 8):
        sc.append(loadgen(referrals.port, "create_referral", c))
    res["memory_mib"]["peak_after_scenarios"] = {n: round(rss(s.proc.pid, "VmHWM"), 1)
                                                  for n, s in services.items()}
    if CORE:
        routing_scenarios(st, res, admin_dir, referrals, dbs, referral_args)
        return finish(res, started)
    # The referrals created above are routed in the background (directory searches, offers): let
    # that finish before measuring anything else, and report how fast it went.
    t0 = time.time()
    backlog = int(psql_value(st, "bench_referrals", "SELECT count(*) FROM referrals WHERE status = 1"))
    while time.time() - t0 < 600:
        if psql_value(st, "bench_referrals", "SELECT count(*) FROM referrals WHERE status = 1") == "0":
            break
        time.sleep(1)
    routed = int(psql_value(st, "bench_referrals", "SELECT count(*) FROM referrals WHERE status NOT IN (1, 9)"))
    res["routing_drain"] = {"waiting_after_scenarios": backlog, "routed_total": routed,
                            "drain_seconds": round(time.time() - t0, 1)}
    log(f"  routing backlog: {backlog} waiting after the scenarios, drained in "
        f"{res['routing_drain']['drain_seconds']} s ({routed} routed in all)")

    routing_scenarios(st, res, admin_dir, referrals, dbs, referral_args)

    log("scale sweep: searches over 1k / 10k / 100k providers and facilities ...")
    loaded = sizes[0]
    for n in sizes:
        if n > loaded:
            t0 = time.time()
            load_directory(st, "bench_directory", loaded, n, 1)
            load_beds(st, "bench_beds", loaded, n, 1)
            admin_dir.CreateOrganization(d_pb2.CreateOrganizationRequest(  # invalidates the cache
                request_id=f"inv{n}", organization=d_pb2.Organization(
                    id=f"inv-{n}", kind=d_pb2.ORGANIZATION_KIND_COURT, name="x")), timeout=10)
            log(f"  loaded {n} in {time.time() - t0:.0f} s")
            loaded = n
        row = {"services_and_facilities": n,
               "search_uncached": loadgen(directory.port, "search_uncached", 8),
               "availability": loadgen(beds.port, "availability", 8, cert="client-child_welfare")}
        res["sweep"].append(row)

    log("fee reports over 10k / 100k / 1M payments ...")
    pay_sizes = [10000, 100000] if QUICK else [10000, 100000, 1000000]
    for n in pay_sizes:
        t0 = time.time()
        load_payments(st, "bench_fees", tmpl.id, n)
        log(f"  loaded {n} payments in {time.time() - t0:.0f} s")
        r = loadgen(fees.port, "disbursement_report", 1, cert="client-fiscal", warmup=1.0)
        if r["calls"] < 3:  # Slower than the window: measure long enough for a few calls.
            r = loadgen(fees.port, "disbursement_report", 1, cert="client-fiscal", warmup=0.0,
                        seconds=60)
        res["reports"].append({"payments": n, "report": r})
    res["memory_mib"]["peak"] = {n: round(rss(s.proc.pid, "VmHWM"), 1) for n, s in services.items()}
    return finish(res, started)


def finish(res, started):
    res["wall_seconds"] = round(time.time() - started)
    ratios(res)
    out = os.environ.get("BENCH_OUT") or os.path.join(ROOT, "bench-results",
                                                      f"bench-{datetime.date.today()}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
    print(table(res))
    log(f"\nJSON: {out}")
    return 0


def find(rows, scenario, c):
    return next((r for r in rows if r["scenario"] == scenario and r["concurrency"] == c), None)


def ratios(res):
    res["targets"] = []
    if res["baselines"]:
        call_ratios(res)
    if res["sweep"] and res["reports"]:  # not in a BENCH_CORE run
        scale_ratios(res)
    routing_targets(res)


def routing_targets(res):
    if "routing" not in res:
        return
    per_s = res["routing_per_second_one_process"]
    p99 = res["offer_on_stream_p99_ms_at_20_per_s"]
    em = res["emergency_offer_ms_with_5000_waiting"]
    waited = res["routing"]["emergency"]["routine_waiting"]
    res["targets"] += [
        ("referrals routed per second, one process >= 100", per_s >= 100, f"{per_s:.0f}/s"),
        ("CreateReferral -> offer on the provider's stream, p99 at 20/s <= 250 ms",
         p99 is not None and p99 <= 250, f"{p99:.0f} ms" if p99 is not None else "none arrived"),
        (f"emergency referral -> offer while {waited} routine wait <= 1 s", em is not None and em <= 1000,
         f"{em:.0f} ms" if em is not None else "not within 30 s"),
    ]


def call_ratios(res):
    echo1, echo8 = find(res["baselines"]["echo"], "echo", 1), find(res["baselines"]["echo"], "echo", 8)
    commit1 = res["baselines"]["pg_commit"][0]
    commit8 = res["baselines"]["pg_commit"][1]
    sc = res["scenarios"]
    cached8 = find(sc, "search_cached", 8)
    hold1 = find(sc, "hold", 1)
    create1, create8 = find(sc, "create_referral", 1), find(sc, "create_referral", 8)
    pay8 = find(sc, "record_payment", 8)
    unavoidable_ms = echo1["p50_us"] / 1000 + commit1["latency_ms"]
    r = res["ratios"] = {
        "search_cached_vs_echo_throughput_c8": cached8["throughput_per_s"] / echo8["throughput_per_s"],
        "hold_p50_vs_echo_plus_commit_c1": (hold1["p50_us"] / 1000) / unavoidable_ms,
        "create_referral_p50_vs_echo_plus_commit_c1": (create1["p50_us"] / 1000) / unavoidable_ms,
        "create_referral_p99_ms_c8": create8["p99_us"] / 1000,
        "record_payment_vs_commit_throughput_c8": pay8["throughput_per_s"] / commit8["tps"],
    }
    # Not a target: intake's own cost with the routing of its referrals held back (intake_only).
    intake1 = find(sc, "create_referral_intake_only", 1)
    intake8 = find(sc, "create_referral_intake_only", 8)
    if intake1 and intake8:
        r["create_referral_intake_only_p50_vs_echo_plus_commit_c1"] = (
            intake1["p50_us"] / 1000) / unavoidable_ms
        r["create_referral_intake_only_p99_ms_c8"] = intake8["p99_us"] / 1000
    mem = res["memory_mib"]["idle_loaded"]
    res["targets"] += [
        ("cached SearchServices >= 50% of echo throughput at 8 in flight",
         r["search_cached_vs_echo_throughput_c8"] >= 0.5, f"{r['search_cached_vs_echo_throughput_c8']:.0%}"),
        ("CreateReferral p99 <= 10 ms at 8 in flight", r["create_referral_p99_ms_c8"] <= 10,
         f"{r['create_referral_p99_ms_c8']:.1f} ms"),
        ("CreateReferral within 2x of its round trip + commit",
         r["create_referral_p50_vs_echo_plus_commit_c1"] <= 2,
         f"{r['create_referral_p50_vs_echo_plus_commit_c1']:.2f}x"),
        ("HoldBed within 2x of its round trip + commit", r["hold_p50_vs_echo_plus_commit_c1"] <= 2,
         f"{r['hold_p50_vs_echo_plus_commit_c1']:.2f}x"),
        ("RecordPayment >= 30% of pgbench's single-row commits at 8",
         r["record_payment_vs_commit_throughput_c8"] >= 0.3,
         f"{r['record_payment_vs_commit_throughput_c8']:.0%}"),
        ("each service <= 64 MiB resident when idle", max(mem.values()) <= 64,
         ", ".join(f"{k} {v:.0f}" for k, v in mem.items()) + " MiB"),
    ]


def scale_ratios(res):
    r, sweep, last_report = res["ratios"], res["sweep"], res["reports"][-1]
    p99_first, p99_last = sweep[0]["search_uncached"]["p99_us"], sweep[-1]["search_uncached"]["p99_us"]
    av_first, av_last = sweep[0]["availability"]["p99_us"], sweep[-1]["availability"]["p99_us"]
    r["search_p99_largest_vs_smallest"] = p99_last / p99_first
    r["availability_p99_largest_vs_smallest"] = av_last / av_first
    r["report_p50_ms_at_largest"] = last_report["report"]["p50_us"] / 1000
    res["targets"][3:3] = [
        (f"search p99 at {sweep[-1]['services_and_facilities']} <= 2x p99 at {sweep[0]['services_and_facilities']}",
         r["search_p99_largest_vs_smallest"] <= 2, f"{r['search_p99_largest_vs_smallest']:.2f}x"),
        (f"fee report over {last_report['payments']} payments < 1 s",
         r["report_p50_ms_at_largest"] < 1000, f"{r['report_p50_ms_at_largest']:.0f} ms"),
    ]


def table(res):
    m = res["machine"]
    lines = [f"SafeHarbor benchmark, {res['date']}, {m['cpus']} CPUs ({m['cpu']}), {m['platform']}",
             f"{res['seconds_per_measurement']:.0f} s per measurement after a warm-up; loopback; mTLS everywhere.",
             "", "| scenario | in flight | calls/s | p50 ms | p90 ms | p99 ms | p99.9 ms | outcomes |",
             "|---|---|---|---|---|---|---|---|"]

    def row(name, r):
        codes = ", ".join(f"{k} {v}" for k, v in r["codes"].items())
        lines.append(f"| {name} | {r['concurrency']} | {r['throughput_per_s']:.0f} | {r['p50_us']/1000:.2f} | "
                     f"{r['p90_us']/1000:.2f} | {r['p99_us']/1000:.2f} | {r['p999_us']/1000:.2f} | {codes} |")
    for r in res["baselines"].get("echo", []):
        row("baseline: bare gRPC echo", r)
    for r in res["scenarios"]:
        row(r["scenario"], r)
    lines += ["", "| baseline | clients | per second | latency ms |", "|---|---|---|---|"]
    for r in res["baselines"].get("pg_commit", []):
        lines.append(f"| PostgreSQL single-row commit (pgbench) | {r['clients']} | {r['tps']:.0f} | {r['latency_ms']:.3f} |")
    for r in res["baselines"].get("redis_get", []):
        lines.append(f"| Redis GET round trip (redis-benchmark) | {r['clients']} | {r['rps']:.0f} | {r['avg_ms']:.3f} |")
    lines += ["", "| providers + facilities | SearchServices p50 / p99 ms | SearchAvailability p50 / p99 ms |",
              "|---|---|---|"]
    for s in res["sweep"]:
        a, b = s["search_uncached"], s["availability"]
        lines.append(f"| {s['services_and_facilities']} | {a['p50_us']/1000:.2f} / {a['p99_us']/1000:.2f} | "
                     f"{b['p50_us']/1000:.2f} / {b['p99_us']/1000:.2f} |")
    lines += ["", "| payments in the ledger | disbursement report p50 / p99 ms |", "|---|---|"]
    for r in res["reports"]:
        lines.append(f"| {r['payments']} | {r['report']['p50_us']/1000:.1f} / {r['report']['p99_us']/1000:.1f} |")
    lines += ["", "| memory (MiB resident) | " + " | ".join(res["memory_mib"]["idle_loaded"]) + " |",
              "|---|" + "---|" * len(res["memory_mib"]["idle_loaded"])]
    for k, v in res["memory_mib"].items():
        lines.append(f"| {k} | " + " | ".join(f"{x:.1f}" for x in v.values()) + " |")
    if "routing" in res:
        rt = res["routing"]
        st_, em = rt["offer_on_stream"], rt["emergency"]
        lines += ["", "| routing | measured |", "|---|---|",
                  f"| CreateReferral -> offer on the provider's stream at {st_['per_second']}/s open loop "
                  f"({st_['referrals']} referrals) | p50 {st_['p50_ms']:.1f} ms, p99 {st_['p99_ms']:.1f} ms, "
                  f"{st_['missed']} not within 30 s |",
                  f"| emergency referral -> offer while {em['routine_waiting']} routine wait | "
                  + (f"{em['offer_ms']:.0f} ms" if em["offer_ms"] is not None else "not within 30 s") + " |"]
        for name, key in (("one process", "one_process"), ("two processes", "two_processes")):
            d = rt[key]
            lines.append(f"| routed per second, {name} | {d['per_second']:.0f} ({d['routed']} of "
                         f"{d['waiting_at_start']} in {d['seconds']} s) |")
    lines += ["", "| ratio | value |", "|---|---|"]
    for k, v in res.get("ratios", {}).items():
        lines.append(f"| {k} | {v:.3f} |")
    lines += ["", "| target | met | measured |", "|---|---|---|"]
    for name, ok, val in res["targets"]:
        lines.append(f"| {name} | {'yes' if ok else '**no**'} | {val} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Dependencies that hang, not only die (issue 12). The built binaries over mTLS: directory, beds
and two replicas of referral-service on one PostgreSQL and one Redis. While clients keep calling,
each dependency process in turn is stopped with SIGSTOP (the process is there, its sockets accept,
nothing answers) for a few seconds and resumed with SIGCONT: directory-service, beds-service,
PostgreSQL (the postmaster and every backend), Redis.

For each hang it prints the calls made during it, how many failed, and p50 / p99 latency of the
calls that need the hung dependency and of those that do not. It asserts outcomes, not tight
timings: calls that do not need it never fail; calls that need it fail UNAVAILABLE, long before
the client's own deadline; after SIGCONT they succeed again within 5 s, and no process restarted.
"""
import os
import signal
import subprocess
import threading
import time
import unittest
import urllib.request

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from harness import SERVERS, Service, Stack, shclient, wait_for, referral_secrets

KING = "53033"
HANG_S = 6.0
CLIENT_TIMEOUT_S = 20  # an intake terminal's patience: the services must answer long before
NEED_BOUND_S = 3.0     # the target is 2 s; asserted with slack for a loaded 2-core machine
RECOVERY_S = 5.0


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def ms(seconds):
    return f"{seconds * 1000:.0f} ms" if seconds == seconds else "-"


class Load:
    """Client threads calling in a loop; records (kind, needs, start, latency, code)."""

    def __init__(self):
        self.records, self.lock, self.stopping, self.threads = [], threading.Lock(), False, []

    def add(self, kind, needs, fn, pause=0.02):
        def loop(t):
            i = 0
            while not self.stopping:
                i += 1
                start = time.time()
                try:
                    fn(f"{t}-{i}")
                    code = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    code = e.code()
                with self.lock:
                    self.records.append((kind, needs, start, time.time() - start, code))
                time.sleep(pause)
        t = threading.Thread(target=loop, args=(f"{kind}-{len(self.threads)}",), daemon=True)
        self.threads.append(t)
        t.start()

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(timeout=CLIENT_TIMEOUT_S + 5)

    def during(self, t0, t1):
        with self.lock:
            return [r for r in self.records if t0 <= r[2] < t1]


class SlowDependencies(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = st = Stack()
        cls.addClassCleanup(st.close)
        cls.directory = Service(st, "directory", "directory-service", st.database("slow_dir")).start()
        dir_addr = f"--directory_address=localhost:{cls.directory.port}"
        # Every placement referral of the test is one agency's: its cap on active holds is not
        # what this test is about.
        cls.beds = Service(st, "beds", "beds-service", st.database("slow_beds"),
                           [dir_addr, "--max_active_holds_per_organization=100000"]).start()
        ref_db = st.database("slow_ref")
        # Every child-welfare read looks its region up in the directory (no organization cache):
        # those are the calls that need the directory.
        ref_args = [dir_addr, f"--beds_address=localhost:{cls.beds.port}", *referral_secrets(),
                    "--timer_interval_ms=200", "--organization_cache_s=0"]
        cls.referrals = [Service(st, "referrals", "referral-service", ref_db, ref_args).start()
                         for _ in range(2)]
        cls.pids = {s.name + str(s.port): s.proc.pid for s in [cls.directory, cls.beds] + cls.referrals}
        cls.chans = {}
        cls.d = cls.stub("directory", cls.directory.port, "client-auditor")[1]
        cls.b = cls.stub("beds", cls.beds.port, "client-auditor")[1]
        cls.r = cls.stub("referrals", cls.referrals[0].port, "client-auditor")[1]
        cls.n = 0
        cls.seed()

    @classmethod
    def stub(cls, service, port, cert):
        key = (port, cert)
        if key not in cls.chans:
            cls.chans[key] = cls.stack.channel(port, cert)
        return shclient.stub(service, cls.chans[key])

    @classmethod
    def seed(cls):
        d, b = cls.d, cls.b
        admin = cls.stub("directory", cls.directory.port, "client-directory_admin")[0]
        for oid, kind in [("slow-prov-a", d.ORGANIZATION_KIND_SERVICE_PROVIDER),
                          ("demo-cw-king", d.ORGANIZATION_KIND_CHILD_WELFARE_OFFICE)]:
            admin.CreateOrganization(d.CreateOrganizationRequest(request_id=f"org-{oid}", organization=d.Organization(
                id=oid, kind=kind, name=f"Org {oid}", county_fips=KING,
                locations=[d.Location(id="main", name="Main", address_1="1 Main St", city="Seattle",
                                      latitude=47.61, longitude=-122.33, county_fips=KING)],
                phones=[d.Phone(number="+1 206-555-0100")])), timeout=10)
        beds_admin = cls.stub("beds", cls.beds.port, "client-directory_admin")[0]
        beds_admin.CreateFacility(b.CreateFacilityRequest(request_id="fac-slow-a", facility=b.Facility(
            id="fac-slow-a", organization_id="slow-prov-a", name="Harbor House",
            placement_type=b.PLACEMENT_TYPE_HOPE_CENTER, county_fips=KING, latitude=47.61,
            longitude=-122.33, minimum_age=12, maximum_age=17, csec_specialized=True,
            bed_types=[b.BedTypeCapacity(bed_type=b.BED_TYPE_GENERAL, licensed_capacity=1000)])),
            timeout=10)
        now = Timestamp()
        now.GetCurrentTime()
        owner = cls.stub("beds", cls.beds.port, cls.stack.client_cert("client-slow-prov-a", "slow-prov-a",
                                                                       "provider"))[0]
        owner.ReportCensus(b.ReportCensusRequest(
            request_id="census-slow-a", facility_id="fac-slow-a", confirmed_time=now,
            entries=[b.CensusEntry(bed_type=b.BED_TYPE_GENERAL, occupied=0)]), timeout=10)
        cls.known = cls.create_referral("client-law_enforcement", "seed-ref").referral.id

    # The calls clients make. Each alternates between the two referral-service replicas.
    @classmethod
    def replica(cls):
        cls.n += 1
        return cls.referrals[cls.n % 2].port

    @classmethod
    def create_referral(cls, cert, rid):
        r = cls.r
        stub = cls.stub("referrals", cls.replica(), cert)[0]
        return stub.CreateReferral(r.CreateReferralRequest(
            request_id=rid, referrer_contact=r.ReferrerContact(name="Officer Lee", phone="+1 206-555-0142"),
            youth=r.YouthProfile(youth_reference=f"Y-{rid}", age=15, gender=1),
            county_fips=KING, location={"latitude": 47.6062, "longitude": -122.3321},
            needs=r.Needs(placement_tonight=True), urgency=r.URGENCY_URGENT), timeout=CLIENT_TIMEOUT_S)

    def officer_create(self, tag):
        return self.create_referral("client-law_enforcement", f"{self.phase}-{tag}")

    def officer_get(self, _):
        stub = self.stub("referrals", self.replica(), "client-law_enforcement")[0]
        return stub.GetReferral(self.r.GetReferralRequest(id=self.known), timeout=CLIENT_TIMEOUT_S)

    def child_welfare_get(self, _):  # its region comes from the directory
        stub = self.stub("referrals", self.replica(), "client-child_welfare")[0]
        return stub.GetReferral(self.r.GetReferralRequest(id=self.known), timeout=CLIENT_TIMEOUT_S)

    def facility_create(self, tag):  # beds-service checks the owner in the directory
        b = self.b
        stub = self.stub("beds", self.beds.port, "client-directory_admin")[0]
        fid = f"fac-{self.phase}-{tag}".replace("_", "-")
        return stub.CreateFacility(b.CreateFacilityRequest(request_id=fid, facility=b.Facility(
            id=fid, organization_id="slow-prov-a", name="Annex", placement_type=b.PLACEMENT_TYPE_HOPE_CENTER,
            county_fips=KING, latitude=47.61, longitude=-122.33, minimum_age=12, maximum_age=17,
            bed_types=[b.BedTypeCapacity(bed_type=b.BED_TYPE_GENERAL, licensed_capacity=1)])),
            timeout=CLIENT_TIMEOUT_S)

    def beds_search(self, _):
        stub = self.stub("beds", self.beds.port, "client-child_welfare")[0]
        return stub.SearchAvailability(self.b.SearchAvailabilityRequest(county_fips=KING, age=15),
                                       timeout=CLIENT_TIMEOUT_S)

    def directory_search(self, _):  # the same search each time: cached in Redis
        stub = self.stub("directory", self.directory.port, "client-law_enforcement")[0]
        return stub.SearchServices(self.d.SearchServicesRequest(county_fips=KING), timeout=CLIENT_TIMEOUT_S)

    def organization_get(self, _):
        stub = self.stub("directory", self.directory.port, "client-auditor")[0]
        return stub.GetOrganization(self.d.GetOrganizationRequest(id="slow-prov-a"), timeout=CLIENT_TIMEOUT_S)

    def health(self, port):
        with self.stack.channel(port, "client-auditor") as chan:
            try:
                return shclient.health(chan, timeout=1)
            except grpc.RpcError as e:
                return str(e.code())

    def breaker_metrics(self, service):
        text = urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5).read()
        return [line for line in text.decode().splitlines()
                if line.startswith(("safeharbor_dependency_breaker_state", "safeharbor_dependency_timeouts"))]

    def hang(self, name, stop, cont, need, dont, recovered, watch_health=()):
        """Runs the load ((call, client threads, pause between calls) for the calls that need the
        dependency and those that do not), SIGSTOPs the dependency for HANG_S, SIGCONTs it; prints
        and checks."""
        self.phase = name
        for fn in [c[0] for c in need + dont] + [recovered]:
            wait_for(lambda: fn("warm") or True, timeout=30, what=f"{name}: warm {fn.__name__}")
        load = Load()
        for needs, calls in [(True, need), (False, dont)]:
            for fn, threads, pause in calls:
                for _ in range(threads):
                    load.add(fn.__name__, needs, fn, pause)
        time.sleep(1.0)
        health_seen = {}
        t0 = time.time()
        stop()
        try:
            while time.time() < t0 + HANG_S:
                for port in watch_health:
                    if port not in health_seen and self.health(port) == "NOT_SERVING":
                        health_seen[port] = time.time() - t0
                time.sleep(0.1)
        finally:
            cont()
        t1 = time.time()
        recovery = None
        while time.time() < t1 + 15:
            try:
                recovered("after")
                recovery = time.time() - t1
                break
            except grpc.RpcError:
                time.sleep(0.1)
        healthy_again = {}
        while watch_health and len(healthy_again) < len(watch_health) and time.time() < t1 + 15:
            for port in watch_health:
                if port not in healthy_again and self.health(port) == "SERVING":
                    healthy_again[port] = time.time() - t1
            time.sleep(0.1)
        time.sleep(max(0.0, t1 + 2.0 - time.time()))
        load.stop()
        return self.report(name, load.during(t0, t1), recovery, health_seen, healthy_again, watch_health)

    def report(self, name, rows, recovery, health_seen, healthy_again, watch_health):
        groups = {True: [r for r in rows if r[1]], False: [r for r in rows if not r[1]]}
        failed = {k: [r for r in v if r[4] != grpc.StatusCode.OK] for k, v in groups.items()}
        lines = [f"\n{name} hung {HANG_S:.0f} s (SIGSTOP): {len(rows)} calls made during the hang, "
                 f"{len(failed[True]) + len(failed[False])} failed"]
        for needs, label in [(True, "need it"), (False, "don't need it")]:
            g = groups[needs]
            kinds = sorted({r[0] for r in g})
            codes = sorted({r[4].name for r in failed[needs]})
            lat = [r[3] for r in g]
            lines.append(f"  calls that {label} ({', '.join(kinds) or 'none'}): {len(g)} calls, "
                         f"{len(failed[needs])} failed {codes if codes else ''}, "
                         f"p50 {ms(percentile(lat, 0.5))}, p99 {ms(percentile(lat, 0.99))}, "
                         f"max {ms(max(lat) if lat else float('nan'))}")
            by_kind = ", ".join(f"{k} {len([r for r in g if r[0] == k])} p99 "
                                f"{ms(percentile([r[3] for r in g if r[0] == k], 0.99))}" for k in kinds)
            if by_kind:
                lines.append(f"    by call: {by_kind}")
        lines.append(f"  after SIGCONT: success in {ms(recovery) if recovery is not None else 'NEVER'}; "
                     f"no process restarted")
        for port in watch_health:
            lines.append(f"  health of :{port}: NOT_SERVING after {ms(health_seen.get(port, float('nan')))} "
                         f"of the hang, SERVING {ms(healthy_again.get(port, float('nan')))} after SIGCONT")
        print("\n".join(lines), flush=True)
        self.assertEqual([(r[0], r[4].name) for r in failed[False]], [],
                         f"{name}: calls that do not need it failed")
        for r in failed[True]:
            self.assertEqual(r[4], grpc.StatusCode.UNAVAILABLE, f"{name}: {r[0]} failed with {r[4]}")
        slow = [(r[0], round(r[3], 2)) for r in groups[True] if r[3] > NEED_BOUND_S]
        self.assertEqual(slow, [], f"{name}: calls that need it waited longer than {NEED_BOUND_S} s")
        self.assertIsNotNone(recovery, f"{name}: never succeeded after SIGCONT")
        self.assertLess(recovery, RECOVERY_S, f"{name}: success only {recovery:.1f} s after SIGCONT")
        for port in watch_health:
            self.assertIn(port, health_seen, f"{name}: health of :{port} stayed SERVING")
            self.assertIn(port, healthy_again, f"{name}: health of :{port} never SERVING again")
        for s in [self.directory, self.beds] + self.referrals:
            self.assertIsNone(s.proc.poll(), f"{s.name} exited")
            self.assertEqual(self.pids[s.name + str(s.port)], s.proc.pid)
        return rows

    def send(self, proc, sig):
        return lambda: proc.send_signal(sig)

    def test_1_directory_hangs(self):
        p = self.directory.proc
        self.hang("directory", self.send(p, signal.SIGSTOP), self.send(p, signal.SIGCONT),
                  # More calls that wait on the directory than each replica has worker threads (8).
                  need=[(self.child_welfare_get, 16, 0.1), (self.facility_create, 2, 0.1)],
                  dont=[(self.officer_create, 1, 0.2), (self.officer_get, 2, 0.02),
                        (self.beds_search, 1, 0.02)],
                  recovered=self.child_welfare_get)
        for line in self.breaker_metrics(self.referrals[0]):
            print(f"  referrals metrics: {line}")

    def test_2_beds_hangs(self):
        # No call of a client needs beds-service synchronously: intake is routed in the background.
        # What needs it: the referrals taken during the hang are offered with a bed held after it.
        p = self.beds.proc
        taken = []  # (when, referral id)

        def intake(tag):
            taken.append((time.time(), self.officer_create(tag).referral.id))

        def routed(_):
            during = [i for t, i in taken if t >= self.stopped_at]
            if not during:
                return  # warming up
            stub = self.stub("referrals", self.replica(), "client-child_welfare")[0]
            first = stub.GetReferral(self.r.GetReferralRequest(id=during[0]), timeout=5).referral
            if first.status != self.r.REFERRAL_STATUS_OFFERED:
                raise grpc.RpcError("not offered yet")
        intake.__name__ = "officer_create"
        self.stopped_at = float("inf")

        def stop():
            self.stopped_at = time.time()
            p.send_signal(signal.SIGSTOP)
        self.hang("beds", stop, self.send(p, signal.SIGCONT),
                  need=[], dont=[(intake, 1, 0.2), (self.officer_get, 2, 0.02),
                                 (self.child_welfare_get, 1, 0.02), (self.directory_search, 1, 0.02)],
                  recovered=routed)
        stub = self.stub("referrals", self.referrals[0].port, "client-child_welfare")[0]
        offered = wait_for(lambda: all(stub.GetReferral(self.r.GetReferralRequest(id=i), timeout=5).referral.status
                                       == self.r.REFERRAL_STATUS_OFFERED for _, i in taken) and len(taken),
                           timeout=60, what="every referral taken during the beds hang offered")
        print(f"  beds: {offered} referrals taken before, during and after the hang, all offered with a bed "
              f"held; the first taken during the hang is what 'success after SIGCONT' waited for", flush=True)

    def test_3_postgres_hangs(self):
        pg_dir = os.path.join(self.stack.dir, "pg")
        officer = self.stack.client_cert("client-slow-pg-officer", "slow-pg-officer", "law_enforcement")
        acked = []

        def pg_intake(tag):
            acked.append(self.create_referral(officer, f"pg-{tag}").referral.id)
        pg_intake.__name__ = "officer_create"
        rows = self.hang(
            "postgres", lambda: subprocess.run([SERVERS, "pg-freeze", pg_dir], check=True),
            lambda: subprocess.run([SERVERS, "pg-thaw", pg_dir], check=True),
            need=[(pg_intake, 2, 0.1), (self.officer_get, 1, 0.05), (self.organization_get, 1, 0.05)],
            dont=[(self.directory_search, 2, 0.02)], recovered=pg_intake,
            watch_health=[self.referrals[0].port, self.referrals[1].port, self.directory.port])
        # Never acknowledged what it could not store: every acknowledged intake is there.
        stub = self.stub("referrals", self.referrals[0].port, officer)[0]
        stored, token = set(), ""
        while True:
            page = stub.ListReferrals(self.r.ListReferralsRequest(page_size=100, page_token=token), timeout=10)
            stored |= {item.referrer_view.id for item in page.referrals}
            token = page.next_page_token
            if not token:
                break
        missing = [i for i in acked if i not in stored]
        refused = sum(1 for r in rows if r[0] == "officer_create" and r[4] != grpc.StatusCode.OK)
        print(f"  postgres: {len(acked)} intakes acknowledged (before, during, after), {refused} refused "
              f"during the hang, {len(missing)} acknowledged but not stored", flush=True)
        self.assertEqual(missing, [])

    def test_4_redis_hangs(self):
        with open(os.path.join(self.stack.dir, "redis", "redis.pid")) as f:
            pid = int(f.read())
        self.hang("redis", lambda: os.kill(pid, signal.SIGSTOP), lambda: os.kill(pid, signal.SIGCONT),
                  need=[], dont=[(self.directory_search, 2, 0.02), (self.beds_search, 1, 0.02),
                                 (self.officer_create, 1, 0.2), (self.child_welfare_get, 1, 0.02)],
                  recovered=self.directory_search)


if __name__ == "__main__":
    unittest.main(verbosity=2)

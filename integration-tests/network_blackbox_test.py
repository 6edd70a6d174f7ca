#!/usr/bin/python3
"""The whole network as black boxes: two replicas of every service (directory, beds, referrals,
fees) on one database each, over mTLS. The whole story (a referral to services, a buyer's fee to
the providers), then faults: kill -9 of each service mid-story, Redis stopped, PostgreSQL
restarted. Prints the calls made and lost for each fault; the test fails if any acknowledged call
is lost or applied twice.

Clients fail over between the two replicas of a service with the same request_id, as a real
client behind a load balancer would. The services reach their dependencies through replica 2 (in
Kubernetes: through the Service), so killing replica 1 of a dependency is a fault for clients only.
"""
import os
import subprocess
import threading
import time
import unittest

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from harness import SERVERS, Service, Stack, shclient, wait_for, referral_secrets

KING = "53033"
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.CANCELLED)


class Pair:
    """Two replicas of one service; calls fail over between them."""

    def __init__(self, stack, name, binary, db, extra=()):
        self.stack = stack
        self.replicas = [Service(stack, name, binary, db, extra).start(),
                         Service(stack, name, binary, db, extra).start()]
        self.name = name

    def call(self, cert, method, request, attempts=40):
        """One logical call: retried on the other replica (same request) until acknowledged.
        Returns (response, attempts used)."""
        last = None
        for i in range(attempts):
            r = self.replicas[i % 2]
            with self.stack.channel(r.port, cert) as chan:
                stub, _ = shclient.stub(self.name, chan)
                try:
                    return getattr(stub, method)(request, timeout=5), i + 1
                except grpc.RpcError as e:
                    if e.code() not in RETRYABLE:
                        raise
                    last = e
            time.sleep(0.05 * min(i, 10))
        raise last

    def pb2(self):
        return shclient.stub(self.name, self.stack.channel(self.replicas[1].port,
                                                           "client-auditor"))[1]


class NetworkBlackBox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = st = Stack()
        cls.addClassCleanup(st.close)
        cls.directory = Pair(st, "directory", "directory-service", st.database("net_directory"))
        dir_addr = f"--directory_address=localhost:{cls.directory.replicas[1].port}"
        # The kill -9 stories hold 30 beds for one organization: above the default cap (25).
        cls.beds = Pair(st, "beds", "beds-service", st.database("net_beds"),
                        [dir_addr, "--max_active_holds_per_organization=100"])
        cls.referrals = Pair(st, "referrals", "referral-service", st.database("net_referrals"), [
            dir_addr, f"--beds_address=localhost:{cls.beds.replicas[1].port}",
            *referral_secrets(),
            "--timer_interval_ms=200"])
        cls.fees = Pair(st, "fees", "fee-service", st.database("net_fees"), [dir_addr])
        cls.d, cls.b, cls.r, cls.f = (p.pb2() for p in (cls.directory, cls.beds, cls.referrals, cls.fees))
        cls.provider_cert = st.client_cert("client-net-prov-a", "net-prov-a", "provider")
        cls.seed()

    @classmethod
    def seed(cls):
        d = cls.d
        for oid, kind, lat, lng in [("net-prov-a", d.ORGANIZATION_KIND_SERVICE_PROVIDER, 47.61, -122.33),
                                    ("net-prov-b", d.ORGANIZATION_KIND_SERVICE_PROVIDER, 47.70, -122.30),
                                    ("demo-cw-king", d.ORGANIZATION_KIND_CHILD_WELFARE_OFFICE, 47.60, -122.32)]:
            cls.directory.call("client-directory_admin", "CreateOrganization", d.CreateOrganizationRequest(
                request_id=f"org-{oid}", organization=d.Organization(
                    id=oid, kind=kind, name=f"Org {oid}", county_fips=KING,
                    locations=[d.Location(id="main", name="Main", address_1="1 Main St", city="Seattle",
                                          latitude=lat, longitude=lng, county_fips=KING)],
                    phones=[d.Phone(number="+1 206-555-0100")])))
        # The fee story's court (serves King County) and hosting agency.
        for oid, kind in (("demo-court-king", d.ORGANIZATION_KIND_COURT),
                          ("demo-le-seattle-pd", d.ORGANIZATION_KIND_LAW_ENFORCEMENT_AGENCY)):
            cls.directory.call("client-directory_admin", "CreateOrganization", d.CreateOrganizationRequest(
                request_id=f"org-{oid}", organization=d.Organization(
                    id=oid, kind=kind, name=f"Org {oid}", county_fips=KING)))
        b = cls.b
        cls.beds.call("client-directory_admin", "CreateFacility", b.CreateFacilityRequest(
            request_id="fac-net-a", facility=b.Facility(
                id="fac-net-a", organization_id="net-prov-a", name="Harbor House",
                placement_type=b.PLACEMENT_TYPE_HOPE_CENTER, county_fips=KING, latitude=47.61,
                longitude=-122.33, minimum_age=12, maximum_age=17, csec_specialized=True,
                bed_types=[b.BedTypeCapacity(bed_type=b.BED_TYPE_GENERAL, licensed_capacity=200)])))
        now = Timestamp()
        now.GetCurrentTime()
        cls.beds.call(cls.provider_cert, "ReportCensus", b.ReportCensusRequest(
            request_id="census-net-a", facility_id="fac-net-a", confirmed_time=now,
            entries=[b.CensusEntry(bed_type=b.BED_TYPE_GENERAL, occupied=0)]))

    def facility(self):
        got, _ = self.beds.call("client-directory_admin", "GetFacility", self.b.GetFacilityRequest(id="fac-net-a"))
        return got.beds[0]

    def referral_request(self, rid):
        r = self.r
        return r.CreateReferralRequest(
            request_id=rid, referrer_contact=r.ReferrerContact(name="Officer Lee", phone="+1 206-555-0142"),
            youth=r.YouthProfile(youth_reference=f"Y-{rid}", age=15, gender=1),
            county_fips=KING, location={"latitude": 47.6062, "longitude": -122.3321},
            needs=r.Needs(placement_tonight=True), urgency=r.URGENCY_URGENT)

    def referral(self, rid):
        got, _ = self.referrals.call("client-child_welfare", "GetReferral", self.r.GetReferralRequest(id=rid))
        return got.referral

    def assess(self, rid, cents):
        f = self.f
        a, _ = self.fees.call("client-court_clerk", "RecordAssessment", f.RecordAssessmentRequest(
            request_id=rid, assessment=f.Assessment(
                case_number=rid, jurisdiction_fips=KING, statute=f.STATUTE_PATRONIZING, priors=0,
                ordered_cents=cents, hosting_agency_organization_id="demo-le-seattle-pd",
                offense_date=f.Date(year=2026, month=3, day=1),
                assessed_date=f.Date(year=2026, month=4, day=1))))
        return a.assessment

    def test_1_whole_story(self):
        r, f = self.r, self.f
        before = self.facility()
        view, _ = self.referrals.call("client-law_enforcement", "CreateReferral", self.referral_request("story-1"))
        rid = view.referral.id
        offered = wait_for(lambda: (lambda x: x if x.status == r.REFERRAL_STATUS_OFFERED else None)(
            self.referral(rid)), what="the offer")
        self.assertEqual(offered.offers[0].provider_organization_id, "net-prov-a")
        self.assertEqual(self.facility().held, before.held + 1)
        self.referrals.call(self.provider_cert, "AcceptReferral", r.AcceptReferralRequest(id=rid, request_id="acc"))
        ready, _ = self.referrals.call("client-law_enforcement", "GetReferral", r.GetReferralRequest(id=rid))
        self.assertEqual(ready.referrer_view.stage, r.ReferrerView.STAGE_READY_FOR_HANDOFF)
        self.referrals.call(self.provider_cert, "ConfirmHandoff", r.ConfirmHandoffRequest(id=rid))
        self.referrals.call(self.provider_cert, "StartServices", r.StartServicesRequest(id=rid))
        self.assertEqual(self.referral(rid).status, r.REFERRAL_STATUS_IN_PROGRESS)
        wait_for(lambda: self.facility().occupied == before.occupied + 1, what="the placement in beds")
        connected, _ = self.referrals.call("client-law_enforcement", "GetReferral", r.GetReferralRequest(id=rid))
        self.assertEqual(connected.referrer_view.stage, r.ReferrerView.STAGE_CONNECTED_TO_SERVICES)

        # A buyer's fee: assessed, paid, disbursed to King's providers, the hosting agency, Commerce.
        a = self.assess("story-fee", 150000)
        paid, _ = self.fees.call("client-court_clerk", "RecordPayment", f.RecordPaymentRequest(
            request_id="story-pay", assessment_id=a.id, amount_cents=150000,
            paid_date=f.Date(year=2026, month=5, day=1)))
        shares = {d.account: d.amount_cents for d in paid.payment.disbursements}
        self.assertEqual(sum(shares.values()), 150000)
        self.assertEqual(shares["org:net-prov-a"] + shares["org:net-prov-b"], 75000)
        self.assertEqual(shares["org:demo-le-seattle-pd"], 72000)
        self.assertEqual(shares["org:demo-state-commerce"], 3000)
        report, _ = self.fees.call("client-fiscal", "GetDisbursementReport", f.GetDisbursementReportRequest(
            period=f.ReportPeriod(**{"from": f.Date(year=2026, month=1, day=1),
                                     "to": f.Date(year=2027, month=1, day=1)})))
        self.assertGreaterEqual(report.total_cents, 150000)
        self.assertIn("org:net-prov-a", report.csv)

    def kill_mid_story(self, pair, step, verify, n=30):
        """Runs `step(i)` n times (each one acknowledged logical call) in a thread, kills -9 the
        first replica once a third are done and restarts it at two thirds; then `verify(acked)`."""
        acked, made, errors = [], [0], []

        def run():
            for i in range(n):
                try:
                    _, attempts = step(i)
                    made[0] += attempts
                    acked.append(i)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append((i, repr(e)))
        t = threading.Thread(target=run)
        t.start()
        wait_for(lambda: len(acked) >= n // 3 or not t.is_alive(), what="a third of the story")
        victim = pair.replicas[0]
        victim.proc.kill()
        victim.proc.wait()
        wait_for(lambda: len(acked) >= 2 * n // 3 or not t.is_alive(), what="two thirds")
        victim.start()
        t.join(timeout=120)
        lost = n - len(acked)
        print(f"\n{pair.name}: kill -9 mid-story: {n} logical calls, {made[0]} attempts made, "
              f"{len(acked)} acknowledged, {lost} lost", flush=True)
        self.assertEqual(errors, [])
        self.assertEqual(lost, 0)
        verify(acked)

    def test_2_kill9_directory(self):
        d = self.d

        def step(i):
            return self.directory.call("client-directory_admin", "CreateOrganization", d.CreateOrganizationRequest(
                request_id=f"k-org-{i}", organization=d.Organization(
                    id=f"k-org-{i:03d}", kind=d.ORGANIZATION_KIND_LAW_ENFORCEMENT_AGENCY, name=f"K {i}",
                    county_fips="53053")))

        def verify(acked):
            got, _ = self.directory.call("client-auditor", "ListOrganizations", d.ListOrganizationsRequest(
                county_fips="53053", page_size=100))
            ids = [o.id for o in got.organizations if o.id.startswith("k-org-")]
            self.assertEqual(sorted(ids), sorted(f"k-org-{i:03d}" for i in acked))
        self.kill_mid_story(self.directory, step, verify)

    def test_3_kill9_beds(self):
        b = self.b
        before = self.facility().held

        def step(i):
            return self.beds.call("referrals", "HoldBed", b.HoldBedRequest(
                request_id=f"k-hold-{i}", facility_id="fac-net-a", bed_type=b.BED_TYPE_GENERAL,
                referral_id=f"k-ref-{i}", ttl_seconds=3600))
        # Each acknowledged hold is there once: a retried one was not held twice.
        self.kill_mid_story(self.beds, step, lambda acked: self.assertEqual(
            self.facility().held, before + len(acked)))

    def test_4_kill9_referrals(self):
        cert = self.stack.client_cert("client-net-le-kill", "net-le-kill", "law_enforcement")

        def step(i):
            return self.referrals.call(cert, "CreateReferral", self.referral_request(f"k-ref-{i}"))

        def verify(acked):
            got, _ = self.referrals.call(cert, "ListReferrals", self.r.ListReferralsRequest(page_size=100))
            self.assertEqual(len(got.referrals), len(acked))
            # And every one of them is routed (timers survive the kill).
            for item in got.referrals:
                wait_for(lambda: self.referral(item.referrer_view.id).status != self.r.REFERRAL_STATUS_REQUESTED,
                         what="routing after the kill")
        self.kill_mid_story(self.referrals, step, verify)

    def test_5_kill9_fees(self):
        f = self.f
        a = self.assess("k-fee", 150000)

        def step(i):
            return self.fees.call("client-court_clerk", "RecordPayment", f.RecordPaymentRequest(
                request_id=f"k-pay-{i}", assessment_id=a.id, amount_cents=1000,
                paid_date=f.Date(year=2026, month=5, day=1)))

        def verify(acked):
            got, _ = self.fees.call("client-court_clerk", "GetAssessment", f.GetAssessmentRequest(id=a.id))
            self.assertEqual(got.assessment.collected_cents, 1000 * len(acked))
        self.kill_mid_story(self.fees, step, verify)

    def story_calls(self, tag):
        """One short story through every service, each call answered at its first attempt (no
        failover hides an error); returns the number of calls made."""
        r, b, d, f = self.r, self.b, self.d, self.f
        calls = [0]

        def once(pair, cert, method, req):
            calls[0] += 1
            return pair.call(cert, method, req, attempts=1)[0]
        once(self.directory, "client-law_enforcement", "SearchServices", d.SearchServicesRequest(county_fips=KING))
        once(self.beds, "client-child_welfare", "SearchAvailability", b.SearchAvailabilityRequest(county_fips=KING))
        view = once(self.referrals, "client-law_enforcement", "CreateReferral", self.referral_request(f"{tag}-ref"))
        wait_for(lambda: self.referral(view.referral.id).status == r.REFERRAL_STATUS_OFFERED,
                 what=f"{tag}: routed")
        a = once(self.fees, "client-court_clerk", "RecordAssessment", f.RecordAssessmentRequest(
            request_id=f"{tag}-fee", assessment=f.Assessment(
                case_number=f"{tag}-fee", jurisdiction_fips=KING, statute=f.STATUTE_PATRONIZING,
                ordered_cents=150000, hosting_agency_organization_id="demo-le-seattle-pd",
                offense_date=f.Date(year=2026, month=3, day=1),
                assessed_date=f.Date(year=2026, month=4, day=1)))).assessment
        paid = once(self.fees, "client-court_clerk", "RecordPayment", f.RecordPaymentRequest(
            request_id=f"{tag}-pay", assessment_id=a.id, amount_cents=50000,
            paid_date=f.Date(year=2026, month=5, day=1)))
        self.assertEqual(sum(x.amount_cents for x in paid.payment.disbursements), 50000)
        return calls[0]

    def test_6_redis_stopped_every_call_still_succeeds(self):
        subprocess.run([SERVERS, "redis-stop", os.path.join(self.stack.dir, "redis")], check=True)
        try:
            made = self.story_calls("noredis")
            print(f"\nRedis stopped: {made} calls made, 0 lost", flush=True)
        finally:
            self.stack.start_redis()

    def test_7_postgres_restart_unavailable_then_recovery(self):
        pg_dir = os.path.join(self.stack.dir, "pg")
        subprocess.run([SERVERS, "pg-stop", pg_dir], check=True)
        refused = 0
        try:
            for pair, cert, method, req in [
                    (self.directory, "client-auditor", "ListOrganizations", self.d.ListOrganizationsRequest()),
                    (self.beds, "client-directory_admin", "GetFacility", self.b.GetFacilityRequest(id="fac-net-a")),
                    (self.referrals, "client-law_enforcement", "ListReferrals", self.r.ListReferralsRequest()),
                    (self.fees, "client-fiscal", "GetCommerceRemittance",
                     self.f.GetCommerceRemittanceRequest(year=2026, quarter=2))]:
                with self.stack.channel(pair.replicas[1].port, cert) as chan:
                    stub, _ = shclient.stub(pair.name, chan)
                    with self.assertRaises(grpc.RpcError) as e:
                        getattr(stub, method)(req, timeout=10)
                    self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE,
                                     f"{pair.name}: {e.exception.details()}")
                    refused += 1
        finally:
            subprocess.run([SERVERS, "pg-start", pg_dir, str(self.stack.pg_port), "fast"], check=True)
        # The same processes recover by themselves.
        made = self.story_calls("afterpg")
        print(f"\nPostgreSQL restarted: {refused} calls refused with UNAVAILABLE while it was down; "
              f"{made} calls made after, 0 lost; no service restarted", flush=True)
        for pair in (self.directory, self.beds, self.referrals, self.fees):
            for rep in pair.replicas:
                self.assertIsNone(rep.proc.poll(), f"{pair.name} exited")


if __name__ == "__main__":
    unittest.main(verbosity=2)

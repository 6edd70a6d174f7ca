#!/usr/bin/python3
"""Black-box tests of referral-service across real directory, beds and referral processes over
mTLS: an officer's referral to a hand-off, deadlines that move the bed hold and escalate to child
welfare, and intake while the beds service is down."""
import queue
import threading
import time
import unittest

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from harness import start_referral_network, Service, Stack, shclient, referral_secrets

KING, SNOHOMISH = "53033", "53061"


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


class ReferralsBlackBox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack()
        cls.addClassCleanup(cls.stack.close)
        st = cls.stack
        cls.directory, cls.beds, cls.referrals = start_referral_network(
            st, ('bb_ref_directory', 'bb_ref_beds', 'bb_referrals'), [
            "--timer_interval_ms=200",
            "--emergency_deadline_s=2",
        ])
        cls.seed()

    @classmethod
    def seed(cls):
        st = cls.stack
        d, dpb2 = shclient.stub("directory", st.channel(cls.directory.port, "client-directory_admin"))
        for oid, kind, county, lat, lng in [
                ("bb-prov-a", dpb2.ORGANIZATION_KIND_SERVICE_PROVIDER, KING, 47.61, -122.33),
                ("bb-prov-b", dpb2.ORGANIZATION_KIND_SERVICE_PROVIDER, SNOHOMISH, 47.98, -122.20),
                ("demo-cw-king", dpb2.ORGANIZATION_KIND_CHILD_WELFARE_OFFICE, KING, 47.60, -122.32)]:
            d.CreateOrganization(dpb2.CreateOrganizationRequest(
                request_id=f"org-{oid}", organization=dpb2.Organization(
                    id=oid, kind=kind, name=f"Org {oid}", county_fips=county,
                    locations=[dpb2.Location(id="main", name="Main", address_1="1 Main St",
                                             city="Seattle", latitude=lat, longitude=lng,
                                             county_fips=county)],
                    phones=[dpb2.Phone(number="+1 206-555-0100")])), timeout=5)
        # Issue 14: a survivor advocate (24/7) at bb-prov-b, for a bed plus an advocate.
        d.CreateService(dpb2.CreateServiceRequest(request_id="svc-bb-adv", service=dpb2.Service(
            id="bb-adv", organization_id="bb-prov-b", name="Survivor advocacy",
            category=dpb2.SERVICE_CATEGORY_CSEC_ADVOCACY, csec_specialized=True, minimum_age=10,
            maximum_age=24, schedule=dpb2.Schedule(open_24_7=True, time_zone="America/Los_Angeles"),
            service_area_county_fips=[KING, SNOHOMISH], status=dpb2.SERVICE_STATUS_ACTIVE,
            accepting_referrals=True, location_id="main")), timeout=5)
        cls.dpb2 = dpb2
        admin, bpb2 = shclient.stub("beds", st.channel(cls.beds.port, "client-directory_admin"))
        cls.bpb2 = bpb2
        for fid, org, county, lat, lng, beds in [("fac-bb-a", "bb-prov-a", KING, 47.61, -122.33, 3),
                                                 ("fac-bb-b", "bb-prov-b", SNOHOMISH, 47.98, -122.20, 3)]:
            admin.CreateFacility(bpb2.CreateFacilityRequest(request_id=f"c-{fid}", facility=bpb2.Facility(
                id=fid, organization_id=org, name=f"Facility {fid}",
                placement_type=bpb2.PLACEMENT_TYPE_HOPE_CENTER, county_fips=county, latitude=lat,
                longitude=lng, minimum_age=12, maximum_age=17, csec_specialized=True,
                bed_types=[bpb2.BedTypeCapacity(bed_type=bpb2.BED_TYPE_GENERAL,
                                                licensed_capacity=beds)])), timeout=5)
            owner, _ = shclient.stub("beds", st.channel(cls.beds.port, st.client_cert(
                f"client-{org}", org, "provider")))
            now = Timestamp()
            now.GetCurrentTime()
            owner.ReportCensus(bpb2.ReportCensusRequest(
                request_id=f"census-{fid}", facility_id=fid, confirmed_time=now,
                entries=[bpb2.CensusEntry(bed_type=bpb2.BED_TYPE_GENERAL, occupied=0)]), timeout=5)

    # Stubs are made per call: the beds process restarts in one test.
    def ref(self, cert):
        return shclient.stub("referrals", self.stack.channel(self.referrals.port, cert))

    def beds_admin(self):
        return shclient.stub("beds", self.stack.channel(self.beds.port, "client-directory_admin"))[0]

    def create(self, rid, urgency=None, categories=()):
        officer, pb2 = self.ref("client-law_enforcement")
        req = pb2.CreateReferralRequest(
            request_id=rid,
            referrer_contact=pb2.ReferrerContact(name="Officer Lee", phone="+1 206-555-0142"),
            youth=pb2.YouthProfile(youth_reference=f"SPD-{rid}", age=15, gender=1, languages=["en"],
                                   identifying=pb2.IdentifyingDetails(name="Jane Q"),
                                   consent=pb2.Consent(
                                       giver=pb2.Consent.GIVER_YOUTH,
                                       scopes=[pb2.Consent.SCOPE_ACCEPTING_PROVIDER])),
            county_fips=KING, location={"latitude": 47.6062, "longitude": -122.3321},
            needs=pb2.Needs(placement_tonight=True, service_categories=list(categories)),
            urgency=urgency or pb2.URGENCY_ROUTINE)
        resp = officer.CreateReferral(req, timeout=10)
        self.assertEqual(resp.referral.stage, pb2.ReferrerView.STAGE_ROUTING)
        return resp.referral.id

    def as_officer(self, rid):
        officer, pb2 = self.ref("client-law_enforcement")
        return officer.GetReferral(pb2.GetReferralRequest(id=rid), timeout=10).referrer_view

    def as_child_welfare(self, rid):
        cw, pb2 = self.ref("client-child_welfare")
        return cw.GetReferral(pb2.GetReferralRequest(id=rid), timeout=10).referral

    def held(self, fid):
        f = self.beds_admin().GetFacility(self.bpb2.GetFacilityRequest(id=fid), timeout=5)
        return f.beds[0].held, f.beds[0].occupied

    def test_officer_to_handoff_then_only_connected(self):
        provider, pb2 = self.ref("client-bb-prov-a")
        events = queue.Queue()
        call = provider.WatchReferrals(pb2.WatchReferralsRequest(cursor="0"), timeout=60)

        def pump():
            try:
                for e in call:
                    events.put(e)
            except grpc.RpcError:
                pass
        threading.Thread(target=pump, daemon=True).start()
        held_before, occupied_before = self.held("fac-bb-a")

        rid = self.create("bb-story")
        deadline = time.time() + 20
        offered = None
        while offered is None and time.time() < deadline:
            e = events.get(timeout=max(0.1, deadline - time.time()))
            if e.referral.id == rid and e.referral.status == pb2.REFERRAL_STATUS_OFFERED:
                offered = e
        self.assertIsNotNone(offered, "the offer never reached the provider's stream")
        self.assertFalse(offered.referral.youth.HasField("identifying"))
        self.assertEqual(self.held("fac-bb-a"), (held_before + 1, occupied_before))

        accepted = provider.AcceptReferral(pb2.AcceptReferralRequest(id=rid, request_id="acc-1"),
                                           timeout=10).referral
        self.assertEqual(accepted.youth.identifying.name, "Jane Q")
        ready = self.as_officer(rid)
        self.assertEqual(ready.stage, pb2.ReferrerView.STAGE_READY_FOR_HANDOFF)
        self.assertEqual(ready.handoff.provider_organization_id, "bb-prov-a")
        self.assertIn("1 Main St", ready.handoff.place)

        provider.ConfirmHandoff(pb2.ConfirmHandoffRequest(id=rid), timeout=10)
        wait_for(lambda: self.held("fac-bb-a") == (held_before, occupied_before + 1),
                 what="the placement confirmed in the beds service")
        connected = self.as_officer(rid)
        self.assertEqual(connected.stage, pb2.ReferrerView.STAGE_CONNECTED_TO_SERVICES)
        self.assertFalse(connected.HasField("handoff"))

        provider.RecordOutcome(pb2.RecordOutcomeRequest(
            id=rid, outcome=pb2.REFERRAL_STATUS_YOUTH_DECLINED), timeout=10)
        after = self.as_officer(rid)
        self.assertEqual(after.stage, pb2.ReferrerView.STAGE_CONNECTED_TO_SERVICES)
        self.assertFalse(after.HasField("handoff"))
        # The child-welfare record keeps the outcome; the officer's view has no field for it.
        self.assertEqual(self.as_child_welfare(rid).status, pb2.REFERRAL_STATUS_YOUTH_DECLINED)
        # Another provider cannot read it.
        other, _ = self.ref(self.stack.client_cert("client-bb-prov-b", "bb-prov-b", "provider"))
        with self.assertRaises(grpc.RpcError) as denied:
            other.GetReferral(pb2.GetReferralRequest(id=rid), timeout=10)
        self.assertEqual(denied.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        call.cancel()

    def test_bed_and_advocate_offered_in_parallel(self):
        """Issue 14: a bed and an advocate, one referral: two rows offered in parallel to
        different providers, both accepted; the officer sees only the placement's hand-off."""
        _, pb2 = self.ref("client-law_enforcement")
        lead = self.create("bb-parts", categories=[self.dpb2.SERVICE_CATEGORY_CSEC_ADVOCACY])
        parts = self.as_child_welfare(lead).part_ids
        self.assertEqual(len(parts), 1)
        part = parts[0]
        offered = lambda rid: (lambda r: r if r.status == pb2.REFERRAL_STATUS_OFFERED else None)(
            self.as_child_welfare(rid))
        bed = wait_for(lambda: offered(lead), what="the bed offered")
        advocacy = wait_for(lambda: offered(part), what="the advocate offered")
        self.assertTrue(bed.needs.placement_tonight)
        self.assertEqual(list(advocacy.needs.service_categories),
                         [self.dpb2.SERVICE_CATEGORY_CSEC_ADVOCACY])
        bed_org = bed.offers[0].provider_organization_id
        self.assertEqual([o.provider_organization_id for o in advocacy.offers], ["bb-prov-b"])
        self.assertNotEqual(bed_org, "bb-prov-b", "the bed goes to the nearer facility")
        bed_provider, _ = self.ref(self.stack.client_cert(f"client-{bed_org}", bed_org, "provider"))
        advocate, _ = self.ref(self.stack.client_cert("client-bb-prov-b", "bb-prov-b", "provider"))
        advocate.AcceptReferral(pb2.AcceptReferralRequest(id=part, request_id="acc-part"), timeout=10)
        self.assertEqual(self.as_officer(lead).stage, pb2.ReferrerView.STAGE_ROUTING)
        bed_provider.AcceptReferral(pb2.AcceptReferralRequest(id=lead, request_id="acc-lead"),
                                    timeout=10)
        advocate.ConfirmHandoff(pb2.ConfirmHandoffRequest(id=part), timeout=10)
        # The advocate's arrival, recorded by its provider: child welfare sees it on the part.
        advocate.RecordAdvocateArrival(pb2.RecordAdvocateArrivalRequest(
            id=part, request_id="arrived-part"), timeout=10)
        self.assertGreater(self.as_child_welfare(part).advocate_arrival_time.seconds, 0)
        ready = self.as_officer(lead)
        self.assertEqual(ready.stage, pb2.ReferrerView.STAGE_READY_FOR_HANDOFF)
        self.assertEqual(ready.handoff.provider_organization_id, bed_org)
        officer, _ = self.ref("client-law_enforcement")
        with self.assertRaises(grpc.RpcError) as denied:
            officer.GetReferral(pb2.GetReferralRequest(id=part), timeout=10)
        self.assertEqual(denied.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        # The officer cancels: the bed row is cancelled (its hold released), the advocate keeps
        # the youth it has.
        officer.CancelReferral(pb2.CancelReferralRequest(id=lead, reason="found family"), timeout=10)
        self.assertEqual(self.as_child_welfare(lead).status, pb2.REFERRAL_STATUS_CANCELLED)
        self.assertEqual(self.as_child_welfare(part).status, pb2.REFERRAL_STATUS_HANDED_OFF)
        wait_for(lambda: self.held("fac-bb-a")[0] == 0 and self.held("fac-bb-b")[0] == 0,
                 what="the bed hold released")

    def test_missed_deadlines_move_the_hold_then_escalate_to_child_welfare(self):
        _, pb2 = self.ref("client-law_enforcement")
        rid = self.create("bb-deadline", urgency=pb2.URGENCY_EMERGENCY)  # 2 s deadline here
        first = wait_for(lambda: (lambda r: r if r.status == pb2.REFERRAL_STATUS_OFFERED else None)(
            self.as_child_welfare(rid)), what="the first offer")
        self.assertEqual(first.offers[0].facility_id, "fac-bb-a")
        second = wait_for(lambda: (lambda r: r if len(r.offers) >= 2 else None)(
            self.as_child_welfare(rid)), what="the reroute")
        self.assertEqual(second.offers[0].state, pb2.OFFER_STATE_EXPIRED)
        self.assertEqual(second.offers[1].facility_id, "fac-bb-b")
        escalated = wait_for(lambda: (lambda r: r if r.status == pb2.REFERRAL_STATUS_ESCALATED else None)(
            self.as_child_welfare(rid)), what="the escalation")
        self.assertEqual(escalated.handoff.provider_organization_id, "demo-cw-king")
        self.assertTrue(escalated.placement_unavailable)
        view = self.as_officer(rid)
        self.assertEqual(view.stage, pb2.ReferrerView.STAGE_WITH_CHILD_WELFARE)
        self.assertEqual(view.handoff.provider_organization_id, "demo-cw-king")
        # Both holds went back.
        wait_for(lambda: self.held("fac-bb-b")[0] == 0 and self.held("fac-bb-a")[0] == 0,
                 what="the holds released")

    def test_intake_while_beds_is_down_is_routed_when_it_returns(self):
        _, pb2 = self.ref("client-law_enforcement")
        self.beds.proc.kill()  # kill -9
        self.beds.proc.wait()
        made = lost = 0
        ids = []
        for i in range(5):
            made += 1
            try:
                ids.append(self.create(f"bb-outage-{i}"))
            except grpc.RpcError:
                lost += 1
        print(f"intake with beds down: {made} calls made, {lost} lost")
        self.assertEqual(lost, 0)
        time.sleep(1.0)
        for rid in ids:
            self.assertEqual(self.as_child_welfare(rid).status, pb2.REFERRAL_STATUS_REQUESTED)
            self.assertEqual(self.as_officer(rid).stage, pb2.ReferrerView.STAGE_ROUTING)
        self.beds.start()  # Same port, same database.
        for rid in ids:
            wait_for(lambda: self.as_child_welfare(rid).status != pb2.REFERRAL_STATUS_REQUESTED,
                     timeout=30, what=f"{rid} routed after beds returned")
        # Cancel them: the beds go back.
        officer, _ = self.ref("client-law_enforcement")
        for rid in ids:
            officer.CancelReferral(pb2.CancelReferralRequest(id=rid, reason="test over"), timeout=10)


if __name__ == "__main__":
    unittest.main(verbosity=2)

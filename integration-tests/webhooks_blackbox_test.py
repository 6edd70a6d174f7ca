#!/usr/bin/python3
"""Black-box test of signed webhooks (issue 15) across real directory, beds and referral
processes: a provider without an integration subscribes a receiver on loopback
(scripts/webhook-receiver, run in this process); a referral offered to it arrives as a signed POST
without youth data, after three failed deliveries, with one event id; the referral service is
killed with kill -9 between the commit and the delivery and the event still arrives after the
restart (at most one id, at least one delivery); the sample receiver rejects a signature
mismatch and an old timestamp."""
import hashlib
import hmac
import importlib.machinery
import importlib.util
import io
import os
import threading
import time
import unittest
import urllib.error
import urllib.request

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from harness import start_referral_network, ROOT, Service, Stack, referral_secrets, shclient, wait_for

KING = "53033"
PROVIDER = "wh-prov-a"
YOUTH_REF = "SPD-WH-7731"
NAME, CONTACT, NOTES = "Jane Quinlan", "+1 206-555-0177", "staying with an aunt on Rainier Ave"
OFFICER_NAME, OFFICER_PHONE = "Officer Lee", "+1 206-555-0142"


def load_receiver():
    path = os.path.join(ROOT, "scripts", "webhook-receiver")
    loader = importlib.machinery.SourceFileLoader("webhook_receiver", path)
    spec = importlib.util.spec_from_loader("webhook_receiver", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


receiver_mod = load_receiver()


class WebhooksBlackBox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack()
        cls.addClassCleanup(cls.stack.close)
        st = cls.stack
        cls.directory, cls.beds, cls.referrals = start_referral_network(
            st, ('bb_wh_directory', 'bb_wh_beds', 'bb_wh_referrals'), [
            "--timer_interval_ms=200",
            "--webhook_allow_loopback_http",
            "--webhook_backoff_base_ms=200",
            "--webhook_backoff_max_s=1",
            "--webhook_timeout_ms=5000",
            "--webhook_lease_s=6",
            # The directory's word on a subscriber read again within about 2 s (test_6).
            "--organization_cache_s=1",
            "--webhook_standing_refresh_s=1",
        ])
        cls.seed()
        cls.sink = io.StringIO()
        cls.receiver = receiver_mod.Receiver(fail_first=3, out=cls.sink).start()
        cls.addClassCleanup(cls.receiver.stop)
        cls.provider_cert = st.client_cert(f"client-{PROVIDER}", PROVIDER, "provider")

    @classmethod
    def seed(cls):
        st = cls.stack
        d, dpb2 = shclient.stub("directory", st.channel(cls.directory.port, "client-directory_admin"))
        d.CreateOrganization(dpb2.CreateOrganizationRequest(
            request_id=f"org-{PROVIDER}", organization=dpb2.Organization(
                id=PROVIDER, kind=dpb2.ORGANIZATION_KIND_SERVICE_PROVIDER, name="Webhook Provider",
                county_fips=KING,
                locations=[dpb2.Location(id="main", name="Main", address_1="1 Main St",
                                         city="Seattle", latitude=47.61, longitude=-122.33,
                                         county_fips=KING)],
                phones=[dpb2.Phone(number="+1 206-555-0100")])), timeout=5)
        admin, bpb2 = shclient.stub("beds", st.channel(cls.beds.port, "client-directory_admin"))
        admin.CreateFacility(bpb2.CreateFacilityRequest(request_id="c-fac-wh", facility=bpb2.Facility(
            id="fac-wh", organization_id=PROVIDER, name="Facility wh",
            placement_type=bpb2.PLACEMENT_TYPE_HOPE_CENTER, county_fips=KING, latitude=47.61,
            longitude=-122.33, minimum_age=12, maximum_age=17, csec_specialized=True,
            bed_types=[bpb2.BedTypeCapacity(bed_type=bpb2.BED_TYPE_GENERAL,
                                            licensed_capacity=5)])), timeout=5)
        owner, _ = shclient.stub("beds", st.channel(cls.beds.port, st.client_cert(
            f"client-beds-{PROVIDER}", PROVIDER, "provider")))
        now = Timestamp()
        now.GetCurrentTime()
        owner.ReportCensus(bpb2.ReportCensusRequest(
            request_id="census-fac-wh", facility_id="fac-wh", confirmed_time=now,
            entries=[bpb2.CensusEntry(bed_type=bpb2.BED_TYPE_GENERAL, occupied=0)]), timeout=5)

    def ref(self, cert):
        return shclient.stub("referrals", self.stack.channel(self.referrals.port, cert))

    def create(self, rid):
        officer, pb2 = self.ref("client-law_enforcement")
        return officer.CreateReferral(pb2.CreateReferralRequest(
            request_id=rid,
            referrer_contact=pb2.ReferrerContact(name=OFFICER_NAME, phone=OFFICER_PHONE),
            youth=pb2.YouthProfile(youth_reference=f"{YOUTH_REF}-{rid}", age=15, gender=1,
                                   languages=["en"],
                                   identifying=pb2.IdentifyingDetails(name=NAME, contact=CONTACT,
                                                                      notes=NOTES),
                                   consent=pb2.Consent(
                                       giver=pb2.Consent.GIVER_YOUTH,
                                       scopes=[pb2.Consent.SCOPE_ACCEPTING_PROVIDER])),
            county_fips=KING, location={"latitude": 47.6062, "longitude": -122.3321},
            needs=pb2.Needs(placement_tonight=True), urgency=pb2.URGENCY_ROUTINE),
            timeout=10).referral.id

    def ids_for(self, rid):
        with self.receiver.lock:
            return [e for e, p in self.receiver.seen.items() if p["referral_id"] == rid]

    def test_1_subscriptions_are_the_organizations_own(self):
        prov, pb2 = self.ref(self.provider_cert)
        OFFER = pb2.WEBHOOK_EVENT_TYPE_OFFER_MADE
        with self.assertRaises(grpc.RpcError) as refused:
            prov.CreateWebhookSubscription(pb2.CreateWebhookSubscriptionRequest(
                organization_id="someone-else", url=f"http://127.0.0.1:{self.receiver.port}/",
                events=[OFFER]), timeout=10)
        self.assertEqual(refused.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        with self.assertRaises(grpc.RpcError) as plain:
            prov.CreateWebhookSubscription(pb2.CreateWebhookSubscriptionRequest(
                organization_id=PROVIDER, url="http://hooks.example.org/x", events=[OFFER]),
                timeout=10)
        self.assertEqual(plain.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        officer, _ = self.ref("client-law_enforcement")
        with self.assertRaises(grpc.RpcError) as role:
            officer.ListWebhookSubscriptions(pb2.ListWebhookSubscriptionsRequest(
                organization_id=PROVIDER), timeout=10)
        self.assertEqual(role.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

        made = prov.CreateWebhookSubscription(pb2.CreateWebhookSubscriptionRequest(
            organization_id=PROVIDER, url=f"http://127.0.0.1:{self.receiver.port}/hook",
            events=[OFFER]), timeout=10)
        self.assertTrue(made.secret.startswith("whsec_"))
        self.assertGreaterEqual(len(made.secret), 6 + 43)
        rotated = prov.RotateWebhookSecret(pb2.RotateWebhookSecretRequest(
            organization_id=PROVIDER, subscription_id=made.subscription.id), timeout=10)
        self.assertNotEqual(rotated.secret, made.secret)
        self.receiver._secret = rotated.secret  # the secret that signs from now on
        listed = prov.ListWebhookSubscriptions(pb2.ListWebhookSubscriptionsRequest(
            organization_id=PROVIDER), timeout=10)
        self.assertEqual([s.id for s in listed.subscriptions], [made.subscription.id])
        self.assertNotIn(rotated.secret.encode(), listed.SerializeToString())
        with open(self.referrals.log_path, "rb") as f:
            self.assertNotIn(rotated.secret.encode(), f.read(), "a secret in the service's log")
        type(self).subscription = made.subscription.id

    def test_2_offer_arrives_signed_without_youth_data_after_three_failures(self):
        _, pb2 = self.ref(self.provider_cert)
        rid = self.create("wh-1")
        wait_for(lambda: self.ids_for(rid), timeout=40, what="the offer's webhook")
        r = self.receiver
        ids = self.ids_for(rid)
        self.assertEqual(len(ids), 1)
        event = r.seen[ids[0]]
        self.assertEqual(event["event_type"], "offer_made")
        self.assertEqual(event["organization_id"], PROVIDER)
        self.assertIsNotNone(event["deadline"])
        self.assertEqual(r.failed_on_purpose, 3)
        self.assertEqual(r.deliveries[ids[0]], 4, "three failed deliveries, the fourth accepted")
        self.assertEqual(r.rejected, {}, "every delivery carried a valid signature")
        for body in r.bodies:
            for secret in (f"{YOUTH_REF}-wh-1", YOUTH_REF, NAME, "Quinlan", CONTACT, "555-0177",
                           NOTES, "Rainier", OFFICER_NAME, OFFICER_PHONE):
                self.assertNotIn(secret.encode(), body, f"{secret!r} in a webhook body")
        self.assertEqual(sorted(event), ["deadline", "event_id", "event_type", "occurred_at",
                                         "organization_id", "referral_id"])
        # The receiver reads what it may see through the authenticated API.
        prov, _ = self.ref(self.provider_cert)
        got = prov.GetReferral(pb2.GetReferralRequest(id=event["referral_id"]), timeout=10).referral
        self.assertEqual(got.status, pb2.REFERRAL_STATUS_OFFERED)
        print(f"offer webhook: {r.deliveries[ids[0]]} deliveries ({r.failed_on_purpose} failed on "
              f"purpose), {len(ids)} event id, 0 youth details in {len(r.bodies)} bodies")

    def test_3_kill_9_between_commit_and_delivery(self):
        r = self.receiver
        hold = threading.Event()
        with r.lock:
            r.hold = hold
            held_before = r.held
        rid = self.create("wh-2")
        wait_for(lambda: r.held > held_before, timeout=30, what="the delivery in flight")
        self.assertEqual(self.ids_for(rid), [], "nothing delivered yet")
        self.referrals.proc.kill()  # kill -9 while the POST is in flight
        self.referrals.proc.wait()
        with r.lock:
            r.hold = None
        hold.set()
        self.referrals.start()  # same port, same database
        wait_for(lambda: self.ids_for(rid), timeout=60, what="the event after the restart")
        time.sleep(2.0)  # a duplicate, if any, would arrive now
        ids = self.ids_for(rid)
        self.assertEqual(len(ids), 1, "at most one event id")
        self.assertGreaterEqual(r.deliveries[ids[0]], 2, "the one in flight and one after")
        print(f"kill -9 mid-delivery: {r.deliveries[ids[0]]} deliveries of {len(ids)} event id "
              f"({r.duplicates} duplicates answered 200 and dropped by the receiver)")

    def test_4_dead_letters_listed_for_the_organization(self):
        prov, pb2 = self.ref(self.provider_cert)
        dead = prov.ListWebhookDeadLetters(pb2.ListWebhookDeadLettersRequest(
            organization_id=PROVIDER), timeout=10)
        self.assertEqual(list(dead.deliveries), [])
        replay = prov.ReplayWebhookDeadLetters(pb2.ReplayWebhookDeadLettersRequest(
            organization_id=PROVIDER), timeout=10)
        self.assertEqual(replay.replayed, 0)

    def test_5_sample_receiver_rejects_mismatch_and_old_timestamp(self):
        secret = "whsec_" + "k" * 43
        r = receiver_mod.Receiver(secret=secret, out=io.StringIO()).start()
        self.addCleanup(r.stop)
        body = b'{"event_id":"evt_x","event_type":"offer_made","referral_id":"ref-x"}'

        def post(ts, signature, event_id="evt_x"):
            req = urllib.request.Request(f"http://127.0.0.1:{r.port}/", data=body, method="POST",
                                         headers={"SafeHarbor-Timestamp": str(ts),
                                                  "SafeHarbor-Signature": signature,
                                                  "SafeHarbor-Event-Id": event_id,
                                                  "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.status
            except urllib.error.HTTPError as e:
                return e.code

        def sig(key, ts):
            return "v1=" + hmac.new(key.encode(), f"{ts}.".encode() + body,
                                    hashlib.sha256).hexdigest()
        now = int(time.time())
        self.assertEqual(post(now, sig("whsec_wrong", now)), 401)
        self.assertEqual(post(now - 3600, sig(secret, now - 3600)), 400)  # replayed, old
        self.assertEqual(post(now, sig(secret, now - 3600)), 401)  # fresh stamp, old signature
        self.assertEqual(post(now, sig(secret, now)), 200)
        self.assertEqual(post(now, sig(secret, now)), 200)  # the same event again: deduplicated
        self.assertEqual(len(r.seen), 1)
        self.assertEqual(r.duplicates, 1)
        print(f"sample receiver: rejected {dict(sorted(r.rejected.items()))}, accepted "
              f"{r.accepted} ({len(r.seen)} event, {r.duplicates} duplicate)")
        self.assertEqual(r.rejected, {"signature mismatch": 2, "old timestamp": 1})

    def test_6_an_organization_the_directory_no_longer_lists_as_a_provider_hears_nothing(self):
        """The directory is the source of who may hear: once it lists the organization as
        something else, an offer to it (routing still finds its facility) is not told."""
        st = self.stack
        d, dpb2 = shclient.stub("directory", st.channel(self.directory.port, "client-directory_admin"))
        org = d.GetOrganization(dpb2.GetOrganizationRequest(id=PROVIDER), timeout=5).organization
        org.kind = dpb2.ORGANIZATION_KIND_STATE_AGENCY
        d.UpdateOrganization(dpb2.UpdateOrganizationRequest(organization=org), timeout=5)

        def logged_inactive():
            with open(self.referrals.log_path, "rb") as f:
                return b"webhook_subscriber_inactive" in f.read()
        wait_for(logged_inactive, timeout=30, what="the subscriber found inactive")
        before = len(self.receiver.bodies)
        rid = self.create("wh-3")
        prov, pb2 = self.ref(self.provider_cert)

        def offered():  # the provider may read it once it holds an offer (PERMISSION_DENIED before)
            r = prov.GetReferral(pb2.GetReferralRequest(id=rid), timeout=10).referral
            return r.status == pb2.REFERRAL_STATUS_OFFERED
        wait_for(offered, timeout=30, what="the offer to the former provider")
        time.sleep(3.0)  # a delivery, if any, would arrive now (the worker polls every 0.5 s)
        self.assertEqual(self.ids_for(rid), [], "an offer told to an organization no longer "
                         "listed as a provider")
        self.assertEqual(len(self.receiver.bodies), before)
        print("directory lists the provider as a state agency: its offer made, not told "
              f"({len(self.receiver.bodies) - before} posts)")


if __name__ == "__main__":
    unittest.main(verbosity=2)

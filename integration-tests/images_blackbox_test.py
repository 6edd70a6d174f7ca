#!/usr/bin/python3
"""The four container images as black boxes: scripts/images builds them (or finds them cached),
podman runs each on the host network against a PostgreSQL and a Redis of the test harness, as
Kubernetes would: uid 10001 from the image, a read-only root filesystem, no capabilities, no
privilege escalation, the certificates mounted read-only as a Secret with fsGroup 10001 makes
them (group-readable, not world-readable), configuration from environment variables. A short
story runs through them over mTLS (an officer's referral to the hand-off; a buyer's fee paid and
reported), then each container gets SIGTERM and must exit 0.

No podman, no image or a container that does not start is a failure, never a skip."""
import base64
import os
import shutil
import subprocess
import sys
import time
import unittest
import urllib.request

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from harness import ROOT, Stack, free_port, shclient, wait_for

PODMAN = os.path.join(ROOT, "scripts", "lib", "podman")
SERVICES = {"directory": "directory-service", "beds": "beds-service",
            "referrals": "referral-service", "fees": "fee-service"}
UID = 10001
KING = "53033"


def podman(*args, timeout=120, check=True):
    r = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:2])} failed ({r.returncode}): {r.stderr.strip()}")
    return r


class Container:
    """One service image running under podman on the host network."""

    def __init__(self, stack, name, db_url, args=(), env=()):
        self.stack, self.name = stack, name
        self.image = f"localhost/safeharbor/{SERVICES[name]}:latest"
        self.container = f"safeharbor-bb-{os.getpid()}-{name}"
        self.port, self.metrics_port, self.health_port = free_port(), free_port(), free_port()
        self.db_url, self.args, self.env = db_url, list(args), dict(env)
        self.secret = self.make_secret()

    def make_secret(self):
        """The <service>-tls Secret as Kubernetes mounts it with fsGroup 10001: root-owned files,
        group 10001, mode 0440 (the harness's own copies of the keys are 0600, unreadable to uid
        10001)."""
        d = os.path.join(self.stack.dir, "secrets", self.name)
        os.makedirs(d)
        for f in ("ca.crt", f"{self.name}.crt", f"{self.name}.key"):
            shutil.copy(os.path.join(self.stack.certs, f), os.path.join(d, f))
            os.chown(os.path.join(d, f), 0, UID)
            os.chmod(os.path.join(d, f), 0o440)
        os.chown(d, 0, UID)
        os.chmod(d, 0o750)
        return d

    def start(self, timeout=30):
        t0 = time.time()
        env = {"SAFEHARBOR_LISTEN_HOST": "127.0.0.1",  # host network: loopback only
               "SAFEHARBOR_POSTGRES_URL": self.db_url,
               "SAFEHARBOR_REDIS_URL": f"redis://127.0.0.1:{self.stack.redis_port}",
               **self.stack.redis_env(), **self.env}
        run = ["run", "--detach", "--name", self.container, "--network", "host",
               "--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges",
               "--volume", f"{self.secret}:/etc/safeharbor/tls:ro"]
        for k, v in env.items():
            run += ["--env", f"{k}={v}"]
        run += [self.image, f"--grpc_port={self.port}", f"--metrics_port={self.metrics_port}",
                f"--health_port={self.health_port}"] + self.args
        podman(*run)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.state() != "running":
                raise AssertionError(f"{self.name} exited ({self.state()}): {self.logs()}")
            with self.stack.channel(self.port, "client-auditor") as chan:
                try:
                    if shclient.health(chan, timeout=1) == "SERVING":
                        self.started_in = time.time() - t0
                        return self
                except grpc.RpcError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not healthy after {timeout} s: {self.logs()}")

    def inspect(self, fmt):
        return podman("inspect", "--format", fmt, self.container).stdout.strip()

    def state(self):
        return self.inspect("{{.State.Status}}")

    def logs(self):
        r = podman("logs", self.container, check=False)
        return (r.stdout + r.stderr)[-3000:]

    def call(self, cert, method, request):
        with self.stack.channel(self.port, cert) as chan:
            stub, _ = shclient.stub(self.name, chan)
            return getattr(stub, method)(request, timeout=10)

    def pb2(self):
        return shclient.stub(self.name, self.stack.channel(self.port, "client-auditor"))[1]


class ImagesBlackBox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t0 = time.time()
        built = subprocess.run([os.path.join(ROOT, "scripts", "images")], stdout=sys.stdout,
                               stderr=sys.stderr, timeout=2400)
        if built.returncode != 0:
            raise AssertionError(f"scripts/images failed (exit {built.returncode}): see above")
        cls.build_seconds = time.time() - t0
        print(f"\nscripts/images: {cls.build_seconds:.0f} s", flush=True)
        for svc, binary in SERVICES.items():
            user, size = podman("image", "inspect", "--format", "{{.Config.User}} {{.Size}}",
                                f"localhost/safeharbor/{binary}:latest").stdout.split()
            print(f"image safeharbor/{binary}: {int(size) / 1e6:.1f} MB, user {user}", flush=True)
            assert user == f"{UID}:{UID}", f"{binary} runs as {user!r}, not {UID}"

        cls.stack = st = Stack()
        cls.containers = []
        cls.addClassCleanup(cls.cleanup)
        key = base64.b64encode(os.urandom(32)).decode()
        cls.directory = cls.start(Container(st, "directory", st.database("img_directory")))
        dir_addr = f"--directory_address=localhost:{cls.directory.port}"
        cls.beds = cls.start(Container(st, "beds", st.database("img_beds"), [dir_addr]))
        cls.referrals = cls.start(Container(
            st, "referrals", st.database("img_referrals"),
            [dir_addr, f"--beds_address=localhost:{cls.beds.port}", "--timer_interval_ms=200"],
            # As the referrals-youth-data-keys Secret provides it.
            {"SAFEHARBOR_YOUTH_DATA_KEYS": f"1:{key}",
             "SAFEHARBOR_FINGERPRINT_SECRET": base64.b64encode(os.urandom(32)).decode()}))
        cls.fees = cls.start(Container(st, "fees", st.database("img_fees"), [dir_addr]))
        print("containers healthy: " + ", ".join(
            f"{c.name} {c.started_in:.1f} s" for c in cls.containers), flush=True)
        cls.provider_cert = st.client_cert("client-img-prov-a", "img-prov-a", "provider")

    @classmethod
    def start(cls, container):
        cls.containers.append(container)
        return container.start()

    @classmethod
    def cleanup(cls):
        for c in cls.containers:
            podman("rm", "--force", "--time", "0", c.container, check=False)
        cls.stack.close()

    def test_1_runs_as_kubernetes_would(self):
        for c in self.containers:
            pid = c.inspect("{{.State.Pid}}")
            with open(f"/proc/{pid}/status") as f:
                ids = {line.split(":")[0]: line.split()[1:] for line in f if line[:4] in ("Uid:", "Gid:")}
            self.assertEqual(ids["Uid"], [str(UID)] * 4, f"{c.name} uids")
            self.assertEqual(ids["Gid"], [str(UID)] * 4, f"{c.name} gids")
            self.assertEqual(c.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true")
            # The plaintext health-only port that Kubernetes' gRPC probes use.
            with grpc.insecure_channel(f"127.0.0.1:{c.health_port}") as chan:
                self.assertEqual(shclient.health(chan, timeout=3), "SERVING", c.name)
            # A call without a client certificate is refused.
            with shclient.channel(c.port, self.stack.certs, None) as chan:
                with self.assertRaises(grpc.RpcError):
                    shclient.health(chan, timeout=3)

    def test_2_story_through_the_images(self):
        t0 = time.time()
        calls = [0]

        def call(container, cert, method, request):
            calls[0] += 1
            return container.call(cert, method, request)

        d, b, r, f = (c.pb2() for c in (self.directory, self.beds, self.referrals, self.fees))
        for oid, kind, lat, lng in [("img-prov-a", d.ORGANIZATION_KIND_SERVICE_PROVIDER, 47.61, -122.33),
                                    ("img-prov-b", d.ORGANIZATION_KIND_SERVICE_PROVIDER, 47.70, -122.30),
                                    ("demo-cw-king", d.ORGANIZATION_KIND_CHILD_WELFARE_OFFICE, 47.60, -122.32)]:
            call(self.directory, "client-directory_admin", "CreateOrganization", d.CreateOrganizationRequest(
                request_id=f"org-{oid}", organization=d.Organization(
                    id=oid, kind=kind, name=f"Org {oid}", county_fips=KING,
                    locations=[d.Location(id="main", name="Main", address_1="1 Main St", city="Seattle",
                                          latitude=lat, longitude=lng, county_fips=KING)],
                    phones=[d.Phone(number="+1 206-555-0100")])))
        # The fee story's court (serves King County) and hosting agency.
        for oid, kind in (("demo-court-king", d.ORGANIZATION_KIND_COURT),
                          ("demo-le-seattle-pd", d.ORGANIZATION_KIND_LAW_ENFORCEMENT_AGENCY)):
            call(self.directory, "client-directory_admin", "CreateOrganization", d.CreateOrganizationRequest(
                request_id=f"org-{oid}", organization=d.Organization(
                    id=oid, kind=kind, name=f"Org {oid}", county_fips=KING)))
        call(self.beds, "client-directory_admin", "CreateFacility", b.CreateFacilityRequest(
            request_id="fac-img-a", facility=b.Facility(
                id="fac-img-a", organization_id="img-prov-a", name="Harbor House",
                placement_type=b.PLACEMENT_TYPE_HOPE_CENTER, county_fips=KING, latitude=47.61,
                longitude=-122.33, minimum_age=12, maximum_age=17, csec_specialized=True,
                bed_types=[b.BedTypeCapacity(bed_type=b.BED_TYPE_GENERAL, licensed_capacity=4)])))
        now = Timestamp()
        now.GetCurrentTime()
        call(self.beds, self.provider_cert, "ReportCensus", b.ReportCensusRequest(
            request_id="census-img-a", facility_id="fac-img-a", confirmed_time=now,
            entries=[b.CensusEntry(bed_type=b.BED_TYPE_GENERAL, occupied=0)]))

        # An officer's referral: routed to the provider with a bed held, accepted, handed off.
        view = call(self.referrals, "client-law_enforcement", "CreateReferral", r.CreateReferralRequest(
            request_id="img-ref-1", referrer_contact=r.ReferrerContact(name="Officer Lee", phone="+1 206-555-0142"),
            youth=r.YouthProfile(youth_reference="Y-img-1", age=15, gender=1),
            county_fips=KING, location={"latitude": 47.6062, "longitude": -122.3321},
            needs=r.Needs(placement_tonight=True), urgency=r.URGENCY_URGENT))
        rid = view.referral.id

        def referral():
            return self.referrals.call("client-child_welfare", "GetReferral", r.GetReferralRequest(id=rid)).referral
        offered = wait_for(lambda: (lambda x: x if x.status == r.REFERRAL_STATUS_OFFERED else None)(referral()),
                           what="the offer")
        self.assertEqual(offered.offers[0].provider_organization_id, "img-prov-a")

        def facility():
            return self.beds.call("client-directory_admin", "GetFacility", b.GetFacilityRequest(id="fac-img-a")).beds[0]
        self.assertEqual(facility().held, 1)
        call(self.referrals, self.provider_cert, "AcceptReferral", r.AcceptReferralRequest(id=rid, request_id="acc"))
        ready = call(self.referrals, "client-law_enforcement", "GetReferral", r.GetReferralRequest(id=rid))
        self.assertEqual(ready.referrer_view.stage, r.ReferrerView.STAGE_READY_FOR_HANDOFF)
        call(self.referrals, self.provider_cert, "ConfirmHandoff", r.ConfirmHandoffRequest(id=rid))
        wait_for(lambda: facility().occupied == 1, what="the placement in beds")
        connected = call(self.referrals, "client-law_enforcement", "GetReferral", r.GetReferralRequest(id=rid))
        self.assertEqual(connected.referrer_view.stage, r.ReferrerView.STAGE_CONNECTED_TO_SERVICES)

        # A buyer's fee: assessed, paid, split between King's providers, the agency and Commerce.
        a = call(self.fees, "client-court_clerk", "RecordAssessment", f.RecordAssessmentRequest(
            request_id="img-fee", assessment=f.Assessment(
                case_number="img-fee", jurisdiction_fips=KING, statute=f.STATUTE_PATRONIZING, priors=0,
                ordered_cents=150000, hosting_agency_organization_id="demo-le-seattle-pd",
                offense_date=f.Date(year=2026, month=3, day=1),
                assessed_date=f.Date(year=2026, month=4, day=1)))).assessment
        paid = call(self.fees, "client-court_clerk", "RecordPayment", f.RecordPaymentRequest(
            request_id="img-pay", assessment_id=a.id, amount_cents=150000,
            paid_date=f.Date(year=2026, month=5, day=1)))
        shares = {x.account: x.amount_cents for x in paid.payment.disbursements}
        self.assertEqual(sum(shares.values()), 150000)
        self.assertEqual(shares["org:img-prov-a"] + shares["org:img-prov-b"], 75000)
        self.assertEqual(shares["org:demo-le-seattle-pd"], 72000)
        self.assertEqual(shares["org:demo-state-commerce"], 3000)
        report = call(self.fees, "client-fiscal", "GetDisbursementReport", f.GetDisbursementReportRequest(
            period=f.ReportPeriod(**{"from": f.Date(year=2026, month=1, day=1),
                                     "to": f.Date(year=2027, month=1, day=1)})))
        self.assertEqual(report.total_cents, 150000)
        self.assertIn("org:img-prov-a", report.csv)

        # Every image serves Prometheus metrics that counted the calls.
        for c in self.containers:
            with urllib.request.urlopen(f"http://127.0.0.1:{c.metrics_port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            self.assertIn('grpc_code="OK"', text, c.name)
        print(f"\nstory through the images: {calls[0]} calls in {time.time() - t0:.1f} s, all answered",
              flush=True)

    def test_3_sigterm_exits_cleanly(self):
        # Callers first, as a rollout would drain them.
        for c in (self.referrals, self.fees, self.beds, self.directory):
            t0 = time.time()
            podman("kill", "--signal", "TERM", c.container)
            code = podman("wait", c.container, timeout=60).stdout.strip()
            print(f"{c.name}: SIGTERM -> exit {code} in {time.time() - t0:.1f} s", flush=True)
            self.assertEqual(code, "0", f"{c.name}: {c.logs()}")


if __name__ == "__main__":
    unittest.main(verbosity=2)

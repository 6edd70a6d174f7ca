#!/usr/bin/python3
"""Browser tests of the terminal (web/): the real directory, beds and referral binaries on real
PostgreSQL and Redis, one gateway per organization (an officer, a county child-welfare office, two
providers, and one whose referral service is unreachable), and Debian's Chromium driven by
playwright-core (web/test/browser.test.mjs) through the whole story. Screenshots and the axe-core
reports go to WEB_TEST_OUTPUT (default <build>/web-test-output)."""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

from google.protobuf.timestamp_pb2 import Timestamp

from harness import BUILD_DIR, ROOT, Service, Stack, free_port, shclient, referral_secrets

# Provider B is far enough (about 77 km) that a second referral still goes to A first, and near
# enough to be its next candidate.
KING, THURSTON = "53033", "53067"
WEB = os.path.join(ROOT, "web")
NODE = shutil.which("node") or "/usr/bin/node"


def seed(st, directory, beds):
    d, dpb2 = shclient.stub("directory", st.channel(directory.port, "client-directory_admin"))
    for oid, kind, name, county, lat, lng, addr in [
            ("web-prov-a", dpb2.ORGANIZATION_KIND_SERVICE_PROVIDER, "[TEST] Harbor House Seattle",
             KING, 47.61, -122.33, "1 Main St"),
            ("web-prov-b", dpb2.ORGANIZATION_KIND_SERVICE_PROVIDER, "[TEST] South Sound Youth Haven",
             THURSTON, 47.04, -122.90, "9 Capitol Way"),
            ("demo-cw-king", dpb2.ORGANIZATION_KIND_CHILD_WELFARE_OFFICE,
             "[TEST] King County child welfare on call", KING, 47.60, -122.32, "500 4th Ave"),
            ("demo-le-seattle-pd", dpb2.ORGANIZATION_KIND_LAW_ENFORCEMENT_AGENCY,
             "[TEST] Seattle Police Department", KING, 47.60, -122.33, "610 5th Ave")]:
        d.CreateOrganization(dpb2.CreateOrganizationRequest(
            request_id=f"org-{oid}", organization=dpb2.Organization(
                id=oid, kind=kind, name=name, county_fips=county,
                locations=[dpb2.Location(id="main", name="Main", address_1=addr,
                                         city="Seattle" if county == KING else "Olympia",
                                         latitude=lat, longitude=lng, county_fips=county)],
                phones=[dpb2.Phone(number="+1 206-555-0100")])), timeout=5)
    admin, bpb2 = shclient.stub("beds", st.channel(beds.port, "client-directory_admin"))
    for fid, org, name, county, lat, lng in [
            ("fac-web-a", "web-prov-a", "Harbor House HOPE center", KING, 47.61, -122.33),
            ("fac-web-b", "web-prov-b", "South Sound HOPE center", THURSTON, 47.04, -122.90)]:
        admin.CreateFacility(bpb2.CreateFacilityRequest(request_id=f"c-{fid}", facility=bpb2.Facility(
            id=fid, organization_id=org, name=name,
            placement_type=bpb2.PLACEMENT_TYPE_HOPE_CENTER, county_fips=county, latitude=lat,
            longitude=lng, minimum_age=12, maximum_age=17, csec_specialized=True,
            bed_types=[bpb2.BedTypeCapacity(bed_type=bpb2.BED_TYPE_GENERAL, licensed_capacity=4)])),
            timeout=5)
        owner, _ = shclient.stub("beds", st.channel(beds.port, f"client-{org}"))
        now = Timestamp()
        now.GetCurrentTime()
        owner.ReportCensus(bpb2.ReportCensusRequest(
            request_id=f"census-{fid}", facility_id=fid, confirmed_time=now,
            entries=[bpb2.CensusEntry(bed_type=bpb2.BED_TYPE_GENERAL, occupied=1)]), timeout=5)


class Gateway:
    def __init__(self, st, name, cert, directory, beds, referrals):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.args = [NODE, os.path.join(WEB, "dist", "gateway.mjs"), f"--port={self.port}",
                     f"--certs_dir={st.certs}", f"--cert={cert}.crt",
                     f"--directory=localhost:{directory}", f"--beds=localhost:{beds}",
                     f"--referrals=localhost:{referrals}"]
        self.log_path = os.path.join(st.dir, f"gateway-{name}.log")
        self.st = st
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=open(self.log_path, "ab"),
                                     stderr=subprocess.STDOUT)
        self.st.procs.append(self.proc)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway {self.name} exited: {open(self.log_path).read()}")
            try:
                urllib.request.urlopen(self.url + "terminal.json", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway {self.name} did not answer")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main():
    started = time.time()
    out = os.environ.get("WEB_TEST_OUTPUT", os.path.join(BUILD_DIR, "web-test-output"))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    subprocess.run([os.path.join(ROOT, "scripts", "build-web"), "--check"], check=True)

    st = Stack()
    try:
        directory = Service(st, "directory", "directory-service", st.database("web_directory")).start()
        beds = Service(st, "beds", "beds-service", st.database("web_beds"),
                       [f"--directory_address=localhost:{directory.port}"]).start()
        referrals = Service(st, "referrals", "referral-service", st.database("web_referrals"), [
            f"--directory_address=localhost:{directory.port}",
            f"--beds_address=localhost:{beds.port}",
            *referral_secrets(),
            "--timer_interval_ms=200"]).start()
        for org in ("web-prov-a", "web-prov-b"):
            st.client_cert(f"client-{org}", org, "provider")
        seed(st, directory, beds)
        ports = (directory.port, beds.port, referrals.port)
        gateways = {
            "officer": Gateway(st, "officer", "client-law_enforcement", *ports).start(),
            "child_welfare": Gateway(st, "child_welfare", "client-child_welfare", *ports).start(),
            "provider_a": Gateway(st, "provider_a", "client-web-prov-a", *ports).start(),
            "provider_b": Gateway(st, "provider_b", "client-web-prov-b", *ports).start(),
            # The referral service's address answers nothing: the page must say so.
            "unreachable": Gateway(st, "unreachable", "client-law_enforcement", directory.port,
                                   beds.port, free_port()).start(),
        }
        control = os.path.join(st.dir, "control")
        os.mkfifo(control + ".in")
        env = dict(os.environ, WEB_TEST_OUTPUT=out, WEB_TEST_CONTROL=control,
                   WEB_TEST_URLS=json.dumps({k: g.url for k, g in gateways.items()}))
        test = subprocess.Popen([NODE, os.path.join(WEB, "test", "browser.test.mjs")], env=env,
                                stdout=subprocess.PIPE, text=True)
        # The test asks for a gateway restart (to show the inbox resuming from its cursor) with a
        # line on stdout; everything else it prints is passed through.
        for line in test.stdout:
            if line.startswith("@@control "):
                verb, name = line.split()[1:3]
                g = gateways[name]
                g.stop() if verb == "stop" else g.start()
                with open(control + ".in", "w") as f:
                    f.write("ok\n")
                continue
            sys.stdout.write(line)
            sys.stdout.flush()
        rc = test.wait()
        # The gateways keep nothing but a log, and the log holds no youth data.
        for name, g in gateways.items():
            shutil.copy(g.log_path, os.path.join(out, f"gateway-{name}.log"))
            with open(g.log_path) as f:
                text = f.read()
            for secret in ("Jane Q", "Sam R", "SPD-00", "555-0199"):
                if secret in text:
                    print(f"FAIL: gateway {name}'s log holds youth data ({secret!r})")
                    rc = 1
        print(f"web_browser: {'ok' if rc == 0 else 'FAILED'} in {time.time() - started:.1f} s; "
              f"screenshots and reports in {out}")
        return rc
    finally:
        st.close()


if __name__ == "__main__":
    sys.exit(main())

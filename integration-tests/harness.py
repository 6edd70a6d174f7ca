"""Black-box harness: private PostgreSQL and Redis on free ports, development certificates, and
the built service binaries started as real processes. Used by the integration tests."""
import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts", "lib"))
import shclient  # noqa: E402

BUILD_DIR = shclient.BUILD_DIR
SERVERS = os.path.join(ROOT, "scripts", "lib", "servers.sh")


def wait_for(predicate, timeout=30.0, what="condition"):
    """Polls until predicate() is truthy (a gRPC error counts as not yet); returns its value."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = predicate()
        except grpc.RpcError as e:
            last = e.code()
        if last and not isinstance(last, grpc.StatusCode):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


def referral_secrets():
    """A referral service's secrets for one test stack: an encryption key for identifying youth
    details and the separate fingerprint secret (both random, base64 of 32 bytes)."""
    def random_key():
        return base64.b64encode(os.urandom(32)).decode()
    return [f"--youth_data_keys=1:{random_key()}", f"--fingerprint_secret={random_key()}"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """PostgreSQL + Redis + certificates in a temporary directory."""

    def __init__(self, fast=True):
        """fast: PostgreSQL without fsync (tests); False for benchmarks (real commits)."""
        self.dir = tempfile.mkdtemp(prefix="safeharbor-bb-")
        os.chmod(self.dir, 0o755)
        self.pg_port = free_port()
        self.redis_port = free_port()
        self.certs = os.path.join(self.dir, "certs")
        subprocess.run([os.path.join(ROOT, "scripts", "gen-certs"), self.certs], check=True)
        subprocess.run([SERVERS, "pg-start", os.path.join(self.dir, "pg"), str(self.pg_port)] +
                       (["fast"] if fast else []), check=True)
        # Redis requires a password; cached values are authenticated with a key (both random).
        self.redis_password = secrets.token_hex(16)
        self.cache_key = secrets.token_hex(32)
        self.start_redis()
        self.procs = []

    def start_redis(self):
        subprocess.run([SERVERS, "redis-start", os.path.join(self.dir, "redis"), str(self.redis_port),
                        self.redis_password], check=True)

    def redis_env(self):
        """What every service needs to use this Redis (environment, not arguments: not in ps)."""
        return {"SAFEHARBOR_REDIS_PASSWORD": self.redis_password,
                "SAFEHARBOR_CACHE_HMAC_KEY": self.cache_key}

    def database(self, name):
        subprocess.run([SERVERS, "pg-createdb", str(self.pg_port), name], check=True)
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{name}"

    def client_cert(self, name, org, role):
        subprocess.run([os.path.join(ROOT, "scripts", "gen-certs"), self.certs, "client", name, org,
                        role], check=True)
        return name

    def channel(self, port, cert_name):
        return shclient.channel(port, self.certs, cert_name)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run([SERVERS, "redis-stop", os.path.join(self.dir, "redis")])
        subprocess.run([SERVERS, "pg-stop", os.path.join(self.dir, "pg")])
        subprocess.run(["rm", "-rf", self.dir])


class Service:
    """One service binary running as a process."""

    def __init__(self, stack, name, binary, db_url, extra=()):
        self.stack, self.name = stack, name
        assert binary == shclient.SPEC[name]["binary"], f"{name} is {shclient.SPEC[name]['binary']}"
        self.binary = os.path.join(BUILD_DIR, "services", name, binary)
        self.db_url = db_url
        self.extra = list(extra)
        self.port = free_port()
        self.metrics_port = free_port()
        self.log_path = os.path.join(stack.dir, f"{name}-{self.port}.log")
        self.proc = None

    def start(self, timeout=20):
        args = [self.binary, f"--grpc_port={self.port}", f"--metrics_port={self.metrics_port}",
                f"--certs_dir={self.stack.certs}", f"--postgres_url={self.db_url}",
                f"--redis_url=redis://127.0.0.1:{self.stack.redis_port}"] + self.extra
        self.log = open(self.log_path, "ab")
        env = {**os.environ, **self.stack.redis_env()}
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=env)
        self.stack.procs.append(self.proc)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            # A fresh channel each time: a refused connect puts a channel into backoff.
            with self.stack.channel(self.port, "client-auditor") as chan:
                try:
                    if shclient.health(chan, timeout=1) == "SERVING":
                        return self
                except grpc.RpcError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not healthy: {self.tail()}")

    def terminate(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def tail(self):
        with open(self.log_path, "rb") as f:
            return f.read()[-3000:].decode(errors="replace")


def start_referral_network(stack, databases, referral_flags=()):
    """directory, beds and referral services on `stack`, each on its own database (names in
    `databases`: directory, beds, referrals), the referral service with its secrets and
    `referral_flags`. Returns the three started Services."""
    d_db, b_db, r_db = databases
    directory = Service(stack, "directory", "directory-service", stack.database(d_db)).start()
    beds = Service(stack, "beds", "beds-service", stack.database(b_db),
                   [f"--directory_address=localhost:{directory.port}"]).start()
    referrals = Service(stack, "referrals", "referral-service", stack.database(r_db), [
        f"--directory_address=localhost:{directory.port}",
        f"--beds_address=localhost:{beds.port}",
        *referral_secrets(),
        *referral_flags,
    ]).start()
    return directory, beds, referrals

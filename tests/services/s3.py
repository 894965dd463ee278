"""Real S3-compatible servers on loopback, over HTTPS: moto's server mode and SeaweedFS.

``s3_server`` is moto: it accepts any request until ``POST /moto-api/reset-auth`` with
``0``; after that every request is signed-checked against the IAM users and judged by their
policies, as AWS does. The fixture creates its users and buckets first, then turns
authentication on. It also serves IAM (access key ages), which the credential-age tests need.

``seaweedfs_server`` is SeaweedFS (``weed`` 4.53, built by scripts/setup.d/47-seaweedfs.sh
into $CONTROLPLANE_CACHE/bin): ``weed server -s3`` with a static identities file (the same
three users, as SeaweedFS actions: Admin; Read/Write/List; Read/List), every port its own on
127.0.0.1, a fresh ``-dir``. ``any_s3_server`` runs a test against each.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tests.services.certs import CertFactory
from tests.services.common import free_port

REGION = "us-east-1"
BUCKET = "transcripts"          # versioning on, a lifecycle rule
PLAIN_BUCKET = "plain-bucket"   # neither

POLICIES: dict[str, list[dict[str, Any]]] = {
    "admin": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    "monitor": [{"Effect": "Allow", "Action": ["s3:*", "iam:ListAccessKeys",
                                               "iam:GetAccessKeyLastUsed"], "Resource": "*"}],
    # moto authorizes HeadBucket as "s3:HeadBucket" (AWS uses s3:ListBucket): both listed
    "reader": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket", "s3:HeadBucket",
                                              "s3:GetBucketVersioning",
                                              "s3:GetLifecycleConfiguration"],
                "Resource": "*"}],
}


@dataclass
class Keys:
    access_key_id: str
    secret_access_key: str


@dataclass
class S3Server:
    url: str
    ca_file: Path
    proc: subprocess.Popen[bytes]
    keys: dict[str, Keys] = field(default_factory=dict)
    name: str = "moto"

    def client(self, service: str = "s3", user: str = "admin") -> Any:
        k = self.keys.get(user, Keys("AKIAADMIN0000000000", "setup"))
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=k.access_key_id,
                            aws_secret_access_key=k.secret_access_key,
                            verify=str(self.ca_file))

    def stop(self) -> None:
        # weed takes ~20 s to stop on SIGTERM; its data directory is thrown away anyway
        self.proc.terminate()
        try:
            self.proc.wait(10 if self.name == "moto" else 3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start_s3(directory: Path) -> S3Server:
    files = CertFactory(directory / "certs").server(["localhost", "127.0.0.1"])
    port = free_port()
    log = open(directory / "moto.log", "ab")  # noqa: SIM115 - kept by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port),
         "-c", str(files.cert_file), "-k", str(files.key_file)],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "false"})
    server = S3Server(url=f"https://localhost:{port}", ca_file=files.ca_file, proc=proc)
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{server.url}/moto-api/", verify=str(files.ca_file), timeout=2)
            break
        except requests.RequestException:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"moto_server did not start; see {directory}/moto.log") \
                    from None
            time.sleep(0.2)
    _populate(server)
    return server


def _buckets(s3: Any) -> None:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [
        {"ID": "expire-old-versions", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]})
    s3.create_bucket(Bucket=PLAIN_BUCKET)


def _populate(server: S3Server) -> None:
    iam = server.client("iam")
    for user, statements in POLICIES.items():
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=f"{user}-policy", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        server.keys[user] = Keys(key["AccessKeyId"], key["SecretAccessKey"])
    _buckets(server.client())
    # from now on every request must be signed by a known key and allowed by its policy
    requests.post(f"{server.url}/moto-api/reset-auth", data=b"0",
                  verify=str(server.ca_file), timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    directory = Path(tempfile.mkdtemp(prefix="cp-s3-"))
    server = start_s3(directory)
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


SEAWEED_ACTIONS = {"admin": ["Admin", "Read", "Write", "List", "Tagging"],
                   "monitor": ["Read", "Write", "List"],
                   "reader": ["Read", "List"]}


def weed_binary() -> Path:
    cache = Path(os.environ.get("CONTROLPLANE_CACHE", Path.home() / ".cache" / "controlplane"))
    path = cache / "bin" / "weed"
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no SeaweedFS binary at {path}: run scripts/setup.d/47-seaweedfs.sh "
                           "(or scripts/test, which runs it)")
    return path


def start_seaweedfs(directory: Path) -> S3Server:
    files = CertFactory(directory / "certs").server(["localhost", "127.0.0.1"])
    keys = {user: Keys(f"AKIASEAWEED{user.upper():0<9}", f"{user}-seaweed-secret-0123456789")
            for user in SEAWEED_ACTIONS}
    (directory / "identities.json").write_text(json.dumps({"identities": [
        {"name": user, "actions": actions,
         "credentials": [{"accessKey": keys[user].access_key_id,
                          "secretKey": keys[user].secret_access_key}]}
        for user, actions in SEAWEED_ACTIONS.items()]}))
    (directory / "data").mkdir()
    port = {name: free_port() for name in ("master", "volume", "filer", "s3", "https")}
    grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    args = [str(weed_binary()), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={directory / 'data'}", "-master.telemetry=false", "-volume.max=4",
            "-master.volumeSizeLimitMB=64", "-s3", f"-s3.config={directory / 'identities.json'}",
            f"-s3.cert.file={files.cert_file}", f"-s3.key.file={files.key_file}",
            f"-s3.port.https={port['https']}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            *(f"-{name}.port={port[name]}" for name in ("master", "volume", "filer", "s3")),
            *(f"-{name}.port.grpc={grpc[name]}" for name in grpc)]
    log = open(directory / "weed.log", "ab")  # noqa: SIM115 - kept by the child
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    server = S3Server(url=f"https://localhost:{port['https']}", ca_file=files.ca_file,
                      proc=proc, keys=keys, name="seaweedfs")
    deadline = time.monotonic() + 120
    while True:
        try:
            # the S3 gateway answers once master, volume server and filer are up
            server.client().list_buckets()
            # and writes go through once the master has a writable volume
            _buckets(server.client())
            return server
        except Exception:
            for bucket in (BUCKET, PLAIN_BUCKET):  # a half-done set-up starts again
                with contextlib.suppress(Exception):  # not there yet, or not up yet
                    server.client().delete_bucket(Bucket=bucket)
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"weed server did not start; see {directory}/weed.log") \
                    from None
            time.sleep(0.5)


@pytest.fixture(scope="session")
def seaweedfs_server() -> Iterator[S3Server]:
    directory = Path(tempfile.mkdtemp(prefix="cp-weed-"))
    server = start_seaweedfs(directory)
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["moto", "seaweedfs"])
def any_s3_server(request: pytest.FixtureRequest) -> S3Server:
    """The test runs once against each S3 server."""
    name = "s3_server" if request.param == "moto" else "seaweedfs_server"
    server: S3Server = request.getfixturevalue(name)
    return server

"""A real S3-compatible server on loopback: moto's server mode over HTTPS, with IAM enforced.

moto_server accepts any request until ``POST /moto-api/reset-auth`` with ``0``; after that
every request is signed-checked against the IAM users and judged by their policies, as AWS
does. The fixture creates its users and buckets first, then turns authentication on.
(SeaweedFS is the other choice DESIGN.md names; it takes ~5.5 min to build, moto installs
from PyPI in seconds.)
"""

from __future__ import annotations

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

    def client(self, service: str = "s3", user: str = "admin") -> Any:
        k = self.keys.get(user, Keys("AKIAADMIN0000000000", "setup"))
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=k.access_key_id,
                            aws_secret_access_key=k.secret_access_key,
                            verify=str(self.ca_file))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
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


def _populate(server: S3Server) -> None:
    iam = server.client("iam")
    for user, statements in POLICIES.items():
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=f"{user}-policy", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        server.keys[user] = Keys(key["AccessKeyId"], key["SecretAccessKey"])
    s3 = server.client()
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [
        {"ID": "expire-old-versions", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]})
    s3.create_bucket(Bucket=PLAIN_BUCKET)
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

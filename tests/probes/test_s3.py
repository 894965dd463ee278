"""The s3 probe through boto3, over HTTPS, against moto's server mode (IAM enforced) and
SeaweedFS: every test that needs no IAM API runs against both (``any_s3_server``)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from controlplane.probes.s3 import S3CheckConfig, S3Probe
from controlplane.results import Result, Status
from tests.services.certs import CertFactory
from tests.services.common import free_port
from tests.services.s3 import BUCKET, PLAIN_BUCKET, S3Server

pytestmark = pytest.mark.s3


def probe(s3: S3Server, user: str = "monitor", **fields: Any) -> Result:
    keys = s3.keys[user]
    base: dict[str, Any] = {"id": "s3-test", "bucket": BUCKET, "endpoint_url": s3.url,
                            "ca_file": str(s3.ca_file), "access_key_id": keys.access_key_id,
                            "secret_access_key": keys.secret_access_key, "timeout": 10}
    return S3Probe(S3CheckConfig(**{**base, **fields})).execute()


def steps(result: Result) -> dict[str, Status]:
    return {s.name: s.status for s in result.steps}


def test_bucket_with_versioning_lifecycle_and_canary_is_ok(any_s3_server: S3Server) -> None:
    result = probe(any_s3_server, canary=True)
    assert result.status == Status.OK, result.message
    assert result.message.startswith(f"bucket {BUCKET}: reachable in ")
    assert " ms, canary round trip " in result.message
    assert steps(result) == {"head bucket": Status.OK, "canary": Status.OK,
                             "versioning": Status.OK, "lifecycle": Status.OK}
    assert result.details["versioning"] == "Enabled"
    assert result.details["lifecycle"] == "1 enabled rule(s)"
    # the canary cleaned up after itself (a delete marker hides the versioned object)
    listing = any_s3_server.client().list_objects_v2(Bucket=BUCKET)
    assert [o["Key"] for o in listing.get("Contents", [])] == []


def test_fresh_access_key_is_ok(s3_server: S3Server) -> None:
    result = probe(s3_server, credential_max_age="90d")
    assert result.status == Status.OK, result.message
    assert steps(result)["credential age"] == Status.OK
    age = result.metrics["credential_age_s"]
    assert age is not None and 0 <= age < 600


def test_bucket_without_versioning_or_lifecycle_is_degraded(any_s3_server: S3Server) -> None:
    result = probe(any_s3_server, bucket=PLAIN_BUCKET)
    assert result.status == Status.DEGRADED
    assert result.message == (f"bucket {PLAIN_BUCKET}: versioning is Disabled, expected Enabled"
                              " (and 1 more problem)")
    assert result.details["problems"][1] == (f"bucket {PLAIN_BUCKET}: no enabled lifecycle rule"
                                             " (lifecycle: none)")


def test_posture_rules_can_be_turned_off(any_s3_server: S3Server) -> None:
    result = probe(any_s3_server, bucket=PLAIN_BUCKET, expect_versioning=False,
                   expect_lifecycle=False)
    assert result.status == Status.OK
    assert result.details["versioning"] == "Disabled"


def test_old_access_key_is_degraded(s3_server: S3Server) -> None:
    time.sleep(1.1)
    result = probe(s3_server, credential_max_age="1s")
    assert result.status == Status.DEGRADED
    # The key id is shown as AKIA***: redaction hides AWS access key ids everywhere.
    assert result.message.startswith("access key AKIA*** is ")
    assert s3_server.keys["monitor"].access_key_id not in result.model_dump_json()
    assert result.message.endswith(" days old, over 1.15741e-05 days: rotate it")


def test_unreadable_iam_leaves_the_age_unjudged(s3_server: S3Server) -> None:
    result = probe(s3_server, user="reader", credential_max_age="1s")
    assert result.status == Status.OK
    assert result.details["credential_age"] == "unreadable (AccessDenied)"


def test_missing_bucket_fails(any_s3_server: S3Server) -> None:
    result = probe(any_s3_server, bucket="no-such-bucket")
    assert result.status == Status.FAILING
    assert result.message == "bucket no-such-bucket does not exist"


def test_wrong_secret_fails_without_showing_it(any_s3_server: S3Server) -> None:
    keys = any_s3_server.keys["monitor"]
    result = probe(any_s3_server, secret_access_key="hunter2-wrong-secret")
    assert result.status == Status.FAILING
    assert result.message == (f"bucket {BUCKET}: credentials rejected (SignatureDoesNotMatch): "
                              "the access key AKIA*** is unknown or its secret is wrong")
    assert "hunter2" not in result.model_dump_json()
    assert keys.secret_access_key not in result.model_dump_json()


def test_unknown_access_key_fails(any_s3_server: S3Server) -> None:
    result = probe(any_s3_server, access_key_id="AKIANOSUCHKEY0000000")
    assert result.status == Status.FAILING
    assert result.message.startswith(f"bucket {BUCKET}: credentials rejected "
                                     "(InvalidAccessKeyId)")


def test_denied_canary_put_fails_for_a_read_only_key(any_s3_server: S3Server) -> None:
    result = probe(any_s3_server, user="reader", canary=True)
    assert result.status == Status.FAILING
    assert result.message.startswith("canary put of controlplane-canary/")
    assert result.message.endswith(" refused (AccessDenied)")
    assert steps(result)["head bucket"] == Status.OK


def test_read_only_key_without_canary_is_ok(any_s3_server: S3Server) -> None:
    assert probe(any_s3_server, user="reader").status == Status.OK


def test_untrusted_certificate_fails(any_s3_server: S3Server, certs: CertFactory) -> None:
    result = probe(any_s3_server, ca_file=str(certs.self_signed().ca_file))
    assert result.status == Status.FAILING
    assert result.message == (f"S3 {any_s3_server.url}: TLS certificate not trusted "
                              "(certificate verify failed)")


def test_server_down_fails(s3_server: S3Server) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    result = probe(s3_server, endpoint_url=url)
    assert result.status == Status.FAILING
    assert result.message == f"S3 {url}: cannot connect: connection refused"


def test_unresolvable_endpoint_fails(s3_server: S3Server) -> None:
    result = probe(s3_server, endpoint_url="https://no-such-s3.invalid")
    assert result.status == Status.FAILING
    assert result.message == "S3 https://no-such-s3.invalid: cannot resolve the host"


def test_silent_endpoint_is_an_error_within_the_timeout(s3_server: S3Server) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        result = probe(s3_server, endpoint_url=url, timeout=2)
    assert time.monotonic() - t0 < 5
    assert result.status == Status.ERROR
    assert result.message == f"S3 {url}: no answer within 2s"


def test_empty_credentials_are_an_error_naming_them() -> None:
    result = S3Probe(S3CheckConfig(id="s3-x", bucket="bucket")).execute()
    assert result.status == Status.ERROR
    assert result.message == ("not configured: access_key_id or secret_access_key is empty; "
                              "set them (from the environment) in the check")

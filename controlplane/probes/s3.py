"""`s3` checks: the bucket answers to our keys, a canary object goes round, bucket posture.

Through boto3, so the same code runs against AWS and any S3-compatible endpoint. One run:
HeadBucket (on a 403 one listing call reads the error code HEAD cannot carry: wrong keys vs
no permission); optionally put/get/delete of a canary object; versioning and lifecycle
(findings, degraded); the access key's age where the IAM API can be read.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr

from controlplane.durations import Duration
from controlplane.lazyimport import lazy_module
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.findings import Deadline, Findings
from controlplane.results import Status

if TYPE_CHECKING:
    import boto3
    import botocore.config as botocore_config
    import botocore.exceptions as boto_exc
else:  # the AWS SDK loads when a probe runs, not when a config validates
    boto3 = lazy_module("boto3")
    botocore_config = lazy_module("botocore.config")
    boto_exc = lazy_module("botocore.exceptions")

log = logging.getLogger(__name__)

_WRONG_KEYS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId",
               "InvalidToken", "ExpiredToken", "AuthFailure"}
_DNS = ("Name or service not known", "nodename nor servname", "Temporary failure in name "
        "resolution", "No address associated")


class S3CheckConfig(CheckConfig):
    kind: Literal["s3"] = "s3"
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    region: str = "us-east-1"
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint; "
                                     "default: AWS")
    ca_file: str | None = Field(default=None, description="PEM bundle; default: certifi's")
    access_key_id: str = ""
    secret_access_key: SecretStr = SecretStr("")
    canary: bool = Field(default=False, description="put/get/delete an object; off for "
                         "read-only keys")
    canary_prefix: str = "controlplane-canary/"
    expect_versioning: bool = True
    expect_lifecycle: bool = True
    credential_max_age: Duration | None = Field(default=None, description="an older access "
                                                "key: degraded (needs iam:ListAccessKeys)")


class S3Probe(Probe[S3CheckConfig]):
    kind = "s3"
    config_model = S3CheckConfig

    def check(self) -> Outcome:
        c = self.config
        if not c.access_key_id or not c.secret_access_key.get_secret_value():
            raise ProbeError("not configured: access_key_id or secret_access_key is empty; "
                             "set them (from the environment) in the check")
        deadline = Deadline(c.timeout)
        found = Findings()
        metrics: dict[str, float | None] = {}
        details: dict[str, Any] = {"bucket": c.bucket, "endpoint": c.endpoint_url or "aws",
                                   "region": c.region}
        s3 = self._client("s3", deadline)
        try:
            if not self._head(s3, found, metrics, deadline):
                return found.outcome("", metrics, details)
            if c.canary:
                self._canary(s3, found, metrics, deadline)
            self._posture(s3, found, details, deadline)
            if c.credential_max_age is not None:
                self._credential_age(found, metrics, details, deadline)
        except (boto_exc.ReadTimeoutError, boto_exc.ConnectTimeoutError):
            raise ProbeError(f"S3 {details['endpoint']}: no answer within "
                             f"{c.timeout:g}s") from None
        ok = f"bucket {c.bucket}: reachable in {(metrics.get('head_s') or 0) * 1000:.0f} ms"
        if c.canary:
            ok += f", canary round trip {(metrics.get('canary_s') or 0) * 1000:.0f} ms"
        return found.outcome(ok, metrics, details)

    def _client(self, service: str, deadline: Deadline) -> Any:
        c = self.config
        left = deadline.budget()
        cfg = botocore_config.Config(connect_timeout=left, read_timeout=left,
                                     retries={"total_max_attempts": 1},
                                     region_name=c.region, user_agent_extra="controlplane")
        return boto3.session.Session().client(
            service, endpoint_url=c.endpoint_url if service == "s3" or c.endpoint_url else None,
            aws_access_key_id=c.access_key_id,
            aws_secret_access_key=c.secret_access_key.get_secret_value(),
            verify=c.ca_file if c.ca_file else True, config=cfg)

    def _head(self, s3: Any, found: Findings, metrics: dict[str, float | None],
              deadline: Deadline) -> bool:
        c = self.config
        t0 = time.monotonic()
        try:
            s3.head_bucket(Bucket=c.bucket)
        except boto_exc.ClientError as exc:
            code = _code(exc)
            if code == "403":
                code = self._error_code(s3, deadline) or code
            found.add("head bucket", Status.FAILING, self._refusal(code),
                      time.monotonic() - t0)
            return False
        except (boto_exc.ReadTimeoutError, boto_exc.ConnectTimeoutError):
            raise
        except (boto_exc.SSLError, boto_exc.EndpointConnectionError,
                boto_exc.BotoCoreError) as exc:
            found.add("head bucket", Status.FAILING, self._unreachable(exc),
                      time.monotonic() - t0)
            return False
        metrics["head_s"] = round(time.monotonic() - t0, 6)
        found.add("head bucket", duration_s=metrics["head_s"] or 0.0)
        return True

    def _error_code(self, s3: Any, deadline: Deadline) -> str | None:
        """HEAD answers carry no body: one listing call says why we were refused."""
        deadline.budget()
        try:
            s3.list_objects_v2(Bucket=self.config.bucket, MaxKeys=1)
        except boto_exc.ClientError as exc:
            return _code(exc)
        return None

    def _refusal(self, code: str) -> str:
        c = self.config
        if code in _WRONG_KEYS:
            return (f"bucket {c.bucket}: credentials rejected ({code}): the access key "
                    f"{c.access_key_id} is unknown or its secret is wrong")
        if code in ("404", "NoSuchBucket"):
            return f"bucket {c.bucket} does not exist"
        if code in ("403", "AccessDenied"):
            return f"bucket {c.bucket}: access denied for key {c.access_key_id}"
        if code in ("301", "PermanentRedirect", "AuthorizationHeaderMalformed"):
            return f"bucket {c.bucket} is not in region {c.region} ({code})"
        return f"bucket {c.bucket}: refused ({code})"

    def _unreachable(self, exc: Exception) -> str:
        c = self.config
        # EndpointConnectionError keeps the socket error it wraps in kwargs["error"]
        text = f"{exc} {getattr(exc, 'kwargs', {}).get('error', '')}"
        endpoint = c.endpoint_url or f"s3.{c.region}.amazonaws.com"
        if isinstance(exc, boto_exc.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text:
            return f"S3 {endpoint}: TLS certificate not trusted (certificate verify failed)"
        if any(marker in text for marker in _DNS):
            return f"S3 {endpoint}: cannot resolve the host"
        if "Connection refused" in text:
            return f"S3 {endpoint}: cannot connect: connection refused"
        return f"S3 {endpoint}: cannot connect: {type(exc).__name__}"

    def _canary(self, s3: Any, found: Findings, metrics: dict[str, float | None],
                deadline: Deadline) -> None:
        c = self.config
        key = f"{c.canary_prefix}{uuid.uuid4().hex}"
        body = uuid.uuid4().bytes
        t0 = time.monotonic()
        stage = "put"
        try:
            s3.put_object(Bucket=c.bucket, Key=key, Body=body)
            stage = "get"
            deadline.budget()
            got = s3.get_object(Bucket=c.bucket, Key=key)["Body"].read()
            stage = "delete"
            deadline.budget()
            s3.delete_object(Bucket=c.bucket, Key=key)
        except boto_exc.ClientError as exc:
            found.add("canary", Status.FAILING, f"canary {stage} of {key} refused "
                      f"({_code(exc)})", time.monotonic() - t0)
            return
        took = time.monotonic() - t0
        if got != body:
            found.add("canary", Status.FAILING, f"canary {key} read back different bytes", took)
            return
        metrics["canary_s"] = round(took, 6)
        found.add("canary", message=f"put, get, delete in {took * 1000:.0f} ms", duration_s=took)

    def _posture(self, s3: Any, found: Findings, details: dict[str, Any],
                 deadline: Deadline) -> None:
        c = self.config
        deadline.budget()
        try:
            versioning = s3.get_bucket_versioning(Bucket=c.bucket).get("Status", "Disabled")
        except boto_exc.ClientError as exc:
            versioning = f"unreadable ({_code(exc)})"
        details["versioning"] = versioning
        if c.expect_versioning:
            if versioning == "Enabled":
                found.add("versioning", message="Enabled")
            else:
                found.add("versioning", Status.DEGRADED, f"bucket {c.bucket}: versioning is "
                          f"{versioning}, expected Enabled")
        deadline.budget()
        try:
            rules = s3.get_bucket_lifecycle_configuration(Bucket=c.bucket).get("Rules", [])
            lifecycle: str = f"{sum(r.get('Status') == 'Enabled' for r in rules)} enabled rule(s)"
            enabled = any(r.get("Status") == "Enabled" for r in rules)
        except boto_exc.ClientError as exc:
            code = _code(exc)
            lifecycle = "none" if code == "NoSuchLifecycleConfiguration" else \
                f"unreadable ({code})"
            enabled = False
        details["lifecycle"] = lifecycle
        if c.expect_lifecycle:
            if enabled:
                found.add("lifecycle", message=lifecycle)
            else:
                found.add("lifecycle", Status.DEGRADED, f"bucket {c.bucket}: no enabled "
                          f"lifecycle rule (lifecycle: {lifecycle})")

    def _credential_age(self, found: Findings, metrics: dict[str, float | None],
                        details: dict[str, Any], deadline: Deadline) -> None:
        c = self.config
        iam = self._client("iam", deadline)
        try:
            user = iam.get_access_key_last_used(AccessKeyId=c.access_key_id)["UserName"]
            keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        except boto_exc.ClientError as exc:
            # an unreadable IAM API is no fault of the bucket: say so, judge nothing
            details["credential_age"] = f"unreadable ({_code(exc)})"
            found.add("credential age", message=f"IAM not readable with this key "
                      f"({_code(exc)}); age not judged")
            return
        created = next((k["CreateDate"] for k in keys if k["AccessKeyId"] == c.access_key_id),
                       None)
        if created is None:
            found.add("credential age", message="key not listed for its user; age not judged")
            return
        age = (datetime.now(UTC) - created).total_seconds()
        metrics["credential_age_s"] = round(age, 3)
        days = age / 86400
        limit = c.credential_max_age or 0.0
        if age > limit:
            found.add("credential age", Status.DEGRADED, f"access key {c.access_key_id} is "
                      f"{days:.1f} days old, over {limit / 86400:g} days: rotate it")
        else:
            found.add("credential age", message=f"{days:.1f} days old")


def _code(exc: boto_exc.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "unknown"))

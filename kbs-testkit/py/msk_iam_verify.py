"""Verifies Amazon MSK IAM authentication messages the way the MSK signer libraries sign them.

Reads one JSON request per line on stdin and answers one JSON line on stdout:

  in:  {"mechanism": "AWS_MSK_IAM" | "OAUTHBEARER", "auth": <base64 of the SASL message>,
        "host": <the host name the client connected to>}
  out: {"ok": true, "access_key_id": ...} or {"ok": false, "reason": ...}

argv[1] is the region every signature must be scoped to; argv[2] a JSON object of the known
keys: {access_key_id: {"secret": ..., "token": <session token or null>}}.

The signature is recomputed with botocore's SigV4QueryAuth (what aws-msk-iam-sasl-signer-python
uses, and the algorithm of the Java aws-msk-iam-auth library's Aws4Signer.presign), at the
time the client signed (X-Amz-Date), and compared. The time must be within X-Amz-Expires of now.
A reason never contains a secret.
"""

import base64
import datetime
import hmac
import json
import sys
from urllib.parse import parse_qsl, urlsplit

import botocore.auth
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = sys.argv[1]
KEYS = json.loads(sys.argv[2])
CLOCK_SKEW = datetime.timedelta(minutes=5)


def expected_signature(host, params, region):
    """The signature botocore gives these parameters, at their X-Amz-Date."""
    key = KEYS[params["access_key_id"]]
    signed_at = datetime.datetime.strptime(params["date"], "%Y%m%dT%H%M%SZ")
    credentials = Credentials(params["access_key_id"], key["secret"], key.get("token"))
    auth = SigV4QueryAuth(credentials, "kafka-cluster", region, expires=int(params["expires"]))
    request = AWSRequest(method="GET", url=f"https://{host}/", params={"Action": "kafka-cluster:Connect"})
    saved = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *args, **kwargs: signed_at
    try:
        auth.add_auth(request)
    finally:
        botocore.auth.get_current_datetime = saved
    query = dict(parse_qsl(urlsplit(request.prepare().url).query))
    return query["X-Amz-Signature"]


def check(host, fields):
    """fields: the presigned parameters, names lower-cased. Returns (ok, reason)."""
    if fields.get("action") != "kafka-cluster:Connect":
        return False, f"action {fields.get('action')!r} is not kafka-cluster:Connect"
    if fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
        return False, "algorithm is not AWS4-HMAC-SHA256"
    if fields.get("x-amz-signedheaders") != "host":
        return False, "signed headers are not 'host'"
    credential = fields.get("x-amz-credential", "").split("/")
    if len(credential) != 5:
        return False, "malformed credential scope"
    access_key_id, day, region, service, terminator = credential
    if (region, service, terminator) != (REGION, "kafka-cluster", "aws4_request"):
        return False, f"scope {region}/{service}/{terminator} is not {REGION}/kafka-cluster/aws4_request"
    if access_key_id not in KEYS:
        return False, f"unknown access key {access_key_id}"
    date = fields.get("x-amz-date", "")
    if not date.startswith(day):
        return False, "x-amz-date is not the scope's day"
    try:
        signed_at = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ")
        expires = int(fields.get("x-amz-expires", ""))
    except ValueError:
        return False, "malformed x-amz-date or x-amz-expires"
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if signed_at > now + CLOCK_SKEW or now > signed_at + datetime.timedelta(seconds=expires):
        return False, "the signature is not valid now (expired or from the future)"
    if fields.get("x-amz-security-token") != KEYS[access_key_id].get("token"):
        return False, "the security token does not belong to the access key"
    want = expected_signature(
        host, {"access_key_id": access_key_id, "date": date, "expires": expires}, region
    )
    if not hmac.compare_digest(want, fields.get("x-amz-signature", "")):
        return False, "the signature does not match"
    return True, access_key_id


def verify(request):
    auth = base64.b64decode(request["auth"])
    if request["mechanism"] == "AWS_MSK_IAM":
        try:
            payload = json.loads(auth)
        except ValueError:
            return False, "the payload is not JSON"
        if payload.get("version") != "2020_10_22":
            return False, f"version {payload.get('version')!r} is not 2020_10_22"
        if payload.get("host") != request["host"]:
            return False, f"host {payload.get('host')!r} is not the broker's {request['host']!r}"
        return check(payload["host"], payload)
    # OAUTHBEARER (RFC 7628): n,,\x01auth=Bearer <token>\x01\x01
    text = auth.decode("utf-8", "replace")
    bearer = [p for p in text.split("\x01") if p.startswith("auth=Bearer ")]
    if not bearer:
        return False, "no bearer token"
    token = bearer[0][len("auth=Bearer "):]
    try:
        url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except ValueError:
        return False, "the token is not base64url"
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.netloc != f"kafka.{REGION}.amazonaws.com" or parts.path != "/":
        return False, f"the token's URL is not https://kafka.{REGION}.amazonaws.com/"
    fields = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    if not fields.get("user-agent"):
        return False, "the token has no User-Agent"
    return check(parts.netloc, fields)


for line in sys.stdin:
    try:
        ok, detail = verify(json.loads(line))
    except Exception as error:  # a malformed message must not stop the endpoint
        ok, detail = False, f"cannot verify: {type(error).__name__}"
    answer = {"ok": True, "access_key_id": detail} if ok else {"ok": False, "reason": detail}
    print(json.dumps(answer), flush=True)

"""Conformance of our QingStor emulator (and so of our signing code) with the official Python SDK.

Run with the emulator already started; its JSON line is in the EMULATOR environment variable.
Each check prints PASS or FAIL; the last line is the summary `N passed, M failed`, and the exit
status is non-zero on any failure.

How qingstor-sdk 2.6.0 is pointed at the emulator: `Config.host`, `Config.port` and
`Config.protocol`, path style, and the bucket opened with an empty zone. The SDK builds the host
name as `<zone>.<host>:<port>`, which does not resolve for 127.0.0.1, so the zone is only used
by the one check that sends the zone-style Host header while connecting to the emulator itself.

The SDK never raises on an HTTP error: every call returns a response whose `status_code` is the
HTTP status and whose items are the JSON body (`code`, `message`, ... for an error).
"""

import base64
import hashlib
import io
import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.request
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from requests.adapters import HTTPAdapter

from qingstor.sdk.client.upload_client import UploadClient
from qingstor.sdk.config import Config
from qingstor.sdk.service.qingstor import QingStor

EMU = json.loads(os.environ["EMULATOR"])
HOST, PORT, PROTOCOL = EMU["host"], int(EMU["port"]), EMU["protocol"]
ZONE, BUCKET = EMU["zone"], EMU["bucket"]
AK, SK = EMU["access_key_id"], EMU["secret_access_key"]

MIB = 1 << 20
PART = 4 * MIB  # QingStor's smallest part but the last; the emulator enforces it
TAIL = 1234

# Keys that break naive encoders, with how many parts each is sent in (all but the last 4 MiB).
KEYS = [("plain.bin", 3), ("with space.bin", 2), ("plus+sign.bin", 2), ("100%.bin", 2), ("tilde~x.bin", 2),
        ("what?.bin", 2), ("hash#tag.bin", 2), ("equals=sign.bin", 2), ("('this is test',).bin", 2),
        ("中文/ファイル.bin", 2), ("dir/sub/x.bin", 2)]

results = []


def check(name, fn):
    try:
        fn()
        results.append((name, None))
        print(f"PASS {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
        results.append((name, e))
        print(f"FAIL {name}: {e!r}", flush=True)
        traceback.print_exc()


def source(seed, size):
    # A period of 1021 SHA-256 blocks, which 4 MiB is not a multiple of, so that no two parts
    # hold the same bytes and a mixed-up part order shows.
    block = b"".join(hashlib.sha256(f"{seed}/{i}".encode()).digest() for i in range(1021))
    return (block * (size // len(block) + 1))[:size]


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def config(access_key=AK, secret=SK):
    cfg = Config(access_key, secret)
    cfg.host, cfg.port, cfg.protocol = HOST, PORT, PROTOCOL
    cfg.enable_virtual_host_style = False
    cfg.connection_retries = 0  # a 5xx from the emulator is a bug to see, not to retry
    cfg.timeout = 60
    return cfg


def bucket(access_key=AK, secret=SK, zone=""):
    return QingStor(config(access_key, secret)).Bucket(BUCKET, zone)


def expect(resp, status, what, code=None):
    if resp.status_code != status or (code is not None and resp.get("code") != code):
        want = f"{status} {code}" if code else str(status)
        raise AssertionError(f"{what}: got {resp.status_code} {dict(resp)!r}, expected {want}")
    return resp


def field(resp, name):
    """A field of a 2xx JSON body, which the SDK parses only under `Content-Type: application/json` exactly."""
    if name not in resp:
        raise AssertionError(f"no {name!r} in the parsed body {dict(resp)!r} (Content-Type "
                             f"{resp.headers.get('Content-Type')!r}; the SDK parses only 'application/json')")
    return resp[name]


def multipart(b, key, parts, md5=True):
    """The flow of the SDK's multipart example: initiate, parts numbered from 0, complete."""
    r = expect(b.initiate_multipart_upload(key, content_type="application/octet-stream"), 200, "initiate")
    upload_id = field(r, "upload_id")
    assert r.get("key") == key and r.get("bucket") == BUCKET, dict(r)
    for n, data in enumerate(parts):
        r = b.upload_multipart(key, upload_id=upload_id, part_number=str(n),
                               content_md5=md5_b64(data) if md5 else None, body=data)
        expect(r, 201, f"upload part {n}")
        etag = r.headers.get("ETag", "").strip('"')
        assert etag == hashlib.md5(data).hexdigest(), f"part {n} ETag {etag!r}"
    return upload_id


def explicit(key, nparts, seed):
    def run():
        data = source(seed, (nparts - 1) * PART + TAIL)
        parts = [data[i:i + PART] for i in range(0, len(data), PART)]
        b = bucket()
        upload_id = multipart(b, key, parts)
        r = expect(b.list_multipart(key, upload_id=upload_id), 200, "list_multipart")
        listed = [(p["part_number"], p["size"]) for p in field(r, "object_parts")]
        assert listed == [(n, len(p)) for n, p in enumerate(parts)], listed
        r = b.complete_multipart_upload(key, upload_id=upload_id,
                                        object_parts=[{"part_number": n} for n in range(len(parts))])
        expect(r, 201, "complete")
        r = expect(b.get_object(key), 200, "get_object")
        got = r.content
        assert got == data, f"stored {len(got)} bytes differ from the {len(data)} sent"
        r = expect(b.head_object(key), 200, "head_object")
        assert r.headers.get("Content-Length") == str(len(data)), r.headers
    return run


class _TextPartNumbers:
    """The bucket as UploadClient sees it, with part numbers passed as text.

    UploadClient 2.6.0 passes part_number as an int, which the SDK's query builder hands to
    urllib.parse.quote, a TypeError on Python 3; UploadClient.upload then swallows it, aborts
    the upload and returns as if done. The SDK's own multipart example passes str(i), and so
    does this. Every response is recorded, so that a failure swallowed by UploadClient shows."""

    def __init__(self, b):
        self._bucket, self.calls = b, []

    def __getattr__(self, name):
        method = getattr(self._bucket, name)

        def call(*args, **kwargs):
            if "part_number" in kwargs:
                kwargs["part_number"] = str(kwargs["part_number"])
            try:
                r = method(*args, **kwargs)
            except Exception as e:
                self.calls.append((name, repr(e)))
                raise
            self.calls.append((name, r.status_code))
            return r
        return call


def upload_client():
    data = source(500, 2 * PART + MIB)
    key = "upload-client/nine mib+.bin"
    b = bucket()
    proxy = _TextPartNumbers(b)
    UploadClient(proxy, part_size=PART).upload(key, io.BytesIO(data))
    names = [c[0] for c in proxy.calls]
    assert "abort_multipart_upload" not in names, f"UploadClient gave up: {proxy.calls}"
    assert names == ["initiate_multipart_upload"] + ["upload_multipart"] * 3 + ["complete_multipart_upload"], \
        proxy.calls
    got = expect(b.get_object(key), 200, "get_object").content
    assert got == data, f"stored {len(got)} bytes differ from the {len(data)} sent"


def abort():
    b = bucket()
    key = "aborted/abort me+=.bin"
    upload_id = multipart(b, key, [source(600, 1000)])
    expect(b.abort_multipart_upload(key, upload_id=upload_id), 204, "abort")
    expect(b.abort_multipart_upload(key, upload_id=upload_id), 204, "second abort")
    expect(b.list_multipart(key, upload_id=upload_id), 404, "list_multipart of an aborted upload",
           "upload_not_exists")


def list_uploads():
    b = bucket()
    key = "unfinished/listed upload+.bin"
    upload_id = field(expect(b.initiate_multipart_upload(key), 200, "initiate"), "upload_id")

    def listed(some):
        r = expect(b.list_multipart_uploads(prefix="unfinished/"), 200, "list_multipart_uploads")
        uploads = field(r, "uploads") if some else r.get("uploads") or []
        return [(u.get("key"), u.get("upload_id")) for u in uploads]
    found = listed(True)
    assert (key, upload_id) in found, found
    expect(b.abort_multipart_upload(key, upload_id=upload_id), 204, "abort")
    found = listed(False)
    assert upload_id not in [u for _, u in found], found


def too_small():
    b = bucket()
    key = "too-small/part.bin"
    upload_id = multipart(b, key, [source(700, 1024), source(701, 1024)])
    r = b.complete_multipart_upload(key, upload_id=upload_id, object_parts=[{"part_number": 0}, {"part_number": 1}])
    expect(r, 400, "complete with a small non-last part", "entity_too_small")
    expect(b.abort_multipart_upload(key, upload_id=upload_id), 204, "abort")


def refused(access_key, secret, code):
    def run():
        r = bucket(access_key, secret).initiate_multipart_upload("refused.bin")
        expect(r, 401, "initiate", code)
    return run


def bad_digest():
    b = bucket()
    key = "bad-digest/x.bin"
    upload_id = field(expect(b.initiate_multipart_upload(key), 200, "initiate"), "upload_id")
    data = source(800, 4096)
    r = b.upload_multipart(key, upload_id=upload_id, part_number="0", content_md5=md5_b64(data + b"!"), body=data)
    expect(r, 400, "upload part with a wrong Content-MD5", "bad_digest")
    expect(b.abort_multipart_upload(key, upload_id=upload_id), 204, "abort")


PRESIGNED_KEY = "presigned/with space+=%?#~('x',)中.bin"
PRESIGNED_DATA = source(900, 3000)


def presigned_get():
    b = bucket()
    upload_id = multipart(b, PRESIGNED_KEY, [PRESIGNED_DATA])
    expect(b.complete_multipart_upload(PRESIGNED_KEY, upload_id=upload_id, object_parts=[{"part_number": 0}]),
           201, "complete")
    url = b.get_object_request(PRESIGNED_KEY).sign_query(int(time.time()) + 600).url
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.status == 200, r.status
        got = r.read()
    assert got == PRESIGNED_DATA, f"got {len(got)} bytes, sent {len(PRESIGNED_DATA)}"


def presigned_tampered():
    url = bucket().get_object_request(PRESIGNED_KEY).sign_query(int(time.time()) + 600).url
    scheme, netloc, path, query, fragment = urlsplit(url)
    items = []
    for item in query.split("&"):
        name, _, value = item.partition("=")
        if name == "signature":
            raw = bytearray(base64.b64decode(unquote(value)))
            raw[0] ^= 1
            value = quote(base64.b64encode(bytes(raw)))
        items.append(f"{name}={value}")
    bad = urlunsplit((scheme, netloc, path, "&".join(items), fragment))
    assert bad != url
    try:
        urllib.request.urlopen(bad, timeout=60).read()
    except urllib.error.HTTPError as e:
        body = e.read()
        assert e.code == 401, (e.code, body)
        assert json.loads(body).get("code") == "signature_not_matched", body
        return
    raise AssertionError("a presigned URL with an altered signature must be refused with 401")


class _ConnectToEmulator(HTTPAdapter):
    """Sends to the emulator whatever host the URL names, keeping the SDK's own Host header."""

    def send(self, request, **kwargs):
        scheme, _, path, query, fragment = urlsplit(request.url)
        request.url = urlunsplit((scheme, f"{HOST}:{PORT}", path, query, fragment))
        return super().send(request, **kwargs)


def zone_host():
    qs = QingStor(config())
    qs.client.mount(f"{PROTOCOL}://", _ConnectToEmulator(max_retries=0))
    b = qs.Bucket(BUCKET, ZONE)
    key = "zone-host/x.bin"
    req = b.initiate_multipart_upload_request(key).sign()
    assert req.headers["Host"].startswith(f"{ZONE.lower()}.{HOST}"), req.headers["Host"]
    upload_id = field(expect(b.initiate_multipart_upload(key), 200, "initiate"), "upload_id")
    expect(b.abort_multipart_upload(key, upload_id=upload_id), 204, "abort")


for seed, (key, nparts) in enumerate(KEYS, 1):
    check(f"multipart upload {key!r} ({nparts} parts)", explicit(key, nparts, seed))
check("UploadClient 9 MiB in 4 MiB parts", upload_client)
check("abort 204, again 204, then list_multipart 404 upload_not_exists", abort)
check("list_multipart_uploads shows an unfinished upload until aborted", list_uploads)
check("complete with a non-last part under 4 MiB: 400 entity_too_small", too_small)
check("wrong secret: 401 signature_not_matched", refused(AK, SK + "x", "signature_not_matched"))
check("unknown access key: 401 invalid_access_key_id", refused("NOSUCHACCESSKEY", SK, "invalid_access_key_id"))
check("upload part with a wrong Content-MD5: 400 bad_digest", bad_digest)
check("presigned GET", presigned_get)
check("presigned GET with an altered signature: 401 signature_not_matched", presigned_tampered)
check(f"zone-style Host header {ZONE}.{HOST}:{PORT}", zone_host)

failed = sum(1 for _, e in results if e is not None)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)

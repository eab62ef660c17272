"""Conformance of our Box emulator with the official Python SDK (boxsdk 10, module box_sdk_gen).

Run with the emulator already started; its JSON line is in the EMULATOR environment variable.
Each check prints PASS or FAIL; the last line is the summary `N passed, M failed`, and the exit
status is non-zero on any failure.

How box_sdk_gen is pointed at the emulator: `BoxClient.with_custom_base_urls(BaseUrls(...))`. The
SDK appends `/2.0/...` to `base_url` and `upload_url` itself, so they are the emulator's
`api_url` and `upload_url` without their `/2.0`. The SDK asks for tokens at `base_url` +
`/oauth2/token` (not at `oauth_2_url`, which only builds the browser's authorize URL), with the
network session of the API call that needed the token, so the emulator's `oauth_url` must be
the API host's `/oauth2/token`.

The SDK's network client is kept, wrapped to note every exchange; its retry strategy is kept
for 202 + Retry-After (the commit) and 401 (a new token), but a 5xx, a 429 or a dropped
connection fails at once: an emulator bug is to be seen, not retried with back-off.
"""

import base64
import hashlib
import io
import json
import os
import sys
import traceback

from box_sdk_gen import (AccessToken, BaseUrls, BoxAPIError, BoxCCGAuth, BoxClient, BoxDeveloperTokenAuth,
                         BoxNetworkClient, BoxRetryStrategy, BoxSDKError, CCGConfig, InMemoryTokenStorage,
                         NetworkSession, UploadFileAttributes, UploadFileAttributesParentField,
                         UploadFileVersionAttributes)

EMU = json.loads(os.environ["EMULATOR"])
TOKEN, FOLDER = EMU["developer_token"], EMU["folder_id"]
CLIENT_ID, CLIENT_SECRET, ENTERPRISE = EMU["client_id"], EMU["client_secret"], EMU["enterprise_id"]
CHUNKED_MIN = int(EMU["chunked_min"])


def without(url, suffix):
    if not url.endswith(suffix):
        raise SystemExit(f"{url!r} does not end with {suffix!r}: the SDK appends {suffix} itself")
    return url[:-len(suffix)]


API_ROOT = without(EMU["api_url"], "/2.0")
UPLOAD_ROOT = without(EMU["upload_url"], "/2.0")
BASE_URLS = BaseUrls(base_url=API_ROOT, upload_url=UPLOAD_ROOT, oauth_2_url=without(EMU["oauth_url"], "/token"))

MIB = 1 << 20
PART = 8 * MIB  # the part size the emulator chooses for files under 256 MiB
BIG = CHUNKED_MIN + 12_345  # just over the chunked minimum: 3 parts, the last one short
assert -(-BIG // PART) == 3, BIG

# Names that break naive encoders. The chunked path carries the name in JSON only, so two big
# files cover it; the multipart path puts it in the attributes JSON and in the file part's
# Content-Disposition, so the small files try many.
BIG_NAMES = ["中文 ファイル.bin", "it's \"quoted\" + 100% #1.bin"]
SMALL_NAMES = ["with space.bin", "plus+sign.bin", "100%.bin", "hash#tag.bin", "what?.bin", "tilde~x.bin",
               "double\"quote\".bin", "single'quote.bin", "semi;colon=equals&amp.bin", "小さい 文件 ファイル.bin"]

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
    # A period of 1021 SHA-256 blocks, which 8 MiB is not a multiple of, so that no two parts
    # hold the same bytes and a mixed-up part order shows.
    block = b"".join(hashlib.sha256(f"{seed}/{i}".encode()).digest() for i in range(1021))
    return (block * (size // len(block) + 1))[:size]


def sha1_b64(data):
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


class Recorder(BoxNetworkClient):
    """The SDK's own network client, noting (method, URL, status, request headers) of each exchange."""

    def __init__(self):
        super().__init__()
        self.log = []

    def _make_request(self, request):
        response = super()._make_request(request)
        r = response.network_response
        self.log.append((request.method, request.url, r.status_code if r is not None else None, dict(request.headers)))
        return response

    def since(self, mark):
        return self.log[mark:]


class FailFast(BoxRetryStrategy):
    def should_retry(self, fetch_options, fetch_response, attempt_number):
        if fetch_response.status == 0 or fetch_response.status >= 500 or fetch_response.status == 429:
            return False
        return super().should_retry(fetch_options, fetch_response, attempt_number)


RECORDER = Recorder()


def client(auth=None):
    session = NetworkSession(network_client=RECORDER, retry_strategy=FailFast())
    auth = auth or BoxDeveloperTokenAuth(token=TOKEN)
    return BoxClient(auth, network_session=session).with_custom_base_urls(BASE_URLS)


def api_error(fn, status, code=None):
    """Runs fn, which must raise the SDK's BoxAPIError with this status (and ClientError code)."""
    try:
        fn()
    except BoxAPIError as e:
        info = e.response_info
        if info.status_code != status or (code is not None and info.code != code):
            raise AssertionError(f"got {info.status_code} {info.code!r} {info.raw_body!r}, expected {status} {code}")
        return e
    raise AssertionError(f"no error, expected {status} {code}")


def downloaded(c, file_id):
    return c.downloads.download_file(file_id).read()


def same_file(c, f, name, data):
    """The stored file is `data` under `name`: its fields, a fresh GET of it, and its content."""
    sha1 = hashlib.sha1(data).hexdigest()
    assert f.name == name, f"name {f.name!r}, sent {name!r}"
    assert f.size == len(data), f"size {f.size}, sent {len(data)}"
    assert f.sha_1 == sha1, f"sha1 {f.sha_1!r}, hashlib says {sha1}"
    got = c.files.get_file_by_id(f.id)
    assert (got.id, got.name, got.size, got.sha_1) == (f.id, name, len(data), sha1), got.raw_data
    assert got.type == "file" and got.etag is not None, got.raw_data
    assert got.parent is not None and got.parent.id == FOLDER, got.raw_data
    assert got.file_version is not None and got.file_version.id, got.raw_data
    content = downloaded(c, f.id)
    assert content == data, f"downloaded {len(content)} bytes differ from the {len(data)} sent"
    return got


def upload_big_file(name, seed):
    def run():
        data = source(seed, BIG)
        c = client()
        mark = len(RECORDER.log)
        try:
            f = c.chunked_uploads.upload_big_file(io.BytesIO(data), name, len(data), FOLDER)
        except AttributeError as e:
            # upload_big_file takes `.entries` of the commit's result, None after a 202 the
            # retry strategy gave up on (no Retry-After, or 202 on each of its 5 attempts).
            commits = [(u.rsplit("/", 1)[-1], st) for m, u, st, _ in RECORDER.since(mark) if m == "POST"]
            raise AssertionError(f"upload_big_file got no file from the commit: {e}; POSTs {commits}") from e
        same_file(c, f, name, data)
        flow = [(m, s) for m, _, s, _ in RECORDER.since(mark)][:7]
        # create, three parts, list parts, then the commit: 202 with Retry-After first, 201 on the retry.
        assert flow == [("POST", 201), ("PUT", 200), ("PUT", 200), ("PUT", 200), ("GET", 200), ("POST", 202),
                        ("POST", 201)], flow
    return run


def put_part(c, session, data, index, by_url):
    chunk = data[index * PART:(index + 1) * PART]
    start = index * PART
    args = (io.BytesIO(chunk), f"sha={sha1_b64(chunk)}", f"bytes {start}-{start + len(chunk) - 1}/{len(data)}")
    if by_url:
        r = c.chunked_uploads.upload_file_part_by_url(session.session_endpoints.upload_part, *args)
    else:
        r = c.chunked_uploads.upload_file_part(session.id, *args)
    p = r.part
    assert p is not None, r.raw_data
    assert (p.offset, p.size, p.sha_1) == (start, len(chunk), hashlib.sha1(chunk).hexdigest()), r.raw_data
    assert p.part_id, r.raw_data
    return p


def check_session(s, size, parts_done):
    assert s.type == "upload_session" and s.id, s.raw_data
    assert s.part_size == PART, f"part_size {s.part_size}"
    assert s.total_parts == -(-size // PART), f"total_parts {s.total_parts}"
    assert s.num_parts_processed == parts_done, f"num_parts_processed {s.num_parts_processed}, expected {parts_done}"
    e = s.session_endpoints
    urls = [e.upload_part, e.commit, e.abort, e.list_parts, e.status, e.log_event]
    # The endpoints name the emulator's regional upload host, as Box's name theirs.
    base = EMU.get("session_url", EMU["upload_url"])
    assert all(u and u.startswith(base + "/files/upload_sessions/" + s.id) for u in urls), s.raw_data


def manual_resume():
    data = source(10, BIG)
    name = "manual resume + parts.bin"
    c = client()
    cu = c.chunked_uploads
    s = cu.create_file_upload_session(FOLDER, len(data), name)
    check_session(s, len(data), 0)
    parts = {0: put_part(c, s, data, 0, True), 2: put_part(c, s, data, 2, False)}
    listed = cu.get_file_upload_session_parts(s.id)
    assert listed.total_count == 2, listed.raw_data
    listed_parts = sorted((p.offset, p.part_id) for p in listed.entries)
    assert listed_parts == [(0, parts[0].part_id), (2 * PART, parts[2].part_id)], listed.raw_data
    check_session(cu.get_file_upload_session_by_id(s.id), len(data), 2)
    check_session(cu.get_file_upload_session_by_url(s.session_endpoints.status), len(data), 2)
    parts[1] = put_part(c, s, data, 1, True)
    listed = cu.get_file_upload_session_parts_by_url(s.session_endpoints.list_parts, offset=0, limit=100)
    assert listed.total_count == 3, listed.raw_data
    assert sorted(p.offset for p in listed.entries) == [0, PART, 2 * PART], listed.raw_data
    page = cu.get_file_upload_session_parts(s.id, offset=1, limit=1)
    assert page.total_count == 3 and [p.offset for p in page.entries] == [PART], page.raw_data
    mark = len(RECORDER.log)
    committed = cu.create_file_upload_session_commit(s.id, [parts[0], parts[1], parts[2]], f"sha={sha1_b64(data)}")
    assert committed is not None, "the commit still answered 202 after the SDK's retries"
    assert [st for _, _, st, _ in RECORDER.since(mark)] == [202, 201], RECORDER.since(mark)
    assert committed.total_count == 1 and len(committed.entries) == 1, committed.raw_data
    same_file(c, committed.entries[0], name, data)


def new_version_chunked():
    c = client()
    name = "versioned by chunks.bin"
    old = source(20, 4000)
    f = c.uploads.upload_file(UploadFileAttributes(name=name, parent=UploadFileAttributesParentField(id=FOLDER)),
                              io.BytesIO(old)).entries[0]
    before = same_file(c, f, name, old)
    data = source(21, BIG)
    cu = c.chunked_uploads
    s = cu.create_file_upload_session_for_existing_file(f.id, len(data))
    check_session(s, len(data), 0)
    parts = [put_part(c, s, data, i, True) for i in range(3)]
    committed = cu.create_file_upload_session_commit_by_url(s.session_endpoints.commit, parts, f"sha={sha1_b64(data)}")
    assert committed is not None, "the commit still answered 202 after the SDK's retries"
    g = committed.entries[0]
    assert g.id == f.id, f"the new version made file {g.id}, not a version of {f.id}"
    after = same_file(c, g, name, data)
    assert after.file_version.id != before.file_version.id, "file_version.id did not change"
    assert after.etag != before.etag, "etag did not change"


def small_upload(name, seed):
    def run():
        data = source(seed, 3000 + seed)
        c = client()
        attrs = UploadFileAttributes(name=name, parent=UploadFileAttributesParentField(id=FOLDER))
        r = c.uploads.upload_file(attrs, io.BytesIO(data), file_file_name=name)
        assert r.total_count == 1 and len(r.entries) == 1, r.raw_data
        same_file(c, r.entries[0], name, data)
    return run


def small_upload_and_version():
    """As the SDK's docs call it: no file name in the multipart file part (it sends filename="")."""
    c = client()
    name = "plain small.txt"
    data = source(30, 1234)
    attrs = UploadFileAttributes(name=name, parent=UploadFileAttributesParentField(id=FOLDER))
    f = c.uploads.upload_file(attrs, io.BytesIO(data)).entries[0]
    before = same_file(c, f, name, data)
    newer = source(31, 2345)
    g = c.uploads.upload_file_version(f.id, UploadFileVersionAttributes(name=name), io.BytesIO(newer)).entries[0]
    assert g.id == f.id, f"the new version made file {g.id}, not a version of {f.id}"
    after = same_file(c, g, name, newer)
    assert after.file_version.id != before.file_version.id, "file_version.id did not change"


def too_small():
    c = client()
    api_error(lambda: c.chunked_uploads.create_file_upload_session(FOLDER, CHUNKED_MIN - 1, "too small.bin"),
              400, "file_size_too_small")
    c.chunked_uploads.delete_file_upload_session_by_id(
        c.chunked_uploads.create_file_upload_session(FOLDER, CHUNKED_MIN, "just big enough.bin").id)


def name_clash():
    c = client()
    name = "clash + 1.bin"
    attrs = UploadFileAttributes(name=name, parent=UploadFileAttributesParentField(id=FOLDER))
    c.uploads.upload_file(attrs, io.BytesIO(b"first"))
    api_error(lambda: c.uploads.upload_file(attrs, io.BytesIO(b"second")), 409, "item_name_in_use")
    api_error(lambda: c.chunked_uploads.create_file_upload_session(FOLDER, BIG, name), 409, "item_name_in_use")


def abort():
    c = client()
    cu = c.chunked_uploads
    name = "aborted upload.bin"
    s = cu.create_file_upload_session(FOLDER, BIG, name)
    assert cu.delete_file_upload_session_by_id(s.id) is None
    api_error(lambda: cu.get_file_upload_session_by_id(s.id), 404)
    # Nothing was made, so the name is free again; this time abort through the session's own URL.
    s = cu.create_file_upload_session(FOLDER, BIG, name)
    cu.delete_file_upload_session_by_url(s.session_endpoints.abort)
    api_error(lambda: cu.get_file_upload_session_by_url(s.session_endpoints.status), 404)


def unknown_token():
    c = client(BoxDeveloperTokenAuth(token="not-a-token"))
    mark = len(RECORDER.log)
    try:
        c.files.get_file_by_id("1")
    except BoxAPIError as e:
        raise AssertionError(f"expected the SDK's own refusal to refresh a developer token, got {e!r}")
    except BoxSDKError as e:
        # On a 401 the SDK asks the auth for a new token, which a developer token refuses.
        assert "Developer token has expired" in e.message, e.message
    else:
        raise AssertionError("an unknown token must be refused with 401")
    assert [st for _, _, st, _ in RECORDER.since(mark)] == [401], RECORDER.since(mark)


def ccg(config):
    return BoxCCGAuth(config)


def ccg_upload():
    auth = ccg(CCGConfig(CLIENT_ID, CLIENT_SECRET, enterprise_id=ENTERPRISE))
    c = client(auth)
    mark = len(RECORDER.log)
    name = "uploaded with ccg.bin"
    data = source(40, 777)
    f = c.uploads.upload_file(UploadFileAttributes(name=name, parent=UploadFileAttributesParentField(id=FOLDER)),
                              io.BytesIO(data)).entries[0]
    same_file(c, f, name, data)
    log = RECORDER.since(mark)
    assert (log[0][0], log[0][1], log[0][2]) == ("POST", EMU["oauth_url"], 200), log[0][:3]
    token = auth.token_storage.get().access_token
    assert token, "no access token stored"
    assert all(h.get("Authorization") == f"Bearer {token}" for _, _, _, h in log[1:]), "not every call used the token"


def ccg_stale_token():
    """A token the emulator does not know: 401, a new client-credentials token, the call again."""
    storage = InMemoryTokenStorage(token=AccessToken(access_token="stale-token"))
    auth = ccg(CCGConfig(CLIENT_ID, CLIENT_SECRET, enterprise_id=ENTERPRISE, token_storage=storage))
    c = client(auth)
    f = c.uploads.upload_file(UploadFileAttributes(name="after a stale token.bin",
                                                   parent=UploadFileAttributesParentField(id=FOLDER)),
                              io.BytesIO(b"x" * 100)).entries[0]
    mark = len(RECORDER.log)
    auth.token_storage.store(AccessToken(access_token="stale-token"))
    assert c.files.get_file_by_id(f.id).id == f.id
    flow = [(m, u == EMU["oauth_url"], s) for m, u, s, _ in RECORDER.since(mark)]
    assert flow == [("GET", False, 401), ("POST", True, 200), ("GET", False, 200)], flow


def ccg_wrong_secret():
    c = client(ccg(CCGConfig(CLIENT_ID, CLIENT_SECRET + "x", enterprise_id=ENTERPRISE)))
    try:
        c.files.get_file_by_id("1")
    except BoxAPIError as e:
        assert e.request_info.url == EMU["oauth_url"], e.request_info.url
        assert e.response_info.status_code in (400, 401), e.response_info.raw_body
        return
    raise AssertionError("a wrong client secret must be refused at the token URL")


for seed, name in enumerate(BIG_NAMES, 1):
    check(f"upload_big_file {name!r} ({BIG} bytes, 3 parts), download, sha1", upload_big_file(name, seed))
check("manual chunked upload resumed: parts 0 and 2, list, part 1, commit", manual_resume)
check("new version of a file through an upload session for the existing file", new_version_chunked)
for seed, name in enumerate(SMALL_NAMES, 100):
    check(f"upload_file {name!r}, download, sha1", small_upload(name, seed))
check("upload_file without a part file name, then upload_file_version", small_upload_and_version)
check(f"upload session under {CHUNKED_MIN} bytes: 400 file_size_too_small", too_small)
check("same name in the same folder: 409 item_name_in_use (upload and upload session)", name_clash)
check("abort an upload session (by id and by URL), then getting it: 404", abort)
check("unknown developer token: 401", unknown_token)
check("client credentials grant: token from the emulator, then upload and download", ccg_upload)
check("client credentials grant: a stale token gets 401, a new token, the call again", ccg_stale_token)
check("client credentials grant with a wrong secret: refused at the token URL", ccg_wrong_secret)

failed = sum(1 for _, e in results if e is not None)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)

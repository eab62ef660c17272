"""Conformance of our SharePoint REST emulator with vgrem's Office365-REST-Python-Client.

Run with the emulator already started; its JSON line is in the EMULATOR environment variable.
Each check prints PASS or FAIL; the last line is the summary `N passed, M failed`, and the exit
status is non-zero on any failure.

How the library is pointed at the emulator: `ClientContext(site_url)` with a bearer token from
`with_access_token` (the emulator's fixed token), or with the emulator's session cookie through
`with_cookies`. The library asks `{site}/_api/contextInfo` for a form digest before its first
POST even with a bearer token, and sends `X-RequestDigest` on every request after that.

What the library sends (read from its source, checked by the request log below):
* `create_upload_session` on a folder's files: `Files/add(overwrite=true,url='<name>')` with an
  empty body, then the chunks on `GetFileById('<UniqueId>')` (the id from the SP.File answer):
  `startUpload(uploadID='<uuid>')`, `continueUpload(uploadID='…',fileOffset=N)`,
  `finishUpload(uploadID='…',fileOffset=N)`: lower-case method names, `uploadID`, the id as a
  plain string literal rather than `guid'…'`. A file no larger than one chunk goes through
  `Files/add` with its content.
* names in string literals with `'` doubled and `%`, `#`, `+`, `?`, `&`, `*` percent-encoded
  by the library itself; spaces and other characters are percent-encoded by requests.
* `get_upload_status` and `cancel_upload` put `{"uploadId": "…"}` in a JSON body of a POST
  instead of the URL.
* verbose OData (`Accept: application/json;odata=verbose`) everywhere.
"""

import io
import json
import os
import sys
import traceback
import uuid

import requests

from office365.runtime.auth.token_response import TokenResponse
from office365.runtime.client_request_exception import ClientRequestException
from office365.sharepoint.client_context import ClientContext
from office365.sharepoint.files.file import File

EMU = json.loads(os.environ["EMULATOR"])
SITE = EMU["site_url"]
LIBRARY = EMU["library"]  # /sites/emulator/Shared Documents
TOKEN = EMU["token"]
COOKIE_NAME, COOKIE_VALUE = EMU["cookie"].split("=", 1)

KIB = 1024
CHUNK = 64 * KIB
BIG = 3 * CHUNK + 12_345  # start, two continues, finish

# Names that break naive encoders: spaces, unicode, `#`, `%`, a quote, `+`, `&`, `;`, `=`, `~`.
BIG_NAMES = ["with space.bin", "中文 ファイル.bin", "hash#tag 100%.bin", "it's quoted.bin"]
SMALL_NAMES = ["small space.bin", "plus+sign & semi;colon=equals.bin", "100% #1 it's.bin", "tilde~ 小さい.bin"]

# Every request the library sends (method, URL, status), from a wrapper around requests.
SENT = []
_original_send = requests.Session.send


def _logging_send(self, request, **kwargs):
    response = _original_send(self, request, **kwargs)
    SENT.append((request.method, request.url, response.status_code))
    return response


requests.Session.send = _logging_send

results = []


def check(name):
    def wrap(fn):
        try:
            fn()
            results.append((name, True))
            print(f"PASS {name}", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported, then the next check runs
            results.append((name, False))
            print(f"FAIL {name}", flush=True)
            traceback.print_exc()
        return fn

    return wrap


def bearer(token=TOKEN):
    return ClientContext(SITE).with_access_token(lambda: TokenResponse(access_token=token, token_type="Bearer"))


def data_for(name, size):
    seed = sum(name.encode("utf-8"))
    return bytes((i * 31 + seed) & 0xFF for i in range(size))


def library(ctx):
    return ctx.web.get_folder_by_server_relative_path(LIBRARY)


def download(ctx, name):
    """The content through the library: the file by path, then `$value`."""
    return ctx.web.get_file_by_server_relative_path(f"{LIBRARY}/{name}").get_content().execute_query().value


def raw_download(name):
    """The content without the library: `GetFileByServerRelativePath(DecodedUrl=@a1)/$value`."""
    literal = "'" + f"{LIBRARY}/{name}".replace("'", "''") + "'"
    response = requests.get(
        f"{SITE}/_api/web/GetFileByServerRelativePath(DecodedUrl=@a1)/$value",
        params={"@a1": literal},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert response.status_code == 200, (response.status_code, response.text)
    return response.content


def raw_status(name):
    """The status of `GET {file}` without the library."""
    literal = "'" + f"{LIBRARY}/{name}".replace("'", "''") + "'"
    response = requests.get(
        f"{SITE}/_api/web/GetFileByServerRelativePath(DecodedUrl=@a1)",
        params={"@a1": literal},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    return response.status_code


def chunk_calls(since):
    calls = []
    for method, url, status in SENT[since:]:
        path = requests.utils.unquote(url.split("?")[0]).lower()
        for op in ("startupload", "continueupload", "finishupload"):
            if f"/{op}(" in path:
                calls.append((method, op, status))
    return calls


def big_upload(name):
    @check(f"create_upload_session: {name!r} in {BIG // CHUNK + 1} chunks, bytes read back")
    def _():
        ctx = bearer()
        data = data_for(name, BIG)
        since = len(SENT)
        uploaded = library(ctx).files.create_upload_session(io.BytesIO(data), CHUNK, file_name=name)
        ctx.execute_query()
        assert uploaded.name == name, uploaded.name
        assert int(uploaded.length) == BIG, uploaded.length
        assert uploaded.server_relative_url == f"{LIBRARY}/{name}", uploaded.server_relative_url
        calls = chunk_calls(since)
        ops = [op for _, op, _ in calls]
        assert ops == ["startupload", "continueupload", "continueupload", "finishupload"], calls
        assert all(status == 200 for _, _, status in calls), calls
        assert download(ctx, name) == data
        assert raw_download(name) == data


def small_upload(name, how):
    @check(f"small file by {how}: {name!r}, bytes read back")
    def _():
        ctx = bearer()
        data = data_for(name, 5_000)
        folder = library(ctx)
        if how == "files.add":
            added = folder.files.add(name, data, True)
        elif how == "files.upload":
            added = folder.files.upload(io.BytesIO(data), name)
        else:  # create_upload_session with a file no larger than one chunk: one Files/add
            added = folder.files.create_upload_session(io.BytesIO(data), CHUNK, file_name=name)
        ctx.execute_query()
        assert int(added.length) == len(data), added.length
        assert download(ctx, name) == data
        assert raw_download(name) == data


for big in BIG_NAMES:
    big_upload(big)
for small, how in zip(SMALL_NAMES, ["files.add", "files.upload", "create_upload_session", "files.add"]):
    small_upload(small, how)


@check("overwrite: a second create_upload_session replaces the content, same UniqueId")
def _():
    ctx = bearer()
    name = "replaced.bin"
    first = library(ctx).files.add(name, b"old content", True)
    ctx.execute_query()
    data = data_for("new", BIG)
    second = library(ctx).files.create_upload_session(io.BytesIO(data), CHUNK, file_name=name)
    ctx.execute_query()
    assert second.unique_id == first.unique_id, (second.unique_id, first.unique_id)
    assert int(second.length) == BIG
    assert download(ctx, name) == data


@check("get_upload_status and cancel_upload (uploadId in a JSON body); the empty stub is deleted")
def _():
    ctx = bearer()
    name = "cancelled upload.bin"
    stub = library(ctx).files.add(name, None, True)
    ctx.execute_query()
    upload_id = str(uuid.uuid4())
    held = stub.start_upload(upload_id, b"x" * 1000)
    ctx.execute_query()
    assert int(held.value) == 1000, held.value
    held = stub.continue_upload(upload_id, 1000, b"y" * 500)
    ctx.execute_query()
    assert int(held.value) == 1500, held.value
    status = stub.get_upload_status(upload_id)
    ctx.execute_query()
    assert str(status.properties.get("ExpectedContentRange")) == "1500", status.properties
    stub.cancel_upload(upload_id)
    ctx.execute_query()
    try:
        ctx.web.get_file_by_server_relative_path(f"{LIBRARY}/{name}").get().execute_query()
    except ClientRequestException as e:
        assert e.response.status_code == 404, e.response.status_code
    else:
        raise AssertionError("the stub made for the cancelled upload is still there")


@check("a wrong fileOffset is an error the library raises (400 ArgumentOutOfRangeException)")
def _():
    ctx = bearer()
    stub = library(ctx).files.add("offset.bin", None, True)
    ctx.execute_query()
    upload_id = str(uuid.uuid4())
    stub.start_upload(upload_id, b"a" * 100)
    ctx.execute_query()
    try:
        stub.continue_upload(upload_id, 99, b"b").execute_query()
    except ClientRequestException as e:
        assert e.response.status_code == 400, e.response.status_code
        assert "ArgumentOutOfRangeException" in e.code, e.code
    else:
        raise AssertionError("a wrong fileOffset was accepted")


@check("a name SharePoint refuses: 400 -2130575245, nothing stored")
def _():
    for bad in ["colon:name.bin", "question?.bin", "trailing dot.", 'quote".bin', " leading space.bin"]:
        ctx = bearer()
        try:
            library(ctx).files.add(bad, b"x", True)
            ctx.execute_query()
        except ClientRequestException as e:
            assert e.response.status_code == 400, (bad, e.response.status_code)
            assert e.code.startswith("-2130575245"), (bad, e.code)
        else:
            raise AssertionError(f"{bad!r} was accepted")
        assert raw_status(bad) == 404, bad


@check("a bad token: the library raises an error (401)")
def _():
    ctx = bearer("not-a-valid-token")
    try:
        library(ctx).files.add("never.bin", b"x", True)
        ctx.execute_query()
    except ClientRequestException as e:
        assert e.response.status_code == 401, e.response.status_code
    except Exception as e:  # noqa: BLE001 - any error the library raises counts, but it must be one
        assert "401" in str(e), repr(e)
    else:
        raise AssertionError("an upload with a bad token succeeded")


@check("cookie authentication: the library's contextinfo digest lets its POSTs through")
def _():
    ctx = ClientContext(SITE).with_cookies(lambda: {COOKIE_NAME: COOKIE_VALUE})
    name = "cookie upload.bin"
    data = data_for(name, BIG)
    library(ctx).files.create_upload_session(io.BytesIO(data), CHUNK, file_name=name)
    ctx.execute_query()
    assert download(ctx, name) == data


@check("File.download (ServerRelativePath selected, then $value) reads what the chunks wrote")
def _():
    ctx = bearer()
    out = io.BytesIO()
    ctx.web.get_file_by_server_relative_url(f"{LIBRARY}/{BIG_NAMES[0]}").download(out).execute_query()
    assert out.getvalue() == data_for(BIG_NAMES[0], BIG)


@check("File.open_binary (GetFileByServerRelativePath $value) reads what the chunks wrote")
def _():
    ctx = bearer()
    response = File.open_binary(ctx, f"{LIBRARY}/{BIG_NAMES[-1]}")
    assert response.status_code == 200, response.status_code
    assert response.content == data_for(BIG_NAMES[-1], BIG)


passed = sum(1 for _, ok in results if ok)
failed = len(results) - passed
if failed:
    print("\nrequests sent:", file=sys.stderr)
    for method, url, status in SENT[-40:]:
        print(f"  {status} {method} {url}", file=sys.stderr)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)

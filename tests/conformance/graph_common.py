"""What the Graph conformance and bench scripts share: msgraph-core's request adapter pointed at
the emulator, a client-credentials token credential, the few Graph models the scripts read, the
QuickXorHash, and the caller-driven fragment loop that works around `LargeFileUploadTask.upload()`.

How msgraph-core is pointed at the emulator, as a user of the SDK without msgraph-sdk would:

* `BaseGraphRequestAdapter` with `AzureIdentityAuthenticationProvider(credential, scopes,
  allowed_hosts)`. The provider attaches the bearer token only to hosts in `allowed_hosts` (by
  host name, ports ignored). In production Graph (`graph.microsoft.com`) and the upload URL's
  host (`contoso.sharepoint.com`) differ by name; the emulator's two listeners are both on
  127.0.0.1, so the scripts reach the Graph listener as `localhost` and allow only that name.
  The upload URLs keep `127.0.0.1`, and the provider sends them no token, as in production.
* The credential: azure-identity's `ClientSecretCredential` needs an https authority with
  OpenID metadata, which the emulator does not serve, so `ClientCredentials` below does the
  same client-credentials request itself (the identity platform's token endpoint,
  `{login_url}/{tenant}/oauth2/v2.0/token`) and returns azure-core's `AccessToken`.
* msgraph-core alone registers no JSON parser (msgraph-sdk would): the JSON parse node and
  serialization writer factories of `microsoft-kiota-serialization-json` are registered here.
* createUploadSession has no helper in msgraph-core: the request goes through the same adapter
  with a `RequestInformation`, path segments percent-encoded one by one.
"""

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import quote, urlparse, urlunparse

import httpx
from azure.core.credentials import AccessToken
from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_abstractions.serialization import (AdditionalDataHolder, Parsable, ParseNode, ParseNodeFactoryRegistry,
                                              SerializationWriter, SerializationWriterFactoryRegistry)
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from kiota_serialization_json.json_serialization_writer_factory import JsonSerializationWriterFactory
from msgraph_core import BaseGraphRequestAdapter, GraphClientFactory
from msgraph_core.authentication import AzureIdentityAuthenticationProvider
from msgraph_core.models import LargeFileUploadSession

ParseNodeFactoryRegistry().CONTENT_TYPE_ASSOCIATED_FACTORIES["application/json"] = JsonParseNodeFactory()
SerializationWriterFactoryRegistry().CONTENT_TYPE_ASSOCIATED_FACTORIES["application/json"] = (
    JsonSerializationWriterFactory())

FRAGMENT = 320 * 1024  # every fragment but the last is a multiple of this
SCOPE = "https://graph.microsoft.com/.default"


def graph_as_localhost(graph_url):
    """The emulator's Graph base with its host named `localhost` (see the module doc)."""
    u = urlparse(graph_url)
    return urlunparse(u._replace(netloc=f"localhost:{u.port}"))


class ClientCredentials:
    """An async token credential (azure-core's protocol) for the client-credentials grant."""

    def __init__(self, login_url, tenant, client_id, client_secret):
        self.url = f"{login_url}/{tenant}/oauth2/v2.0/token"
        self.client_id, self.client_secret = client_id, client_secret
        self.cached: Optional[AccessToken] = None
        self.requests = 0

    async def get_token(self, *scopes, **_kwargs):
        if self.cached and self.cached.expires_on > time.time() + 60:
            return self.cached
        self.requests += 1
        async with httpx.AsyncClient() as http:
            r = await http.post(self.url, data={"grant_type": "client_credentials", "client_id": self.client_id,
                                                "client_secret": self.client_secret, "scope": " ".join(scopes)})
        r.raise_for_status()
        body = r.json()
        self.cached = AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))
        return self.cached

    async def close(self):
        pass


class Recorder:
    """An httpx request hook: every request as sent (after the auth provider ran)."""

    def __init__(self):
        self.sent = []

    async def __call__(self, request: httpx.Request):
        body = request.content if request.method in ("PUT", "POST") else b""
        self.sent.append((request.method, str(request.url), request.headers.get("authorization"), len(body)))


def adapter(emu, allowed_hosts=None, recorder=None):
    """msgraph-core's request adapter for the emulator, and its credential."""
    graph = graph_as_localhost(emu["graph_url"])
    credential = ClientCredentials(emu["login_url"], emu["tenant"], emu["client_id"], emu["client_secret"])
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[SCOPE],
                                               allowed_hosts=allowed_hosts or [urlparse(graph).hostname])
    hooks = {"request": [recorder]} if recorder else {}
    http = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient(event_hooks=hooks, timeout=120))
    request_adapter = BaseGraphRequestAdapter(auth, http_client=http)
    request_adapter.base_url = graph
    return request_adapter, credential


# --- The Graph models the scripts read (msgraph-sdk has them; msgraph-core does not). ---------

@dataclass
class MainError(AdditionalDataHolder, Parsable):
    additional_data: dict[str, Any] = field(default_factory=dict)
    code: Optional[str] = None
    message: Optional[str] = None

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode):
        return MainError()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        return {"code": lambda n: setattr(self, "code", n.get_str_value()),
                "message": lambda n: setattr(self, "message", n.get_str_value())}

    def serialize(self, writer: SerializationWriter) -> None:
        writer.write_str_value("code", self.code)
        writer.write_str_value("message", self.message)


@dataclass
class ODataError(APIError, AdditionalDataHolder, Parsable):
    """Graph's error document `{"error": {"code", "message", …}}` (msgraph-sdk's ODataError)."""
    additional_data: dict[str, Any] = field(default_factory=dict)
    error: Optional[MainError] = None

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode):
        return ODataError()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        return {"error": lambda n: setattr(self, "error", n.get_object_value(MainError))}

    def serialize(self, writer: SerializationWriter) -> None:
        writer.write_object_value("error", self.error)

    def __str__(self):
        e = self.error or MainError()
        return f"{e.code}: {e.message} (status {self.response_status_code})"


ERRORS = {"XXX": ODataError}


@dataclass
class Hashes(AdditionalDataHolder, Parsable):
    additional_data: dict[str, Any] = field(default_factory=dict)
    quick_xor_hash: Optional[str] = None

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode):
        return Hashes()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        return {"quickXorHash": lambda n: setattr(self, "quick_xor_hash", n.get_str_value())}

    def serialize(self, writer: SerializationWriter) -> None:
        writer.write_str_value("quickXorHash", self.quick_xor_hash)


@dataclass
class File(AdditionalDataHolder, Parsable):
    additional_data: dict[str, Any] = field(default_factory=dict)
    hashes: Optional[Hashes] = None

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode):
        return File()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        return {"hashes": lambda n: setattr(self, "hashes", n.get_object_value(Hashes))}

    def serialize(self, writer: SerializationWriter) -> None:
        writer.write_object_value("hashes", self.hashes)


@dataclass
class DriveItem(AdditionalDataHolder, Parsable):
    """The fields of a driveItem the scripts check; the rest stays in additional_data."""
    additional_data: dict[str, Any] = field(default_factory=dict)
    id: Optional[str] = None
    name: Optional[str] = None
    size: Optional[int] = None
    file: Optional[File] = None

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode):
        return DriveItem()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        return {"id": lambda n: setattr(self, "id", n.get_str_value()),
                "name": lambda n: setattr(self, "name", n.get_str_value()),
                "size": lambda n: setattr(self, "size", n.get_int_value()),
                "file": lambda n: setattr(self, "file", n.get_object_value(File))}

    def serialize(self, writer: SerializationWriter) -> None:
        writer.write_str_value("id", self.id)

    def quick_xor(self):
        return self.file.hashes.quick_xor_hash if self.file and self.file.hashes else None


# --- Calls msgraph-core has no helper for. ----------------------------------------------------

def encode_path(path):
    """Each segment percent-encoded on its own (`/` separates, `#`, `%`, spaces, unicode do not)."""
    return "/".join(quote(s, safe="") for s in path.split("/"))


def item_url(request_adapter, drive, path, suffix=""):
    return f"{request_adapter.base_url}/drives/{drive}/root:/{encode_path(path)}:{suffix}"


async def create_upload_session(request_adapter, drive, path, conflict=None, defer_commit=None):
    info = RequestInformation(Method.POST)
    info.url = item_url(request_adapter, drive, path, "/createUploadSession")
    item = {"@odata.type": "microsoft.graph.driveItemUploadableProperties", "name": path.rsplit("/", 1)[-1]}
    if conflict:
        item["@microsoft.graph.conflictBehavior"] = conflict
    body = {"item": item}
    if defer_commit is not None:
        body["deferCommit"] = defer_commit
    info.headers.try_add("Content-Type", "application/json")
    info.content = json.dumps(body).encode()
    return await request_adapter.send_async(info, LargeFileUploadSession, ERRORS)


async def get_item(request_adapter, drive, path):
    info = RequestInformation(Method.GET)
    info.url = item_url(request_adapter, drive, path)
    info.headers.try_add("Accept", "application/json")
    return await request_adapter.send_async(info, DriveItem, ERRORS)


async def download(request_adapter, drive, path):
    info = RequestInformation(Method.GET)
    info.url = item_url(request_adapter, drive, path, "/content")
    return await request_adapter.send_primitive_async(info, "bytes", ERRORS)


async def session_status(request_adapter, upload_url):
    """GET on the upload URL (what the .NET and Java SDKs' resume do; the Python task has none)."""
    info = RequestInformation(Method.GET)
    info.url = upload_url
    status = await request_adapter.send_async(info, LargeFileUploadSession, ERRORS)
    # The status may leave uploadUrl out; the .NET SDK copies it back in the same way.
    status.upload_url = status.upload_url or upload_url
    return status


async def cancel(request_adapter, upload_url):
    """DELETE on the upload URL. `LargeFileUploadTask.cancel()` calls the adapter's
    `send_no_response_content_async` without its `error_map` argument, a TypeError with
    microsoft-kiota-http 1.16 (defect 6 in graph_conformance.py): the same request, done here."""
    info = RequestInformation(Method.DELETE)
    info.url = upload_url
    await request_adapter.send_no_response_content_async(info, ERRORS)


async def drive_fragments(task, start=0, on_fragment=None):
    """The workaround for `LargeFileUploadTask.upload()` (see graph_conformance.py, defects 1–3):
    the caller gives the task each fragment's range, `start-end` with both ends, and the task's
    own `next_chunk` / `last_chunk` read the file, build and send the PUT and parse the answer.
    Returns the driveItem of the last fragment."""
    size, chunk = task.file_size, task.max_chunk_size
    while True:
        end = min(start + chunk, size) - 1
        task.next_range = f"{start}-{end}"
        if start == 0:
            task.stream.seek(0)  # next_chunk reads the first fragment from where the stream is
        if end == size - 1:
            return await task.last_chunk(task.stream, parsable_factory=DriveItem)
        session = await task.next_chunk(task.stream)
        if on_fragment:
            on_fragment(start, end)
        ranges = session.next_expected_ranges or []
        if not ranges:
            raise RuntimeError(f"no nextExpectedRanges after bytes {start}-{end} of {size}")
        start = int(ranges[0].split("-")[0])


# --- QuickXorHash, written from its public description. ----------------------------------------

WIDTH = 160
STRIDE = WIDTH * 6554  # ~1 MiB; a multiple of 160 keeps every byte's lane


class QuickXor:
    """160 bits; byte i is XORed in at bit (i * 11) mod 160 (wrapping round the 160 bits); the
    length, 64-bit little-endian, is XORed into the last 8 bytes; base64 of the 20 bytes.

    Byte i's lane depends only on i mod 160, so the bytes are first folded by XOR into 160
    lanes (big-integer XOR of ~1 MiB strides, then of 160-byte blocks) and spread at the end."""

    def __init__(self):
        self.fold = 0  # XOR of every STRIDE-byte stride, as a little-endian integer
        self.pending = b""
        self.length = 0

    def update(self, data):
        self.length += len(data)
        data = self.pending + bytes(data)
        whole = len(data) - len(data) % STRIDE
        for i in range(0, whole, STRIDE):
            self.fold ^= int.from_bytes(data[i:i + STRIDE], "little")
        self.pending = data[whole:]

    def digest(self):
        folded = self.fold.to_bytes(STRIDE, "little")
        lanes = 0
        for i in range(0, STRIDE, WIDTH):
            lanes ^= int.from_bytes(folded[i:i + WIDTH], "little")
        tail = self.pending + b"\0" * (-len(self.pending) % WIDTH)
        for i in range(0, len(tail), WIDTH):
            lanes ^= int.from_bytes(tail[i:i + WIDTH], "little")
        lane_bytes = lanes.to_bytes(WIDTH, "little")
        mask = (1 << WIDTH) - 1
        state = 0
        for r, b in enumerate(lane_bytes):
            if b:
                shift = (r * 11) % WIDTH
                state ^= ((b << shift) | (b >> (WIDTH - shift))) & mask
        out = bytearray(state.to_bytes(20, "little"))
        for k, b in enumerate(self.length.to_bytes(8, "little")):
            out[12 + k] ^= b
        return bytes(out)

    def b64(self):
        return base64.b64encode(self.digest()).decode()


def quick_xor(data):
    h = QuickXor()
    h.update(data)
    return h.b64()


def quick_xor_file(path):
    h = QuickXor()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(STRIDE * 8), b""):
            h.update(block)
    return h.b64()


# Published vectors (the values Graph reports for these contents).
for _data, _expected in [(b"", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="), (b"1\n", "MVAAAAAAAAAAAAAAAgAAAAAAAAA="),
                         (b"foo\n", "ZnjDGxQAAAAAAAAABAAAAAAAAAA="), (b"hello world", "aCgDG9jwBhDc4Q1yawMZAAAAAAA=")]:
    assert quick_xor(_data) == _expected, (_data, quick_xor(_data), _expected)

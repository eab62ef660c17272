"""One measured upload with box_sdk_gen's `chunked_uploads.upload_big_file` (the official SDK's
big-file uploader), for `cargo xtask bench`. Prints the same JSON line as our bench client.

Arguments: path part_mib threads [key]. Box chooses the part size itself (8 MiB under 256 MiB)
and upload_big_file sends its parts one after another, so `part_mib` and `threads` are accepted
for the common command line and ignored. Box refuses a second file of the same name in a folder,
so the file is named `key` with the time and process id added before its extension. The file
must be at least the emulator's `chunked_min` bytes (20,000,000), Box's smallest chunked upload.

The SDK is run as it ships (its own network client and retry strategy, so the 202 the emulator
answers to a first commit is waited out as in real use, its Retry-After included in `seconds`),
with every exchange counted: `requests` is what was sent, retries included, and `bytes_resent`
is the part bytes sent beyond the file's size.
"""

import hashlib
import io
import json
import os
import resource
import sys
import time

from box_sdk_gen import BaseUrls, BoxClient, BoxDeveloperTokenAuth, BoxNetworkClient, NetworkSession

emu = json.loads(os.environ["EMULATOR"])
path, part_mib, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
key = sys.argv[4] if len(sys.argv) > 4 else "bench-box.bin"
stem, ext = os.path.splitext(key)
name = f"{stem}-{time.time_ns()}-{os.getpid()}{ext}"
size = os.path.getsize(path)
if size < int(emu["chunked_min"]):
    sys.exit(f"{path} has {size} bytes; Box's chunked upload takes {emu['chunked_min']} at least")


class Counting(BoxNetworkClient):
    def __init__(self):
        super().__init__()
        self.requests, self.part_bytes = 0, 0

    def _make_request(self, request):
        self.requests += 1
        if request.method == "PUT" and isinstance(request.data, io.BytesIO):
            self.part_bytes += len(request.data.getbuffer())
        return super()._make_request(request)


def root(url):
    assert url.endswith("/2.0"), url  # the SDK appends /2.0 itself
    return url[:-len("/2.0")]


counting = Counting()
client = BoxClient(BoxDeveloperTokenAuth(token=emu["developer_token"]),
                   network_session=NetworkSession(network_client=counting)).with_custom_base_urls(
    BaseUrls(base_url=root(emu["api_url"]), upload_url=root(emu["upload_url"])))
started = time.monotonic()
with open(path, "rb") as f:
    uploaded = client.chunked_uploads.upload_big_file(f, name, size, emu["folder_id"])
elapsed = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
requests, part_bytes = counting.requests, counting.part_bytes
stored = client.files.get_file_by_id(uploaded.id)
sha1 = hashlib.sha1()
with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        sha1.update(block)
if (stored.name, stored.size, stored.sha_1) != (name, size, sha1.hexdigest()):
    sys.exit(f"the stored file is not the file: {stored.raw_data}")
print(json.dumps({"seconds": elapsed, "bytes": size, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_rss_bytes": usage.ru_maxrss * 1024, "requests": requests,
                  "bytes_resent": part_bytes - size}))

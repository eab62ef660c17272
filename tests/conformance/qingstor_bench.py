"""One measured upload with qingstor-sdk's UploadClient (the official SDK's multipart uploader), for
`cargo xtask bench`. Prints the same JSON line as our bench client.

Arguments: path part_mib threads [key] [mode]. UploadClient uploads its parts one after another,
so `threads` is accepted for the common command line and ignored. UploadClient sends no checksum
at all; with mode `md5`, the upload runs the SDK's documented multipart flow instead with the
integrity our uploader has (Content-MD5 on every part, the whole object's MD5 as the ETag at
Complete), sequentially as the SDK's own loop does, so the two can be compared like for like. UploadClient 2.6.0 passes part
numbers as ints, which the SDK's own query builder rejects on Python 3 (and UploadClient then
aborts silently), so it is given the bucket with part numbers passed as text, as the SDK's
multipart example does; an upload that UploadClient gave up on is an error here, not a result.
"""

import json
import os
import resource
import sys
import time

from qingstor.sdk.client.upload_client import UploadClient
from qingstor.sdk.config import Config
from qingstor.sdk.service.qingstor import QingStor

emu = json.loads(os.environ["EMULATOR"])
path, part_mib, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
key = sys.argv[4] if len(sys.argv) > 4 else "bench-qingstor.bin"
mode = sys.argv[5] if len(sys.argv) > 5 else "plain"

config = Config(emu["access_key_id"], emu["secret_access_key"])
config.host, config.port, config.protocol = emu["host"], int(emu["port"]), emu["protocol"]
config.enable_virtual_host_style = False
bucket = QingStor(config).Bucket(emu["bucket"], "")  # no zone: the SDK would prefix it to the host


class TextPartNumbers:
    def __init__(self, b):
        self.bucket, self.aborted = b, False

    def __getattr__(self, name):
        return getattr(self.bucket, name)

    def upload_multipart(self, object_key, part_number=None, **kwargs):
        return self.bucket.upload_multipart(object_key, part_number=str(part_number), **kwargs)

    def abort_multipart_upload(self, *args, **kwargs):
        self.aborted = True
        return self.bucket.abort_multipart_upload(*args, **kwargs)


proxy = TextPartNumbers(bucket)
size = os.path.getsize(path)
started = time.monotonic()
def with_md5():
    """The documented flow: initiate, parts with Content-MD5 from 0, complete with the ETag."""
    import base64
    import hashlib

    out = bucket.initiate_multipart_upload(key)
    if out.status_code != 200:
        sys.exit(f"initiate: HTTP {out.status_code}")
    upload_id, whole, parts = out["upload_id"], hashlib.md5(), []
    with open(path, "rb") as f:
        number = 0
        while True:
            chunk = f.read(part_mib << 20)
            if not chunk:
                break
            whole.update(chunk)
            md5 = base64.b64encode(hashlib.md5(chunk).digest()).decode()
            r = bucket.upload_multipart(key, part_number=str(number), upload_id=upload_id, content_md5=md5,
                                        content_length=str(len(chunk)), body=chunk)
            if r.status_code != 201:
                sys.exit(f"part {number}: HTTP {r.status_code}")
            parts.append({"part_number": number})
            number += 1
    r = bucket.complete_multipart_upload(key, upload_id=upload_id, etag='"%s"' % whole.hexdigest(),
                                         object_parts=parts)
    if r.status_code != 201:
        sys.exit(f"complete: HTTP {r.status_code}")


if mode == "md5":
    with_md5()
else:
    with open(path, "rb") as f:
        UploadClient(proxy, part_size=part_mib << 20).upload(key, f)
elapsed = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
if proxy.aborted:
    sys.exit("UploadClient aborted the upload")
stored = bucket.head_object(key)
if stored.status_code != 200 or stored.headers.get("Content-Length") != str(size):
    sys.exit(f"the stored object is not the file: HTTP {stored.status_code} {dict(stored.headers)}")
print(json.dumps({"seconds": elapsed, "bytes": size, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_rss_bytes": usage.ru_maxrss * 1024, "requests": -(-size // (part_mib << 20)) + 2,
                  "bytes_resent": 0}))

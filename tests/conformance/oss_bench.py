"""One measured upload with oss2's resumable_upload (the official SDK's resumable uploader), for
`cargo xtask bench`. Prints the same JSON line as our bench client."""

import json
import os
import resource
import sys
import tempfile
import time

import oss2

emu = json.loads(os.environ["EMULATOR"])
path, part_mib, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
key = sys.argv[4] if len(sys.argv) > 4 else "bench-oss2.bin"
bucket = oss2.Bucket(oss2.AuthV4(emu["access_key_id"], emu["access_key_secret"]), emu["endpoint"], emu["bucket"],
                     region=emu["region"])
started = time.monotonic()
oss2.resumable_upload(bucket, key, path, store=oss2.ResumableStore(root=tempfile.mkdtemp()),
                      multipart_threshold=part_mib << 20, part_size=part_mib << 20, num_threads=threads)
elapsed = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
size = os.path.getsize(path)
print(json.dumps({"seconds": elapsed, "bytes": size, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_rss_bytes": usage.ru_maxrss * 1024, "requests": -(-size // (part_mib << 20)) + 2,
                  "bytes_resent": 0}))

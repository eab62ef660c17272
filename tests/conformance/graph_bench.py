"""One measured upload with msgraph-core's `LargeFileUploadTask` (Microsoft's Python SDK core),
for `cargo xtask bench`. Prints the same JSON line as our bench client.

Arguments: path part_mib threads [key]. Graph takes fragments one after another, so `threads`
is accepted for the common command line and ignored; `part_mib` is rounded down to a multiple
of 320 KiB (10 MiB, the default of the bench, is one). Each run uploads a new name.

The task's `upload()` cannot drive the loop against Graph's documented `nextExpectedRanges`
form `"N-"` (defect 1 in graph_conformance.py), so the fragments go through the task's own
`next_chunk` / `last_chunk`, the caller giving each range (graph_common.drive_fragments): the
SDK reads the file, builds and sends every PUT and parses every answer, as in `upload()`. The
SDK's network stack is kept as it ships (kiota's httpx client and default middleware, retry
included). `requests` counts every request sent (token, createUploadSession, fragments) and
`bytes_resent` the fragment bytes sent beyond the file's size. After the clock stops, the
item's size and QuickXorHash are checked against the file.
"""

import asyncio
import json
import os
import resource
import sys
import time

from msgraph_core.tasks.large_file_upload import LargeFileUploadTask

import graph_common as g

emu = json.loads(os.environ["EMULATOR"])
path, part_mib = sys.argv[1], int(sys.argv[2])
key = sys.argv[4] if len(sys.argv) > 4 else "bench-graph.bin"
stem, ext = os.path.splitext(key)
name = f"bench/{stem}-{time.time_ns()}-{os.getpid()}{ext}"
chunk = max(1, (part_mib << 20) // g.FRAGMENT) * g.FRAGMENT
size = os.path.getsize(path)


async def main():
    recorder = g.Recorder()
    adapter, _ = g.adapter(emu, recorder=recorder)
    started = time.monotonic()
    session = await g.create_upload_session(adapter, emu["drive"], name, "replace")
    with open(path, "rb") as f:
        task = LargeFileUploadTask(session, adapter, f, parsable_factory=g.DriveItem, max_chunk_size=chunk)
        item = await g.drive_fragments(task)
    elapsed = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # The token request goes through the credential's own client, not the recorded one.
    requests = len(recorder.sent) + 1
    put_bytes = sum(r[3] for r in recorder.sent if r[0] == "PUT")
    expected = g.quick_xor_file(path)
    if (item.size, item.quick_xor()) != (size, expected):
        sys.exit(f"the stored file is not the file: size {item.size}, quickXorHash {item.quick_xor()} != {expected}")
    print(json.dumps({"seconds": elapsed, "bytes": size, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                      "peak_rss_bytes": usage.ru_maxrss * 1024, "requests": requests,
                      "bytes_resent": put_bytes - size}))


asyncio.run(main())

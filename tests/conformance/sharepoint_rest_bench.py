"""One measured upload with Office365-REST-Python-Client's `create_upload_session` (its chunked
upload: Files/add, then startUpload, continueUpload and finishUpload), for `cargo xtask bench`.
Prints the same JSON line as our bench client.

Arguments: path part_mib threads [key]. SharePoint takes chunks one after another, so `threads`
is accepted for the common command line and ignored. Each run uploads a new name to the
emulator's first site, with its fixed bearer token. After the clock stops, the stored length is
checked against the file.
"""

import json
import os
import resource
import sys
import time

from office365.runtime.auth.token_response import TokenResponse
from office365.sharepoint.client_context import ClientContext

emu = json.loads(os.environ["EMULATOR"])
path, part_mib = sys.argv[1], int(sys.argv[2])
key = sys.argv[4] if len(sys.argv) > 4 else "bench-rest.bin"
stem, ext = os.path.splitext(key)
name = f"{stem}-{time.time_ns()}-{os.getpid()}{ext}"
size = os.path.getsize(path)

ctx = ClientContext(emu["site_url"]).with_access_token(
    lambda: TokenResponse(access_token=emu["token"], token_type="Bearer")
)
folder = ctx.web.get_folder_by_server_relative_path(emu["library"])
started = time.monotonic()
with open(path, "rb") as f:
    uploaded = folder.files.create_upload_session(f, part_mib << 20, file_name=name)
    ctx.execute_query()
elapsed = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
if int(uploaded.length) != size:
    sys.exit(f"the stored file has {uploaded.length} bytes, not {size}")
print(json.dumps({"seconds": elapsed, "bytes": size, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_rss_bytes": usage.ru_maxrss * 1024}))

"""Conformance of our OSS emulator (and so of our signing code) with the official Python SDKs.

Run by `cargo xtask test` with the emulator already started; its JSON line is in the
EMULATOR environment variable. Each check prints PASS or FAIL; the last line is the summary
`N passed, M failed`, and the exit status is non-zero on any failure.
"""

import hashlib
import json
import os
import sys
import tempfile
import traceback

import alibabacloud_oss_v2 as oss_v2
import oss2

EMU = json.loads(os.environ["EMULATOR"])
ENDPOINT, REGION, BUCKET = EMU["endpoint"], EMU["region"], EMU["bucket"]
AK, SK = EMU["access_key_id"], EMU["access_key_secret"]

# Keys that break naive encoders.
KEYS = ["plain.bin", "with space.bin", "plus+sign.bin", "100%.bin", "tilde~x.bin", "what?.bin",
        "hash#tag.bin", "dir//twice.bin", "中文/ファイル.bin"]
PART = 128 * 1024
SIZE = 5 * PART + 1234

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


def source(seed):
    data = hashlib.sha256(str(seed).encode()).digest() * (SIZE // 32 + 1)
    return data[:SIZE]


def write_temp(data):
    f = tempfile.NamedTemporaryFile(delete=False, suffix=".bin")
    f.write(data)
    f.close()
    return f.name


def oss2_bucket(version, secret=SK):
    if version == "v4":
        return oss2.Bucket(oss2.AuthV4(AK, secret), ENDPOINT, BUCKET, region=REGION)
    return oss2.Bucket(oss2.Auth(AK, secret), ENDPOINT, BUCKET)


def v2_client(version, secret=SK):
    cfg = oss_v2.config.load_default()
    cfg.credentials_provider = oss_v2.credentials.StaticCredentialsProvider(AK, secret)
    cfg.region = REGION
    cfg.endpoint = ENDPOINT
    cfg.use_path_style = True
    cfg.signature_version = version
    cfg.retry_max_attempts = 1
    return oss_v2.Client(cfg)


def oss2_resumable(version, key, seed):
    def run():
        data = source(seed)
        path = write_temp(data)
        bucket = oss2_bucket(version)
        store = oss2.ResumableStore(root=tempfile.mkdtemp())
        oss2.resumable_upload(bucket, key, path, store=store, multipart_threshold=PART,
                              part_size=PART, num_threads=4)
        got = bucket.get_object(key).read()
        assert got == data, f"stored {len(got)} bytes differ from the {len(data)} sent"
        crc = bucket.head_object(key).headers.get("x-oss-hash-crc64ecma")
        c = oss2.utils.Crc64()
        c.update(data)
        assert crc == str(c.crc), f"CRC-64 {crc} differs from {c.crc}"
    return run


def oss2_explicit(version, key, seed):
    def run():
        data = source(seed)
        bucket = oss2_bucket(version)
        upload_id = bucket.init_multipart_upload(key).upload_id
        parts = []
        for i in range(0, len(data), PART):
            n = i // PART + 1
            r = bucket.upload_part(key, upload_id, n, data[i:i + PART])
            parts.append(oss2.models.PartInfo(n, r.etag))
        listed = bucket.list_parts(key, upload_id).parts
        assert [p.part_number for p in listed] == [p.part_number for p in parts]
        bucket.complete_multipart_upload(key, upload_id, parts)
        assert bucket.get_object(key).read() == data
    return run


def v2_uploader(version, key, seed):
    def run():
        data = source(seed)
        path = write_temp(data)
        client = v2_client(version)
        uploader = client.uploader(part_size=PART, parallel_num=4)
        uploader.upload_file(oss_v2.PutObjectRequest(bucket=BUCKET, key=key), filepath=path)
        got = client.get_object(oss_v2.GetObjectRequest(bucket=BUCKET, key=key)).body.read()
        assert got == data, f"stored {len(got)} bytes differ from the {len(data)} sent"
    return run


def v2_list_and_abort(version):
    def run():
        client = v2_client(version)
        key = f"abandoned {version}+.bin"
        r = client.initiate_multipart_upload(oss_v2.InitiateMultipartUploadRequest(bucket=BUCKET, key=key))
        listed = client.list_multipart_uploads(oss_v2.ListMultipartUploadsRequest(bucket=BUCKET, prefix="abandoned"))
        assert key in [u.key for u in listed.uploads], [u.key for u in listed.uploads]
        client.abort_multipart_upload(oss_v2.AbortMultipartUploadRequest(bucket=BUCKET, key=key, upload_id=r.upload_id))
        try:
            client.abort_multipart_upload(oss_v2.AbortMultipartUploadRequest(bucket=BUCKET, key=key, upload_id=r.upload_id))
        except oss_v2.exceptions.OperationError as e:
            assert "NoSuchUpload" in str(e), str(e)
        else:
            raise AssertionError("a second abort must fail with NoSuchUpload")
    return run


def tampered_oss2(version):
    def run():
        bucket = oss2_bucket(version, secret="not-the-secret")
        try:
            bucket.init_multipart_upload("tampered.bin")
        except oss2.exceptions.SignatureDoesNotMatch as e:
            # The server's string to sign is echoed so that a user can see why.
            assert e.details.get("StringToSign"), e.details
            return
        raise AssertionError("a wrong secret must be refused with SignatureDoesNotMatch")
    return run


def tampered_v2(version):
    def run():
        client = v2_client(version, secret="not-the-secret")
        try:
            client.initiate_multipart_upload(oss_v2.InitiateMultipartUploadRequest(bucket=BUCKET, key="tampered.bin"))
        except oss_v2.exceptions.OperationError as e:
            assert "SignatureDoesNotMatch" in str(e), str(e)
            return
        raise AssertionError("a wrong secret must be refused with SignatureDoesNotMatch")
    return run


def presigned_v2(version):
    def run():
        client = v2_client(version)
        key = f"presigned {version}+ä.bin"
        data = source(99)
        pre = client.presign(oss_v2.PutObjectRequest(bucket=BUCKET, key=key))
        import requests
        r = requests.put(pre.url, data=data, headers={k: v for k, v in (pre.signed_headers or {}).items()})
        assert r.status_code == 200, r.text
        assert client.get_object(oss_v2.GetObjectRequest(bucket=BUCKET, key=key)).body.read() == data
    return run


seed = 0
for version in ("v1", "v4"):
    for key in KEYS:
        seed += 1
        check(f"oss2 {version} resumable_upload {key!r}", oss2_resumable(version, f"oss2-{version}/{key}", seed))
        seed += 1
        check(f"alibabacloud-oss-v2 {version} uploader {key!r}", v2_uploader(version, f"v2-{version}/{key}", seed))
    check(f"oss2 {version} explicit multipart", oss2_explicit(version, f"oss2-{version}/explicit+ 1.bin", 1000))
    check(f"alibabacloud-oss-v2 {version} list uploads and abort", v2_list_and_abort(version))
    check(f"oss2 {version} wrong secret refused", tampered_oss2(version))
    check(f"alibabacloud-oss-v2 {version} wrong secret refused", tampered_v2(version))
    check(f"alibabacloud-oss-v2 {version} presigned PUT", presigned_v2(version))

failed = sum(1 for _, e in results if e is not None)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)

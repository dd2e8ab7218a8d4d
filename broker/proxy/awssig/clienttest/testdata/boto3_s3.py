"""boto3 in the sandbox: only the placeholder credentials (from the
environment) and the re-signing proxy as the endpoint.

usage: boto3_s3.py ENDPOINT BUCKET UPLOAD_FILE DOWNLOAD_FILE
Exits non-zero (with botocore's error) on any failure."""
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, bucket, src, dst = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
s3.put_object(Bucket=bucket, Key="boto3-small.txt", Body=b"small object from boto3\n")
got = s3.get_object(Bucket=bucket, Key="boto3-small.txt")["Body"].read()
assert got == b"small object from boto3\n", got
# 8 MiB parts: a multipart upload.
s3.upload_file(src, bucket, "boto3-big.bin", Config=TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20))
s3.download_file(bucket, "boto3-big.bin", dst)
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
print("boto3", boto3.__version__, "keys", " ".join(sorted(keys)))

"""The offsite backups' bucket of an environment, against the local AWS's S3 (moto, real boto3)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from fetchfleet.aws.offsite import load_offsite, offsite_store
from fetchfleet.aws.spec import SpecError

from awsenv import aws_data, make_env, set_vars


def test_an_object_round_trips_encrypted(moto, tmp_path: Path) -> None:
    path = make_env(moto.url, tmp_path, "aws-offsite")
    store = offsite_store(str(path))
    assert (store.bucket, store.config.region, store.config.endpoint_url) == (
        "fetchfleet-aws-offsite-offsite",
        "eu-west-1",
        moto.url,
    )
    store.client.create_bucket(
        Bucket=store.bucket, CreateBucketConfiguration={"LocationConstraint": store.config.region}
    )
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    store.client.put_object(
        Bucket=store.bucket, Key="db1/base/0001.tar", Body=payload, **store.put_args
    )
    source = tmp_path / "wal.gz"
    source.write_bytes(payload[::-1])
    store.client.upload_file(str(source), store.bucket, "db1/wal/0002.gz", ExtraArgs=store.put_args)
    # Read back through a client of our own: the bytes and the encryption S3 reports.
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="eu-west-1")
    for key, body in (("db1/base/0001.tar", payload), ("db1/wal/0002.gz", payload[::-1])):
        got = s3.get_object(Bucket=store.bucket, Key=key)
        assert got["Body"].read() == body
        assert got["ServerSideEncryption"] == "AES256"


def test_kms_encryption_uses_the_declared_key(moto, tmp_path: Path) -> None:
    kms = boto3.client("kms", endpoint_url=moto.url, region_name="eu-west-1")
    key = kms.create_key(Description="fetchfleet offsite backups")["KeyMetadata"]["Arn"]
    path = make_env(moto.url, tmp_path, "aws-offsite")
    data = aws_data(path)
    data["aws_offsite_backups"].update(encryption="aws:kms", kms_key_id=key)
    set_vars(path, "group_vars/all/aws.yml", data)
    store = offsite_store(str(path))
    assert store.put_args == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key}
    store.client.create_bucket(
        Bucket=store.bucket, CreateBucketConfiguration={"LocationConstraint": store.config.region}
    )
    store.client.put_object(Bucket=store.bucket, Key="probe", Body=b"offsite", **store.put_args)
    got = store.client.get_object(Bucket=store.bucket, Key="probe")
    assert got["Body"].read() == b"offsite"
    assert (got["ServerSideEncryption"], got["SSEKMSKeyId"]) == ("aws:kms", key)


def test_an_environment_without_a_bucket_says_so() -> None:
    with pytest.raises(SpecError, match="aws_offsite_backups is not set"):
        load_offsite("lab")


def test_a_bad_bucket_name_is_refused(tmp_path: Path, moto) -> None:
    path = make_env(moto.url, tmp_path, "aws-offsite")
    data = aws_data(path)
    data["aws_offsite_backups"] = {"bucket": "Backups_Of_Mine", "encryption": "none"}
    set_vars(path, "group_vars/all/aws.yml", data)
    with pytest.raises(SpecError) as caught:
        load_offsite(str(path))
    assert caught.value.problems == [
        "aws_offsite_backups.bucket: 'Backups_Of_Mine' is not a valid S3 bucket name",
        "aws_offsite_backups.encryption must be one of ('AES256', 'aws:kms'), got 'none'",
    ]

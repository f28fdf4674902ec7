"""The offsite backups' S3 bucket of an environment: its client and how objects are written.

Declared with the environment (`aws_offsite_backups` in group_vars/all/aws.yml: bucket, region,
endpoint, encryption); region and endpoint default to the environment's own. Any environment may
declare it, on EC2 or not. Every object is written with server-side encryption.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fetchfleet.aws.ec2 import client
from fetchfleet.aws.spec import DATA_FILE, Offsite, SpecError, offsite_from, read_data
from fetchfleet.inventory import inventory_path


@dataclass(frozen=True)
class OffsiteStore:
    config: Offsite
    client: Any  # boto3 S3 client

    @property
    def bucket(self) -> str:
        return self.config.bucket

    @property
    def put_args(self) -> dict[str, str]:
        """ExtraArgs for put_object / upload_file: the declared server-side encryption."""
        args = {"ServerSideEncryption": self.config.encryption}
        if self.config.kms_key_id:
            args["SSEKMSKeyId"] = self.config.kms_key_id
        return args


def load_offsite(env: str) -> Offsite:
    path = inventory_path(env)
    problems: list[str] = []
    found = offsite_from(read_data(path), problems)
    if found is None and not problems:
        problems.append("aws_offsite_backups is not set: where do this environment's backups go?")
    if problems or found is None:
        raise SpecError(path / DATA_FILE, problems)
    return found


def offsite_store(env: str) -> OffsiteStore:
    config = load_offsite(env)
    return OffsiteStore(config, s3_client(config))


def s3_client(config: Offsite) -> Any:
    # An endpoint of one's own (MinIO, a local stand-in) rarely resolves bucket.host names.
    addressing = {"addressing_style": "path"} if config.endpoint_url else None
    return client("s3", config.region, config.endpoint_url, s3=addressing)

"""The fleet on AWS: an environment's EC2 instances and security groups, declared as inventory data.

`inventory/<env>/group_vars/all/aws.yml` declares the instances per tier (spec), the roles' own
firewall rules become the security groups (firewall, security_groups), `plan` diffs the
declaration against what EC2 has, `apply` makes EC2 match, `destroy` removes it all, and
`inventory/<env>/aws_ec2.yml` reads the instances back into the suite's groups.
Credentials come from boto3's usual chain (environment, ~/.aws, instance role), never from the
repository.
"""


class AwsError(Exception):
    """What failed on AWS (or in the declaration), and what to run to look closer."""

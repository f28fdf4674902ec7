"""RabbitMQ on a real lab host (mq1): guest gone, the app confined to its vhost, AMQP firewalled.

Run: FETCHFLEET_LAB_KEEP=1 pytest tests/lab/test_rabbitmq.py -s
The lab and the first converge (site.yml) come from tests/lab/conftest.py
(FETCHFLEET_SKIP_CONVERGE=1 skips that converge while iterating).

The AMQP client is pika on the control machine; the lab inventory (and only it) lets the lab's
gateway reach 5672 for that (`rabbitmq_firewall_extra` in inventory/lab/group_vars/rabbitmq/).
"""

from __future__ import annotations

import json
import uuid

import pika
import pika.exceptions
import pytest

from fetchfleet.lab import Lab, run_on, secret, tcp_open

from badvars import assert_refused_before_any_change

PLAYBOOK = "rabbitmq.yml"
BROKER = "mq1"
APP, VHOST = "cloudfetch", "cloudfetch"
AMQP_PORT = 5672


def amqp(lab: Lab, user: str, password: str, vhost: str) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        host=lab.host(BROKER).address,
        port=AMQP_PORT,
        virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=10,
    )
    return pika.BlockingConnection(params)


def test_guest_is_gone(lab, converged):
    users = run_on(lab, BROKER, "rabbitmqctl list_users --silent --formatter json").stdout
    names = {u["user"] for u in json.loads(users)}
    assert "guest" not in names and APP in names, names
    # The broker itself refuses the well-known credentials (not only the loopback restriction).
    proc = run_on(lab, BROKER, "rabbitmqctl authenticate_user guest guest", check=False)
    assert proc.returncode != 0, proc.stdout


def test_guest_login_over_amqp_fails(lab, converged):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        amqp(lab, "guest", "guest", "/")


def test_app_publishes_and_consumes_on_its_vhost(lab, converged):
    queue = f"cloudfetch.test-{uuid.uuid4().hex[:8]}"
    body = f"transfer {uuid.uuid4()}".encode()
    connection = amqp(lab, APP, secret("rabbitmq_cloudfetch"), VHOST)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True)
        channel.basic_publish(
            "", queue, body, pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        )
        method, _, received = channel.basic_get(queue, auto_ack=True)
        assert method is not None, "the message published was not there to consume"
        assert received == body
        # The vhost's policy applies to the app's queues by name.
        listing = run_on(
            lab, BROKER, f"rabbitmqctl list_queues -p {VHOST} --silent --formatter json name policy"
        ).stdout
        policies = {q["name"]: q["policy"] for q in json.loads(listing)}
        assert policies.get(queue) == "cloudfetch-queues", policies
        channel.queue_delete(queue)
    finally:
        connection.close()


def test_app_is_refused_on_another_vhost(lab, converged):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        amqp(lab, APP, secret("rabbitmq_cloudfetch"), "/")


def test_wrong_password_is_refused(lab, converged):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        amqp(lab, APP, "not-the-password", VHOST)


@pytest.mark.parametrize("source", ["web1", "worker1"])
def test_amqp_reachable_from_app_hosts(lab, converged, source):
    assert tcp_open(lab, source, BROKER, AMQP_PORT)


@pytest.mark.parametrize("source", ["lb1", "db1"])
def test_amqp_unreachable_from_other_hosts(lab, converged, source):
    assert not tcp_open(lab, source, BROKER, AMQP_PORT)


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        (["-e", "rabbitmq_amqp_port=amqp"], "rabbitmq_amqp_port"),
        (["-e", "rabbitmq_erlang_cookie=short"], "rabbitmq_erlang_cookie"),
        (
            ["-e", json.dumps({"rabbitmq_apps": [{"name": APP, "vhost": "/", "password": "x"}]})],
            "rabbitmq_apps",
        ),
        (
            [
                "-e",
                json.dumps(
                    {
                        "rabbitmq_policies": [
                            {"name": "p", "vhost": "nowhere", "pattern": ".*", "tags": {"a": 1}}
                        ]
                    }
                ),
            ],
            "rabbitmq_policies",
        ),
    ],
)
def test_bad_variables_stop_before_any_change(lab, converged, extra, variable):
    assert_refused_before_any_change(PLAYBOOK, extra, variable)

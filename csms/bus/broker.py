"""The node's connection to its MQTT broker: its login and TLS, and why it failed.

Every client of the central system (the outbox relay, the command bus) connects
through :func:`connect`: with the user and password of the broker's URL (or
``--mqtt-password-file``), and for ``mqtts://`` over TLS 1.2+, the broker's
certificate checked against ``--mqtt-ca`` (else the system's CAs) and its name.
A failed connection is a :class:`BrokerUnavailable` (an ``aiomqtt.MqttError``: the
node's supervisor retries it with backoff) whose one line names the broker without
its password and says whether the login was refused.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

import aiomqtt

from csms.config import MqttBroker, parse_mqtt_url

__all__ = ["LOGIN_REFUSED", "BrokerUnavailable", "as_broker", "connect", "tls_context"]

# CONNACK codes of a refused login: MQTT 3.1.1 (4 bad user name or password, 5 not
# authorized) and MQTT 5 (134, 135)
LOGIN_REFUSED = frozenset({4, 5, 134, 135})


class BrokerUnavailable(aiomqtt.MqttError):
    """The broker could not be reached, refused the login, or failed the TLS check."""


def as_broker(broker: MqttBroker | str) -> MqttBroker:
    return parse_mqtt_url(broker) if isinstance(broker, str) else broker


def tls_context(broker: MqttBroker) -> ssl.SSLContext:
    """TLS 1.2+ verifying the broker's certificate chain and name: against
    ``broker.ca_file`` when given (only it), else the system's CAs."""
    context = ssl.create_default_context(cafile=broker.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _reason(broker: MqttBroker, exc: BaseException) -> str:
    code = getattr(exc, "rc", None)
    code = getattr(code, "value", code)
    text = str(exc)
    if broker.password:  # no library message is expected to hold it; never pass it on
        text = text.replace(broker.password, "***")
    if isinstance(exc, aiomqtt.MqttCodeError) and code in LOGIN_REFUSED:
        who = (f"the login of user {broker.username!r}" if broker.username is not None
               else "a connection without a login (give mqtt://user:password@host)")
        return f"the MQTT broker {broker.url} refused {who}: {text}"
    return f"cannot connect to the MQTT broker {broker.url}: {text}"


@contextlib.asynccontextmanager
async def connect(broker: MqttBroker, identifier: str, *,
                  timeout: float = 10) -> AsyncIterator[aiomqtt.Client]:
    """A client connected to ``broker`` for the body of the ``async with``; a
    :class:`BrokerUnavailable` when it cannot connect."""
    try:  # OSError: the CA file went away since the node started
        client = aiomqtt.Client(
            broker.host, broker.port, identifier=identifier, timeout=timeout,
            username=broker.username, password=broker.password,
            tls_context=tls_context(broker) if broker.tls else None)
        await client.__aenter__()
    except (aiomqtt.MqttError, OSError) as exc:
        raise BrokerUnavailable(_reason(broker, exc)) from None
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_exit(client)
        yield client

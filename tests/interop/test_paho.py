"""Interoperability tests with the Eclipse Paho Python client (paho-mqtt 2.x).

The broker under test is reached at $BROKER_HOST:$BROKER_PORT (default
127.0.0.1:1883). Every test uses its own client ids and topic prefix, cleans
up the retained messages and persistent sessions it creates, and bounds every
wait in time.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = os.environ.get("BROKER_HOST", "127.0.0.1")
PORT = int(os.environ.get("BROKER_PORT", "1883"))

# Upper bound for any single wait on the broker.
TIMEOUT = 5.0
# How long to watch for messages that must *not* arrive.
QUIET = 0.7

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
BOTH = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]


def uid() -> str:
    return uuid.uuid4().hex[:12]


def props(packet_type: int, **values) -> Properties:
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


class Peer:
    """A paho client with its network loop in a thread and blocking helpers."""

    def __init__(self, protocol: int, client_id: str | None = None, clean_session: bool = True):
        self.protocol = protocol
        self.client_id = client_id or f"interop-{uid()}"
        kwargs = {}
        if protocol != V5:
            kwargs["clean_session"] = clean_session
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            reconnect_on_failure=False,
            **kwargs,
        )
        self._cond = threading.Condition()
        self.messages: list[mqtt.MQTTMessage] = []
        self.suback: dict[int, list] = {}
        self.connack = None  # (session_present, reason_code, properties)
        self.disconnect_info = None  # (reason_code, properties)
        self.closed = False
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # -- callbacks (network thread) --
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self._cond:
            self.connack = (flags.session_present, reason_code, properties)
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._cond:
            self.disconnect_info = (reason_code, properties)
            self._cond.notify_all()

    def _on_message(self, client, userdata, message):
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cond:
            self.suback[mid] = reason_codes
            self._cond.notify_all()

    def _wait(self, predicate, what: str, timeout: float = TIMEOUT):
        with self._cond:
            if not self._cond.wait_for(predicate, timeout=timeout):
                raise AssertionError(f"{self.client_id}: timed out after {timeout} s waiting for {what}")

    # -- operations --
    def connect(self, clean_start=True, properties: Properties | None = None, expect_ok: bool = True):
        kwargs = {"keepalive": 30}
        if self.protocol == V5:
            kwargs["clean_start"] = clean_start
            kwargs["properties"] = properties
        self.client.connect(HOST, PORT, **kwargs)
        self.client.loop_start()
        self._wait(lambda: self.connack is not None, "CONNACK")
        session_present, reason_code, _ = self.connack
        if expect_ok:
            assert not reason_code.is_failure, f"connection refused: {reason_code}"
        return session_present

    def subscribe(self, topic: str, qos: int = 1, options: SubscribeOptions | None = None):
        if options is not None:
            rc, mid = self.client.subscribe(topic, options=options)
            qos = options.QoS
        else:
            rc, mid = self.client.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        self._wait(lambda: mid in self.suback, f"SUBACK for {topic}")
        codes = self.suback[mid]
        assert len(codes) == 1 and not codes[0].is_failure, f"subscription to {topic} refused: {codes}"
        assert codes[0].value == qos, f"granted {codes[0]} instead of QoS {qos} for {topic}"

    def publish(self, topic, payload, qos=1, retain=False, properties=None):
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(info.rc)
        if qos > 0:
            info.wait_for_publish(timeout=TIMEOUT)
            assert info.is_published(), f"no acknowledgement for publication on {topic}"
        return info

    def wait_messages(self, count: int, timeout: float = TIMEOUT) -> list[mqtt.MQTTMessage]:
        self._wait(lambda: len(self.messages) >= count, f"{count} message(s), got {len(self.messages)}", timeout)
        with self._cond:
            return list(self.messages)

    def wait_disconnected(self, timeout: float = TIMEOUT):
        self._wait(lambda: self.disconnect_info is not None, "disconnection", timeout)
        return self.disconnect_info

    def payloads(self) -> list[bytes]:
        with self._cond:
            return [m.payload for m in self.messages]

    def disconnect(self, properties: Properties | None = None):
        if self.closed:
            return
        self.closed = True
        if self.client.is_connected():
            self.client.disconnect(properties=properties)
        self.client.loop_stop()

    def drop(self):
        """Vanish without DISCONNECT: stop the loop and close the TCP connection."""
        self.closed = True
        self.client.loop_stop()
        sock = self.client.socket()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


@pytest.fixture
def peers():
    created: list[Peer] = []

    def make(*args, **kwargs) -> Peer:
        p = Peer(*args, **kwargs)
        created.append(p)
        return p

    yield make
    for p in created:
        try:
            p.disconnect()
        except Exception:
            pass


@pytest.fixture
def prefix() -> str:
    return f"interop/{uid()}"


def session_props(expiry: int) -> Properties:
    return props(PacketTypes.CONNECT, SessionExpiryInterval=expiry)


def quiet():
    time.sleep(QUIET)


# --------------------------------------------------------------------------
# Persistent sessions
# --------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", BOTH)
def test_persistent_session_queues_messages_across_reconnect(peers, prefix, protocol):
    topic = f"{prefix}/queued"
    client_id = f"interop-sess-{uid()}"

    def persistent_peer():
        return peers(protocol, client_id=client_id, clean_session=False)

    sub = persistent_peer()
    if protocol == V5:
        present = sub.connect(clean_start=True, properties=session_props(300))
    else:
        present = sub.connect()
    assert present is False, "a brand new client id must not have a session"
    sub.subscribe(topic, qos=1)
    sub.disconnect()

    pub = peers(protocol)
    pub.connect()
    sent = [f"queued {i}".encode() for i in range(6)]
    for payload in sent:
        pub.publish(topic, payload, qos=1)

    back = persistent_peer()
    if protocol == V5:
        present = back.connect(clean_start=False, properties=session_props(300))
    else:
        present = back.connect()
    assert present is True, "session_present must be set when resuming a stored session"
    got = back.wait_messages(len(sent))
    quiet()
    assert back.payloads() == sent, "queued messages must all arrive, once, in order"
    assert all(m.qos == 1 and m.topic == topic for m in got)

    # Live traffic still flows on the resumed session.
    pub.publish(topic, b"live", qos=1)
    back.wait_messages(len(sent) + 1)
    assert back.payloads()[-1] == b"live"
    back.disconnect()

    # Clean up: a clean (v3.1.1) / clean-start, zero-expiry (v5) connection drops the session.
    cleaner = peers(protocol, client_id=client_id, clean_session=True)
    if protocol == V5:
        present = cleaner.connect(clean_start=True, properties=session_props(0))
    else:
        present = cleaner.connect()
    assert present is False, "a clean start must discard the stored session"


# --------------------------------------------------------------------------
# QoS 2
# --------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", BOTH)
def test_qos2_exactly_once(peers, prefix, protocol):
    topic = f"{prefix}/exactly-once"
    sub = peers(protocol)
    sub.connect()
    sub.subscribe(topic, qos=2)
    pub = peers(protocol)
    pub.connect()
    sent = [f"qos2 message {i}".encode() for i in range(50)]
    for payload in sent:
        pub.publish(topic, payload, qos=2)
    got = sub.wait_messages(len(sent))
    quiet()
    counts = Counter(sub.payloads())
    assert [p for p, n in counts.items() if n != 1] == [], "duplicated messages"
    assert sub.payloads() == sent, "every message exactly once, in order"
    assert all(m.qos == 2 for m in got)


# --------------------------------------------------------------------------
# Shared subscriptions
# --------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", BOTH)
def test_shared_subscription_delivers_each_message_once_across_group(peers, prefix, protocol):
    topic = f"{prefix}/work"
    shared = f"$share/g{uid()}/{topic}"
    members = [peers(protocol), peers(protocol)]
    for m in members:
        m.connect()
        m.subscribe(shared, qos=1)
    pub = peers(V5)
    pub.connect()
    sent = [f"job {i:02d}".encode() for i in range(20)]
    for payload in sent:
        pub.publish(topic, payload, qos=1)

    deadline = time.monotonic() + TIMEOUT
    while sum(len(m.payloads()) for m in members) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    quiet()
    received = [p for m in members for p in m.payloads()]
    assert sorted(received) == sorted(sent), "each message must reach exactly one group member"
    assert all(m.payloads() for m in members), (
        f"distribution {[len(m.payloads()) for m in members]}: both members should get a share"
    )
    for m in members:
        assert m.payloads() == [p for p in sent if p in m.payloads()], "per-member order preserved"
        assert all(msg.topic == topic for msg in m.messages)


# --------------------------------------------------------------------------
# MQTT 5 topic aliases
# --------------------------------------------------------------------------


def test_v5_topic_alias_from_publisher(peers, prefix):
    sub = peers(V5)
    sub.connect()
    sub.subscribe(f"{prefix}/#", qos=1)

    pub = peers(V5)
    pub.connect()
    _, _, connack_props = pub.connack
    alias_max = getattr(connack_props, "TopicAliasMaximum", 0)
    assert alias_max >= 1, "the broker must accept at least one topic alias from clients"

    first, second = f"{prefix}/alias/one", f"{prefix}/alias/two"
    alias = lambda: props(PacketTypes.PUBLISH, TopicAlias=1)  # noqa: E731
    pub.publish(first, b"a0", properties=alias())  # establishes alias 1 -> first
    for i in range(1, 4):
        pub.publish("", f"a{i}".encode(), properties=alias())
    pub.publish(second, b"b0", properties=alias())  # re-maps alias 1 -> second
    pub.publish("", b"b1", properties=alias())
    pub.publish(first, b"plain", qos=1)  # no alias at all

    got = sub.wait_messages(7)
    quiet()
    assert [(m.topic, m.payload) for m in sub.messages] == [
        (first, b"a0"),
        (first, b"a1"),
        (first, b"a2"),
        (first, b"a3"),
        (second, b"b0"),
        (second, b"b1"),
        (first, b"plain"),
    ]
    # The subscriber did not allow aliases (no TopicAliasMaximum in CONNECT),
    # so none may be sent to it.
    assert not any(hasattr(m.properties, "TopicAlias") for m in got)


# --------------------------------------------------------------------------
# MQTT 5 message expiry
# --------------------------------------------------------------------------


def test_v5_message_expiry_for_offline_subscriber(peers, prefix):
    topic = f"{prefix}/expiring"
    client_id = f"interop-exp-{uid()}"
    sub = peers(V5, client_id=client_id)
    sub.connect(clean_start=True, properties=session_props(300))
    sub.subscribe(topic, qos=1)
    sub.disconnect()

    pub = peers(V5)
    pub.connect()
    pub.publish(topic, b"short-lived", qos=1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    long_expiry = 60
    pub.publish(topic, b"long-lived", qos=1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=long_expiry))
    time.sleep(2.5)

    back = peers(V5, client_id=client_id)
    assert back.connect(clean_start=False, properties=session_props(0)) is True
    got = back.wait_messages(1)
    quiet()
    assert back.payloads() == [b"long-lived"], "the expired message must be discarded"
    remaining = getattr(got[0].properties, "MessageExpiryInterval", None)
    assert remaining is not None, "the expiry interval must be forwarded"
    # It must be reduced by the ~2.5 s the message waited in the broker.
    assert 0 < remaining < long_expiry, f"expiry interval {remaining} not decremented"


def test_v5_message_expiry_passed_to_online_subscriber(peers, prefix):
    topic = f"{prefix}/expiring-live"
    sub = peers(V5)
    sub.connect()
    sub.subscribe(topic, qos=1)
    pub = peers(V5)
    pub.connect()
    pub.publish(topic, b"with expiry", qos=1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=120))
    pub.publish(topic, b"without expiry", qos=1)
    got = sub.wait_messages(2)
    assert [m.payload for m in got] == [b"with expiry", b"without expiry"]
    assert 0 < getattr(got[0].properties, "MessageExpiryInterval", -1) <= 120
    assert not hasattr(got[1].properties, "MessageExpiryInterval")


# --------------------------------------------------------------------------
# Session takeover
# --------------------------------------------------------------------------


def mosquitto_version() -> tuple[int, ...] | None:
    """Version of the reference broker when the suite runs against Mosquitto."""
    if os.environ.get("INTEROP_BROKER") != "mosquitto":
        return None
    for exe in ("mosquitto", "/usr/sbin/mosquitto"):
        try:
            out = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(r"mosquitto version (\d+)\.(\d+)\.(\d+)", out)
        if m:
            return tuple(int(x) for x in m.groups())
    return None


@pytest.mark.parametrize("protocol", BOTH)
def test_session_takeover(peers, prefix, protocol):
    client_id = f"interop-takeover-{uid()}"
    a = peers(protocol, client_id=client_id)
    a.connect()
    b = peers(protocol, client_id=client_id)
    b.connect()

    reason_code, _ = a.wait_disconnected()
    # paho's network loop reconnects on its own after a server DISCONNECT, which would take the session back
    # from b: stop it now that a has seen the takeover.
    a.client.disconnect()

    topic = f"{prefix}/after-takeover"
    b.subscribe(topic, qos=1)
    b.publish(topic, b"still here", qos=1)
    b.wait_messages(1)
    assert b.payloads() == [b"still here"]
    assert b.disconnect_info is None, "the new connection must stay up"

    if protocol == V5 and reason_code.value != 0x8E:
        # Mosquitto only sends DISCONNECT 0x8E to the displaced client since
        # 2.0.15 (eclipse-mosquitto/mosquitto#2607); older ones just close it.
        version = mosquitto_version()
        if version is not None and version < (2, 0, 15):
            pytest.xfail(f"Mosquitto {'.'.join(map(str, version))} closes the displaced connection without DISCONNECT 0x8E")
        raise AssertionError(f"expected DISCONNECT 'Session taken over' (0x8E), got {reason_code}")


# --------------------------------------------------------------------------
# Wills
# --------------------------------------------------------------------------


def test_v5_will_with_properties(peers, prefix):
    will_topic = f"{prefix}/will"
    watcher = peers(V5)
    watcher.connect()
    watcher.subscribe(will_topic, qos=1)

    user_props = [("origin", "interop"), ("dup", "1"), ("dup", "2")]
    victim = peers(V5)
    victim.client.will_set(
        will_topic,
        b'{"status": "offline"}',
        qos=1,
        properties=props(
            PacketTypes.WILLMESSAGE,
            WillDelayInterval=0,
            UserProperty=user_props,
            ContentType="application/json",
            ResponseTopic=f"{prefix}/reply",
            CorrelationData=b"\x00\x01corr",
            PayloadFormatIndicator=1,
        ),
    )
    victim.connect()
    victim.drop()

    (msg,) = watcher.wait_messages(1)
    assert msg.topic == will_topic
    assert msg.payload == b'{"status": "offline"}'
    assert msg.qos == 1
    p = msg.properties
    assert getattr(p, "UserProperty", None) == user_props, "user properties: all, in order"
    assert getattr(p, "ContentType", None) == "application/json"
    assert getattr(p, "ResponseTopic", None) == f"{prefix}/reply"
    assert getattr(p, "CorrelationData", None) == b"\x00\x01corr"
    assert getattr(p, "PayloadFormatIndicator", None) == 1


def test_v5_disconnect_with_will_message_reason_code(peers, prefix):
    will_topic = f"{prefix}/will"
    watcher = peers(V5)
    watcher.connect()
    watcher.subscribe(will_topic, qos=1)
    victim = peers(V5)
    victim.client.will_set(will_topic, b"sent on request", qos=1)
    victim.connect()
    victim.closed = True
    victim.client.disconnect(reasoncode=mqtt.ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))
    victim.client.loop_stop()
    watcher.wait_messages(1)
    assert watcher.payloads() == [b"sent on request"]


@pytest.mark.parametrize("protocol", BOTH)
def test_will_not_sent_after_normal_disconnect(peers, prefix, protocol):
    will_topic = f"{prefix}/will"
    watcher = peers(V5)
    watcher.connect()
    watcher.subscribe(f"{prefix}/#", qos=1)
    victim = peers(protocol)
    victim.client.will_set(will_topic, b"must not be published", qos=1)
    victim.connect()
    victim.disconnect()
    marker = peers(V5)
    marker.connect()
    marker.publish(f"{prefix}/marker", b"marker", qos=1)
    watcher.wait_messages(1)
    quiet()
    assert watcher.payloads() == [b"marker"]


# --------------------------------------------------------------------------
# MQTT 5 publication properties
# --------------------------------------------------------------------------


def test_v5_publish_properties_pass_through(peers, prefix):
    topic = f"{prefix}/props"
    sub = peers(V5)
    sub.connect()
    sub.subscribe(topic, qos=1)
    pub = peers(V5)
    pub.connect()
    user_props = [("k", "v1"), ("k", "v2"), ("trace-id", uid())]
    pub.publish(
        topic,
        b"<r/>",
        qos=1,
        properties=props(
            PacketTypes.PUBLISH,
            UserProperty=user_props,
            ContentType="application/xml; charset=utf-8",
            ResponseTopic=f"{prefix}/responses",
            CorrelationData=b"\xffreq-42",
            PayloadFormatIndicator=1,
        ),
    )
    (msg,) = sub.wait_messages(1)
    p = msg.properties
    assert msg.payload == b"<r/>"
    assert getattr(p, "UserProperty", None) == user_props
    assert getattr(p, "ContentType", None) == "application/xml; charset=utf-8"
    assert getattr(p, "ResponseTopic", None) == f"{prefix}/responses"
    assert getattr(p, "CorrelationData", None) == b"\xffreq-42"
    assert getattr(p, "PayloadFormatIndicator", None) == 1


def test_v5_request_response_round_trip(peers, prefix):
    """A responder answers on the request's ResponseTopic, echoing its CorrelationData."""
    requests = f"{prefix}/requests"
    responder = peers(V5)

    def answer(client, userdata, message):
        responder._on_message(client, userdata, message)
        rp = message.properties
        client.publish(
            rp.ResponseTopic,
            b"re: " + message.payload,
            qos=1,
            properties=props(PacketTypes.PUBLISH, CorrelationData=rp.CorrelationData),
        )

    responder.client.on_message = answer
    responder.connect()
    responder.subscribe(requests, qos=1)

    requester = peers(V5)
    requester.connect()
    reply_to = f"{prefix}/replies/{requester.client_id}"
    requester.subscribe(reply_to, qos=1)
    for i in range(3):
        requester.publish(
            requests,
            f"q{i}".encode(),
            qos=1,
            properties=props(PacketTypes.PUBLISH, ResponseTopic=reply_to, CorrelationData=f"id-{i}".encode()),
        )
    got = requester.wait_messages(3)
    assert [(m.topic, m.payload, m.properties.CorrelationData) for m in got] == [
        (reply_to, f"re: q{i}".encode(), f"id-{i}".encode()) for i in range(3)
    ]


# --------------------------------------------------------------------------
# MQTT 5 retain handling
# --------------------------------------------------------------------------


def test_v5_retain_handling(peers, prefix):
    topic = f"{prefix}/retained"
    pub = peers(V5)
    pub.connect()
    pub.publish(topic, b"retained value", qos=1, retain=True)
    try:
        # 0: retained messages are sent on every subscribe.
        rh0 = peers(V5)
        rh0.connect()
        rh0.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=0))
        rh0.wait_messages(1)
        rh0.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=0))
        rh0.wait_messages(2)

        # 1: only when the subscription is new.
        rh1 = peers(V5)
        rh1.connect()
        rh1.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=1))
        rh1.wait_messages(1)
        rh1.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=1))

        # 2: never on subscribe.
        rh2 = peers(V5)
        rh2.connect()
        rh2.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=2))

        # A live message orders after anything sent because of the subscriptions.
        pub.publish(topic, b"live value", qos=1)
        for peer, count in ((rh0, 3), (rh1, 2), (rh2, 1)):
            peer.wait_messages(count)
        quiet()
        seen = lambda peer: [(m.payload, m.retain) for m in peer.messages]  # noqa: E731
        assert seen(rh0) == [(b"retained value", True), (b"retained value", True), (b"live value", False)]
        assert seen(rh1) == [(b"retained value", True), (b"live value", False)]
        assert seen(rh2) == [(b"live value", False)]
    finally:
        pub.publish(topic, b"", qos=1, retain=True)

    # The empty retained publication cleared it.
    late = peers(V5)
    late.connect()
    late.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=0))
    pub.publish(topic, b"after clear", qos=1)
    late.wait_messages(1)
    quiet()
    assert late.payloads() == [b"after clear"]

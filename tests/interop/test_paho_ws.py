"""Interoperability over WebSocket with the Eclipse Paho Python client (paho-mqtt 2.x, transport="websockets").

Run by tls_ws.sh against a broker with WebSocket ($WS_PORT), WebSocket over TLS ($WSS_PORT, server certificate
issued by $CA_FILE) and TCP ($TCP_PORT) listeners on 127.0.0.1. Every wait is bounded in time.
"""

from __future__ import annotations

import os
import queue
import socket
import ssl
import uuid

import paho.mqtt.client as mqtt
import pytest

HOST = "127.0.0.1"
WS_PORT = int(os.environ.get("WS_PORT", "8083"))
WSS_PORT = int(os.environ.get("WSS_PORT", "8084"))
TCP_PORT = int(os.environ.get("TCP_PORT", "1883"))
CA_FILE = os.environ.get("CA_FILE", "")
TIMEOUT = 5.0

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
BOTH = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]


def uid() -> str:
    return uuid.uuid4().hex[:12]


class Peer:
    """A connected paho client that queues what it receives."""

    def __init__(self, version: int, transport: str = "tcp", port: int = TCP_PORT, tls: bool = False):
        self.messages: queue.Queue = queue.Queue()
        self.subscribed: queue.Queue = queue.Queue()
        self.connected: queue.Queue = queue.Queue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"paho-ws-{uid()}", protocol=version, transport=transport
        )
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        if tls:
            self.client.tls_set(ca_certs=CA_FILE)
        self.client.on_connect = lambda c, u, f, rc, p=None: self.connected.put(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self.subscribed.put(rcs)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.qos))
        self.client.connect(HOST, port, keepalive=30)
        self.client.loop_start()
        rc = self.connected.get(timeout=TIMEOUT)
        assert not rc.is_failure, f"CONNACK {rc}"

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.client.subscribe(topic, qos)
        self.subscribed.get(timeout=TIMEOUT)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos)
        info.wait_for_publish(timeout=TIMEOUT)
        assert info.is_published()

    def receive(self):
        return self.messages.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("version", BOTH)
def test_websocket_publish_subscribe(version):
    topic = f"interop/ws/{uid()}"
    sub = Peer(version, "websockets", WS_PORT)
    pub = Peer(version, "websockets", WS_PORT)
    try:
        sub.subscribe(topic + "/#", 1)
        # A large payload spans several WebSocket frames and TCP segments.
        payloads = [b"hello over websocket", "héllo ✓".encode(), b"", bytes(range(256)) * 400]
        for i, payload in enumerate(payloads):
            pub.publish(f"{topic}/{i}", payload, 1)
        for i, payload in enumerate(payloads):
            assert sub.receive() == (f"{topic}/{i}", payload, 1)
    finally:
        sub.close()
        pub.close()


@pytest.mark.parametrize("version", BOTH)
def test_websocket_and_tcp_clients_talk(version):
    topic = f"interop/ws-tcp/{uid()}"
    ws = Peer(version, "websockets", WS_PORT)
    tcp = Peer(version, "tcp", TCP_PORT)
    try:
        ws.subscribe(topic + "/to-ws", 1)
        tcp.subscribe(topic + "/to-tcp", 1)
        tcp.publish(topic + "/to-ws", b"from tcp")
        ws.publish(topic + "/to-tcp", b"from websocket")
        assert ws.receive() == (topic + "/to-ws", b"from tcp", 1)
        assert tcp.receive() == (topic + "/to-tcp", b"from websocket", 1)
    finally:
        ws.close()
        tcp.close()


@pytest.mark.parametrize("version", BOTH)
def test_websocket_over_tls(version):
    topic = f"interop/wss/{uid()}"
    wss = Peer(version, "websockets", WSS_PORT, tls=True)
    tcp = Peer(version, "tcp", TCP_PORT)
    try:
        wss.subscribe(topic, 1)
        tcp.publish(topic, b"over wss")
        assert wss.receive() == (topic, b"over wss", 1)
    finally:
        wss.close()
        tcp.close()


def http(port: int, request: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(4096)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def test_http_request_without_upgrade_is_refused():
    response = http(WS_PORT, b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 4"), response[:200]


def test_non_mqtt_subprotocol_is_refused_and_mqtt_is_echoed():
    base = (
        "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
    refused = http(WS_PORT, (base + "Sec-WebSocket-Protocol: chat\r\n\r\n").encode())
    assert refused.startswith(b"HTTP/1.1 400"), refused[:200]
    with socket.create_connection((HOST, WS_PORT), timeout=TIMEOUT) as s:
        s.sendall((base + "Sec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = s.recv(4096)
            assert data, head
            head += data
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"sec-websocket-protocol: mqtt\r\n" in head.lower(), head


def test_wss_refuses_an_untrusted_client_context():
    # A TLS client that does not trust the server's CA fails the handshake; the listener keeps working.
    context = ssl.create_default_context()
    with socket.create_connection((HOST, WSS_PORT), timeout=TIMEOUT) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="localhost")
    test_websocket_over_tls(V311)

#!/usr/bin/env python3
"""Broker CPU per message of clients that each publish once a second, with parking after 100 ms of idleness and
without it: the difference is what one park and resume costs.

    scripts/park-cycle-cost.py target/release/corvid [CLIENTS] [SECONDS]

Launches the given corvid binary twice on a free 127.0.0.1 port (a temporary config and data directory each time),
connects CLIENTS (default 100) MQTT 3.1.1 clients, and has them publish QoS 0 messages (no subscriber) round-robin,
each client once per second, for SECONDS (default 15). Prints the broker's CPU time (utime + stime from /proc) per
message for both runs. Bounded: CLIENTS x SECONDS messages per run, one run at a time.
"""
import os, socket, struct, subprocess, sys, tempfile, time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_listening(port, deadline):
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"corvid did not listen on {port}")


def run(binary, park_after_ms, clients, seconds):
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = os.path.join(tmp, "corvid.toml")
        with open(config, "w") as f:
            f.write(f'allow_anonymous = true\n[[listener]]\ntype = "tcp"\nbind = "127.0.0.1:{port}"\n'
                    f"[limits]\npark_idle_after_ms = {park_after_ms}\n")
        broker = subprocess.Popen([binary, "-c", config, "--data-dir", os.path.join(tmp, "data"),
                                   "--log-level", "warn"], stderr=subprocess.DEVNULL)
        try:
            wait_listening(port, time.time() + 10)
            socks, packets = [], []
            for i in range(clients):
                s = socket.create_connection(("127.0.0.1", port))
                cid = f"cycle-{i}".encode()
                body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid
                s.sendall(bytes([0x10, len(body)]) + body)
                if s.recv(4)[:2] != b"\x20\x02":
                    raise SystemExit("no CONNACK")
                topic = f"cycle/{i}".encode()
                packets.append(bytes([0x30, 2 + len(topic) + 4]) + struct.pack(">H", len(topic)) + topic + b"data")
                socks.append(s)
            time.sleep(1.5)  # every connection parked (with parking on) before the measurement
            before, started, sent = broker_cpu(broker.pid), time.time(), 0
            while time.time() - started < seconds:
                for s, packet in zip(socks, packets):
                    s.sendall(packet)
                    sent += 1
                    time.sleep(1.0 / clients)
            used = broker_cpu(broker.pid) - before
            for s in socks:
                s.close()
            return sent, used
        finally:
            broker.terminate()
            broker.wait(timeout=10)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    binary = sys.argv[1]
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 15.0
    results = {}
    for label, park_after_ms in (("parking after 100 ms", 100), ("parking off", 0)):
        sent, used = run(binary, park_after_ms, clients, seconds)
        results[label] = used / sent
        print(f"{label}: {sent} messages, broker CPU {used:.2f} s, {used / sent * 1e6:.1f} us per message")
    cost = results["parking after 100 ms"] - results["parking off"]
    print(f"one park and resume: {cost * 1e6:.1f} us of broker CPU")


if __name__ == "__main__":
    main()

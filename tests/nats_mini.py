"""A minimal NATS client for foryou's tests: request/reply on the JetStream
API ($JS.API.*), enough to read stream state and to create a stream that
contradicts the policy. Plain sockets, no dependencies."""
import json
import socket
import time


class Nats:
    def __init__(self, url, timeout=5.0):
        host, port = url.replace("nats://", "").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""
        self._line()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\nPING\r\n')
        while self._line() != b"PONG":
            pass
        self.inbox = "_INBOX.foryou_test_%d" % int(time.time() * 1e6)
        self.sock.sendall(b"SUB %s.* 1\r\n" % self.inbox.encode())
        self.n = 0

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("nats: connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("nats: connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def request(self, subject, payload=b""):
        self.n += 1
        reply = "%s.%d" % (self.inbox, self.n)
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
        self.sock.sendall(b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(payload), payload))
        while True:
            line = self._line()
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
                continue
            parts = line.split()
            if parts[0] == b"MSG":
                data = self._read(int(parts[-1]))
                if parts[3 if len(parts) == 5 else 2].decode() != reply and parts[1].decode() != reply:
                    continue
                return data
            if parts[0] == b"HMSG":
                total = int(parts[-1])
                data = self._read(total)
                hdr_len = int(parts[-2])
                if parts[1].decode() != reply:
                    continue
                return data[hdr_len:]
            if parts[0] == b"-ERR":
                raise RuntimeError(line.decode())

    def js(self, api, body=None):
        return json.loads(self.request("$JS.API." + api, body if body is not None else b"") or b"{}")

    def close(self):
        self.sock.close()

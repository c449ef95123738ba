//! A tiny DNS server and client (Python scripts run with `python3 -c`), for
//! the labs that check DNS through the gateway: the server answers every A
//! query with 10.1.2.3; the client asks over UDP and TCP and prints what
//! came back and from where.

/// A small DNS server: every A query is answered with 10.1.2.3, over UDP
/// and TCP on port 53 of the outside address.
pub const SERVER: &str = r#"
import socket, struct, sys, threading
ADDR = sys.argv[1]
def answer(q):
    i = 12
    while q[i] != 0:
        i += q[i] + 1
    question = q[12:i + 5]
    record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("10.1.2.3")
    return q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + question + record
def tcp():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ADDR, 53))
    s.listen(16)
    while True:
        c, _ = s.accept()
        try:
            n = struct.unpack("!H", c.recv(2))[0]
            q = b""
            while len(q) < n:
                q += c.recv(n - len(q))
            r = answer(q)
            c.sendall(struct.pack("!H", len(r)) + r)
        except Exception:
            pass
        c.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((ADDR, 53))
threading.Thread(target=tcp, daemon=True).start()
while True:
    q, peer = u.recvfrom(512)
    u.sendto(answer(q), peer)
"#;

/// A DNS client: asks `example.test` A of the address in argv[1] over UDP
/// and TCP; prints `udp ANSWER FROM PORT` and `tcp ANSWER`.
pub const CLIENT: &str = r#"
import socket, struct, sys
server = sys.argv[1]
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x07example\x04test\x00" + struct.pack("!HH", 1, 1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
u.sendto(q, (server, 53))
r, peer = u.recvfrom(512)
print("udp", socket.inet_ntoa(r[-4:]), peer[0], peer[1])
t = socket.create_connection((server, 53), timeout=3)
t.sendall(struct.pack("!H", len(q)) + q)
n = struct.unpack("!H", t.recv(2))[0]
r = b""
while len(r) < n:
    r += t.recv(n - len(r))
print("tcp", socket.inet_ntoa(r[-4:]))
"#;

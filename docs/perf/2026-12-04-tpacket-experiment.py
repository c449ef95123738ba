# The experiment behind docs/PERFORMANCE.md's "A receive ring on veth ports":
# does the kernel put the virtio-net header in front of each frame in a
# PACKET_RX_RING, how long does a lone frame take to become readable with
# TPACKET_V3 and with TPACKET_V2, and does PACKET_COPY_THRESH hand over a
# GSO frame larger than a V2 slot whole? Run as root inside a scratch
# namespace holding a veth pair A <-> B, both up:
#   ip netns exec NS python3 2026-12-04-tpacket-experiment.py latency 2 A B   # TPACKET_V3
#   ip netns exec NS python3 2026-12-04-tpacket-experiment.py latency 1 A B   # TPACKET_V2
#   ip netns exec NS python3 2026-12-04-tpacket-experiment.py gso A B
# Frames are of a local experimental EtherType or addressed to 10.82.0.0/24.
import mmap
import select
import socket
import struct
import sys
import time

SOL_PACKET, PACKET_RX_RING, PACKET_COPY_THRESH = 263, 5, 7
PACKET_AUXDATA, PACKET_VERSION, PACKET_VNET_HDR = 8, 10, 15
TPACKET_V2, TPACKET_V3, ETH_P_ALL = 1, 2, 3


def ring_socket(version, iface, block, blocks, frame):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(SOL_PACKET, PACKET_VERSION, version)
    if version == TPACKET_V3:
        req = struct.pack("IIIIIII", block, blocks, frame, block // frame * blocks, 0, 0, 0)
    else:
        s.setsockopt(SOL_PACKET, PACKET_COPY_THRESH, 1)
        s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        req = struct.pack("IIII", block, blocks, frame, block // frame * blocks)
    s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
    ring = mmap.mmap(s.fileno(), block * blocks)
    s.bind((iface, ETH_P_ALL))
    return s, ring


def latency(version, a, b):
    block, blocks = 1 << 17, 4
    frame = 1 << 11 if version == TPACKET_V3 else block
    s, ring = ring_socket(version, a, block, blocks, frame)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    tx.bind((b, 0))
    payload = b"\xff" * 6 + b"\x02\0\0\0\0\x09" + b"\x88\xb5" + b"ring experiment".ljust(55, b"\0")
    poll = select.poll()
    poll.register(s, select.POLLIN)
    started = time.monotonic()
    tx.send(payload)
    events = poll.poll(1000)
    print(f"TPACKET_V{version + 1}: readable after {(time.monotonic() - started) * 1e3:.3f} ms ({events})")
    if version == TPACKET_V3:
        status, count, first = struct.unpack_from("III", ring, 8)
        _, _, _, snap, length, _, mac, _ = struct.unpack_from("IIIIIIHH", ring, first)
        at = first
    else:
        status, length, snap, mac, _ = struct.unpack_from("IIIHH", ring, 0)
        at = 0
    print(f"  status {status:#x} len {length} mac {mac} vnet {ring[at + mac - 10:at + mac].hex()}")


def gso(a, b):
    block, blocks, frame = 1 << 16, 2, 2048
    s, ring = ring_socket(TPACKET_V2, a, block, blocks, frame)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    tx.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    tx.bind((b, 0))
    eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"

    def tcp(vnet, payload):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0,
                         bytes([10, 82, 0, 1]), bytes([10, 82, 0, 2]))
        return vnet + eth + ip + struct.pack("!HHIIBBHHH", 1000, 2000, 1, 0, 0x50, 0x18, 1000, 0, 0) + payload

    # NEEDS_CSUM, GSO TCPv4, header 54, segments of 1448, checksum at 34+16.
    big = tcp(struct.pack("<BBHHHH", 1, 1, 54, 1448, 34, 16), b"y" * 20000)
    for f in (tcp(b"\0" * 10, b"x" * 10), big, tcp(b"\0" * 10, b"z" * 10)):
        tx.send(f)
    time.sleep(0.1)
    for slot in range(blocks * block // frame):
        at = slot * frame
        status, length, snap, mac, _ = struct.unpack_from("IIIHH", ring, at)
        if status & 1:
            print(f"slot {slot} status {status:#x} len {length} snap {snap} vnet {ring[at + mac - 10:at + mac].hex()}")
            if status & 2:
                data, anc, _, _ = s.recvmsg(70000, 1000)
                print(f"  copy via recvmsg: {len(data)} bytes, vnet {data[:10].hex()}, cmsgs {[(l, t) for l, t, _ in anc]}")


if sys.argv[1] == "latency":
    latency(int(sys.argv[2]), sys.argv[3], sys.argv[4])
else:
    gso(sys.argv[2], sys.argv[3])

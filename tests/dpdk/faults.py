"""A userspace stand-in for tc netem, for kernels built without sch_netem:
relays Ethernet frames between two interfaces (both directions) with
loss, duplication, delay and reordering.

    faults.py IF_A IF_B DELAY_MS LOSS_PCT DUP_PCT REORDER_PCT

Semantics follow netem's: each frame is dropped with LOSS_PCT; otherwise
sent after DELAY_MS, except that REORDER_PCT of frames go at once (so they
overtake the delayed ones); DUP_PCT of frames are sent twice. Frames the
relay itself sends (PACKET_OUTGOING) are not relayed back. Runs until
SIGTERM; prints "relaying" when ready and its counts when it ends.
"""

import heapq
import random
import select
import signal
import socket
import sys
import time

PACKET_OUTGOING = 4


def main():
    a, b = sys.argv[1], sys.argv[2]
    delay = float(sys.argv[3]) / 1000.0
    loss, dup, reorder = (float(x) / 100.0 for x in sys.argv[4:7])
    socks = {}
    for name in (a, b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind((name, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setblocking(False)
        socks[name] = s
    peer = {socks[a]: socks[b], socks[b]: socks[a]}
    rnd = random.Random(1)
    due = []          # (time, n, socket, frame)
    n = 0
    counts = {'in': 0, 'lost': 0, 'dup': 0, 'early': 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print('relaying', flush=True)
    while not stop:
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, s, f = heapq.heappop(due)
            try:
                s.send(f)
            except OSError:
                pass
        timeout = max(0.0, due[0][0] - now) if due else 0.1
        try:
            ready, _, _ = select.select(list(peer), [], [], min(timeout, 0.1))
        except InterruptedError:
            continue
        for s in ready:
            for _ in range(64):
                try:
                    f, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                counts['in'] += 1
                if rnd.random() < loss:
                    counts['lost'] += 1
                    continue
                copies = 2 if rnd.random() < dup else 1
                counts['dup'] += copies - 1
                now = time.monotonic()
                for _ in range(copies):
                    if rnd.random() < reorder:
                        counts['early'] += 1
                        try:
                            peer[s].send(f)
                        except OSError:
                            pass
                    else:
                        n += 1
                        heapq.heappush(due, (now + delay, n, peer[s], f))
    print('faults: %r' % counts, flush=True)


if __name__ == '__main__':
    main()

"""The DPDK test rig: stanzad on DPDK in one network namespace, ordinary
kernel-TCP clients in another, a bridge between them in a third.

    stz-srv-<pid>            stz-mid-<pid>               stz-cli-<pid>
    +------------------+     +----------------------+    +-------------------+
    | stanzad (dpdk)   |     | br0: m2 <-> m1       |    | this process:     |
    | net_af_packet0   |veth |  (faults: tc netem   |veth| slixmpp, raw      |
    |  on vs<pid>      |-----|   on m1 and m2, or   |----| sockets, bench    |
    | 198.18.0.1/15    |     |   faults.py relaying |    | vc<pid>           |
    | (in DPDK)        |     |   between them)      |    | 198.18.0.2/15     |
    +------------------+     +----------------------+    +-------------------+

Nothing of the host's own network is touched: every interface lives in a
namespace the rig creates and deletes. The test process itself moves into
the client namespace (setns on its main thread before any other thread
exists, so every thread and socket it makes is there); stanzad is started
with `ip netns exec <srv>`, which execs, so the PID we hold is stanzad's.

Faults (loss, reordering, duplication, delay) go on the middle namespace's
two ports, one per direction: tc netem where the kernel has it, else
tests/dpdk/faults.py, a small userspace relay with netem's semantics that
takes the ports out of the bridge while it runs.

Checksums: veth hands a packet sent with checksum offload to the peer with
the checksum still partial, and af_packet passes it on as is; so the rig
turns TX checksumming (and with it TSO) and GSO off on the client's end,
which is what a real wire would give DPDK anyway.

Counters come from DPDK telemetry ("/stanzad/stats"), a Unix socket in the
EAL's runtime directory (--file-prefix per rig).

Requires root, iproute2 (ip, tc), ethtool and a stanzad built with DPDK.
Every wait is bounded; cleanup kills only the PIDs the rig started.
"""

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))

SERVER_IP = '198.18.0.1'
CLIENT_IP = '198.18.0.2'
PREFIX = 15
DOMAIN = 'localhost'
CLONE_NEWNET = 0x40000000


def log(msg):
    print('  * ' + msg, flush=True)


def find_exe(env, *rel):
    p = os.environ.get(env)
    if p:
        return p
    for build in ('build', 'build-integ'):
        cand = os.path.join(ROOT, build, *rel)
        if os.access(cand, os.X_OK):
            return cand
    return None


def run(*cmd, check=True, timeout=20, quiet=False):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, text=True)
    if check and r.returncode != 0:
        raise RuntimeError('%s: exit %d: %s' % (' '.join(cmd), r.returncode, r.stdout.strip()))
    return r.stdout


def missing_prerequisites(stanzad):
    """None if the rig can run here, else why not (a skip reason)."""
    if os.geteuid() != 0:
        return 'needs root (network namespaces, af_packet)'
    for tool in ('ip', 'tc', 'ethtool'):
        if not shutil.which(tool):
            return '%s not installed (scripts/deps.sh)' % tool
    if not stanzad or not os.access(stanzad, os.X_OK):
        return 'no stanzad binary (STANZAD=...)'
    out = subprocess.run([stanzad, '--version'], stdout=subprocess.PIPE, text=True, timeout=10).stdout
    if not out:
        return 'stanzad does not run'
    return None


def setns(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, 'setns %s: %s' % (path, os.strerror(e)))
    finally:
        os.close(fd)


class Rig:
    def __init__(self, workers=2, accounts=(), password='correct horse battery staple', settings=''):
        self.tag = str(os.getpid())
        self.srv = 'stz-srv-' + self.tag
        self.cli = 'stz-cli-' + self.tag
        self.vs = 'vs' + self.tag
        self.vc = 'vc' + self.tag
        self.mid = 'stz-mid-' + self.tag
        self.relay = None
        self.netem_on = False
        self.bridge = True
        self.prefix = 'stzdpdk' + self.tag
        self.workers = workers
        self.accounts = list(accounts)
        self.password = password
        self.settings = settings
        self.stanzad = find_exe('STANZAD', 'cmd', 'stanzad')
        self.stanzactl = find_exe('STANZACTL', 'cmd', 'stanzactl')
        self.bench = find_exe('STANZA_BENCH', 'bench', 'harness', 'stanza-bench')
        self.proc = None
        self.dir = None
        self.ns_made = []
        self.home_ns = None

    # ---- network --------------------------------------------------------

    def net_up(self):
        for ns in (self.srv, self.mid, self.cli):
            run('ip', 'netns', 'add', ns)
            self.ns_made.append(ns)
            run('ip', '-n', ns, 'link', 'set', 'lo', 'up')
            run('ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1')
            run('ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1')
        run('ip', 'link', 'add', self.vs, 'netns', self.srv, 'type', 'veth', 'peer', 'name', 'm2', 'netns', self.mid)
        run('ip', 'link', 'add', self.vc, 'netns', self.cli, 'type', 'veth', 'peer', 'name', 'm1', 'netns', self.mid)
        # A kernel without bridges gets faults.py relaying with no faults.
        self.bridge = subprocess.run(['ip', '-n', self.mid, 'link', 'add', 'br0', 'type', 'bridge'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        if os.environ.get('RIG_NO_BRIDGE'):   # to test that path on a kernel with bridges
            self.bridge = False
        # br_netfilter (where built in) validates bridged IPv4/IPv6 headers
        # and drops bad ones: the malformed-packet test must reach DPDK.
        for fam in ('iptables', 'ip6tables', 'arptables'):
            run('ip', 'netns', 'exec', self.mid, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-%s=0' % fam, check=False)
        if self.bridge:
            run('ip', '-n', self.mid, 'link', 'set', 'br0', 'up')
        for ns, dev in ((self.srv, self.vs), (self.cli, self.vc), (self.mid, 'm1'), (self.mid, 'm2')):
            run('ip', 'netns', 'exec', ns, 'ethtool', '-K', dev, 'tx', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off',
                check=False)
            if ns == self.mid and self.bridge:
                run('ip', '-n', ns, 'link', 'set', dev, 'master', 'br0')
            run('ip', '-n', ns, 'link', 'set', dev, 'up')
        run('ip', '-n', self.cli, 'addr', 'add', '%s/%d' % (CLIENT_IP, PREFIX), 'dev', self.vc)
        if not self.bridge:
            self.faults(None)
        # The test process joins the client side; subprocesses follow.
        self.home_ns = os.open('/proc/self/ns/net', os.O_RDONLY)
        setns('/var/run/netns/' + self.cli)

    def net_down(self):
        self.bridge = True   # no forwarder to restart
        self.faults(None)
        if self.home_ns is not None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.setns(self.home_ns, CLONE_NEWNET)
            os.close(self.home_ns)
            self.home_ns = None
        for ns in self.ns_made:
            subprocess.run(['ip', 'netns', 'del', ns], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ns_made = []

    def has_netem(self):
        r = subprocess.run(['ip', 'netns', 'exec', self.mid, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem',
                            'delay', '1ms'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            return False
        run('ip', 'netns', 'exec', self.mid, 'tc', 'qdisc', 'del', 'dev', 'lo', 'root', check=False)
        return True

    def faults(self, spec):
        """Impair both directions: spec = dict(delay_ms, loss, duplicate,
        reorder) in percent, or None to restore the plain bridge. Returns
        how ("netem" or "relay")."""
        if self.relay is not None:
            self.relay.terminate()
            try:
                out, _ = self.relay.communicate(timeout=5)
                if out.strip():
                    log(out.strip())
            except subprocess.TimeoutExpired:
                self.relay.kill()
                self.relay.wait(5)
            self.relay = None
            if self.bridge:
                for dev in ('m1', 'm2'):
                    run('ip', '-n', self.mid, 'link', 'set', dev, 'master', 'br0', check=False)
        if self.netem_on:
            for dev in ('m1', 'm2'):
                run('ip', 'netns', 'exec', self.mid, 'tc', 'qdisc', 'del', 'dev', dev, 'root', check=False)
            self.netem_on = False
        if not spec and self.bridge:
            return None
        if not spec:
            spec = dict(delay_ms=0, loss=0, duplicate=0, reorder=0)   # the forwarder
        elif self.has_netem():
            for dev in ('m1', 'm2'):
                run('ip', 'netns', 'exec', self.mid, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'netem',
                    'delay', '%dms' % spec['delay_ms'], 'loss', '%g%%' % spec['loss'],
                    'duplicate', '%g%%' % spec['duplicate'], 'reorder', '%g%%' % spec['reorder'], '50%')
            self.netem_on = True
            return 'netem'
        if self.bridge:
            for dev in ('m1', 'm2'):
                run('ip', '-n', self.mid, 'link', 'set', dev, 'nomaster')
        self.relay = subprocess.Popen(
            ['ip', 'netns', 'exec', self.mid, sys.executable, os.path.join(HERE, 'faults.py'), 'm1', 'm2',
             str(spec['delay_ms']), str(spec['loss']), str(spec['duplicate']), str(spec['reorder'])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.relay.stdout.readline()
        if 'relaying' not in line:
            raise RuntimeError('faults.py did not start: %r' % line)
        return 'relay'

    # ---- server ----------------------------------------------------------

    def eal(self):
        return ('--no-huge -m 512 --no-pci --file-prefix %s --log-level=lib.eal:warning '
                '--vdev net_af_packet0,iface=%s,qpairs=%d,framecnt=4096'
                % (self.prefix, self.vs, self.workers))

    def config_text(self):
        return '''transport = "dpdk";
workers = %d;
pin_workers = false;
data_dir = "%s";
listeners = ( { address = "%s:5222"; tls = "starttls"; },
              { address = "%s:5223"; tls = "direct"; } );
dpdk = {
  eal = "%s";
  port = "net_af_packet0";
  address = "%s/%d";
  idle_sleep_us = 200;
};
%s
''' % (self.workers, os.path.join(self.dir, 'data'), SERVER_IP, SERVER_IP, self.eal(), SERVER_IP, PREFIX,
       self.settings)

    def start(self, timeout=30):
        self.dir = tempfile.mkdtemp(prefix='stz-dpdk-')
        self.conf = os.path.join(self.dir, 'stanzad.conf')
        with open(self.conf, 'w') as f:
            f.write(self.config_text())
        os.makedirs(os.path.join(self.dir, 'data'), mode=0o700)
        for jid in self.accounts:
            self.add_account(jid)
        self.logf = open(os.path.join(self.dir, 'stanzad.log'), 'w')
        self.proc = subprocess.Popen(['ip', 'netns', 'exec', self.srv, self.stanzad, '-c', self.conf],
                                     stdout=self.logf, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('stanzad exited with %d:\n%s' % (self.proc.returncode, self.log_tail()))
            if 'started:' in self.log_text() and self.connect_ok(5222, 1):
                return
            time.sleep(0.2)
        raise RuntimeError('stanzad did not come up:\n' + self.log_tail())

    def connect_ok(self, port, timeout):
        try:
            socket.create_connection((SERVER_IP, port), timeout=timeout).close()
            return True
        except OSError:
            return False

    def add_account(self, jid, password=None):
        p = subprocess.run([self.stanzactl, '-d', os.path.join(self.dir, 'data'), 'account', 'add', jid],
                           input=(password or self.password) + '\n', stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError('account add %s: %s' % (jid, p.stdout))

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self):
        with open('/proc/%d/status' % self.pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
        return 0

    def stats(self):
        """The transport's counters (DPDK telemetry)."""
        path = '/var/run/dpdk/%s/dpdk_telemetry.v2' % self.prefix
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(5)
        try:
            s.connect(path)
            json.loads(s.recv(65536).decode())
            s.send(b'/stanzad/stats')
            return json.loads(s.recv(65536).decode())['/stanzad/stats']
        finally:
            s.close()

    def sessions(self):
        out = subprocess.run([self.stanzactl, '-d', os.path.join(self.dir, 'data'), 'stats'],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=15).stdout
        for line in out.splitlines():
            f = line.split()
            if f and f[0] == 'total':
                return int(f[1]), int(f[2])
        raise RuntimeError('stanzactl stats: %r' % out)

    def server_mac(self):
        """The MAC DPDK answers ARP with, from the client's neighbour table."""
        self.connect_ok(5222, 2)
        out = run('ip', 'neigh', 'show', SERVER_IP, 'dev', self.vc)
        f = out.split()
        return bytes.fromhex(f[f.index('lladdr') + 1].replace(':', ''))

    def client_mac(self):
        out = run('ip', '-o', 'link', 'show', 'dev', self.vc)
        f = out.split()
        return bytes.fromhex(f[f.index('link/ether') + 1].replace(':', ''))

    def stop(self, timeout=15):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return None
        return self.proc.returncode

    def log_text(self):
        try:
            with open(os.path.join(self.dir, 'stanzad.log'), errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def log_tail(self, n=40):
        return '\n'.join(self.log_text().splitlines()[-n:])

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.net_down()
        shutil.rmtree('/var/run/dpdk/' + self.prefix, ignore_errors=True)
        if self.dir and not os.environ.get('KEEP_RIG'):
            shutil.rmtree(self.dir, ignore_errors=True)

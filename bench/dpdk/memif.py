#!/usr/bin/env python3
"""Kernel-free benchmark: stanzad and stanza-bench joined by net_memif, two
DPDK processes and no kernel between them, against the same pairs over
kernel loopback, in one run.

    sudo python3 bench/dpdk/memif.py                      # 100 pairs, none + starttls, 10 s each
    sudo python3 bench/dpdk/memif.py --rounds 3 --duration 10 --json out.json

    +-------------------------+   memif (shared memory:    +---------------------------+
    | stanzad                 |   rings + buffers in a     | stanza-bench              |
    | transport = "dpdk"      |   memfd, set up over a     | --transport dpdk          |
    | net_memif0 role=server  |<==========================>| net_memif0 role=client    |
    | 198.18.0.1/15, CPU 0    |   Unix socket in TMP)      | 198.18.0.2/15, CPU 1      |
    | userspace TCP/IP        |                            | userspace TCP/IP          |
    +-------------------------+                            +---------------------------+

Then the same stanzad with transport "kernel" on 127.0.0.1 and the same
stanza-bench with its default transport (epoll over kernel sockets), the
same CPUs, accounts, scenario and sizes. With --rounds N the two paths
alternate N times, so that a noisy machine disturbs both alike.

Each stanzad starts from the same data directory (accounts made once, with
the server stopped, by stanzactl on the store) and is stopped (SIGTERM)
before the other starts: one server at a time, so an idle polling DPDK
process never competes with a kernel run. Both DPDK processes run without
hugepages (--no-huge -m 512 --no-pci) with a --file-prefix of their own,
so they coexist. On 2 CPUs the server gets CPU 0 and the load generator
CPU 1, on both paths.

Prints one row per run and the ratios DPDK / kernel; --json writes every
run's stanza-bench report with the machine and the commands. Needs root
(DPDK) and a build with DPDK (meson finds libdpdk-dev) and its memif
driver. Every wait is bounded; only the processes this script started are
signalled, by PID; the temporary directory and the DPDK runtime
directories it made are removed at the end.

The integration test (tests/dpdk/test_memif.py) uses run_pairs() with a
few seconds per run.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SERVER_IP = '198.18.0.1'
CLIENT_IP = '198.18.0.2'
PREFIX_LEN = 15
PORT = 5222
KERNEL_PORT = 25222
DOMAIN = 'localhost'
PASSWORD = 'bench-pass'
USER_PREFIX = 'bench'
EAL_BASE = '--no-huge -m 512 --no-pci --log-level=lib.eal:warning'


def log(msg):
    print('memif: ' + msg, file=sys.stderr, flush=True)


def missing_prerequisites(build):
    """None when the rig can run, else why not (a skip reason)."""
    if os.geteuid() != 0:
        return 'not root (DPDK needs it)'
    for rel in ('cmd/stanzad', 'cmd/stanzactl', 'bench/harness/stanza-bench'):
        if not os.access(os.path.join(build, rel), os.X_OK):
            return '%s/%s not built' % (build, rel)
    for rel in ('cmd/stanzad', 'bench/harness/stanza-bench'):
        out = subprocess.run(['ldd', os.path.join(build, rel)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=10).stdout
        if 'librte_ethdev' not in out:
            return '%s/%s has no DPDK (install libdpdk-dev, reconfigure)' % (build, rel)
    if not memif_driver():
        return 'DPDK has no net_memif driver here (Debian: dpdk package, librte-net-memif)'
    if (os.cpu_count() or 1) < 2:
        return 'one CPU: two polling processes need two'
    return None


def memif_driver():
    """The memif PMD's shared object, or None (Debian puts PMDs in a
    plugin directory the EAL loads by itself)."""
    for d in ('/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib',
              '/usr/local/lib', '/usr/local/lib/x86_64-linux-gnu'):
        if not os.path.isdir(d):
            continue
        for sub in [''] + sorted(x for x in os.listdir(d) if x.startswith('dpdk')):
            base = os.path.join(d, sub)
            for root, _dirs, files in os.walk(base):
                for f in files:
                    if f.startswith('librte_net_memif.so'):
                        return os.path.join(root, f)
                if root.count(os.sep) - base.count(os.sep) >= 2:
                    break
    return None


class Rig:
    """One temporary directory: the accounts' store, the memif socket, the
    configurations, the logs. One stanzad at a time."""

    def __init__(self, build, pairs, workers=1, server_cpus='0', bench_cpus='1', nice=0, keep=False):
        self.build = os.path.abspath(build)
        self.stanzad = os.path.join(self.build, 'cmd', 'stanzad')
        self.stanzactl = os.path.join(self.build, 'cmd', 'stanzactl')
        self.bench = os.path.join(self.build, 'bench', 'harness', 'stanza-bench')
        self.pairs = pairs
        self.workers = workers
        self.server_cpus = server_cpus
        self.bench_cpus = bench_cpus
        # the same priority for server and generator on both paths
        self.prio = ['nice', '-n', str(nice)] if nice else []
        self.keep = keep
        self.tag = str(os.getpid())
        self.dir = tempfile.mkdtemp(prefix='stz-memif-')
        self.data = os.path.join(self.dir, 'data')
        self.sock = os.path.join(self.dir, 'memif.sock')
        self.srv_prefix = 'stzmemif-srv-' + self.tag
        self.cli_prefix = 'stzmemif-cli-' + self.tag
        self.proc = None
        self.transport = None
        self.logf = None
        self.commands = []
        os.makedirs(self.data, mode=0o700)

    # ---- accounts -----------------------------------------------------------

    def provision(self, users, parallel=8, timeout=300):
        """bench0..bench<users-1>@localhost on the store, server stopped."""
        t0 = time.monotonic()
        todo = list(range(users))
        running = []
        failed = []
        while todo or running:
            while todo and len(running) < parallel:
                i = todo.pop()
                p = subprocess.Popen([self.stanzactl, '-d', self.data, 'account', 'add',
                                      '%s%d@%s' % (USER_PREFIX, i, DOMAIN)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
                p.stdin.write(PASSWORD + '\n')
                p.stdin.close()
                running.append((i, p))
            i, p = running.pop(0)
            try:
                out = p.stdout.read()
                rc = p.wait(max(1, timeout - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
                raise RuntimeError('stanzactl account add timed out')
            finally:
                p.stdout.close()
            if rc != 0 and 'exists' not in out:
                failed.append('%d: %s' % (i, out.strip()))
        if failed:
            raise RuntimeError('account add failed: ' + '; '.join(failed[:3]))
        log('%d accounts in %.1f s' % (users, time.monotonic() - t0))

    # ---- the server -----------------------------------------------------------

    def config(self, transport):
        common = '''workers = %d;
pin_workers = false;
data_dir = "%s";
log_level = "info";
auth = { allow_plaintext = true; };
''' % (self.workers, self.data)
        if transport == 'kernel':
            return common + '''transport = "kernel";
listeners = ( { address = "127.0.0.1:%d"; tls = "starttls"; } );
''' % KERNEL_PORT
        return common + '''transport = "dpdk";
listeners = ( { address = "%s:%d"; tls = "starttls"; } );
dpdk = {
  eal = "%s --file-prefix %s --vdev net_memif0,role=server,id=0,socket=%s,socket-abstract=no";
  port = "net_memif0";
  address = "%s/%d";
  idle_sleep_us = 100;
};
''' % (SERVER_IP, PORT, EAL_BASE, self.srv_prefix, self.sock, SERVER_IP, PREFIX_LEN)

    def start(self, transport, timeout=30):
        assert self.proc is None
        conf = os.path.join(self.dir, 'stanzad-%s.conf' % transport)
        with open(conf, 'w') as f:
            f.write(self.config(transport))
        self.logpath = os.path.join(self.dir, 'stanzad-%s.log' % transport)
        self.logf = open(self.logpath, 'a')
        self.logf.write('---- start\n')
        self.logf.flush()
        cmd = self.prio + ['taskset', '-c', self.server_cpus, self.stanzad, '-c', conf]
        self.commands.append(' '.join(cmd))
        # nice and taskset exec: the PID is stanzad's.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.transport = transport
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise RuntimeError('stanzad (%s) exited with %d:\n%s' % (transport, rc, self.log_tail()))
            if 'started:' in self.log_text().rsplit('---- start', 1)[-1]:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError('stanzad (%s) did not start:\n%s' % (transport, self.log_tail()))

    def stop(self, timeout=20):
        """SIGTERM to the stanzad we started; its exit code (None: killed)."""
        if self.proc is None:
            return None
        p, self.proc = self.proc, None
        rc = None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        else:
            rc = p.returncode
        if self.logf:
            self.logf.close()
            self.logf = None
        if self.transport == 'dpdk':
            shutil.rmtree('/var/run/dpdk/' + self.srv_prefix, ignore_errors=True)
        return rc

    def log_text(self):
        try:
            with open(self.logpath, errors='replace') as f:
                return f.read()
        except (OSError, AttributeError):
            return ''

    def log_tail(self, n=30):
        return '\n'.join(self.log_text().splitlines()[-n:])

    def dpdk_counters(self):
        """The transport's counters stanzad logged at its last stop."""
        for line in reversed(self.log_text().splitlines()):
            if 'dpdk: rx_packets ' in line:
                f = line.split('dpdk: ', 1)[1].split()
                return {f[i]: int(f[i + 1]) for i in range(0, len(f) - 1, 2) if f[i + 1].isdigit()}
        return None

    # ---- the load ---------------------------------------------------------------

    def bench_cmd(self, transport, tls, duration, warmup, window, body, threads, out_json):
        cmd = self.prio + ['taskset', '-c', self.bench_cpus, self.bench, '--scenario', 'pairs',
               '--pairs', str(self.pairs), '--window', str(window), '--body', str(body),
               '--duration', str(duration), '--warmup', str(warmup), '--threads', str(threads),
               '--tls', tls, '--mech', 'scram-sha-1', '--domain', DOMAIN,
               '--user-prefix', USER_PREFIX, '--password', PASSWORD,
               '--label', 'stanzad-' + transport, '--json', out_json, '--quiet']
        if self.proc is not None:
            cmd += ['--server-pid', str(self.proc.pid)]
        if transport == 'dpdk':
            cmd += ['--host', SERVER_IP, '--port', str(PORT), '--transport', 'dpdk',
                    '--eal', '%s --file-prefix %s --vdev net_memif0,role=client,id=0,socket=%s,socket-abstract=no'
                    % (EAL_BASE, self.cli_prefix, self.sock),
                    '--dpdk-port', 'net_memif0', '--dpdk-address', '%s/%d' % (CLIENT_IP, PREFIX_LEN)]
        else:
            cmd += ['--host', '127.0.0.1', '--port', str(KERNEL_PORT)]
        return cmd

    def run_bench(self, transport, tls, duration=10, warmup=2, window=16, body=100, threads=1):
        """One stanza-bench pairs run against the running stanzad; its
        JSON report as a dict, with 'exit' and 'text' added."""
        out_json = os.path.join(self.dir, 'bench-%s-%s-%d.json' % (transport, tls, len(self.commands)))
        cmd = self.bench_cmd(transport, tls, duration, warmup, window, body, threads, out_json)
        self.commands.append(' '.join("'%s'" % c if ' ' in c else c for c in cmd))
        # ramp-up (at most 30 s in stanza-bench), warm-up, measurement, drain (5 s)
        limit = 30 + warmup + duration + 5 + 30
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=limit)
        finally:
            if transport == 'dpdk':
                shutil.rmtree('/var/run/dpdk/' + self.cli_prefix, ignore_errors=True)
        rep = {}
        if os.path.exists(out_json):
            with open(out_json) as f:
                rep = json.load(f)
        rep['exit'] = p.returncode
        rep['text'] = p.stdout
        rep['transport'] = transport
        return rep

    def cleanup(self):
        self.stop()
        for pfx in (self.srv_prefix, self.cli_prefix):
            shutil.rmtree('/var/run/dpdk/' + pfx, ignore_errors=True)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_pairs(rig, transports, tlss, rounds, **bench):
    """For each round, each transport: start stanzad, every TLS mode, stop.
    Returns the reports in run order."""
    runs = []
    for r in range(rounds):
        for transport in transports:
            rig.start(transport)
            mine = []
            try:
                for tls in tlss:
                    rep = rig.run_bench(transport, tls, **bench)
                    rep['round'] = r + 1
                    mine.append(rep)
                    log('round %d %-6s %-8s %s' % (r + 1, transport, tls, row_brief(rep)))
            finally:
                rc = rig.stop()
                runs += mine
            if transport == 'dpdk':
                # the server's counters over all of this server's runs
                c = rig.dpdk_counters()
                for rep in mine:
                    rep['server_dpdk'] = c
            if rc not in (0, None):
                log('stanzad (%s) exited with %s' % (transport, rc))
    return runs


def row_brief(rep):
    if 'rate_recv' not in rep:
        return 'no report (exit %s): %s' % (rep.get('exit'), rep.get('text', '').strip()[-300:])
    lat = rep['latency_ns']
    return 'recv %9.0f/s  p50 %.3f ms  p99 %.3f ms  server %.2f cores  errors %d' % (
        rep['rate_recv'], lat['p50'] / 1e6, lat['p99'] / 1e6, rep['server']['cores'] or 0, rep['errors_total'])


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return None
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def summarize(runs, transports, tlss):
    """Median over rounds per (transport, tls), and DPDK / kernel ratios."""
    rows = {}
    for t in transports:
        for tls in tlss:
            rs = [r for r in runs if r['transport'] == t and r.get('opts', {}).get('tls') == tls]
            if not rs:
                continue
            rows[(t, tls)] = {
                'transport': t, 'tls': tls, 'runs': len(rs),
                'recv_per_s': median([r['rate_recv'] for r in rs]),
                'p50_ms': median([r['latency_ns']['p50'] / 1e6 for r in rs]),
                'p99_ms': median([r['latency_ns']['p99'] / 1e6 for r in rs]),
                'p999_ms': median([r['latency_ns']['p999'] / 1e6 for r in rs]),
                'server_cores': median([r['server']['cores'] or 0 for r in rs]),
                'bench_cores': median([r['self']['cores'] or 0 for r in rs]),
                # CPU per message, which a busy shared machine disturbs less
                # than the rate (a polling server's CPU includes its spinning)
                'per_server_core': median([r['rate_recv'] / r['server']['cores']
                                           for r in rs if r['server']['cores']]),
                'per_bench_core': median([r['rate_recv'] / r['self']['cores'] for r in rs if r['self']['cores']]),
                'errors': sum(r['errors_total'] for r in rs),
                'generator_bound': any(r.get('generator_bound') for r in rs),
            }
    ratios = {}
    for tls in tlss:
        a, b = rows.get(('dpdk', tls)), rows.get(('kernel', tls))
        if a and b and b['recv_per_s'] and a['p50_ms'] and a['p99_ms']:
            ratios[tls] = {'recv_per_s': a['recv_per_s'] / b['recv_per_s'],
                           'per_server_core': (a['per_server_core'] / b['per_server_core']
                                               if a['per_server_core'] and b['per_server_core'] else None),
                           'per_bench_core': (a['per_bench_core'] / b['per_bench_core']
                                              if a['per_bench_core'] and b['per_bench_core'] else None),
                           'p50': a['p50_ms'] / b['p50_ms'] if b['p50_ms'] else None,
                           'p99': a['p99_ms'] / b['p99_ms'] if b['p99_ms'] else None}
    return list(rows.values()), ratios


def print_summary(rows, ratios, out=sys.stdout):
    print('| path | TLS | runs | received msg/s | p50 ms | p99 ms | p99.9 ms | server cores | bench cores '
          '| msg/s per server core | msg/s per bench core | errors |', file=out)
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|', file=out)
    fmt = lambda v: '{:,.0f}'.format(v) if v else '-'
    for r in rows:
        name = 'DPDK memif' if r['transport'] == 'dpdk' else 'kernel loopback'
        print('| %s | %s | %d | %s | %.3f | %.3f | %.3f | %.2f | %.2f | %s | %s | %d |' % (
            name, r['tls'], r['runs'], fmt(r['recv_per_s']), r['p50_ms'], r['p99_ms'],
            r['p999_ms'], r['server_cores'], r['bench_cores'], fmt(r['per_server_core']),
            fmt(r['per_bench_core']), r['errors']), file=out)
    for tls, q in ratios.items():
        print('ratio DPDK / kernel, %s: received msg/s %.2fx, per server core %.2fx, per bench core %.2fx, '
              'p50 %.2fx, p99 %.2fx' % (tls, q['recv_per_s'], q['per_server_core'] or 0, q['per_bench_core'] or 0,
                                        q['p50'] or 0, q['p99'] or 0), file=out)


def machine():
    cpu = '?'
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return {'cpu': cpu, 'cpus': os.cpu_count(), 'kernel': platform.release(),
            'load_avg': os.getloadavg(), 'date': datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M UTC')}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--build', default=os.path.join(ROOT, 'build'), help='meson build directory (default: build)')
    p.add_argument('--pairs', type=int, default=100)
    p.add_argument('--window', type=int, default=16)
    p.add_argument('--body', type=int, default=100)
    p.add_argument('--duration', type=float, default=10)
    p.add_argument('--warmup', type=float, default=2)
    p.add_argument('--rounds', type=int, default=1, help='alternate DPDK and kernel this many times')
    p.add_argument('--tls', default='none,starttls', help='comma-separated: none, starttls')
    p.add_argument('--transports', default='dpdk,kernel', help='comma-separated: dpdk, kernel')
    p.add_argument('--workers', type=int, default=1,
                   help="stanzad's workers and stanza-bench's threads (equal: memif pairs queue i with queue i)")
    p.add_argument('--server-cpus', default='0', help="stanzad's CPUs, taskset syntax (0)")
    p.add_argument('--bench-cpus', default='1', help="stanza-bench's CPUs (1)")
    p.add_argument('--nice', type=int, default=-5,
                   help='niceness of stanzad and stanza-bench on both paths (default -5, as compare.py; 0: leave)')
    p.add_argument('--json', help='write every report and the summary there')
    p.add_argument('--keep', action='store_true', help='keep the temporary directory (logs, configs)')
    a = p.parse_args()
    tlss = [t for t in a.tls.split(',') if t]
    transports = [t for t in a.transports.split(',') if t]
    if any(t not in ('none', 'starttls') for t in tlss) or any(t not in ('dpdk', 'kernel') for t in transports):
        p.error('--tls takes none,starttls; --transports dpdk,kernel')
    if a.rounds < 1 or a.pairs < 1 or a.workers < 1:
        p.error('--rounds, --pairs and --workers must be at least 1')

    why = missing_prerequisites(a.build)
    if why and ('dpdk' in transports or 'not built' in why or 'root' in why):
        log('cannot run: ' + why)
        return 2
    rig = Rig(a.build, a.pairs, workers=a.workers, server_cpus=a.server_cpus, bench_cpus=a.bench_cpus,
              nice=a.nice, keep=a.keep)
    started = machine()
    try:
        rig.provision(2 * a.pairs)
        runs = run_pairs(rig, transports, tlss, a.rounds, duration=a.duration, warmup=a.warmup,
                         window=a.window, body=a.body, threads=a.workers)
    finally:
        rig.cleanup()
        if a.keep:
            log('kept ' + rig.dir)
    rows, ratios = summarize(runs, transports, tlss)
    m = machine()
    print('%s, %d CPUs, kernel %s; load average %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end' % (
        m['cpu'], m['cpus'], m['kernel'], *started['load_avg'], *m['load_avg']))
    print('%d pairs, window %d, %d-byte bodies, %g s measured after %g s warm-up, %d round(s); '
          'stanzad on CPU %s (%d worker(s)), stanza-bench on CPU %s (%d thread(s)), both at niceness %d; '
          'medians over rounds\n' % (a.pairs, a.window, a.body, a.duration, a.warmup, a.rounds, a.server_cpus,
                                     a.workers, a.bench_cpus, a.workers, a.nice))
    print_summary(rows, ratios)
    bad = [r for r in runs if r.get('exit') not in (0,) or 'rate_recv' not in r]
    for r in bad:
        log('run %s/%s exit %s: %s' % (r['transport'], r.get('opts', {}).get('tls'), r.get('exit'),
                                       r.get('text', '').strip()[-400:]))
    if a.json:
        for r in runs:
            r.pop('ticks', None)
        with open(a.json, 'w') as f:
            json.dump({'schema': 'stanza-memif/1', 'machine': m, 'started': started,
                       'argv': sys.argv, 'commands': rig.commands, 'summary': rows,
                       'ratios': ratios, 'runs': runs}, f, indent=1)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())

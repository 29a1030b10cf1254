#!/usr/bin/env python3
"""Side by side: the same stanza-bench scenarios, in one run, against
stanzad, Prosody, ejabberd and the speed-of-light forwarder.

    python3 bench/compare.py                                  # every target; pairs, login, idle
    python3 bench/compare.py --targets stanzad,prosody,sol --scenarios pairs \\
        --cores 1 --duration 20 --pairs 200 --window 16

For each target in turn: start it with bench/peers/<name>/start.sh in a
temporary directory on free loopback ports, create the accounts with
provision.sh, run build/bench/harness/stanza-bench once per scenario
(--server-pid, --json and --series into the output directory), stop it with
stop.sh. The speed-of-light target (build/bench/sol/sol-forwarder: the same
bytes over the same sockets, no XML) runs the 'raw' scenario in place of
'pairs' and has no row in the other scenarios. 'halfpeak' runs pairs open
loop (stanza-bench --msg-rate) at half the rate the same target reached in
its 'pairs' run of this invocation (so list pairs before it): latency at
equal relative load, the issue's "p99 at half of peak". Then it writes
OUT/summary.md (one table per scenario, the ratios stanzad / prosody,
stanzad / ejabberd and stanzad / speed of light, the machine, the date and
this exact command) and, when gnuplot is installed, the plots
(throughput over time and the latency distribution per scenario) with the
gnuplot script that draws them (OUT/plots.gp).

Fairness, as far as one machine allows:
  * every server gets the same CPUs: 0..N-1 for --cores N (stanzad pins
    worker i to CPU i, so these are the CPUs its workers use anyway); the
    load generator gets the others (--bench-cores to choose), and shares
    all of them only when there are no others, which the summary says;
  * the same TLS mode for every target (default starttls, the only mode
    every server offers for authentication). With --tls none, stanzad is
    started with --allow-plaintext-auth (SCRAM without TLS, off by
    default) so that every server runs plaintext; the forwarder never
    uses TLS;
  * the servers and the load generator at the same raised priority,
    nice -n -5 by default (--nice 0 to leave it). Real-time scheduling
    (chrt) is deliberately not used: busy worker threads under SCHED_FIFO
    can starve the load generator's timers and the rest of the machine.
    The niceness and CPU list each server actually got are read back from
    /proc and printed in the summary.

Standard library only. Missing targets (no package, no binary, no peer
script) are skipped with a note in the output, never fatal. Every wait is
bounded; only processes this script started are ever signalled.
"""

import argparse
import datetime
import json
import os
import platform
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALL_TARGETS = ['stanzad', 'prosody', 'ejabberd', 'sol']
ALL_SCENARIOS = ['pairs', 'halfpeak', 'fanout', 'login', 'idle', 'mixed']
PEERS = ['stanzad', 'prosody', 'ejabberd']
# Scenarios whose main figure is delivered stanzas per second.
STANZA_SCENARIOS = ('pairs', 'halfpeak', 'fanout', 'mixed')
# Scenarios the speed-of-light forwarder has a counterpart of (raw).
SOL_SCENARIOS = ('pairs', 'halfpeak')

TITLES = {
    'stanzad': 'stanzad',
    'prosody': 'Prosody',
    'ejabberd': 'ejabberd',
    'sol': 'speed of light',
}


def note(msg):
    print('compare: ' + msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Arguments


def csv_list(allowed):
    def parse(s):
        items = [x.strip() for x in s.split(',') if x.strip()]
        bad = [x for x in items if x not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                'expected a comma-separated subset of %s' % ','.join(allowed))
        seen = []
        for x in items:
            if x not in seen:
                seen.append(x)
        return seen
    return parse


def parse_cpu_list(s):
    """'0-2,5' -> [0, 1, 2, 5] (taskset's list syntax)."""
    cpus = []
    for part in s.split(','):
        part = part.strip()
        if not part:
            continue
        if '-' in part:
            a, b = part.split('-', 1)
            a, b = int(a), int(b)
            if b < a or b - a > 4096:
                raise argparse.ArgumentTypeError('bad CPU range %r' % part)
            cpus.extend(range(a, b + 1))
        else:
            cpus.append(int(part))
    if not cpus:
        raise argparse.ArgumentTypeError('empty CPU list')
    return sorted(set(cpus))


def cpu_list_str(cpus):
    return ','.join(str(c) for c in cpus)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog='compare.py',
        description='Run the same stanza-bench scenarios against stanzad, '
                    'Prosody, ejabberd and the speed-of-light forwarder; '
                    'write a side-by-side summary.md with ratios and plots.')
    p.add_argument('--targets', type=csv_list(ALL_TARGETS), default=list(ALL_TARGETS),
                   help='comma-separated, from %s (default: all)' % ','.join(ALL_TARGETS))
    p.add_argument('--scenarios', type=csv_list(ALL_SCENARIOS),
                   default=['pairs', 'login', 'idle'],
                   help='comma-separated, from %s (default: pairs,login,idle); '
                        'the sol target runs "raw" in place of pairs'
                        % ','.join(ALL_SCENARIOS))
    p.add_argument('--cores', type=int, default=1,
                   help='CPUs for every server: 0..N-1 (default 1)')
    p.add_argument('--bench-cores', type=parse_cpu_list, default=None,
                   help="the load generator's CPUs, taskset syntax (default: the others)")
    p.add_argument('--threads', type=int, default=None,
                   help='stanza-bench load threads (default: one per load CPU)')
    p.add_argument('--tls', choices=['none', 'starttls', 'direct'], default='starttls',
                   help='TLS mode for every target (default starttls)')
    p.add_argument('--mech', choices=['plain', 'scram-sha-1', 'scram-sha-256'], default='scram-sha-1',
                   help='SASL mechanism for every target (default scram-sha-1: Prosody stores '
                        'SCRAM-SHA-1 keys only, so it is the SCRAM every peer offers)')
    p.add_argument('--duration', type=float, default=10.0, help='seconds measured per run (default 10)')
    p.add_argument('--warmup', type=float, default=2.0, help='seconds before measuring (default 2)')
    p.add_argument('--pairs', type=int, default=100, help='pairs: chatting pairs (default 100)')
    p.add_argument('--window', type=int, default=8, help='pairs: messages in flight per direction (default 8)')
    p.add_argument('--body', type=int, default=100, help='pairs/mixed: body bytes (default 100)')
    p.add_argument('--contacts', type=int, default=20, help='fanout: roster size (default 20)')
    p.add_argument('--logins', type=int, default=1000, help='login: total logins (default 1000)')
    p.add_argument('--inflight', type=int, default=50, help='login: concurrent logins (default 50)')
    p.add_argument('--sessions', type=int, default=1000, help='idle: sessions held (default 1000)')
    p.add_argument('--rate', type=float, default=None, help="fanout (presence changes) and mixed (stanzas): per user per second (default: stanza-bench's)")
    p.add_argument('--accounts', type=int, default=None,
                   help='accounts to provision per server (default: what the scenarios need)')
    p.add_argument('--domain', default='localhost', help='XMPP domain of every server (default localhost)')
    p.add_argument('--user-prefix', default='bench', help='account names PREFIX0..N-1 (default bench)')
    p.add_argument('--password', default='bench-pass', help='password of every account (printable ASCII)')
    p.add_argument('--nice', type=int, default=-5,
                   help='niceness of servers and load generator (default -5; 0: leave as is)')
    p.add_argument('--out', default=None, help='output directory (default bench/results/<date>)')
    p.add_argument('--build', default=os.path.join(ROOT, 'build'),
                   help='build directory with bench/harness/stanza-bench, bench/sol/sol-forwarder '
                        'and cmd/stanzad (default: build)')
    p.add_argument('--bench', default=None, help='stanza-bench path (default: BUILD/bench/harness/stanza-bench)')
    p.add_argument('--sol', default=None, help='sol-forwarder path (default: BUILD/bench/sol/sol-forwarder)')
    p.add_argument('--peers', default=os.path.join(ROOT, 'bench', 'peers'),
                   help='directory of the <target>/{start,stop,provision}.sh scripts')
    p.add_argument('--run-timeout', type=float, default=None,
                   help='seconds before one stanza-bench run is abandoned '
                        '(default: 4 x (warmup + duration) + 120)')
    p.add_argument('--keep', action='store_true', help='keep the servers\' temporary directories')
    a = p.parse_args(argv)
    if a.cores < 1:
        p.error('--cores must be at least 1')
    for k in ('pairs', 'window', 'body', 'contacts', 'logins', 'inflight', 'sessions'):
        if getattr(a, k) < 1:
            p.error('--%s must be at least 1' % k)
    if a.duration <= 0 or a.warmup < 0:
        p.error('--duration must be positive and --warmup not negative')
    if a.nice < -20 or a.nice > 19:
        p.error('--nice must be in -20..19')
    return a


# --------------------------------------------------------------------------
# Machine, priority, CPUs


def run_quiet(cmd, timeout=10):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           timeout=timeout, text=True)
        return r.stdout if r.returncode == 0 else ''
    except (OSError, subprocess.SubprocessError):
        return ''


def machine_info():
    info = {}
    out = run_quiet(['lscpu'])
    for line in out.splitlines():
        k, _, v = line.partition(':')
        info[k.strip()] = v.strip()
    osname = ''
    try:
        with open('/etc/os-release') as f:
            for line in f:
                if line.startswith('PRETTY_NAME='):
                    osname = line.split('=', 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        'model': info.get('Model name', platform.processor() or '?'),
        'cpus': os.cpu_count() or 0,
        'threads_per_core': info.get('Thread(s) per core', '?'),
        'hypervisor': info.get('Hypervisor vendor', ''),
        'kernel': platform.release(),
        'os': osname,
        'python': platform.python_version(),
    }


def online_cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def priority_prefix(n):
    """The command prefix that runs a program at niceness +n relative to
    ours, and a sentence for the summary."""
    if n == 0:
        return [], 'default priority (--nice 0)'
    cur = os.nice(0)
    out = run_quiet(['nice', '-n', str(n), 'nice']).strip()
    want = max(-20, min(19, cur + n))
    if out.lstrip('-').isdigit() and int(out) == want:
        return (['nice', '-n', str(n)],
                'servers and load generator at niceness %d (nice -n %d)' % (want, n))
    return [], ('could not change the niceness by %d (needs root or CAP_SYS_NICE): '
                'everything at the default priority' % n)


def proc_status(pid):
    """(niceness, Cpus_allowed_list) of a running process, or (None, None)."""
    nice = cpus = None
    try:
        with open('/proc/%d/stat' % pid) as f:
            stat = f.read()
        fields = stat[stat.rindex(')') + 2:].split()
        nice = int(fields[16])
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('Cpus_allowed_list:'):
                    cpus = line.split(':', 1)[1].strip()
    except (OSError, ValueError, IndexError):
        pass
    return nice, cpus


def pid_alive(pid):
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open('/proc/%d/stat' % pid) as f:
            stat = f.read()
        return stat[stat.rindex(')') + 2:].split()[0] != 'Z'
    except (OSError, ValueError, IndexError):
        return True


def free_port_pair():
    """A loopback port P with P+1 free too (stanzad listens on both)."""
    for _ in range(64):
        s = socket.socket()
        try:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
            if port >= 65535:
                continue
            t = socket.socket()
            try:
                t.bind(('127.0.0.1', port + 1))
            except OSError:
                continue
            finally:
                t.close()
            return port
        finally:
            s.close()
    raise RuntimeError('no pair of free loopback ports found in 64 tries')


def wait_port(port, deadline):
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


# --------------------------------------------------------------------------
# Targets


class Skip(Exception):
    """A target that cannot run here; the message says why."""


def which_any(names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
        for d in ('/usr/sbin', '/usr/bin', '/opt/ejabberd/bin'):
            c = os.path.join(d, n)
            if os.access(c, os.X_OK):
                return c
    return None


def peer_missing(name, a):
    """Why a peer target cannot run, or None."""
    d = os.path.join(a.peers, name)
    for s in ('start.sh', 'stop.sh', 'provision.sh'):
        if not os.path.isfile(os.path.join(d, s)):
            return 'no %s (bench/peers/%s/ not written yet?)' % (os.path.join(d, s), name)
    if name == 'stanzad':
        exe = os.path.join(a.build, 'cmd', 'stanzad')
        if not os.access(exe, os.X_OK):
            return 'no %s (build it: ninja -C %s)' % (exe, a.build)
    elif name == 'prosody':
        if not which_any(['prosody']):
            return 'Prosody is not installed (Debian package prosody)'
    elif name == 'ejabberd':
        if not which_any(['ejabberdctl']):
            return 'ejabberd is not installed (Debian package ejabberd)'
    return None


def run_script(cmd, log, timeout, env=None):
    """Run a peer script; stdout returned, both streams appended to log."""
    what = next((os.path.basename(c) for c in cmd if c.endswith('.sh')), cmd[0])
    with open(log, 'a') as lf:
        lf.write('$ %s\n' % shlex.join(cmd))
        lf.flush()
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=lf, text=True,
                               timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b'').decode(errors='replace')
            lf.write(out)
            raise Skip('%s did not finish in %ds' % (what, timeout))
        lf.write(r.stdout)
    return r.returncode, r.stdout


class PeerServer:
    """A server started with bench/peers/<name>/start.sh."""

    def __init__(self, name, a, ctx):
        self.name, self.a, self.ctx = name, a, ctx
        self.dir = tempfile.mkdtemp(prefix='compare-%s-' % name)
        self.log = os.path.join(ctx.out, '%s-server.log' % name)
        self.pid = None
        self.port = None
        self.started = False

    def script(self, s):
        return os.path.join(self.a.peers, self.name, s)

    def start(self):
        self.port = free_port_pair()
        # start.sh pins the server to CPUs 0..CORES-1 itself (bench/peers/common.sh);
        # the niceness is inherited. Both are read back from /proc afterwards.
        cmd = self.ctx.prio + ['bash', self.script('start.sh'), self.dir, str(self.port),
                               self.a.domain, str(self.a.cores)]
        env = dict(os.environ)
        env['PEER_STANZAD_BUILD'] = self.a.build     # the stanzad peer's binaries
        if self.a.tls == 'none':
            env['PEER_PLAINTEXT'] = '1'              # stanzad: SCRAM without TLS, as the peers
        self.env = env
        rc, out = run_script(cmd, self.log, 180, env)
        self.started = True     # stop.sh runs even when start.sh half-failed
        pids = [int(x) for x in re.findall(r'^\s*(\d+)\s*$', out, re.M)]
        if rc != 0 or not pids:
            raise Skip('start.sh failed (exit %d%s); see %s'
                       % (rc, '' if pids else ', no PID printed', os.path.basename(self.log)))
        self.pid = pids[-1]
        if not pid_alive(self.pid):
            raise Skip('start.sh printed PID %d, which is not running' % self.pid)
        if not wait_port(self.port, time.monotonic() + 30):
            raise Skip('nothing accepts on 127.0.0.1:%d 30 s after start.sh' % self.port)
        if self.a.tls == 'direct' and not wait_port(self.port + 1, time.monotonic() + 5):
            raise Skip('no direct TLS listener on 127.0.0.1:%d (PORT+1): this peer '
                       'does not offer --tls direct' % (self.port + 1))
        return self

    def bench_port(self, tls):
        # The peers' convention: PORT for STARTTLS (or plaintext), PORT+1 direct TLS.
        return self.port + 1 if tls == 'direct' else self.port

    def provision(self, n):
        cmd = ['bash', self.script('provision.sh'), self.dir, self.a.user_prefix, str(n),
               self.a.password, self.a.domain]
        t0 = time.monotonic()
        # Generous: some servers create accounts one process at a time.
        rc, _ = run_script(cmd, self.log, 600 + n // 5, self.env)
        if rc != 0:
            raise Skip('provision.sh failed (exit %d); see %s' % (rc, os.path.basename(self.log)))
        return time.monotonic() - t0

    def stop(self):
        if not self.started:
            return
        try:
            run_script(['bash', self.script('stop.sh'), self.dir], self.log, 120, self.env)
        except Skip as e:
            note('%s: %s' % (self.name, e))
        end = time.monotonic() + 20
        while self.pid and pid_alive(self.pid) and time.monotonic() < end:
            time.sleep(0.1)
        if self.pid and pid_alive(self.pid):
            # The PID start.sh gave us: the server we started. Bounded wait, then SIGKILL.
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                note('%s: PID %d still running after stop.sh; sending %s'
                     % (self.name, self.pid, sig.name))
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    break
                end = time.monotonic() + wait
                while pid_alive(self.pid) and time.monotonic() < end:
                    time.sleep(0.1)
                if not pid_alive(self.pid):
                    break
        if not self.a.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class SolServer:
    """The speed-of-light forwarder: same bytes, same sockets, no XML."""

    name = 'sol'

    def __init__(self, a, ctx):
        self.a, self.ctx = a, ctx
        self.log = os.path.join(ctx.out, 'sol-server.log')
        self.proc = None
        self.pid = None
        self.port = None

    def start(self):
        exe = self.ctx.sol
        port = free_port_pair()
        cmd = (self.ctx.prio + ['taskset', '-c', cpu_list_str(self.ctx.server_cpus), exe,
                                '--listen', '127.0.0.1:%d' % port,
                                '--threads', str(self.a.cores)])
        self.logf = open(self.log, 'a')
        self.logf.write('$ %s\n' % shlex.join(cmd))
        self.logf.flush()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.logf,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        # It prints its port, then "ready". Bounded: 30 s, 100 lines.
        buf = b''
        printed = None
        deadline = time.monotonic() + 30
        ready = False
        fd = self.proc.stdout.fileno()
        for _ in range(1000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            self.logf.write(chunk.decode(errors='replace'))
            lines = buf.decode(errors='replace').splitlines()
            for line in lines:
                m = re.fullmatch(r'\s*(?:port\s+)?(\d{1,5})\s*', line)
                if printed is None and m:
                    printed = int(m.group(1))
                if line.strip().endswith('ready'):
                    ready = True
            if ready:
                break
        if not ready:
            raise Skip('sol-forwarder did not print "ready" within 30 s; see sol-server.log')
        self.port = printed or port
        # Whatever it prints later goes to the log, so a full pipe never blocks it.
        self.drain = threading.Thread(target=self._drain, args=(fd,), daemon=True)
        self.drain.start()
        return self

    def _drain(self, fd):
        for _ in range(10 ** 9):
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            try:
                self.logf.write(chunk.decode(errors='replace'))
                self.logf.flush()
            except ValueError:      # closed by stop()
                return

    def bench_port(self, tls):
        return self.port

    def provision(self, n):
        return 0.0

    def stop(self):
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, 'drain', None):
            self.drain.join(5)      # EOF once the forwarder has exited
        self.proc.stdout.close()
        self.logf.close()


# --------------------------------------------------------------------------
# Running stanza-bench


def accounts_needed(a, scenarios):
    if a.accounts:
        return a.accounts
    # What stanza-bench takes when --users is 0 (bench/harness/scenarios.c).
    need = {
        'pairs': 2 * a.pairs,
        'halfpeak': 2 * a.pairs,
        'fanout': 10 * a.contacts,
        'login': max(a.inflight, 1),
        'idle': a.sessions,
        'mixed': 1000,
    }
    return max([need[s] for s in scenarios] + [2])


def bench_cmd(a, ctx, target, server, scenario, tls, files, msg_rate=None):
    sc = 'raw' if target == 'sol' else 'pairs' if scenario == 'halfpeak' else scenario
    cmd = ctx.prio + ['taskset', '-c', cpu_list_str(ctx.bench_cpus), ctx.bench,
                      '--scenario', sc,
                      '--host', '127.0.0.1',
                      '--port', str(server.bench_port(tls)),
                      '--domain', a.domain,
                      '--tls', tls,
                      '--duration', '%g' % a.duration,
                      '--warmup', '%g' % a.warmup,
                      '--threads', str(ctx.threads),
                      '--user-prefix', a.user_prefix,
                      '--password', a.password,
                      '--server-pid', str(server.pid),
                      '--label', target,
                      '--json', files['json'],
                      '--series', files['series'],
                      '--quiet']
    if target != 'sol':
        cmd += ['--mech', a.mech]
    if a.accounts:
        cmd += ['--users', str(a.accounts)]
    if sc in ('pairs', 'raw') and msg_rate:
        # Open loop: the window only caps what may be in flight, well
        # above what a server keeping up at half its peak needs.
        cmd += ['--pairs', str(a.pairs), '--window', str(8 * a.window), '--body', str(a.body),
                '--msg-rate', '%d' % msg_rate]
    elif sc in ('pairs', 'raw'):
        cmd += ['--pairs', str(a.pairs), '--window', str(a.window), '--body', str(a.body)]
    if sc == 'mixed':
        cmd += ['--body', str(a.body)]
    if sc == 'fanout':
        cmd += ['--contacts', str(a.contacts)]
    if sc == 'login':
        cmd += ['--logins', str(a.logins), '--inflight', str(a.inflight)]
    if sc == 'idle':
        cmd += ['--sessions', str(a.sessions)]
    if sc in ('mixed', 'fanout') and a.rate is not None:
        cmd += ['--rate', '%g' % a.rate]
    return cmd


def run_bench(a, ctx, target, server, scenario, tls, msg_rate=None):
    base = '%s-%s' % (target, scenario)
    files = {
        'json': os.path.join(ctx.out, base + '.json'),
        'series': os.path.join(ctx.out, base + '.series'),
        'log': os.path.join(ctx.out, base + '.log'),
    }
    for k in ('json', 'series'):
        if os.path.exists(files[k]):
            os.unlink(files[k])
    cmd = bench_cmd(a, ctx, target, server, scenario, tls, files, msg_rate)
    timeout = a.run_timeout or (4 * (a.warmup + a.duration) + 120)
    rec = {'cmd': cmd, 'files': files, 'tls': tls, 'rc': None, 'json': None, 'note': ''}
    note('%s %s: %s' % (target, scenario, shlex.join(cmd)))
    with open(files['log'], 'w') as lf:
        lf.write('$ %s\n' % shlex.join(cmd))
        lf.flush()
        p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rec['rc'] = p.wait(timeout)
        except subprocess.TimeoutExpired:
            # Our own child's process group (start_new_session): nothing else is in it.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
            rec['rc'] = 'timeout'
            rec['note'] = 'stanza-bench did not finish in %ds' % timeout
    try:
        with open(files['json']) as f:
            rec['json'] = json.load(f)
    except (OSError, ValueError) as e:
        if not rec['note']:
            rec['note'] = 'no JSON report (exit %s): %s' % (rec['rc'], e.__class__.__name__)
    if rec['rc'] not in (0, None) and rec['json'] is not None and not rec['note']:
        rec['note'] = 'stanza-bench exited %s' % rec['rc']
    if not server_alive(server):
        rec['note'] = (rec['note'] + '; ' if rec['note'] else '') + 'the server died during the run'
    return rec


def server_alive(server):
    return server.pid is not None and pid_alive(server.pid)


# --------------------------------------------------------------------------
# Reading results


def g(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return default
        d = d[k]
    return d


def lat_ms(j, q):
    v = g(j, 'latency_ns', q)
    return None if v is None else v / 1e6


def err_total(j):
    if isinstance(g(j, 'errors_total'), (int, float)):
        return g(j, 'errors_total')
    e = g(j, 'errors', default={})
    if not isinstance(e, dict):
        return None
    return sum(v for v in e.values() if isinstance(v, (int, float)))


def err_kinds(j):
    e = g(j, 'errors', default={})
    if not isinstance(e, dict):
        return ''
    return ', '.join('%s %d' % (k, v) for k, v in sorted(e.items())
                     if isinstance(v, (int, float)) and v)


def per_core(j, key):
    v, c = g(j, key), g(j, 'server', 'cores')
    if v is None or not c or c < 0.01:
        return None
    return v / c


# Per scenario: the columns of its table, as (header, function of the JSON,
# format, better) with better 'high', 'low' or None (no ratio).
def metrics(scenario):
    if scenario in STANZA_SCENARIOS:
        return [
            ('received msg/s', lambda j: g(j, 'rate_recv'), 'int', 'high'),
            ('sent msg/s', lambda j: g(j, 'rate_sent'), 'int', None),
            ('p50 ms', lambda j: lat_ms(j, 'p50'), 'ms', 'low'),
            ('p90 ms', lambda j: lat_ms(j, 'p90'), 'ms', None),
            ('p99 ms', lambda j: lat_ms(j, 'p99'), 'ms', 'low'),
            ('p99.9 ms', lambda j: lat_ms(j, 'p999'), 'ms', None),
            ('server cores', lambda j: g(j, 'server', 'cores'), 'cores', 'low'),
            ('msg/s per server core', lambda j: per_core(j, 'rate_recv'), 'int', 'high'),
            ('server RSS MiB', lambda j: kib_mib(g(j, 'server', 'rss_kib_end')), 'mib', 'low'),
        ]
    if scenario == 'login':
        return [
            ('logins', lambda j: g(j, 'logins'), 'int', None),
            ('logins/s', lambda j: g(j, 'logins_per_s'), 'int', 'high'),
            ('login p50 ms', lambda j: lat_ms(j, 'p50'), 'ms', 'low'),
            ('login p99 ms', lambda j: lat_ms(j, 'p99'), 'ms', 'low'),
            ('server cores', lambda j: g(j, 'server', 'cores'), 'cores', 'low'),
            ('logins/s per server core', lambda j: per_core(j, 'logins_per_s'), 'int', 'high'),
        ]
    if scenario == 'idle':
        return [
            ('sessions', lambda j: g(j, 'sessions'), 'int', None),
            ('server bytes/session', lambda j: g(j, 'server', 'bytes_per_session'), 'int', 'low'),
            ('server RSS idle MiB', lambda j: kib_mib(g(j, 'server', 'rss_kib_idle')), 'mib', None),
            ('server RSS end MiB', lambda j: kib_mib(g(j, 'server', 'rss_kib_end')), 'mib', 'low'),
            ('server cores', lambda j: g(j, 'server', 'cores'), 'cores', None),
        ]
    raise ValueError(scenario)


def kib_mib(v):
    return None if v is None else v / 1024.0


def fmt(v, kind):
    if v is None:
        return '–'
    if kind == 'int':
        return '{:,}'.format(int(round(v)))
    if kind == 'ms':
        return '%.3f' % v if v < 10 else '%.1f' % v
    if kind == 'cores':
        return '%.2f' % v
    if kind == 'mib':
        return '%.1f' % v
    return str(v)


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def fmt_ratio(r):
    if r is None:
        return '–'
    return '%.2fx' % r if r >= 0.1 else '%.3fx' % r


# --------------------------------------------------------------------------
# Summary and plots


def md_escape(s):
    return str(s).replace('|', '\\|').replace('\n', ' ')


def row_title(target, scenario):
    if target == 'sol':
        return 'speed of light (raw forwarder)'
    return TITLES[target]


def write_summary(a, ctx, results, plots, path):
    L = []
    w = L.append
    mi = ctx.machine
    w('# stanzad side by side')
    w('')
    w('Date: %s. Each target ran the same stanza-bench scenarios, one target at a '
      'time, in this one run (%s to %s UTC).'
      % (ctx.date, ctx.t_start.strftime('%H:%M:%S'), ctx.t_end.strftime('%H:%M:%S')))
    w('')
    w('## Machine and setup')
    w('')
    w('- CPU: %s, %d CPUs online (%s thread(s) per core)%s'
      % (mi['model'], mi['cpus'], mi['threads_per_core'],
         ', %s guest' % mi['hypervisor'] if mi['hypervisor'] else ''))
    w('- Kernel: Linux %s; %s; Python %s' % (mi['kernel'], mi['os'] or '?', mi['python']))
    w('- stanzad: %s' % ctx.git)
    w('- Load average (1, 5, 15 min): %s at the start, %s at the end'
      % (ctx.load0, ctx.load1))
    w('- Servers on CPU(s) %s (--cores %d); the load generator on CPU(s) %s, %d thread(s)%s'
      % (cpu_list_str(ctx.server_cpus), a.cores, cpu_list_str(ctx.bench_cpus), ctx.threads,
         '' if not ctx.shared_cpus else
         ' (**shared with the servers**: the machine has no other CPU, so the '
         'figures below are lower bounds and measure both sides)'))
    w('- Priority: %s' % ctx.prio_note)
    w('- TLS: %s for every target%s; SASL mechanism: %s'
      % (a.tls, ' except where the table says otherwise' if a.tls == 'none' else '', a.mech))
    w('- Sizes: %s' % ', '.join([
        'duration %gs' % a.duration, 'warm-up %gs' % a.warmup,
        'pairs %d' % a.pairs, 'window %d' % a.window, 'body %d bytes' % a.body,
        'contacts %d' % a.contacts, 'logins %d' % a.logins, 'inflight %d' % a.inflight,
        'sessions %d' % a.sessions] + (['rate %g/s' % a.rate] if a.rate is not None else [])))
    w('')
    w('Command (from %s):' % ctx.cwd)
    w('')
    w('```sh')
    w(ctx.command)
    w('```')
    w('')
    if ctx.target_notes:
        w('## Targets')
        w('')
        w('| target | state |')
        w('|---|---|')
        for t in a.targets:
            w('| %s | %s |' % (TITLES[t], md_escape(ctx.target_notes.get(t, ''))))
        w('')
    w('Ratios are stanzad\'s figure divided by the other target\'s: above 1x '
      'is more for stanzad, which is better for throughput and worse for '
      'latency, cores and memory (the "better" column says which way is good). '
      'A ratio is left out (–) where either side has no figure.')
    w('')
    for sc in a.scenarios:
        ms = metrics(sc)
        w('## %s' % sc)
        w('')
        if sc == 'halfpeak':
            w('Each target\'s pairs run again, open loop (stanza-bench '
              '`--msg-rate`): messages sent on a fixed schedule at half the '
              'rate that target received in its closed-loop pairs run above, '
              'each timed from when it was due, so the latency is at the same '
              'relative load for every target.')
            w('')
        if sc == 'pairs' and 'sol' in a.targets:
            w('The speed-of-light row is stanza-bench\'s `raw` scenario over '
              '`sol-forwarder`: the same message bytes over the same kind of '
              'sockets with the same window, no XML, no TLS.')
            w('')
        w('| target | TLS | ' + ' | '.join(m[0] for m in ms) + ' | errors | notes |')
        w('|---|---|' + '---:|' * len(ms) + '---:|---|')
        rows = [t for t in a.targets if t != 'sol' or sc in SOL_SCENARIOS]
        for t in rows:
            rec = results.get((t, sc))
            if rec is None:
                reason = ctx.target_notes.get(t, 'not run')
                w('| %s | – | ' % row_title(t, sc) + ' | '.join('–' for _ in ms)
                  + ' | – | %s |' % md_escape(reason))
                continue
            j = rec['json']
            notes = []
            if rec.get('tls_note'):
                notes.append(rec['tls_note'])
            if rec['note']:
                notes.append(rec['note'])
            if j is not None and g(j, 'generator_bound'):
                notes.append('generator-bound: these figures measure the load generator')
            if j is not None and err_kinds(j):
                notes.append(err_kinds(j))
            if t == 'prosody' and a.cores > 1:
                notes.append('Prosody runs one thread: it uses one of the %d CPUs' % a.cores)
            cells = [fmt(m[1](j), m[2]) if j is not None else '–' for m in ms]
            errs = err_total(j) if j is not None else None
            w('| %s | %s | %s | %s | %s |'
              % (row_title(t, sc), rec['tls'], ' | '.join(cells),
                 '–' if errs is None else '{:,}'.format(int(errs)), md_escape('; '.join(notes))))
        w('')
        # Ratios
        others = [t for t in rows if t != 'stanzad']
        sj = g(results.get(('stanzad', sc)) or {}, 'json')
        if 'stanzad' in rows and others and sj is None:
            w('No stanzad figures in this scenario: no ratios.')
            w('')
        elif 'stanzad' in rows and others:
            w('| metric | better | ' + ' | '.join('stanzad / %s' % TITLES[t] for t in others) + ' |')
            w('|---|---|' + '---:|' * len(others))
            for m in ms:
                if m[3] is None:
                    continue
                cells = []
                for t in others:
                    oj = g(results.get((t, sc)) or {}, 'json')
                    sv = m[1](sj) if sj is not None else None
                    ov = m[1](oj) if oj is not None else None
                    cells.append(fmt_ratio(ratio(sv, ov)))
                w('| %s | %s | %s |' % (m[0], 'higher' if m[3] == 'high' else 'lower',
                                        ' | '.join(cells)))
            w('')
        for kind, f in plots.get(sc, []):
            w('![%s, %s](%s)' % (sc, kind, f))
            w('')
    w('## Runs')
    w('')
    w('Per run: `<target>-<scenario>.json` (the stanza-bench report), '
      '`.series` (one line per second: t sent recv p50_ms p99_ms server_cores '
      'self_cores server_rss_kib), `.log` (its output); `<target>-server.log` '
      'has what the peer scripts printed; `plots.gp` redraws the plots '
      '(`cd %s && gnuplot plots.gp`).' % shlex.quote(display_path(ctx.out, ctx.cwd)))
    w('')
    for (t, sc), rec in sorted(results.items(), key=lambda kv: (a.targets.index(kv[0][0]),
                                                               a.scenarios.index(kv[0][1]))):
        w('- %s, %s (exit %s)%s:' % (TITLES[t], sc, rec['rc'],
                                     ', server PID %s at niceness %s on CPU(s) %s'
                                     % (rec.get('pid'), rec.get('srv_nice'), rec.get('srv_cpus'))
                                     if rec.get('pid') else ''))
        w('  `%s`' % shlex.join(rec['cmd']).replace('`', "'"))
    if ctx.provisioned:
        w('')
        for t, (n, secs) in ctx.provisioned.items():
            w('- %s: %d accounts provisioned in %.1f s' % (TITLES[t], n, secs))
    if ctx.plot_note:
        w('')
        w('Plots: %s' % ctx.plot_note)
    w('')
    with open(path, 'w') as f:
        f.write('\n'.join(L))


def display_path(p, cwd):
    r = os.path.relpath(p, cwd)
    return p if r.startswith('..') else r


def gp_str(s):
    return "'" + str(s).replace("'", "''") + "'"


def series_rows(path):
    """Number of data lines in a series file (gnuplot fails on empty files)."""
    n = 0
    try:
        with open(path) as f:
            for line in f:
                s = line.strip()
                if s and not s.startswith('#'):
                    n += 1
    except OSError:
        return 0
    return n


def make_plots(a, ctx, results):
    """Writes OUT/plots.gp and the .dat files it reads, runs gnuplot.
    Returns {scenario: [(kind, filename), ...]} for the images made."""
    gp = shutil.which('gnuplot')
    if not gp:
        ctx.plot_note = ('gnuplot is not installed (Debian package gnuplot-nox): '
                         'no plots. The .series and .json files are there to plot later.')
        return {}
    try:
        terms = subprocess.run([gp, '-e', 'set terminal'], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        terms = ''
    if 'pngcairo' in terms:
        term, ext = "pngcairo size 1000,560 font 'sans,10'", 'png'
    elif 'svg' in terms:
        term, ext = "svg size 1000,560 font 'sans,10'", 'svg'
    else:
        term, ext = 'png size 1000,560', 'png'
    S = ['# Drawn by bench/compare.py; run from this directory: gnuplot plots.gp',
         'set terminal %s' % term, 'set grid', 'set key outside right top vertical', '']
    made = {}
    for sc in a.scenarios:
        made[sc] = []
        rows = [t for t in a.targets if t != 'sol' or sc in SOL_SCENARIOS]
        have = [(t, results[(t, sc)]) for t in rows if (t, sc) in results]
        # Over time, from the series files
        lines = []
        logy = False
        if sc == 'idle':
            col, ylabel, title = '($8/1024.0)', 'server RSS (MiB)', 'idle: server memory over time'
        elif sc == 'login':
            col, ylabel, title = '3', 'logins completed per second', 'login storm over time'
        else:
            # The targets differ by orders of magnitude: a log scale keeps all visible.
            col, ylabel, logy = '($3 > 0 ? $3 : NaN)', 'messages received per second', True
            title = '%s: throughput over time (log scale)' % sc
        for t, rec in have:
            sp = rec['files']['series']
            if series_rows(sp) > 0:
                lines.append('%s using 1:%s with linespoints pt 7 ps 0.5 lw 2 title %s'
                             % (gp_str(os.path.basename(sp)), col, gp_str(row_title(t, sc))))
        if lines:
            f = 'over-time-%s.%s' % (sc, ext)
            S += ['# %s' % title, 'set output %s' % gp_str(f), 'set title %s' % gp_str(title),
                  "set xlabel 'seconds'", 'set ylabel %s' % gp_str(ylabel),
                  'set xrange [0:*]']
            S += (['set logscale y', 'set yrange [*:*]'] if logy
                  else ['unset logscale y', 'set yrange [0:*]'])
            S += ['set style data linespoints',
                  'plot ' + ', \\\n     '.join(lines), 'set output', '']
            made[sc].append(('over time', f))
        # Latency distribution, from the JSON
        if sc != 'idle':
            dat_rows = []
            for t, rec in have:
                j = rec['json']
                if j is None:
                    continue
                qs = [lat_ms(j, q) for q in ('p50', 'p90', 'p99', 'p999')]
                if any(v is None or v <= 0 for v in qs):
                    continue
                dat_rows.append('%s %s' % (row_title(t, sc).split(' ')[0]
                                            if t != 'sol' else 'speed-of-light',
                                            ' '.join('%.6f' % v for v in qs)))
            if dat_rows:
                dat = 'latency-%s.dat' % sc
                with open(os.path.join(ctx.out, dat), 'w') as df:
                    df.write('# target p50_ms p90_ms p99_ms p999_ms\n')
                    df.write('\n'.join(dat_rows) + '\n')
                f = 'latency-%s.%s' % (sc, ext)
                what = 'login time' if sc == 'login' else 'delivery latency'
                S += ['# %s' % what, 'set output %s' % gp_str(f),
                      'set title %s' % gp_str('%s: %s percentiles (log scale)' % (sc, what)),
                      "set xlabel ''", "set ylabel 'milliseconds'", 'set xrange [*:*]',
                      'set logscale y', 'set yrange [*:*]',
                      'set style data histograms', 'set style histogram clustered gap 1',
                      'set style fill solid 0.8 border -1', 'set boxwidth 0.9',
                      'plot %s using 2:xtic(1) title \'p50\', \'\' using 3 title \'p90\', '
                      '\'\' using 4 title \'p99\', \'\' using 5 title \'p99.9\'' % gp_str(dat),
                      'set output', 'unset logscale y', 'set style data linespoints', '']
                made[sc].append(('latency', f))
    script = os.path.join(ctx.out, 'plots.gp')
    with open(script, 'w') as f:
        f.write('\n'.join(S) + '\n')
    if not any(made.values()):
        ctx.plot_note = 'no run produced data to plot.'
        return {}
    try:
        r = subprocess.run([gp, 'plots.gp'], cwd=ctx.out, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        ok = r.returncode == 0
        msg = r.stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        ok, msg = False, str(e)
    if not ok:
        ctx.plot_note = 'gnuplot failed: %s' % msg[-500:]
        note(ctx.plot_note)
    for sc in list(made):
        made[sc] = [(k, f) for k, f in made[sc]
                    if os.path.exists(os.path.join(ctx.out, f))
                    and os.path.getsize(os.path.join(ctx.out, f)) > 0]
    return made


# --------------------------------------------------------------------------
# Main


class Ctx:
    pass


def main(argv):
    a = parse_args(argv)
    ctx = Ctx()
    ctx.cwd = os.getcwd()
    ctx.command = 'python3 ' + shlex.join([os.path.relpath(os.path.abspath(__file__), ctx.cwd)]
                                          + list(argv))
    now = datetime.datetime.now(datetime.timezone.utc)
    ctx.t_start = now
    ctx.date = now.strftime('%Y-%m-%d %H:%M UTC')
    if a.out is None:
        out = os.path.join(ROOT, 'bench', 'results', now.strftime('%Y-%m-%d'))
        if os.path.exists(out) and os.listdir(out):
            out += now.strftime('-%H%M%S')
        a.out = out
    ctx.out = os.path.abspath(a.out)
    os.makedirs(ctx.out, exist_ok=True)
    a.build = os.path.abspath(a.build)
    a.peers = os.path.abspath(a.peers)
    ctx.bench = os.path.abspath(a.bench or os.path.join(a.build, 'bench', 'harness', 'stanza-bench'))
    ctx.sol = os.path.abspath(a.sol or os.path.join(a.build, 'bench', 'sol', 'sol-forwarder'))
    if not os.access(ctx.bench, os.X_OK):
        note('no stanza-bench at %s (ninja -C %s bench/harness/stanza-bench)' % (ctx.bench, a.build))
        return 2
    for tool in ('taskset', 'nice'):
        if not shutil.which(tool):
            note('%s is missing (Debian package util-linux / coreutils)' % tool)
            return 2

    cpus = online_cpus()
    if a.cores > len(cpus):
        note('--cores %d but only %d CPUs are available' % (a.cores, len(cpus)))
        return 2
    # The peers' start.sh pin to CPUs 0..CORES-1 (and stanzad pins worker i
    # to CPU i): the load generator gets the rest.
    ctx.server_cpus = list(range(a.cores))
    if a.bench_cores:
        ctx.bench_cpus = a.bench_cores
    else:
        ctx.bench_cpus = [c for c in cpus if c >= a.cores] or cpus
    ctx.shared_cpus = bool(set(ctx.bench_cpus) & set(ctx.server_cpus))
    ctx.threads = a.threads or len(ctx.bench_cpus)
    ctx.prio, ctx.prio_note = priority_prefix(a.nice)
    ctx.machine = machine_info()
    ctx.load0 = ', '.join('%.2f' % x for x in os.getloadavg())
    rev = run_quiet(['git', '-C', ROOT, 'rev-parse', '--short=12', 'HEAD']).strip()
    dirty = run_quiet(['git', '-C', ROOT, 'status', '--porcelain', '--untracked-files=no']).strip()
    ctx.git = ('commit %s%s' % (rev, ' with uncommitted changes' if dirty else '')
               if rev else 'not a git checkout')
    ctx.git += '; binaries from %s' % display_path(a.build, ctx.cwd)
    ctx.target_notes = {}
    ctx.provisioned = {}
    ctx.plot_note = ''
    if ctx.shared_cpus:
        note('the load generator shares CPU(s) with the servers: %s'
             % cpu_list_str(sorted(set(ctx.bench_cpus) & set(ctx.server_cpus))))
    note('output: %s' % ctx.out)
    note('priority: %s' % ctx.prio_note)

    results = {}
    n_accounts = accounts_needed(a, a.scenarios)
    for t in a.targets:
        scen = [s for s in a.scenarios if t != 'sol' or s in SOL_SCENARIOS]
        if not scen:
            ctx.target_notes[t] = 'no scenario for it (it only runs the raw counterpart of pairs)'
            continue
        if t == 'sol':
            if not os.access(ctx.sol, os.X_OK):
                ctx.target_notes[t] = 'skipped: no %s' % ctx.sol
                note('sol: ' + ctx.target_notes[t])
                continue
            server = SolServer(a, ctx)
        else:
            why = peer_missing(t, a)
            if why:
                ctx.target_notes[t] = 'skipped: ' + why
                note('%s: %s' % (t, ctx.target_notes[t]))
                continue
            server = PeerServer(t, a, ctx)
        try:
            note('%s: starting' % t)
            server.start()
            nice, cpul = proc_status(server.pid)
            if t != 'sol':
                secs = server.provision(n_accounts)
                ctx.provisioned[t] = (n_accounts, secs)
            ctx.target_notes[t] = 'ran'
            for sc in scen:
                tls = a.tls
                tls_note = ''
                if t == 'sol':
                    tls = 'none'
                elif t == 'stanzad' and tls == 'none':
                    tls_note = 'plaintext: started with --allow-plaintext-auth'
                if not server_alive(server):
                    raise Skip('the server is no longer running')
                msg_rate = None
                if sc == 'halfpeak':
                    peak = g(results.get((t, 'pairs')) or {}, 'json', 'rate_recv')
                    if not peak:
                        note('%s halfpeak: no pairs figure of this target in this run: skipped' % t)
                        continue
                    msg_rate = max(1, int(peak / 2))
                rec = run_bench(a, ctx, t, server, sc, tls, msg_rate)
                rec['tls_note'] = tls_note
                rec['pid'], rec['srv_nice'], rec['srv_cpus'] = server.pid, nice, cpul
                results[(t, sc)] = rec
        except Skip as e:
            ctx.target_notes[t] = 'failed: %s' % e
            note('%s: %s' % (t, e))
        except Exception as e:  # keep going: the other targets still run
            ctx.target_notes[t] = 'failed: %s: %s' % (e.__class__.__name__, e)
            note('%s: %s' % (t, ctx.target_notes[t]))
        finally:
            note('%s: stopping' % t)
            server.stop()

    ctx.t_end = datetime.datetime.now(datetime.timezone.utc)
    ctx.load1 = ', '.join('%.2f' % x for x in os.getloadavg())
    plots = make_plots(a, ctx, results)
    summary = os.path.join(ctx.out, 'summary.md')
    write_summary(a, ctx, results, plots, summary)
    note('wrote %s' % summary)
    print(summary)
    ran = [k for k, r in results.items() if r['json'] is not None]
    return 0 if ran else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

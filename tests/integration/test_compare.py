"""bench/compare.py end to end, on tiny sizes: stanzad and the
speed-of-light forwarder, the pairs scenario, 2 seconds each. Checks that
summary.md has the table with a stanzad row carrying figures and a
speed-of-light row, the ratio table, and that both plots were drawn.

It measures nothing: it only checks that the comparison runs and reports.
Skips when stanza-bench, stanzad, the stanzad peer scripts or gnuplot are
missing. Standard library only.

    STANZA_BENCH=build/bench/harness/stanza-bench STANZAD=build/cmd/stanzad \\
        python3 -m unittest tests/integration/test_compare.py -v
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
COMPARE = os.path.join(ROOT, 'bench', 'compare.py')


def find(env, *rel):
    p = os.environ.get(env)
    if p:
        return os.path.abspath(p)
    for build in ('build', 'build-integ'):
        cand = os.path.join(ROOT, build, *rel)
        if os.access(cand, os.X_OK):
            return cand
    return None


def log(msg):
    print('  * ' + msg, flush=True)


class CompareTest(unittest.TestCase):

    def setUp(self):
        self.bench = find('STANZA_BENCH', 'bench', 'harness', 'stanza-bench')
        self.stanzad = find('STANZAD', 'cmd', 'stanzad')
        self.sol = find('SOL_FORWARDER', 'bench', 'sol', 'sol-forwarder')
        missing = []
        if not self.bench or not os.access(self.bench, os.X_OK):
            missing.append('stanza-bench (STANZA_BENCH)')
        if not self.stanzad or not os.access(self.stanzad, os.X_OK):
            missing.append('stanzad (STANZAD)')
        if not os.path.isfile(os.path.join(ROOT, 'bench', 'peers', 'stanzad', 'start.sh')):
            missing.append('bench/peers/stanzad/start.sh')
        if not shutil.which('gnuplot'):
            missing.append('gnuplot (Debian package gnuplot-nox)')
        if missing:
            self.skipTest('missing: ' + ', '.join(missing))
        self.out = tempfile.mkdtemp(prefix='test-compare-')

    def tearDown(self):
        if hasattr(self, 'out') and not self._failed():
            shutil.rmtree(self.out, ignore_errors=True)

    def _failed(self):
        outcome = getattr(self, '_outcome', None)
        result = getattr(outcome, 'result', None)
        if result is None:
            return False
        return any(t is self for t, _ in result.failures + result.errors)

    def test_stanzad_and_sol_pairs(self):
        build = os.path.dirname(os.path.dirname(self.stanzad))   # BUILD/cmd/stanzad
        cmd = [sys.executable, COMPARE,
               '--targets', 'stanzad,sol', '--scenarios', 'pairs,halfpeak',
               '--duration', '2', '--warmup', '1',
               '--pairs', '4', '--window', '2', '--body', '20',
               '--build', build, '--bench', self.bench,
               '--sol', self.sol or os.path.join(build, 'bench', 'sol', 'sol-forwarder'),
               '--run-timeout', '90', '--out', self.out]
        log('running: ' + ' '.join(cmd))
        env = dict(os.environ, STANZAD=self.stanzad)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=240, env=env, stdin=subprocess.DEVNULL)
        print(r.stdout[-4000:], flush=True)
        self.assertEqual(r.returncode, 0, 'compare.py failed; output kept in ' + self.out)

        path = os.path.join(self.out, 'summary.md')
        self.assertTrue(os.path.isfile(path), 'no summary.md')
        with open(path) as f:
            md = f.read()
        log('summary.md: %d bytes' % len(md))

        self.assertIn('## pairs', md)
        self.assertIn('| target | TLS | received msg/s |', md)
        # The stanzad row has a received rate that is a positive number.
        m = re.search(r'^\| stanzad \| starttls \| ([\d,]+) \|', md, re.M)
        self.assertIsNotNone(m, 'no stanzad row with figures in summary.md; kept in ' + self.out)
        self.assertGreater(int(m.group(1).replace(',', '')), 0, 'stanzad delivered nothing')
        log('stanzad row: %s msg/s received' % m.group(1))

        sol_row = re.search(r'^\| speed of light \(raw forwarder\) \| (.*)$', md, re.M)
        self.assertIsNotNone(sol_row, 'no speed-of-light row')
        if self.sol and os.access(self.sol, os.X_OK):
            self.assertRegex(sol_row.group(1), r'^none \| [\d,]+ \|',
                             'speed-of-light row without figures')
            self.assertRegex(md, r'\| received msg/s \| higher \| \d+\.\d+x \|',
                             'no stanzad / speed of light ratio')
        else:
            self.assertIn('skipped', sol_row.group(1))
            log('sol-forwarder not built: its row says skipped')
        self.assertIn('stanzad / speed of light', md)

        # Machine, date and command are recorded.
        self.assertIn('- CPU: ', md)
        self.assertIn('- Kernel: Linux ', md)
        self.assertRegex(md, r'Date: \d{4}-\d\d-\d\d')
        self.assertIn('--targets stanzad,sol --scenarios pairs,halfpeak', md)

        # halfpeak: pairs again, open loop at half of that target's pairs rate.
        self.assertIn('## halfpeak', md)
        with open(os.path.join(self.out, 'stanzad-pairs.json')) as f:
            peak = json.load(f)['rate_recv']
        with open(os.path.join(self.out, 'stanzad-halfpeak.json')) as f:
            half = json.load(f)
        self.assertEqual(half['scenario'], 'pairs')
        self.assertEqual(half['opts']['msg_rate'], max(1, int(peak / 2)))
        self.assertEqual(half['recv'], half['sent'], 'halfpeak lost or duplicated messages')
        self.assertRegex(md.split('## halfpeak', 1)[1], r'(?m)^\| stanzad \| starttls \| [\d,]+ \|',
                         'no stanzad halfpeak row')
        log('halfpeak: %d msg/s offered (pairs peak %.0f)' % (half['opts']['msg_rate'], peak))

        for name in ('over-time-pairs', 'latency-pairs'):
            imgs = [f for f in sorted(os.listdir(self.out))
                    if f in (name + '.png', name + '.svg')]
            self.assertTrue(imgs, 'no %s plot' % name)
            p = os.path.join(self.out, imgs[0])
            with open(p, 'rb') as f:
                head = f.read(256)
            self.assertTrue(head.startswith(b'\x89PNG') or b'<svg' in head,
                            '%s is not a PNG or SVG' % imgs[0])
            self.assertIn('](%s)' % imgs[0], md, 'summary.md does not show ' + imgs[0])
            log('%s: %d bytes' % (imgs[0], os.path.getsize(p)))

        for f in ('stanzad-pairs.json', 'stanzad-pairs.series', 'plots.gp'):
            self.assertTrue(os.path.isfile(os.path.join(self.out, f)), 'no ' + f)


if __name__ == '__main__':
    unittest.main()

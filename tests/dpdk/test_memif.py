"""The kernel-free path end to end: stanzad (transport dpdk, net_memif
server) and stanza-bench (--transport dpdk, net_memif client) in two DPDK
processes joined by shared memory, through the rig of bench/dpdk/memif.py.
A couple of seconds of pairs in plaintext and over STARTTLS: every message
sent during the measurement arrives, nothing fails, the JSON report is
well-formed and says what ran, and the server's transport counted the
traffic and no drops of its own making.

Needs root, a build with DPDK (STANZAD=BUILD/cmd/stanzad, or build/) with
stanza-bench, and DPDK's memif driver; skips otherwise. About 20 s.
"""

import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'bench', 'dpdk'))

import memif  # noqa: E402


def build_dir():
    stanzad = os.environ.get('STANZAD')
    if stanzad:
        return os.path.dirname(os.path.dirname(os.path.abspath(stanzad)))
    return os.path.join(ROOT, 'build')


class MemifPairs(unittest.TestCase):
    PAIRS = 10

    @classmethod
    def setUpClass(cls):
        cls.build = build_dir()
        why = memif.missing_prerequisites(cls.build)
        if why:
            raise unittest.SkipTest(why)
        cls.rig = memif.Rig(cls.build, cls.PAIRS)
        try:
            cls.rig.provision(2 * cls.PAIRS)
            cls.rig.start('dpdk')
        except Exception:
            cls.rig.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        rig = cls.__dict__.get('rig')
        if rig:
            rig.cleanup()

    def check_run(self, rep, tls):
        self.assertEqual(rep['exit'], 0, rep['text'])
        # the report as written, read back strictly
        self.assertEqual(rep['schema'], 'stanza-bench/1')
        self.assertEqual(rep['scenario'], 'pairs')
        self.assertEqual(rep['opts']['transport'], 'dpdk')
        self.assertEqual(rep['opts']['tls'], tls)
        self.assertEqual(rep['opts']['pairs'], self.PAIRS)
        self.assertGreater(rep['sent'], 1000, rep['text'])
        self.assertEqual(rep['recv'], rep['sent'], rep['text'])
        self.assertEqual(rep['errors_total'], 0, rep['errors'])
        self.assertEqual(set(rep['errors']), {'connect', 'tls', 'auth', 'bind', 'stream', 'stanza',
                                              'timeout', 'closed', 'lost'})
        lat = rep['latency_ns']
        self.assertEqual(lat['count'], rep['recv'])
        self.assertTrue(0 < lat['min'] <= lat['p50'] <= lat['p99'] <= lat['max'], lat)
        self.assertEqual(rep['server']['pid'], self.rig.proc.pid)

    def test_1_plaintext(self):
        rep = self.rig.run_bench('dpdk', 'none', duration=2, warmup=1, window=8)
        self.check_run(rep, 'none')

    def test_2_starttls(self):
        rep = self.rig.run_bench('dpdk', 'starttls', duration=2, warmup=1, window=8)
        self.check_run(rep, 'starttls')

    def test_3_server_counters(self):
        """stanzad stops cleanly and its transport saw the traffic: TCP
        segments both ways, 2 * pairs connections per run accepted, no
        packet dropped for want of mbufs, ring or TX room, nothing
        malformed."""
        self.assertEqual(self.rig.stop(), 0, self.rig.log_tail())
        c = self.rig.dpdk_counters()
        self.assertIsNotNone(c, self.rig.log_tail())
        self.assertGreater(c['tcp_rx'], 1000)
        self.assertGreaterEqual(c['accepted'], 2 * self.PAIRS)
        for k in ('drop_nombuf', 'drop_ring_full', 'drop_bad_ip', 'drop_ip_csum', 'drop_bad_l4'):
            self.assertEqual(c[k], 0, '%s: %s' % (k, json.dumps(c)))


if __name__ == '__main__':
    unittest.main(verbosity=2)

"""Tests of tools/stein-lock.py: the lock of Python 2.7 or 3.6."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TestSteinLock(unittest.TestCase):
    """tools/stein-lock.py: the lock of Python 2.7 or 3.6 from Stein's."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix='series-lock-')
        self.addCleanup(shutil.rmtree, self.root, True)

    def write(self, name, text):
        path = os.path.join(self.root, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def lock(self, python_version, overrides):
        uc = self.write('uc.txt', (
            "eventlet===0.24.1\n"
            "glance-store===0.28.0\n"
            "dnspython===1.16.0;python_version=='2.7'\n"
            "dnspython===1.15.0;python_version=='3.6'\n"
            "tornado===4.5.3;python_version=='3.6'\n"
            "Babel===2.6.0\n"))
        ovr = self.write('overrides.txt', overrides)
        py37 = self.write('py37.txt', '# a lock\nhacking==0.12.0\n'
                          'eventlet==0.25.0\ntornado==6.0\n')
        env = self.write('env.json', json.dumps({
            'python_version': python_version,
            'python_full_version': python_version + '.9',
            'sys_platform': 'linux', 'os_name': 'posix',
            'platform_machine': 'x86_64', 'platform_system': 'Linux',
            'platform_release': '', 'platform_version': '',
            'platform_python_implementation': 'CPython',
            'implementation_name': 'cpython',
            'implementation_version': python_version + '.9'}))
        out = os.path.join(self.root, 'out.txt')
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, 'tools', 'stein-lock.py'),
             uc, ovr, py37, env, out], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, universal_newlines=True)
        if proc.returncode:
            return proc.stdout
        with open(out) as f:
            return f.read()

    def test_markers_overrides_and_unknown_packages(self):
        overrides = 'glance-store==0.28.1\ndnspython<2\n'
        self.assertEqual(
            'Babel==2.6.0\ndnspython==1.16.0\neventlet==0.24.1\n'
            'glance-store==0.28.1\nhacking==0.12.0\n',
            self.lock('2.7', overrides))
        self.assertEqual(
            'Babel==2.6.0\ndnspython==1.15.0\neventlet==0.24.1\n'
            'glance-store==0.28.1\nhacking==0.12.0\ntornado==4.5.3\n',
            self.lock('3.6', overrides))

    def test_an_override_the_pin_breaks_is_refused(self):
        out = self.lock('2.7', 'dnspython<1.16\n')
        self.assertIn('dnspython 1.16.0 does not satisfy', out)

    def test_the_same_inputs_give_the_same_file(self):
        self.assertEqual(self.lock('2.7', 'dnspython<2\n'),
                         self.lock('2.7', 'dnspython<2\n'))

    def test_committed_locks_pin_the_stein_stable_update(self):
        for name in ('constraints-py27.txt', 'constraints-py36.txt'):
            with open(os.path.join(ROOT, name)) as f:
                pins = dict(line.strip().split('==', 1) for line in f
                            if '==' in line and not line.startswith('#'))
            self.assertEqual('0.28.1', pins['glance-store'], name)
            self.assertTrue(pins['dnspython'].startswith('1.'), name)
            self.assertIn('hacking', pins, name)

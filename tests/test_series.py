"""Tests of ./series itself.

Each test works on a copy of the tool, its pin and patches/ in a temporary
directory, sharing only the verified tarball cache (SERIES_CACHE, set by
./series test; otherwise build/cache of this checkout, downloaded on first
use).
"""

import importlib.machinery
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.environ.get('SERIES_CACHE') or os.path.join(ROOT, 'build',
                                                        'cache')


def load_series():
    """Import ./series as a module."""
    loader = importlib.machinery.SourceFileLoader(
        'series_mod', os.path.join(ROOT, 'series'))
    spec = importlib.util.spec_from_loader('series_mod', loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def make_patch_commit(tree, path, text, subject):
    with open(os.path.join(tree, path), 'a') as f:
        f.write(text)
    subprocess.check_call(['git', 'add', path], cwd=tree)
    subprocess.check_call(['git', '-c', 'user.name=Test', '-c',
                           'user.email=test@localhost', 'commit', '-q',
                           '-m', subject + '\n\nBody of the change.\n'],
                          cwd=tree)


class SeriesCase(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        # Make sure the cache holds the verified tarball once for all tests.
        out = subprocess.run([sys.executable, os.path.join(ROOT, 'series'),
                              'status'], env=dict(os.environ,
                                                  SERIES_CACHE=CACHE),
                             stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        assert out.returncode in (0, 1), out.stdout

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix='series-test-')
        self.addCleanup(shutil.rmtree, self.root, True)
        for name in ('series', 'glance.pin', 'constraints-py37.txt'):
            shutil.copy(os.path.join(ROOT, name), self.root)
        os.makedirs(os.path.join(self.root, 'patches'))
        with open(os.path.join(self.root, 'patches', 'series'), 'w'):
            pass
        self.tree = os.path.join(self.root, 'build', 'glance')
        self.cache = CACHE

    def series(self, *args, **env_extra):
        env = dict(os.environ, SERIES_CACHE=self.cache)
        env.update(env_extra)
        return subprocess.run([sys.executable, os.path.join(self.root,
                                                            'series')]
                              + list(args), cwd=self.root, env=env,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              universal_newlines=True)

    def ok(self, *args):
        proc = self.series(*args)
        self.assertEqual(0, proc.returncode, proc.stdout)
        return proc.stdout

    def patch_files(self):
        folder = os.path.join(self.root, 'patches')
        files = {}
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), 'rb') as f:
                files[name] = f.read()
        return files

    def add_two_commits(self):
        make_patch_commit(self.tree, 'README.rst', '\nFirst change.\n',
                          'Add a first line to the README')
        make_patch_commit(self.tree, 'tox.ini', '\n# second\n',
                          'Add a comment to tox.ini')


class TestApplyExport(SeriesCase):

    def test_empty_series_is_valid(self):
        self.ok('apply')
        self.assertIn('clean', self.ok('status'))
        self.ok('export')
        self.assertEqual({'series': b''}, self.patch_files())
        self.assertIn('clean', self.ok('status'))

    def test_pristine_is_the_tarball_and_is_tagged(self):
        self.ok('apply')
        tags = subprocess.check_output(['git', 'tag'], cwd=self.tree,
                                       universal_newlines=True).split()
        self.assertIn('pristine', tags)
        self.assertTrue(os.path.exists(os.path.join(self.tree, 'tox.ini')))
        count = subprocess.check_output(
            ['git', 'rev-list', '--count', 'HEAD'], cwd=self.tree,
            universal_newlines=True).strip()
        self.assertEqual('1', count)

    def test_round_trip_is_byte_identical(self):
        self.ok('apply')
        self.add_two_commits()
        self.ok('export')
        first = self.patch_files()
        self.assertEqual(3, len(first))
        self.assertEqual(
            b'add-a-first-line-to-the-readme.patch\n'
            b'add-a-comment-to-tox-ini.patch\n', first['series'])
        # Exporting the unchanged tree again changes nothing.
        self.ok('export')
        self.assertEqual(first, self.patch_files())
        # Nor does re-applying the series and exporting it.
        self.ok('apply')
        self.assertIn('clean', self.ok('status'))
        self.ok('export')
        self.assertEqual(first, self.patch_files())
        log = subprocess.check_output(
            ['git', 'log', '--format=%s', 'pristine..'], cwd=self.tree,
            universal_newlines=True).splitlines()
        self.assertEqual(['Add a comment to tox.ini',
                          'Add a first line to the README'], log)

    def test_broken_patch_names_the_patch(self):
        self.ok('apply')
        self.add_two_commits()
        self.ok('export')
        path = os.path.join(self.root, 'patches',
                            'add-a-comment-to-tox-ini.patch')
        with open(path) as f:
            text = f.read()
        with open(path, 'w') as f:
            f.write(text.replace('tox.ini', 'no-such-file.ini'))
        proc = self.series('apply', '--force')
        self.assertEqual(1, proc.returncode, proc.stdout)
        self.assertIn('patch add-a-comment-to-tox-ini.patch does not apply',
                      proc.stdout)

    def test_apply_refuses_to_destroy_unexported_work(self):
        self.ok('apply')
        self.add_two_commits()
        proc = self.series('apply')
        self.assertEqual(1, proc.returncode)
        self.assertIn('not exported', proc.stdout)
        # The work is still there.
        count = subprocess.check_output(
            ['git', 'rev-list', '--count', 'pristine..'], cwd=self.tree,
            universal_newlines=True).strip()
        self.assertEqual('2', count)


class TestStatus(SeriesCase):

    def setUp(self):
        super(TestStatus, self).setUp()
        self.ok('apply')
        self.add_two_commits()
        self.ok('export')
        self.assertIn('clean', self.ok('status'))

    def assert_lost(self, *words):
        proc = self.series('status')
        self.assertEqual(1, proc.returncode, proc.stdout)
        for word in words:
            self.assertIn(word, proc.stdout)

    def test_uncommitted_edit(self):
        with open(os.path.join(self.tree, 'setup.py'), 'a') as f:
            f.write('# edit\n')
        self.assert_lost('uncommitted in build/glance', 'setup.py')

    def test_untracked_file(self):
        with open(os.path.join(self.tree, 'glance', 'new.py'), 'w') as f:
            f.write('# new\n')
        self.assert_lost('uncommitted in build/glance', 'glance/new.py')

    def test_generated_files_are_not_work(self):
        os.makedirs(os.path.join(self.tree, '.stestr'))
        os.makedirs(os.path.join(self.tree, 'glance', '__pycache__'))
        with open(os.path.join(self.tree, 'glance', '__pycache__',
                               'x.pyc'), 'w') as f:
            f.write('')
        self.assertIn('clean', self.ok('status'))

    def test_unexported_commit(self):
        make_patch_commit(self.tree, 'setup.cfg', '\n# third\n',
                          'Add a third change')
        self.assert_lost('commit "Add a third change" is not exported',
                         'patches/series')

    def test_amended_commit(self):
        with open(os.path.join(self.tree, 'tox.ini'), 'a') as f:
            f.write('# more\n')
        subprocess.check_call(['git', 'commit', '-qa', '--amend',
                               '--no-edit'], cwd=self.tree)
        self.assert_lost('patches/add-a-comment-to-tox-ini.patch differs')

    def test_hand_edited_patch(self):
        path = os.path.join(self.root, 'patches',
                            'add-a-first-line-to-the-readme.patch')
        with open(path, 'a') as f:
            f.write('\n')
        self.assert_lost(
            'patches/add-a-first-line-to-the-readme.patch differs')

    def test_stray_patch_file(self):
        with open(os.path.join(self.root, 'patches', 'stray.patch'),
                  'w') as f:
            f.write('From nobody\n')
        self.assert_lost('patches/stray.patch matches no commit')

    def test_export_makes_it_clean_again(self):
        make_patch_commit(self.tree, 'setup.cfg', '\n# third\n',
                          'Add a third change')
        self.ok('export')
        self.assertIn('clean: build/glance matches patches/ (3 patches)',
                      self.ok('status'))
        self.assertEqual(4, len(self.patch_files()))


class TestTarball(SeriesCase):

    def test_wrong_hash_is_refused(self):
        self.cache = os.path.join(self.root, 'bad-cache')
        os.makedirs(self.cache)
        with open(os.path.join(self.cache, 'glance-18.0.1.tar.gz'),
                  'wb') as f:
            f.write(b'not the release')
        proc = self.series('apply')
        self.assertEqual(1, proc.returncode, proc.stdout)
        self.assertIn('refusing', proc.stdout)
        self.assertIn('4b770df909093c39027f5776b3742e66d2e10e6178f0c6cdef'
                      '38268388fc7c3d', proc.stdout)
        self.assertFalse(os.path.exists(self.tree))

    def test_pin_is_read_from_the_pin_file(self):
        pin = os.path.join(self.root, 'glance.pin')
        with open(pin) as f:
            text = f.read()
        with open(pin, 'w') as f:
            f.write(text.replace('4b770df9', '00000000'))
        proc = self.series('apply')
        self.assertEqual(1, proc.returncode, proc.stdout)
        self.assertIn('refusing', proc.stdout)


class TestPython37(SeriesCase):

    def test_missing_python37_fails_loudly(self):
        proc = self.series('test', 'unit', SERIES_PYTHON37='/nonexistent',
                           PATH='/usr/bin:/bin', PYENV_ROOT=self.root)
        if 'Python 3.7 is required' not in proc.stdout:
            # A system python3.7 exists on this machine: nothing to prove.
            self.assertTrue(os.path.exists('/usr/bin/python3.7') or
                            os.path.exists('/usr/local/bin/python3.7'),
                            proc.stdout)
            return
        self.assertEqual(1, proc.returncode, proc.stdout)
        self.assertIn('SERIES_PYTHON37', proc.stdout)

    def test_summary_line(self):
        mod = load_series()
        text = ('Totals\n======\nRan: 5 tests in 1.0 sec.\n'
                ' - Passed: 3\n - Skipped: 1\n - Expected Fail: 0\n'
                ' - Unexpected Success: 0\n - Failed: 1\n'
                'Sum of execute time for each test: 1.0 sec.\n')
        counts = mod.parse_stestr(text)
        self.assertEqual('3 passed, 1 failed, 1 skipped', counts.line())
        self.assertIsNone(mod.parse_stestr('Traceback: import error\n'))

    def test_broken_result_stream(self):
        mod = load_series()
        broke = ('{1} glance.tests.unit.test_a.T.test_x [0.01s] ... ok\n'
                 '{0} subunit.parser [0.000076s] ... FAILED\n'
                 'ValueError: Not a text type application/octet-stream\n')
        self.assertTrue(mod.stream_broke(broke))
        # A test that fails, or totals that were printed, are results.
        self.assertFalse(mod.stream_broke(
            '{0} glance.tests.unit.test_a.T.test_y [0.01s] ... FAILED\n'))
        self.assertFalse(mod.stream_broke(
            broke + 'Totals\n======\n - Passed: 3\n - Failed: 1\n'))

    def test_pytest_summary_line(self):
        mod = load_series()
        text = ('acceptance/test_api.py::test_one PASSED\n'
                '==== 2 failed, 45 passed, 1 error in 30.82 seconds ====\n')
        self.assertEqual('45 passed, 3 failed',
                         mod.parse_pytest(text).line())
        self.assertIsNone(mod.parse_pytest('ImportError: no pytest\n'))

    def test_run_foreground_gives_the_exit_code_and_restores_ctrl_c(self):
        mod = load_series()
        before = signal.getsignal(signal.SIGINT)
        code = mod.run_foreground([sys.executable, '-c',
                                   'import sys; sys.exit(7)'])
        self.assertEqual(7, code)
        self.assertIs(before, signal.getsignal(signal.SIGINT))


if __name__ == '__main__':
    unittest.main()

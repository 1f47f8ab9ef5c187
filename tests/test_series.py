"""Tests of ./series itself.

Each test works on a copy of the tool, its pin and patches/ in a temporary
directory, sharing only the verified tarball cache (SERIES_CACHE, set by
./series test; otherwise build/cache of this checkout, downloaded on first
use).
"""

import getpass
import importlib.machinery
import importlib.util
import io
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock

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


class _Index(object):
    """A PEP 503 index on 127.0.0.1 serving one project page and files."""

    def __init__(self, root, page):
        import functools
        import http.server
        import threading
        os.makedirs(os.path.join(root, 'simple', 'glance'))
        with open(os.path.join(root, 'simple', 'glance', 'index.html'),
                  'w') as f:
            f.write(page)
        handler = functools.partial(_QuietHandler, directory=root)
        self.server = http.server.HTTPServer(('127.0.0.1', 0), handler)
        self.url = 'http://127.0.0.1:%d/simple' % self.server.server_port
        thread = threading.Thread(target=self.server.serve_forever)
        thread.daemon = True
        thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _quiet_handler():
    import http.server

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    return Handler


_QuietHandler = _quiet_handler()


class TestDownload(SeriesCase):
    """The tarball is fetched from the index and checked before use."""

    def make_release(self, marker):
        """A tarball whose setup.py, if anything ran it, leaves marker."""
        import tarfile
        src = os.path.join(self.root, 'src', 'glance-18.0.1')
        os.makedirs(src)
        with open(os.path.join(src, 'setup.py'), 'w') as f:
            f.write('open(%r, "w").close()\n' % marker)
        with open(os.path.join(src, 'README.rst'), 'w') as f:
            f.write('A stand-in release.\n')
        path = os.path.join(self.root, 'files', 'glance-18.0.1.tar.gz')
        os.makedirs(os.path.dirname(path))
        with tarfile.open(path, 'w:gz') as tar:
            tar.add(src, 'glance-18.0.1')
        import hashlib
        with open(path, 'rb') as f:
            return hashlib.sha256(f.read()).hexdigest()

    def pin(self, digest):
        with open(os.path.join(self.root, 'glance.pin'), 'w') as f:
            f.write('name = glance\nversion = 18.0.1\nsha256 = %s\n'
                    % digest)

    def serve(self, fragment=''):
        index = _Index(self.root, '<html><body><a href="../../files/'
                       'glance-18.0.1.tar.gz%s">glance-18.0.1.tar.gz</a>'
                       '</body></html>' % fragment)
        self.addCleanup(index.stop)
        self.cache = os.path.join(self.root, 'empty-cache')
        return index.url

    def test_the_release_is_checked_before_anything_runs_it(self):
        marker = os.path.join(self.root, 'setup-py-ran')
        digest = self.make_release(marker)
        self.pin(digest)
        url = self.serve('#sha256=' + digest)
        proc = self.series('apply', PIP_INDEX_URL=url)
        self.assertEqual(0, proc.returncode, proc.stdout)
        self.assertTrue(os.path.exists(os.path.join(
            self.cache, 'glance-18.0.1.tar.gz')))
        self.assertTrue(os.path.exists(os.path.join(self.tree,
                                                    'README.rst')))
        self.assertFalse(os.path.exists(marker),
                         'the sdist\'s setup.py ran')

    def test_a_file_with_another_hash_is_refused_and_not_kept(self):
        marker = os.path.join(self.root, 'setup-py-ran')
        self.make_release(marker)
        self.pin('0' * 64)
        url = self.serve()
        proc = self.series('apply', PIP_INDEX_URL=url)
        self.assertEqual(1, proc.returncode, proc.stdout)
        self.assertIn('refusing', proc.stdout)
        self.assertIn('0' * 64, proc.stdout)
        self.assertEqual([], os.listdir(self.cache))
        self.assertFalse(os.path.exists(marker))
        self.assertFalse(os.path.exists(self.tree))

    def test_the_index_s_hash_is_checked_before_downloading(self):
        digest = self.make_release(os.path.join(self.root, 'ran'))
        self.pin(digest)
        url = self.serve('#sha256=' + 'f' * 64)
        proc = self.series('apply', PIP_INDEX_URL=url)
        self.assertEqual(1, proc.returncode, proc.stdout)
        self.assertIn('the index gives its sha256 as ' + 'f' * 64,
                      proc.stdout)
        self.assertEqual([], os.listdir(self.cache))

    def test_an_index_without_the_release_says_so(self):
        self.make_release(os.path.join(self.root, 'ran'))
        self.pin('0' * 64)
        index = _Index(os.path.join(self.root, 'other'), '<html></html>')
        self.addCleanup(index.stop)
        self.cache = os.path.join(self.root, 'empty-cache')
        proc = self.series('apply', PIP_INDEX_URL=index.url)
        self.assertEqual(1, proc.returncode, proc.stdout)
        self.assertIn('lists no glance-18.0.1.tar.gz', proc.stdout)


class TestPipSettings(unittest.TestCase):
    """How pip reaches the index is kept; what it installs is the lock's."""

    def settings(self, config, **env):
        root = tempfile.mkdtemp(prefix='series-pip-')
        self.addCleanup(shutil.rmtree, root, True)
        path = os.path.join(root, 'pip.conf')
        with open(path, 'w') as f:
            f.write(config)
        code = ('import importlib.machinery, importlib.util, json\n'
                'l = importlib.machinery.SourceFileLoader("s", %r)\n'
                's = importlib.util.spec_from_loader("s", l)\n'
                'm = importlib.util.module_from_spec(s)\n'
                'l.exec_module(m)\n'
                'print(json.dumps([m.pip_network_settings(),\n'
                '                  m.tools_env()]))\n'
                % os.path.join(ROOT, 'series'))
        clean = dict((k, v) for k, v in os.environ.items()
                     if not k.startswith('PIP_'))
        clean.update(env, PIP_CONFIG_FILE=path)
        out = subprocess.run([sys.executable, '-c', code], env=clean,
                             stdout=subprocess.PIPE, check=True,
                             universal_newlines=True).stdout
        return json.loads(out.splitlines()[-1])

    def test_mirror_proxy_and_certificates_are_kept(self):
        settings, env = self.settings(
            '[global]\nindex-url = https://mirror.example/simple\n'
            'proxy = proxy.example:3128\ncert = /etc/ca.pem\n'
            'find-links = /opt/wheels\n'
            'extra-index-url = file:///opt/pypi/simple\n'
            'constraint = /etc/pip-constraints.txt\n')
        self.assertEqual({'PIP_INDEX_URL': 'https://mirror.example/simple',
                          'PIP_PROXY': 'proxy.example:3128',
                          'PIP_CERT': '/etc/ca.pem'},
                         dict((k, settings[k]) for k in settings
                              if k in ('PIP_INDEX_URL', 'PIP_PROXY',
                                       'PIP_CERT', 'PIP_FIND_LINKS',
                                       'PIP_EXTRA_INDEX_URL',
                                       'PIP_CONSTRAINT')))
        for var, value in settings.items():
            self.assertEqual(value, env[var])
        # What would choose the packages is not read.
        self.assertEqual(os.devnull, env['PIP_CONFIG_FILE'])
        self.assertNotIn('PIP_FIND_LINKS', env)
        self.assertNotIn('PIP_EXTRA_INDEX_URL', env)
        self.assertTrue(env['PIP_CONSTRAINT'].endswith(
            'constraints-py37.txt'))

    def test_the_environment_wins_over_the_files(self):
        settings, env = self.settings(
            '[global]\nindex-url = https://mirror.example/simple\n',
            PIP_INDEX_URL='https://other.example/simple',
            PIP_FIND_LINKS='/opt/wheels')
        self.assertEqual('https://other.example/simple',
                         settings['PIP_INDEX_URL'])
        self.assertEqual('https://other.example/simple',
                         env['PIP_INDEX_URL'])
        self.assertNotIn('PIP_FIND_LINKS', env)

    def test_install_section_wins_over_global(self):
        settings, _env = self.settings(
            '[global]\nindex-url = https://a.example/simple\n'
            '[install]\nindex-url = https://b.example/simple\n')
        self.assertEqual('https://b.example/simple',
                         settings['PIP_INDEX_URL'])


class TestPython37(SeriesCase):

    def test_missing_python37_fails_loudly(self):
        proc = self.series('test', 'unit', '--python', '3.7',
                           SERIES_PYTHON37='/nonexistent',
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

    def test_broken_result_stream_runs_again(self):
        mod = load_series()
        broke = ('{0} subunit.parser [0.000076s] ... FAILED\n'
                 'ValueError: Not a text type application/octet-stream\n')
        good = 'Totals\n======\n - Passed: 3\n - Failed: 0\n'
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)

        def runner(outputs):
            def run():
                log = os.path.join(tmp, 'job.log')
                with open(log, 'w') as f:
                    f.write('log')
                text = outputs.pop(0)
                return (0 if 'Totals' in text else 1), text, log
            return run

        with mock.patch.object(mod, 'say'):
            # Broken twice, then a run with results: those count.
            counts = mod.stestr_counts(runner([broke, broke, good]), 'job')
            self.assertEqual('3 passed, 0 failed', counts.line())
            # Broken every time: one failure once no run is left.
            outputs = [broke] * 3
            counts = mod.stestr_counts(runner(outputs), 'job')
            self.assertEqual([], outputs)
            self.assertEqual(1, counts.failed)

    def test_commits_the_unit_job_cannot_tell_from_their_parent(self):
        mod = load_series()
        repo = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, repo)

        def git(*args, **kw):
            kw['cwd'] = repo
            return mod.run(['git', '-c', 'user.name=t', '-c',
                            'user.email=t@example.org'] + list(args),
                           cwd=repo, check=kw.get('check', True)).stdout

        def commit(path, text):
            full = os.path.join(repo, path)
            if not os.path.isdir(os.path.dirname(full)):
                os.makedirs(os.path.dirname(full))
            with open(full, 'w') as f:
                f.write(text)
            git('add', '-A')
            git('commit', '-q', '-m', path)
            return git('rev-parse', 'HEAD').strip()

        git('init', '-q')
        commit('glance/tests/unit/test_a.py', 'import os\n')
        doc = commit('doc/source/a.rst', 'a\n')
        functional = commit('glance/tests/functional/test_b.py', 'b\n')
        code = commit('glance/common/c.py', 'c\n')
        with mock.patch.object(mod, 'git', git):
            self.assertTrue(mod.documentation_only(doc))
            self.assertTrue(mod.documentation_only(functional))
            self.assertFalse(mod.documentation_only(code))
            # Once a unit test reads the functional tests, they count.
            commit('glance/tests/unit/test_a.py',
                   'from glance.tests.functional import test_b\n')
            again = commit('glance/tests/functional/test_b.py', 'b2\n')
            self.assertFalse(mod.documentation_only(again))

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


def fake_python(path, version, executable=None):
    """A script that answers the probe of ./series as Python X.Y would."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('#!/bin/sh\nprintf "%%s %%s" "%s" "%s"\n' % (
            version, executable or path))
    os.chmod(path, 0o755)
    return path


class TestFindPython(unittest.TestCase):

    def setUp(self):
        self.mod = load_series()
        self.root = tempfile.mkdtemp(prefix='series-python-')
        self.addCleanup(shutil.rmtree, self.root, True)
        self.env = {'PYENV_ROOT': self.root, 'PATH': self.root}
        for var in ('SERIES_PYTHON27', 'SERIES_PYTHON36',
                    'SERIES_PYTHON37'):
            self.env[var] = ''

    def find(self, version):
        saved = dict(os.environ)
        self.addCleanup(os.environ.update, saved)
        os.environ.update(self.env)
        try:
            return self.mod.find_python(version)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def test_newest_pyenv_release_of_that_python(self):
        versions = os.path.join(self.root, 'versions')
        for release in ('2.7.9', '2.7.18', '2.7.18-dev', '3.6.15'):
            fake_python(os.path.join(versions, release, 'bin', 'python2.7'
                                     if release.startswith('2') else
                                     'python3.6'),
                        release[:3])
        self.assertEqual(
            os.path.join(versions, '2.7.18', 'bin', 'python2.7'),
            self.find('2.7'))
        self.assertEqual(
            os.path.join(versions, '3.6.15', 'bin', 'python3.6'),
            self.find('3.6'))

    def test_variable_first_and_the_python_must_be_that_version(self):
        wrong = fake_python(os.path.join(self.root, 'wrong'), '3.8')
        right = fake_python(os.path.join(self.root, 'right'), '3.6')
        self.env['SERIES_PYTHON36'] = wrong
        fake_python(os.path.join(self.root, 'python3.6'), '3.6', right)
        # The variable names a 3.8: it is passed over for the one on PATH.
        self.assertEqual(right, self.find('3.6'))

    def test_a_shim_that_does_not_run_is_passed_over(self):
        with open(os.path.join(self.root, 'python2.7'), 'w') as f:
            f.write('#!/bin/sh\necho "pyenv: python2.7: command not found"'
                    ' >&2\nexit 127\n')
        os.chmod(os.path.join(self.root, 'python2.7'), 0o755)
        if os.path.exists('/usr/bin/python2.7') or os.path.exists(
                '/usr/local/bin/python2.7'):
            self.skipTest('this machine has a system python2.7')
        with self.assertRaises(self.mod.Failure) as caught:
            self.find('2.7')
        message = str(caught.exception)
        self.assertIn('Python 2.7 is required', message)
        self.assertIn('pyenv install 2.7.18', message)
        self.assertIn('SERIES_PYTHON27', message)
        self.assertIn('command not found', message)

    def test_missing_python36_fails_the_unit_job_at_once(self):
        if os.path.exists('/usr/bin/python3.6') or os.path.exists(
                '/usr/local/bin/python3.6'):
            self.skipTest('this machine has a system python3.6')
        env = dict(os.environ, SERIES_PYTHON36='/nonexistent',
                   PYENV_ROOT=self.root,
                   PATH=os.pathsep.join([os.path.dirname(
                       self.mod.python37()), '/usr/bin', '/bin']))
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, 'series'), 'test', 'unit',
             '--python', '3.6'], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, universal_newlines=True, cwd=ROOT)
        self.assertEqual(1, proc.returncode, proc.stdout)
        self.assertIn('Python 3.6 is required', proc.stdout)
        self.assertIn('pyenv install 3.6.15', proc.stdout)
        self.assertNotIn('==>', proc.stdout)


class TestTestArguments(unittest.TestCase):

    def setUp(self):
        self.mod = load_series()

    def parse(self, *args):
        job, unit, functional, skipped = self.mod.parse_test_args(
            list(args))
        self.assertEqual(set(), skipped)
        return job, unit, functional

    def test_default_is_every_job_on_every_python(self):
        everything = ['2.7', '3.6', '3.7']
        self.assertEqual(('all', everything, everything), self.parse())
        self.assertEqual(('unit', everything, everything),
                         self.parse('unit'))
        self.assertEqual(('pep8', everything, everything),
                         self.parse('pep8'))

    def test_python_selects_the_unit_and_functional_pythons(self):
        self.assertEqual(('unit', ['2.7'], ['2.7']),
                         self.parse('unit', '--python', '2.7'))
        self.assertEqual(('functional', ['3.6', '3.7'], ['3.6', '3.7']),
                         self.parse('functional', '--python=3.7,3.6'))
        self.assertEqual(('all', ['2.7', '3.7'], ['2.7', '3.7']),
                         self.parse('--python', '3.7', '--python', '2.7'))

    def test_cluster_is_a_job_of_its_own(self):
        self.assertEqual(('cluster', ['2.7', '3.6', '3.7'],
                          ['2.7', '3.6', '3.7']), self.parse('cluster'))
        with self.assertRaises(self.mod.Failure):
            self.parse('cluster', '--python', '2.7')

    def test_functional_python_alone(self):
        self.assertEqual(('all', ['2.7', '3.6', '3.7'], ['2.7', '3.7']),
                         self.parse('--functional-python', '2.7,3.7'))

    def test_skip_leaves_jobs_out_of_a_run_of_all(self):
        self.assertEqual(
            ('all', ['2.7', '3.6', '3.7'], ['2.7', '3.7'],
             {'bisect', 'forward'}),
            self.mod.parse_test_args(['--functional-python', '2.7,3.7',
                                      '--skip', 'bisect',
                                      '--skip=forward']))

    def test_bad_arguments_are_refused_with_the_usage(self):
        for args in (['unit', '--python', '3.8'], ['unit', '--python'],
                     ['--skip', 'lint'], ['--skip', 'all'], ['--skip'],
                     ['unit', '--skip', 'bisect'], ['--skip', ','],
                     ['pep8', '--python', '2.7'], ['lint'],
                     ['unit', 'functional'], ['--python', ','],
                     ['unit', '--functional-python', '2.7']):
            with self.assertRaises(self.mod.Failure) as caught:
                self.parse(*args)
            self.assertIn('usage: ./series test', str(caught.exception),
                          args)
        with self.assertRaises(self.mod.Failure) as caught:
            self.parse('unit', '--python', '3.8')
        self.assertIn("no job for Python '3.8': choose among 2.7, 3.6, "
                      "3.7", str(caught.exception))

    def test_each_python_has_its_lock_and_tox_environments(self):
        for version in ('2.7', '3.6', '3.7'):
            lock = self.mod.LOCKS[version]
            self.assertTrue(os.path.exists(lock), lock)
            with open(lock) as f:
                self.assertIn('Python %s' % version, f.readline())
        self.assertEqual('py27', self.mod.UNIT_ENVS['2.7'])
        self.assertEqual('functional', self.mod.FUNCTIONAL_ENVS['2.7'])
        self.assertEqual('functional-py36', self.mod.FUNCTIONAL_ENVS['3.6'])


class TestJobChecks(unittest.TestCase):

    def setUp(self):
        self.mod = load_series()
        self.root = tempfile.mkdtemp(prefix='series-jobs-')
        self.addCleanup(shutil.rmtree, self.root, True)

    def write(self, name, text):
        path = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def test_tree_jobs_read_what_git_tracks(self):
        # What "pip install -e build/glance" leaves (.eggs/README.txt,
        # which doc8 would read; *.egg-info) is not in the clone the
        # jobs that read the tree run in; an edit of a tracked file is.
        tree = os.path.join(self.root, 'tree')
        self.write('tree/doc/source/index.rst', 'Glance\n')
        self.write('tree/setup.py', 'setup()\n')
        git = ['git', '-c', 'user.name=Test', '-c',
               'user.email=test@localhost']
        subprocess.check_call(git + ['init', '-q'], cwd=tree)
        subprocess.check_call(git + ['add', '-A'], cwd=tree)
        subprocess.check_call(git + ['commit', '-q', '-m', 'base'],
                              cwd=tree)
        self.write('tree/setup.py', 'setup()  # edited\n')
        self.write('tree/.eggs/README.txt', 'This directory contains '
                   'eggs that were downloaded by setuptools\n')
        self.write('tree/glance.egg-info/PKG-INFO', 'Name: glance\n')
        self.mod.SCRATCH = os.path.join(self.root, 'scratch')
        self.mod.TREE = tree
        jobs = []
        self.mod.check_job = (lambda env, where, label, checks=None:
                              jobs.append((env, where)))
        self.mod.job_pep8()
        self.mod.job_docs()
        self.assertEqual([('pep8', os.path.join(self.mod.SCRATCH, 'pep8')),
                          ('docs', os.path.join(self.mod.SCRATCH, 'docs'))],
                         jobs)
        for _env, clone in jobs:
            self.assertFalse(os.path.exists(os.path.join(clone, '.eggs')))
            self.assertFalse(os.path.exists(os.path.join(
                clone, 'glance.egg-info')))
            with open(os.path.join(clone, 'setup.py')) as f:
                self.assertEqual('setup()  # edited\n', f.read())
        # build/glance itself is left as it was: nothing is stashed.
        self.assertEqual(' M setup.py\n', subprocess.check_output(
            ['git', 'status', '--short', '--untracked-files=no'],
            cwd=tree, universal_newlines=True))

    def test_release_note_pages_of_missing_branches(self):
        self.write('index.rst', '=====\n Notes\n=====\n\n.. toctree::\n'
                   '   :maxdepth: 1\n\n   unreleased\n   rocky\n'
                   '   queens\n\nAfter the list.\n')
        self.write('unreleased.rst', '.. release-notes::\n')
        self.write('rocky.rst', '.. release-notes::\n   :branch: '
                   'stable/rocky\n')
        self.write('queens.rst', '.. release-notes::\n   :branch: '
                   'stable/queens\n')
        kept, dropped = self.mod.branch_pages(
            self.root, lambda ref: ref == 'stable/queens')
        self.assertEqual(['unreleased', 'queens'], kept)
        self.assertEqual([('rocky', 'stable/rocky')], dropped)

    def test_notes_rendered(self):
        clone = self.root
        note = 'releasenotes/notes/thing-0123456789abcdef.yaml'
        self.write(note, '---\nfeatures:\n  - |\n    Glance now keeps '
                   '``staged`` data in the\n    reserved store.\n')
        page = os.path.join('releasenotes', 'build', 'html',
                            'unreleased.html')
        self.assertIn('no releasenotes/build/html/unreleased.html',
                      self.mod.notes_rendered(clone, [note]))
        self.write(page, '<li><p>Glance now keeps <code>staged</code>\n'
                   'data in the reserved store.</p></li>')
        self.assertIsNone(self.mod.notes_rendered(clone, [note]))
        self.write(page, '<p>Something else entirely.</p>')
        self.assertEqual('not on the page: %s ("Glance now keeps staged")'
                         % note, self.mod.notes_rendered(clone, [note]))

    def test_note_openings(self):
        text = ('---\nprelude: >\n    With multiple backends enabled,'
                ' Glance\n    keeps.\nfeatures:\n  - |\n    When '
                '``enabled_backends`` is set, more.\n  - Short item on '
                'one line.\nupgrade:\n  - |\n\n    *Operators* must '
                'now set it.\n')
        self.assertEqual(['With multiple backends enabled,',
                          'When enabled_backends is set,',
                          'Short item on one', 'Operators must now set'],
                         self.mod.note_openings(text))

    def test_check_job_counts_tox_and_each_check(self):
        calls = []
        said = []
        self.mod.say = said.append
        self.mod.tox_run = lambda *args: (0, '', 'log')
        counts = self.mod.check_job('genconfig', self.root, 'genconfig', [
            ('first', lambda: calls.append(1)),
            ('second', lambda: 'found 2 times')])
        self.assertEqual((2, 1), (counts.passed, counts.failed))
        self.assertEqual([1], calls)
        self.assertEqual(['genconfig: ok   first',
                          'genconfig: FAILED: second: found 2 times',
                          'genconfig: 2 passed, 1 failed'], said)
        # When tox fails, the checks are not run: one failure.
        self.mod.tox_run = lambda *args: (
            1, 'ERROR: InvocationError for command /x/bin/oslo-config-'
            'generator --config-file y (exited with code 1)\n', 'log')
        del said[:]
        counts = self.mod.check_job('genconfig', self.root, 'genconfig', [
            ('first', lambda: calls.append(2))])
        self.assertEqual((0, 1), (counts.passed, counts.failed))
        self.assertEqual([1], calls)
        self.assertIn('genconfig: FAILED: tox -e genconfig exited 1, '
                      'oslo-config-generator failed', said[0])


class TestForward(unittest.TestCase):
    """The forward job: its place, the Train pin, venv and counts."""

    def setUp(self):
        self.mod = load_series()
        self.root = tempfile.mkdtemp(prefix='series-forward-')
        self.addCleanup(shutil.rmtree, self.root, True)
        self.said = []
        self.mod.say = self.said.append
        self.mod.step = self.said.append

    def test_it_runs_after_cluster_and_before_bisect(self):
        jobs = self.mod.JOBS
        self.assertEqual(jobs.index('cluster') + 1, jobs.index('forward'))
        self.assertEqual(jobs.index('forward') + 1, jobs.index('bisect'))
        self.assertEqual('forward',
                         self.mod.parse_test_args(['forward'])[0])
        with self.assertRaises(self.mod.Failure):
            self.mod.parse_test_args(['forward', '--python', '2.7'])

    def test_a_train_tarball_with_another_hash_is_refused(self):
        pin = self.mod.read_pin(self.mod.TRAIN_PIN)
        self.assertEqual(('glance', '19.0.4', 'train.pin'),
                         (pin['name'], pin['version'], pin['file']))
        with open(os.path.join(self.root, 'glance-19.0.4.tar.gz'),
                  'wb') as f:
            f.write(b'not the release')
        self.mod.CACHE = self.root
        with self.assertRaises(self.mod.Failure) as caught:
            self.mod.tarball(self.mod.TRAIN_PIN)
        self.assertIn('but train.pin requires %s' % pin['sha256'],
                      str(caught.exception))

    def test_the_train_venv_is_made_again_only_when_its_inputs_change(self):
        made = []

        def make_venv(venv, want, py, pip_args, env, log):
            made.append(pip_args)
            os.makedirs(venv, exist_ok=True)
            with open(os.path.join(venv, '.series-lock'), 'w') as f:
                f.write(want)
            return os.path.join(venv, 'bin', 'python')

        constraints = os.path.join(self.root, 'upper-constraints.txt')
        self.mod.TRAIN_CONSTRAINTS = constraints
        self.mod.TRAIN_VENV = os.path.join(self.root, 'venv-train')
        self.mod.python37 = lambda: '/usr/bin/python3.7'
        self.mod.tarball = lambda pin_file: 'glance-19.0.4.tar.gz'
        self.mod.make_venv = make_venv
        with self.assertRaises(self.mod.Failure) as caught:
            self.mod.train_venv()
        self.assertIn(constraints, str(caught.exception))
        with open(constraints, 'w') as f:
            f.write('SQLAlchemy===1.3.8\n')
        for _ in range(2):
            self.mod.train_venv()
        self.assertEqual([['-c', constraints, 'glance-19.0.4.tar.gz',
                           'PyMySQL', 'psycopg2']], made)
        with open(constraints, 'a') as f:
            f.write('alembic===1.1.0\n')
        self.mod.train_venv()
        self.assertEqual(2, len(made))

    def job(self, rc, text, server_fails=False):
        """Run job_forward with every step replaced; (counts, cmd)."""
        mod = self.mod
        ran = []

        class Servers(object):
            def __init__(self, kinds, why):
                self.urls = {}

            def __enter__(self):
                if server_fails:
                    raise mod.Failure('initdb failed')
                self.urls['postgresql'] = 'postgresql://u:p@127.0.0.1:1/'
                return self

            def __exit__(self, *exc):
                ran.append('stopped')

        mod.glance_python = lambda: 'series-python'
        mod.export_pristine = lambda: 'pristine-tree'
        mod.bench_venv = lambda name, tree: 'pristine-python'
        mod.train_venv = lambda: 'train-python'
        mod.tools_env = dict
        mod.DBServers = Servers
        mod.stream = lambda cmd, cwd, env, log: ran.append(cmd) or (rc, text)
        return mod.job_forward(), ran

    def test_the_job_counts_the_checks_of_the_driver(self):
        counts, ran = self.job(1, 'checks...\nforward: 30 passed, 2 '
                               'failed in 90 s\n')
        self.assertEqual((30, 2), (counts.passed, counts.failed))
        self.assertEqual('stopped', ran[-1])
        self.assertIn('--postgresql-url', ran[0])
        # No closing line, or an exit code its counts do not explain.
        counts, _ = self.job(1, 'Traceback (most recent call last):\n')
        self.assertEqual((0, 1), (counts.passed, counts.failed))
        counts, _ = self.job(1, 'forward: 35 passed, 0 failed in 9 s\n')
        self.assertEqual((35, 1), (counts.passed, counts.failed))

    def test_a_postgresql_server_that_does_not_start_is_a_failure(self):
        counts, ran = self.job(1, 'forward: 19 passed, 16 failed in 9 s\n',
                               server_fails=True)
        self.assertEqual((19, 17), (counts.passed, counts.failed))
        self.assertNotIn('--postgresql-url', ran[0])


class TestSkippedTests(unittest.TestCase):

    def setUp(self):
        self.mod = load_series()
        self.root = tempfile.mkdtemp(prefix='series-skips-')
        self.addCleanup(shutil.rmtree, self.root, True)
        self.mod.LOGS = self.root
        self.said = []
        self.mod.say = self.said.append

    def fake_tox_job(self, text, counts):
        seen = {}

        def tox_job(env_name, tree, label, python, extra_env=None):
            seen.update(env_name=env_name, extra_env=extra_env)
            with open(os.path.join(self.root, label.replace(' ', '-') +
                                   '.log'), 'w') as f:
                f.write(text)
            return counts
        self.mod.tox_job = tox_job
        return seen

    def test_a_skipped_functional_test_is_a_failure(self):
        text = ('{0} glance.tests.functional.db.test_migrations.'
                'TestMysqlMigrations.test_walk_versions ... SKIPPED: '
                "Backend 'mysql+pymysql' is unavailable: Could not connect\n"
                '{1} glance.tests.functional.test_a.T.test_b [0.1s] ... ok\n')
        seen = self.fake_tox_job(text, self.mod.Counts(5, 0, 1))
        counts = self.mod.job_functional('3.7', {
            'mysql': 'mysql+pymysql://u:p@127.0.0.1:3307/',
            'postgresql': 'postgresql://u:p@127.0.0.1:5433/postgres'})
        self.assertEqual('5 passed, 1 failed', counts.line())
        self.assertEqual('functional-py37', seen['env_name'])
        # oslo.db's fixtures find both servers, and SQLite.
        self.assertEqual(
            {'OS_TEST_DBAPI_ADMIN_CONNECTION':
             'mysql+pymysql://u:p@127.0.0.1:3307/;'
             'postgresql://u:p@127.0.0.1:5433/postgres;sqlite://'},
            seen['extra_env'])
        self.assertIn('functional py37: 1 TESTS SKIPPED, each counted as a '
                      'failure (a test that cannot run must not pass '
                      'unseen):', self.said)
        self.assertIn('    glance.tests.functional.db.test_migrations.'
                      'TestMysqlMigrations.test_walk_versions: Backend '
                      "'mysql+pymysql' is unavailable: Could not connect",
                      self.said)
        self.assertEqual('functional py37: 5 passed, 1 failed',
                         self.said[-1])

    def test_no_skip_no_failure(self):
        self.fake_tox_job('', self.mod.Counts(7, 0, 0))
        counts = self.mod.job_functional('2.7', {})
        self.assertEqual('7 passed, 0 failed', counts.line())
        self.assertEqual([], self.said)

    def test_servers_that_do_not_start_are_a_failure(self):
        self.mod.ensure_qemu_img = lambda: None
        self.mod.ensure_db_programs = lambda *args: None
        self.mod.ensure_tools = lambda versions: None
        self.mod.find_python = lambda version: '/usr/bin/python' + version
        self.mod.TREE = ROOT        # has a .git: no apply
        self.mod.job_functional = lambda *args: self.fail('ran')

        def refused(servers):
            raise self.mod.Failure('no server')
        self.mod.DBServers.__enter__ = refused
        self.assertEqual(1, self.mod.cmd_test(['functional', '--python',
                                               '3.7']))
        self.assertIn('functional: FAILED: the database servers did not '
                      'start, so no functional job ran: no server',
                      self.said)
        self.assertEqual('0 passed, 1 failed', self.said[-1])

    def test_extra_env_is_passed_to_the_tests(self):
        calls = []
        self.mod.stream = lambda cmd, cwd, env, log: (
            calls.append(env) or (0, ''))
        self.mod.TOXWORK = self.root
        self.mod.env_stamp = lambda python: 'stamp'
        self.mod.tox_run('functional-py37', self.root, 'functional py37',
                         '3.7', {'OS_TEST_DBAPI_ADMIN_CONNECTION': 'x'})
        self.assertEqual('x', calls[0]['OS_TEST_DBAPI_ADMIN_CONNECTION'])
        self.assertIn('OS_TEST_DBAPI_ADMIN_CONNECTION',
                      calls[0]['TOX_TESTENV_PASSENV'].split())


class TestDBServers(unittest.TestCase):

    def setUp(self):
        self.mod = load_series()
        self.root = tempfile.mkdtemp(prefix='series-db-')
        self.addCleanup(shutil.rmtree, self.root, True)
        self.mod.step = lambda msg: None
        for var in self.mod.DB_URL_VARS.values():
            self.addCleanup(os.environ.pop, var, None)
            os.environ.pop(var, None)

    def test_servers_given_by_url_are_used_as_they_are(self):
        os.environ['SERIES_MYSQL_URL'] = 'mysql+pymysql://a:b@db1:3306/'
        os.environ['SERIES_POSTGRESQL_URL'] = 'postgresql://a:b@db2/postgres'
        self.mod.ensure_db_programs = lambda *args: self.fail('installing')
        with self.mod.DBServers(('mysql', 'postgresql'), 'why') as servers:
            self.assertEqual({'mysql': 'mysql+pymysql://a:b@db1:3306/',
                              'postgresql': 'postgresql://a:b@db2/postgres'},
                             servers.urls)
            self.assertEqual([], servers.procs)

    def test_a_url_of_the_wrong_kind_is_refused(self):
        os.environ['SERIES_POSTGRESQL_URL'] = 'mysql://a:b@db1/'
        with self.assertRaises(self.mod.Failure) as caught:
            with self.mod.DBServers(('postgresql',), 'why'):
                pass
        self.assertIn("SERIES_POSTGRESQL_URL='mysql://a:b@db1/' is not a "
                      "postgresql URL", str(caught.exception))

    def test_pifpaf_urls_for_sqlalchemy(self):
        self.assertEqual(
            'mysql+pymysql://root@localhost/pifpaf?charset=utf8&'
            'unix_socket=/tmp/x/mysql.socket',
            self.mod.db_url('mysql', {'PIFPAF_URL': 'mysql://root@localhost'
                                      '/pifpaf?unix_socket=/tmp/x/mysql.'
                                      'socket'}))
        user = 'postgres' if os.geteuid() == 0 else getpass.getuser()
        self.assertEqual(
            'postgresql://%s@localhost/postgres?host=/tmp/y&port=9824' % user,
            self.mod.db_url('postgresql', {
                'PIFPAF_URL': 'postgresql://localhost/postgres?host=/tmp/y&'
                              'port=9824'}))

    def test_own_servers_run_by_pifpaf_and_stop(self):
        # Installs MariaDB or PostgreSQL with apt-get as root when
        # missing; otherwise fails, saying how: never skipped.  pifpaf
        # comes from build/venv (./series test tool makes it).
        for kind in ('mysql', 'postgresql'):
            self.mod.ensure_db_programs(kind, 'test')
        with self.mod.DBServers(('mysql', 'postgresql'), 'why') as servers:
            procs = [proc for _kind, proc in servers.procs]
            mysql = servers.urls['mysql']
            postgresql = servers.urls['postgresql']
            socket = mysql.split('unix_socket=', 1)[1]
            self.assertTrue(mysql.startswith('mysql+pymysql://'), mysql)
            # The server may create and drop databases.
            out = subprocess.run(
                [self.mod.db_program('mysql', 'mysql'), '--no-defaults',
                 '-S', socket, '-e', 'CREATE DATABASE series_t; '
                 'DROP DATABASE series_t'], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, universal_newlines=True)
            self.assertEqual(0, out.returncode, out.stdout)
            query = dict(part.split('=', 1) for part in
                         postgresql.split('?', 1)[1].split('&'))
            user = postgresql.split('://', 1)[1].split('@', 1)[0]
            out = subprocess.run(
                [self.mod.db_program('postgresql', 'psql'), '-X', '-h',
                 query['host'], '-p', query['port'], '-U', user, '-d',
                 'postgres', '-c', 'CREATE DATABASE series_t', '-c',
                 'DROP DATABASE series_t'], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, universal_newlines=True)
            self.assertEqual(0, out.returncode, out.stdout)
            if os.geteuid() == 0:
                # Never as root: the sockets belong to the servers' users.
                for path, name in ((socket, 'mysql'),
                                   (query['host'], 'postgres')):
                    self.assertEqual(pwd.getpwnam(name).pw_uid,
                                     os.stat(path).st_uid)
        for proc in procs:
            self.assertIsNotNone(proc.poll())
        self.assertFalse(os.path.exists(socket))
        self.assertFalse(os.path.exists(query['host']))


class TestSilentJob(unittest.TestCase):

    def test_a_silent_job_is_stopped_with_its_children(self):
        mod = load_series()
        root = tempfile.mkdtemp(prefix='series-silent-')
        self.addCleanup(shutil.rmtree, root, True)
        pidfile = os.path.join(root, 'child.pid')
        # The child of the job's shell is silent too: both must go.
        # setsid: a session of its own, as stestr gives its workers.
        script = ('echo started; setsid sleep 120 & echo $! > %s; wait'
                  % pidfile)
        log = os.path.join(root, 'job.log')
        mod.sys.stdout = io.StringIO()
        self.addCleanup(setattr, mod.sys, 'stdout', sys.stdout)
        rc, text = mod.stream(['sh', '-c', script], root, dict(os.environ),
                              log, silence_minutes=0.05)
        self.assertNotEqual(0, rc)
        self.assertIn('started', text)
        self.assertIn('NO OUTPUT FOR 0.05 MINUTES: the job is hung', text)
        self.assertIn('the last line was: started', text)
        with open(log) as f:
            self.assertIn('the job is hung', f.read())
        with open(pidfile) as f:
            child = int(f.read())
        for _ in range(50):
            try:
                os.kill(child, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            self.fail('the silent child %d still runs' % child)
        # A job that speaks and ends is left alone.
        rc, text = mod.stream(['sh', '-c', 'echo a; sleep 1; echo b'],
                              root, dict(os.environ), log,
                              silence_minutes=0.5)
        self.assertEqual((0, 'a\nb\n'), (rc, text))


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

if __name__ == '__main__':
    unittest.main()

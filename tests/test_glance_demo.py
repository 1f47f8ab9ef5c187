"""Tests of demo/glance_demo.py, the module the demo and the acceptance
tests share.  No Glance is needed: only its standard-library parts run.
"""

import configparser
import os
import shutil
import socket
import sys
import tempfile
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'demo'))

import glance_demo  # noqa: E402


class TestConfig(unittest.TestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp(prefix='glance-demo-test-')
        self.addCleanup(shutil.rmtree, self.base, True)
        self.layout = glance_demo.Layout(os.path.join(self.base, 'demo'))

    def parsed(self, web_port=None):
        sections = glance_demo.config_sections(self.layout, 9999, web_port)
        parser = configparser.ConfigParser()
        parser.read_string(glance_demo.render_config(sections))
        return parser

    def test_every_store_has_a_datadir_of_its_own(self):
        conf = self.parsed()
        self.assertEqual('fast:file, cheap:file',
                         conf['DEFAULT']['enabled_backends'])
        self.assertEqual('fast', conf['glance_store']['default_backend'])
        dirs = [conf[name]['filesystem_store_datadir'] for name in
                ('fast', 'cheap', 'os_glance_staging_store',
                 'os_glance_tasks_store')]
        self.assertEqual(4, len(set(dirs)))
        for path in dirs:
            self.assertTrue(path.startswith(self.layout.base + os.sep))

    def test_no_keystone_and_both_import_methods(self):
        conf = self.parsed()
        self.assertEqual('trusted-auth', conf['paste_deploy']['flavor'])
        self.assertEqual('[glance-direct,web-download]',
                         conf['DEFAULT']['enabled_import_methods'])
        self.assertEqual('127.0.0.1', conf['DEFAULT']['bind_host'])
        self.assertIn('X-Tenant-Id', glance_demo.IDENTITY_HEADERS)

    def test_web_download_is_allowed_from_the_local_server_only(self):
        conf = self.parsed(web_port=8123)['import_filtering_opts']
        self.assertEqual('[http]', conf['allowed_schemes'])
        self.assertEqual('[127.0.0.1]', conf['allowed_hosts'])
        self.assertEqual('[8123]', conf['allowed_ports'])

    def test_write_config_starts_afresh(self):
        tree = os.path.join(self.base, 'tree')
        os.makedirs(os.path.join(tree, 'etc'))
        for name in ('glance-api-paste.ini', 'policy.json'):
            with open(os.path.join(tree, 'etc', name), 'w') as f:
                f.write(name)
        os.makedirs(self.layout.base)
        stale = os.path.join(self.layout.base, 'stale')
        open(stale, 'w').close()
        sections = glance_demo.config_sections(self.layout, 9999)
        glance_demo.write_config(self.layout, sections, tree)
        self.assertFalse(os.path.exists(stale))
        for path in (self.layout.conf, self.layout.paste,
                     self.layout.policy):
            self.assertTrue(os.path.isfile(path), path)

    def test_write_config_refuses_a_tree_without_etc(self):
        sections = glance_demo.config_sections(self.layout, 9999)
        with self.assertRaises(glance_demo.DemoError):
            glance_demo.write_config(self.layout, sections, self.base)


class TestFileServer(unittest.TestCase):

    def test_serves_a_directory_on_127_0_0_1(self):
        folder = tempfile.mkdtemp(prefix='glance-demo-web-')
        self.addCleanup(shutil.rmtree, folder, True)
        with open(os.path.join(folder, 'data.raw'), 'wb') as f:
            f.write(b'\x00data')
        server = glance_demo.FileServer(folder).start()
        self.addCleanup(server.stop)
        self.assertTrue(server.url('data.raw').startswith(
            'http://127.0.0.1:'))
        with urllib.request.urlopen(server.url('data.raw'), timeout=10) as r:
            self.assertEqual(b'\x00data', r.read())

    def test_free_port_can_be_bound(self):
        port = glance_demo.free_port()
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', port))


if __name__ == '__main__':
    unittest.main()

"""Tests of bench/bench.py, the parts that need no glance-api: options,
medians and ratios, the table, the verdicts, /proc parsing and the two
configurations.
"""

import configparser
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'bench'))

import bench  # noqa: E402

M = 1 << 20
G = 1 << 30
REQUIRED = ['--build-dir', '/b', '--pristine-python', '/p/python',
            '--pristine-tree', '/p', '--patched-python', '/q/python',
            '--patched-tree', '/q']


def side_run(stage, imp, peak, startup=1.0):
    e2e = 1.0 / (1.0 / stage + 1.0 / imp)
    return {'stage_mbps': stage, 'import_mbps': imp, 'e2e_mbps': e2e,
            'peak_rss_mib': peak, 'startup_s': startup}


def summary(size, limit=500.0, unpatched=(200, 100, 90),
            patched=(200, 100, 91)):
    runs = {'limit': [{'mbps': limit}] * 3,
            'unpatched': [side_run(*unpatched)] * 3,
            'patched': [side_run(*patched)] * 3}
    return bench.summarize(size, runs)


class TestOptions(unittest.TestCase):

    def test_sizes_take_binary_suffixes(self):
        self.assertEqual(256 * M, bench.parse_size('256M'))
        self.assertEqual(G, bench.parse_size('1G'))
        self.assertEqual(16 * M, bench.parse_size(' 16m '))
        self.assertEqual(2 * G, bench.parse_size('2GiB'))
        self.assertEqual(512 << 10, bench.parse_size('512K'))
        self.assertEqual(4096, bench.parse_size('4096'))

    def test_bad_sizes_are_refused(self):
        for text in ('', 'abc', '1T', '-1M', '1.5G', '0M'):
            with self.assertRaises(ValueError, msg=text):
                bench.parse_size(text)

    def test_size_list_keeps_order_and_drops_repeats(self):
        self.assertEqual([256 * M, G], bench.parse_sizes('256M,1G'))
        self.assertEqual([G, 16 * M], bench.parse_sizes('1G, 16M,1024M,'))
        with self.assertRaises(ValueError):
            bench.parse_sizes(',')

    def test_size_labels(self):
        self.assertEqual('256 MiB', bench.size_label(256 * M))
        self.assertEqual('1 GiB', bench.size_label(G))
        self.assertEqual('1536 MiB', bench.size_label(1536 * M))
        self.assertEqual('3 KiB', bench.size_label(3072))
        self.assertEqual('1000 bytes', bench.size_label(1000))

    def test_defaults(self):
        args = bench.parse_args(REQUIRED)
        self.assertEqual([256 * M, G], args.sizes)
        self.assertEqual(3, args.runs)
        self.assertEqual(os.path.join('/b', 'bench.json'), args.json)

    def test_sizes_and_runs(self):
        args = bench.parse_args(REQUIRED + ['--sizes', '16M', '--runs', '1',
                                            '--json', '/tmp/x.json'])
        self.assertEqual([16 * M], args.sizes)
        self.assertEqual(1, args.runs)
        self.assertEqual('/tmp/x.json', args.json)

    def test_bad_options_exit_with_usage(self):
        for extra in (['--runs', '0'], ['--runs', 'x'], ['--sizes', '1T']):
            with contextlib.redirect_stderr(io.StringIO()) as err:
                with self.assertRaises(SystemExit):
                    bench.parse_args(REQUIRED + extra)
            self.assertIn('usage', err.getvalue())


class TestFigures(unittest.TestCase):

    def test_median_and_ratio(self):
        self.assertEqual(2, bench.median([3, 1, 2]))
        self.assertEqual(2.5, bench.median([4, 1, 2, 3]))
        self.assertEqual(2, bench.median([None, 2]))
        self.assertIsNone(bench.median([]))
        self.assertEqual(0.5, bench.ratio(1.0, 2.0))
        self.assertIsNone(bench.ratio(1.0, 0))
        self.assertIsNone(bench.ratio(None, 2.0))

    def test_throughput_in_mb_per_second(self):
        self.assertEqual(2.0, bench.mbps(4 * 10 ** 6, 2.0))
        self.assertIsNone(bench.mbps(1, 0))

    def test_summary(self):
        s = summary(256 * M, limit=400.0, unpatched=(200, 100, 90),
                    patched=(220, 100, 99))
        self.assertEqual('256 MiB', s['label'])
        self.assertEqual(400.0, s['median']['limit']['mbps'])
        self.assertAlmostEqual(1.1, s['ratio']['stage_mbps'])
        self.assertAlmostEqual(1.1, s['ratio']['peak_rss_mib'])
        e2e = s['median']['patched']['e2e_mbps']
        self.assertAlmostEqual(e2e / 400.0,
                               s['fraction_of_limit']['patched'])

    def test_table(self):
        table = bench.format_table([summary(256 * M), summary(G)], 3)
        self.assertIn('medians of 3 runs per side', table)
        lines = table.splitlines()
        heads = [line for line in lines if 'unpatched' in line and
                 'patched' in line and 'ratio' in line and 'limit' in line]
        self.assertEqual(2, len(heads))
        self.assertTrue(heads[0].startswith('256 MiB'))
        self.assertTrue(heads[1].startswith('1 GiB'))
        e2e = [line for line in lines if line.strip().startswith(
            'end-to-end ') and 'MB/s' in line]
        self.assertEqual(2, len(e2e))
        self.assertEqual(['end-to-end', 'MB/s', '500.0', '66.7', '66.7',
                          '1.00'], e2e[0].split())
        memory = [line for line in lines if 'peak memory' in line][0]
        self.assertEqual(['-', '90.0', '91.0', '1.01'], memory.split()[3:])
        fraction = [line for line in lines if 'end-to-end / limit' in line]
        self.assertEqual(['1.00', '0.13', '0.13'], fraction[0].split()[3:])
        # One width for every column, whatever the row.
        widths = set(len(line) for line in lines
                     if line.startswith('  ') and 'MB/s' in line)
        self.assertEqual(1, len(widths))

    def test_missing_figures_show_as_dashes(self):
        s = summary(G)
        s['median']['patched']['stage_mbps'] = None
        s['ratio']['stage_mbps'] = None
        line = [line for line in bench.format_table([s], 1).splitlines()
                if line.strip().startswith('stage')][0]
        self.assertEqual(['-', '200.0', '-', '-'], line.split()[2:])


class TestVerdicts(unittest.TestCase):

    def test_all_targets_met(self):
        small = summary(256 * M, limit=100.0, unpatched=(200, 100, 90),
                        patched=(200, 100, 90))
        big = summary(G, limit=100.0, unpatched=(100, 50, 100),
                      patched=(210, 105, 105))
        checks = bench.verdicts([small, big])
        self.assertEqual([True, True, True], [c['ok'] for c in checks])
        self.assertIn('at 1 GiB >= 2.0: 2.10: PASS', checks[0]['text'])
        self.assertIn('>= 0.5', checks[1]['text'])
        self.assertIn('PASS', checks[1]['text'])
        self.assertIn('+15.0 MiB (unpatched +10.0 MiB): PASS',
                      checks[2]['text'])

    def test_targets_missed(self):
        small = summary(256 * M, unpatched=(200, 100, 90),
                        patched=(100, 50, 90))
        big = summary(G, unpatched=(200, 100, 90), patched=(200, 100, 106))
        checks = bench.verdicts([small, big])
        self.assertEqual([False, False, False], [c['ok'] for c in checks])
        self.assertIn('at 1 GiB >= 2.0: 1.00: FAIL', checks[0]['text'])
        self.assertIn('FAIL', checks[1]['text'])
        self.assertIn('+16.0 MiB', checks[2]['text'])

    def test_throughput_is_judged_at_the_largest_size(self):
        big = summary(G, unpatched=(100, 50, 90), patched=(220, 110, 90))
        small = summary(16 * M, unpatched=(200, 100, 90),
                        patched=(100, 50, 90))
        checks = bench.verdicts([big, small])
        self.assertTrue(checks[0]['ok'])
        self.assertIn('at 1 GiB', checks[0]['text'])

    def test_memory_growth_needs_two_sizes(self):
        checks = bench.verdicts([summary(G)])
        self.assertIsNone(checks[2]['ok'])
        self.assertIn('one size only', checks[2]['text'])

    def test_memory_growth_goes_from_smallest_to_largest(self):
        big = summary(G, patched=(200, 100, 150))
        small = summary(16 * M, patched=(200, 100, 100))
        checks = bench.verdicts([big, small])
        self.assertIn('16 MiB -> 1 GiB', checks[2]['text'])
        self.assertIn('+50.0 MiB', checks[2]['text'])

    def test_ratio_verdict(self):
        s = summary(G, unpatched=(200, 100, 90), patched=(210, 100, 90))
        s['label'] = '1 GiB, store on tmpfs'
        check = bench.ratio_verdict('another filesystem', s)
        self.assertTrue(check['ok'])
        self.assertIn('another filesystem: end-to-end patched/unpatched at '
                      '1 GiB, store on tmpfs >= 1.0: 1.02: PASS',
                      check['text'])
        s = summary(G, unpatched=(200, 100, 90), patched=(190, 100, 90))
        self.assertFalse(bench.ratio_verdict('web-download', s)['ok'])


def pair(cases, old, new, figures, label='x'):
    runs = {cases[0]: [dict((key, v) for key, *_ in figures) for v in old],
            cases[1]: [dict((key, v) for key, *_ in figures) for v in new]}
    return bench.summarize_pair(label, G, runs, cases, figures)


class TestPairs(unittest.TestCase):

    def test_medians_and_ratio_of_two_cases(self):
        s = pair(bench.SIDES, [100, 80, 90], [95, 300, 99],
                 bench.CONCURRENT_FIGURES)
        self.assertEqual(90, s['median']['unpatched']['e2e_mbps'])
        self.assertEqual(99, s['median']['patched']['e2e_mbps'])
        self.assertAlmostEqual(1.1, s['ratio']['e2e_mbps'])
        self.assertEqual(['unpatched', 'patched'], s['cases'])

    def test_four_at_once_verdict(self):
        s = pair(bench.SIDES, [100, 100, 100], [100, 101, 99],
                 bench.CONCURRENT_FIGURES, '4 x 256 MiB at once')
        check = bench.pair_verdict('four at once', s,
                                   bench.CONCURRENT_TARGET)
        self.assertTrue(check['ok'])
        self.assertEqual('four at once: end-to-end patched/unpatched at '
                         '4 x 256 MiB at once >= 1.00: 1.00: PASS',
                         check['text'])
        s = pair(bench.SIDES, [100] * 3, [99] * 3, bench.CONCURRENT_FIGURES)
        self.assertFalse(bench.pair_verdict(
            'four at once', s, bench.CONCURRENT_TARGET)['ok'])

    def test_forwarded_within_five_percent_of_local(self):
        cases = bench.FORWARD_CASES
        for forwarded, ok in ((95.0, True), (94.9, False), (120.0, True)):
            s = pair(cases, [100] * 3, [forwarded] * 3,
                     bench.FORWARD_FIGURES, '1 GiB, two nodes')
            check = bench.pair_verdict('forwarded', s, bench.FORWARD_TARGET)
            self.assertEqual(ok, check['ok'], forwarded)
        self.assertIn('forwarded: end-to-end forwarded/local at 1 GiB, two '
                      'nodes >= 0.95: 1.20: PASS', check['text'])

    def test_a_case_not_measured_fails(self):
        s = pair(bench.FORWARD_CASES, [100], [None], bench.FORWARD_FIGURES)
        check = bench.pair_verdict('forwarded', s, bench.FORWARD_TARGET)
        self.assertFalse(check['ok'])
        self.assertIn(': -: FAIL', check['text'])

    def test_pair_table(self):
        s = pair(bench.FORWARD_CASES, [100] * 3, [98] * 3,
                 bench.FORWARD_FIGURES, '1 GiB, two nodes')
        lines = bench.format_pair(s, bench.FORWARD_FIGURES)
        self.assertEqual(['1', 'GiB,', 'two', 'nodes', 'local', 'forwarded',
                          'ratio'], lines[1].split())
        row = [line for line in lines if 'end-to-end' in line][0]
        self.assertEqual(['100.0', '98.0', '0.98'], row.split()[2:])
        self.assertEqual('  ratio = forwarded / local', lines[-1])


class TestProc(unittest.TestCase):

    def test_vm_hwm(self):
        text = 'Name:\tpython3.7\nVmPeak:\t  300 kB\nVmHWM:\t  123456 kB\n'
        self.assertEqual(123456, bench.vm_hwm_kib(text))
        self.assertIsNone(bench.vm_hwm_kib('Name:\tkthreadd\n'))

    def test_process_group_from_stat(self):
        self.assertEqual(42, bench.stat_pgrp(
            '4242 (py (x) y) S 1 42 42 0 -1 4194560 0 0'))

    @unittest.skipUnless(os.path.isdir('/proc/self'), 'needs /proc')
    def test_this_process_is_in_its_group(self):
        self.assertIn(os.getpid(), bench.group_pids(os.getpgrp()))
        self.assertGreater(bench.read_vm_hwm(os.getpid()), 0)
        self.assertIsNone(bench.read_vm_hwm(-1))

    @unittest.skipUnless(os.path.isdir('/proc/self'), 'needs /proc')
    def test_sampling_waits_for_the_start_up_clean_up(self):
        base = tempfile.mkdtemp(prefix='bench-test-')
        self.addCleanup(shutil.rmtree, base, True)
        layout = bench.glance_demo.Layout(base)
        api = bench.BenchApi('/python', layout, 8080)
        # No clean-up logged (18.0.1): no wait.
        with open(layout.log, 'w') as f:
            f.write('INFO glance.common.wsgi [-] Started child 1\n')
        api.wait_for_cleanup(timeout=1)
        cleanup = subprocess.Popen(['sleep', '0.5'])
        with open(layout.log, 'a') as f:
            f.write('INFO glance.common.wsgi [-] Removing the orphans of '
                    'the reserved stores in process %d\n' % cleanup.pid)
        # It waits for that process to end (a zombie holds no memory).
        started = time.monotonic()
        api.wait_for_cleanup(timeout=10)
        self.assertGreater(time.monotonic() - started, 0.3)
        self.assertIsNotNone(cleanup.poll())
        hung = subprocess.Popen(['sleep', '30'])
        self.addCleanup(hung.kill)
        with open(layout.log, 'a') as f:
            f.write('INFO glance.common.wsgi [-] Removing the orphans of '
                    'the reserved stores in process %d\n' % hung.pid)
        with self.assertRaises(bench.BenchError) as ctx:
            api.wait_for_cleanup(timeout=0.2)
        self.assertIn('process %d' % hung.pid, str(ctx.exception))

    def test_run_timeout_grows_with_the_size(self):
        self.assertLess(bench.run_timeout(16 * M), bench.run_timeout(G))
        self.assertGreater(bench.run_timeout(G), G / (bench.MB * 100.0))


class TestConfigurations(unittest.TestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp(prefix='bench-test-')
        self.addCleanup(shutil.rmtree, self.base, True)

    def parsed(self, name):
        side = bench.Side(name, '/python', '/tree',
                          os.path.join(self.base, name))
        parser = configparser.ConfigParser()
        parser.read_string(bench.glance_demo.render_config(
            side.sections(8080)))
        return side, parser

    def test_target_store_on_another_filesystem(self):
        for name in bench.SIDES:
            side = bench.Side(name, '/python', '/tree',
                              os.path.join(self.base, name),
                              store_dir='/dev/shm/x/' + name)
            conf = configparser.ConfigParser()
            conf.read_string(bench.glance_demo.render_config(
                side.sections(8080)))
            self.assertEqual('/dev/shm/x/' + name, conf.get(
                bench.glance_demo.DEFAULT_STORE,
                'filesystem_store_datadir'))
            self.assertEqual('/dev/shm/x/' + name, side.store)
            self.assertIn(side.store, side.data_dirs())
            self.assertFalse(side.staging.startswith('/dev/shm'))

    def test_unpatched_stages_in_node_staging_uri(self):
        side, conf = self.parsed('unpatched')
        for store in bench.glance_demo.RESERVED_STORES:
            self.assertFalse(conf.has_section(store))
        self.assertEqual('file://' + side.staging,
                         conf.get('DEFAULT', 'node_staging_uri'))
        self.assertEqual(side.work_dir, conf.get('task', 'work_dir'))
        self.assertTrue(side.staging.startswith(self.base))

    def test_patched_is_the_demo_configuration(self):
        side, conf = self.parsed('patched')
        self.assertFalse(conf.has_option('DEFAULT', 'node_staging_uri'))
        self.assertFalse(conf.has_section('task'))
        self.assertEqual(side.staging, conf.get(
            'os_glance_staging_store', 'filesystem_store_datadir'))
        self.assertEqual(side.work_dir, conf.get(
            'os_glance_tasks_store', 'filesystem_store_datadir'))

    def test_both_sides_alike_otherwise(self):
        _side, unpatched = self.parsed('unpatched')
        _side, patched = self.parsed('patched')

        def own(conf, section):
            return set(conf.options(section)) - set(conf.defaults())
        for section in ('fast', 'cheap', 'glance_store', 'paste_deploy'):
            self.assertEqual(own(unpatched, section), own(patched, section))
        for option in ('bind_host', 'workers', 'enabled_backends',
                       'enabled_import_methods', 'image_size_cap'):
            self.assertEqual(unpatched.get('DEFAULT', option),
                             patched.get('DEFAULT', option))
        self.assertEqual('127.0.0.1', patched.get('DEFAULT', 'bind_host'))
        self.assertEqual('1', patched.get('DEFAULT', 'workers'))

    def test_a_cluster_node(self):
        side = bench.Side('patched', '/python', '/tree',
                          os.path.join(self.base, 'b'))
        side.self_url = 'http://127.0.0.1:9999'
        side.db_path = '/x/a.sqlite'
        conf = configparser.ConfigParser()
        conf.read_string(bench.glance_demo.render_config(side.sections(9999)))
        self.assertEqual('http://127.0.0.1:9999',
                         conf.get('DEFAULT', 'worker_self_reference_url'))
        self.assertEqual('sqlite:////x/a.sqlite',
                         conf.get('database', 'connection'))
        _side, alone = self.parsed('patched')
        self.assertFalse(alone.has_option('DEFAULT',
                                          'worker_self_reference_url'))

    def test_forwarded_imports_are_counted_in_the_log(self):
        log = os.path.join(self.base, 'glance-api.log')
        self.assertEqual(0, bench.forward_lines(log, 'abc'))
        with open(log, 'w') as f:
            f.write('INFO Passing the import of image abc to http://x, '
                    'the node holding its staged data\n'
                    'INFO Passing the import of image abd to http://x\n')
        self.assertEqual(1, bench.forward_lines(log, 'abc'))

    def test_clear_empties_every_data_directory(self):
        side = bench.Side('unpatched', '/python', '/tree',
                          os.path.join(self.base, 'unpatched'))
        side.clear()
        for folder in side.data_dirs():
            with open(os.path.join(folder, 'image'), 'w') as f:
                f.write('data')
        side.clear()
        for folder in side.data_dirs():
            self.assertEqual([], os.listdir(folder))


if __name__ == '__main__':
    unittest.main()

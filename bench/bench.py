#!/usr/bin/env python3
"""Staging and import throughput and memory of glance-api.

Run by ``./series bench``, which builds the two virtualenvs first and
passes their Pythons.  For each image size, in one run and on one disk
(everything lives under ``build/bench/``), it measures:

limit
    the image file copied to another file with sha512 computed on the
    way: the least an import must do;
unpatched
    Glance 18.0.1 as released (tag ``pristine``), multiple stores,
    ``node_staging_uri`` and ``[task]/work_dir``;
patched
    the series: the demo's configuration, with the reserved stores.

For the two glance-api sides each run starts a fresh glance-api, stages
the image (PUT .../stage, streamed from the file), imports it with
glance-direct and polls until the image is active, checks its size,
checksum and multihash, then deletes it and stops glance-api.  Each side
first does one small import that is not measured.  The runs alternate
(limit, unpatched, patched, limit, unpatched, patched, ...), each after a
short pause.  Then four clients import an image of the smallest size
at once on one glance-api of each side, and two patched glance-api nodes
sharing one database compare an import posted to the node that staged
the data with one posted to the other node, which forwards it.  The
medians, the patched/unpatched ratios and the
end-to-end throughput as a fraction of the limit are printed as a table
and written to ``build/bench.json``; bench/README.rst says more.

Standard library only (it runs with build/venv's Python 3.7); Glance only
ever runs as a separate glance-api process, on 127.0.0.1.
"""

import argparse
import contextlib
import datetime
import functools
import hashlib
import http.client
import http.server
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'demo'))

import glance_demo  # noqa: E402

DEFAULT_SIZES = '256M,1G'
DEFAULT_RUNS = 3
SIDES = ('unpatched', 'patched')
MB = 1000 * 1000                 # throughputs are in MB/s: 10^6 bytes/s
MiB = 1 << 20
COPY_CHUNK = 1 << 20             # the limit copies 1 MiB at a time
SEND_CHUNK = 1 << 20             # the client sends the stage body so
REQUEST_TIMEOUT = 120            # seconds for any one socket operation
STARTUP_TIMEOUT = 120            # seconds for glance-api to answer
POLL_INTERVAL = 0.05             # seconds between two GETs of the image
MEMORY_INTERVAL = 0.1            # seconds between two looks at /proc
SLOWEST_MBPS = 4                 # below this a run is taken as stuck
# Seconds to wait before each measurement.  In a virtual machine that
# hands freed memory back to its host (free page reporting, about 2 s
# after the release), writing into memory freed just before is several
# times faster than writing into memory the host took back: waiting makes
# every measurement start alike, whatever came just before it.
SETTLE_SECONDS = 3
MEMORY_GROWTH_LIMIT_MIB = 16
WARM_UP_SIZE = 8 << 20
RATIO_TARGET = 2.0
SHM = '/dev/shm'
LIMIT_FRACTION_TARGET = 0.5

# (key, label, unit, format) of each figure, in table order.
FIGURES = (
    ('stage_mbps', 'stage', 'MB/s', '%.1f'),
    ('import_mbps', 'import', 'MB/s', '%.1f'),
    ('e2e_mbps', 'end-to-end', 'MB/s', '%.1f'),
    ('peak_rss_mib', 'peak memory', 'MiB', '%.1f'),
    ('startup_s', 'start-up', 's', '%.2f'),
)


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# ------------------------------------------------------ the pure parts

_SIZE_UNITS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}


def parse_size(text):
    """'256M' -> 268435456: K, M and G are powers of 1024."""
    match = re.match(r'^\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*$', text)
    if not match:
        raise ValueError('not a size: %r (say e.g. 256M or 1G)' % text)
    value = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    if value <= 0:
        raise ValueError('a size must be more than 0: %r' % text)
    return value


def parse_sizes(text):
    """'256M,1G' -> [268435456, 1073741824], in the order given."""
    sizes = []
    for part in text.split(','):
        if not part.strip():
            continue
        size = parse_size(part)
        if size not in sizes:
            sizes.append(size)
    if not sizes:
        raise ValueError('no size given')
    return sizes


def size_label(size):
    """268435456 -> '256 MiB'; the largest unit that divides the size."""
    for unit, name in ((1 << 30, 'GiB'), (1 << 20, 'MiB'), (1 << 10, 'KiB')):
        if size % unit == 0:
            return '%d %s' % (size // unit, name)
    return '%d bytes' % size


def median(values):
    """The median of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values)


def ratio(new, old):
    """new / old, or None when either is missing or old is 0."""
    if new is None or old is None or old == 0:
        return None
    return new / old


def mbps(size, seconds):
    return size / seconds / MB if seconds > 0 else None


def summarize(size, runs):
    """Medians and ratios for one size.

    :param runs: {'limit': [{'mbps': ...}], 'unpatched': [run, ...],
        'patched': [run, ...]}, each run a dict with the FIGURES keys
    """
    med = {'limit': {'mbps': median(r['mbps'] for r in runs['limit'])}}
    for side in SIDES:
        med[side] = dict((key, median(r.get(key) for r in runs[side]))
                         for key, _label, _unit, _fmt in FIGURES)
    return {
        'size': size,
        'label': size_label(size),
        'runs': runs,
        'median': med,
        'ratio': dict((key, ratio(med['patched'][key],
                                  med['unpatched'][key]))
                      for key, _label, _unit, _fmt in FIGURES),
        'fraction_of_limit': dict(
            (side, ratio(med[side]['e2e_mbps'], med['limit']['mbps']))
            for side in SIDES),
    }


def _cell(fmt, value, width):
    text = '-' if value is None else fmt % value
    return text.rjust(width)


def format_table(summaries, runs):
    """The table of medians, as text."""
    lines = [
        'medians of %d run%s per side; MB = 10^6 bytes; memory: peak '
        'resident memory (VmHWM)' % (runs, '' if runs == 1 else 's'),
        'of glance-api, summed over its process group (workers = 1: the '
        'parent and its worker)',
    ]
    for summary in summaries:
        med = summary['median']
        lines.append('')
        lines.append('%-28s %9s %10s %10s %10s' % (
            summary['label'], 'limit', 'unpatched', 'patched', 'ratio'))
        for key, label, unit, fmt in FIGURES:
            limit = med['limit']['mbps'] if key == 'e2e_mbps' else None
            lines.append('  %-18s %-7s %s %s %s %s' % (
                label, unit, _cell(fmt, limit, 9),
                _cell(fmt, med['unpatched'][key], 10),
                _cell(fmt, med['patched'][key], 10),
                _cell('%.2f', summary['ratio'][key], 10)))
        frac = summary['fraction_of_limit']
        lines.append('  %-26s %s %s %s' % (
            'end-to-end / limit', _cell('%.2f', 1.0, 9),
            _cell('%.2f', frac['unpatched'], 10),
            _cell('%.2f', frac['patched'], 10)))
    lines.append('')
    lines.append('ratio = patched / unpatched (above 1: patched is faster '
                 'for MB/s, bigger')
    lines.append('for memory, slower to start for start-up)')
    return '\n'.join(lines)


def verdicts(summaries):
    """One verdict per target: [{'target', 'ok', 'text'}].

    The throughput targets are checked at the largest size measured, the
    issue's 1 GiB in the default run; the memory target from the smallest
    size to the largest.  'ok' is None when a target was not measured.
    """
    result = []
    by_size = sorted(summaries, key=lambda s: s['size'])
    big = by_size[-1]
    r = big['ratio']['e2e_mbps']
    ok = r is not None and r >= RATIO_TARGET
    result.append({
        'target': 'same filesystem: end-to-end patched/unpatched >= %.1f'
                  % RATIO_TARGET,
        'ok': ok,
        'text': 'same filesystem: end-to-end patched/unpatched at %s >= '
                '%.1f: %s: %s' % (big['label'], RATIO_TARGET,
                                  '-' if r is None else '%.2f' % r,
                                  'PASS' if ok else 'FAIL'),
    })
    f = big['fraction_of_limit']['patched']
    ok = f is not None and f >= LIMIT_FRACTION_TARGET
    result.append({
        'target': 'same filesystem: patched end-to-end >= %.1f of the '
                  'limit' % LIMIT_FRACTION_TARGET,
        'ok': ok,
        'text': 'same filesystem: patched end-to-end / limit at %s >= '
                '%.1f: %s: %s' % (big['label'], LIMIT_FRACTION_TARGET,
                                  '-' if f is None else '%.2f' % f,
                                  'PASS' if ok else 'FAIL'),
    })
    target = 'memory growth < %d MiB' % MEMORY_GROWTH_LIMIT_MIB
    if len(by_size) < 2:
        result.append({
            'target': target, 'ok': None,
            'text': 'peak memory growth: not measured (one size only)'})
        return result
    small = by_size[0]
    growth = {}
    for side in SIDES:
        a = small['median'][side]['peak_rss_mib']
        b = big['median'][side]['peak_rss_mib']
        growth[side] = None if a is None or b is None else b - a
    ok = growth['patched'] is not None and \
        growth['patched'] < MEMORY_GROWTH_LIMIT_MIB
    result.append({
        'target': target, 'ok': ok, 'growth_mib': growth,
        'text': 'patched glance-api peak memory growth %s -> %s < %d '
                'MiB: %s (unpatched %s): %s' % (
                    small['label'], big['label'], MEMORY_GROWTH_LIMIT_MIB,
                    _signed_mib(growth['patched']),
                    _signed_mib(growth['unpatched']),
                    'PASS' if ok else 'FAIL'),
    })
    return result


# (key, label, unit, format) of the figures of four imports at once and
# of the forwarded import, in table order.
CONCURRENT_FIGURES = (
    ('e2e_mbps', 'aggregate end-to-end', 'MB/s', '%.1f'),
    ('wall_s', 'wall time', 's', '%.2f'),
    ('peak_rss_mib', 'peak memory', 'MiB', '%.1f'),
)
FORWARD_FIGURES = (
    ('stage_mbps', 'stage', 'MB/s', '%.1f'),
    ('import_mbps', 'import', 'MB/s', '%.1f'),
    ('e2e_mbps', 'end-to-end', 'MB/s', '%.1f'),
)
CONCURRENT_IMPORTS = 4
CONCURRENT_TARGET = 1.0
FORWARD_TARGET = 0.95
FORWARD_CASES = ('local', 'forwarded')


def summarize_pair(label, size, runs, cases, figures):
    """Medians of two cases and the ratio cases[1] / cases[0] of each.

    :param runs: {case: [run, ...]}, each run a dict with the figures'
        keys
    """
    med = dict((case, dict((key, median(r.get(key) for r in runs[case]))
                           for key, _label, _unit, _fmt in figures))
               for case in cases)
    return {
        'label': label,
        'size': size,
        'cases': list(cases),
        'runs': runs,
        'median': med,
        'ratio': dict((key, ratio(med[cases[1]][key], med[cases[0]][key]))
                      for key, _label, _unit, _fmt in figures),
    }


def format_pair(summary, figures):
    """The table of one summarize_pair result, as lines of text."""
    old, new = summary['cases']
    lines = ['', '%-28s %9s %10s %10s' % (summary['label'], old, new,
                                          'ratio')]
    for key, label, unit, fmt in figures:
        lines.append('  %-20s %-5s %s %s %s' % (
            label, unit, _cell(fmt, summary['median'][old][key], 9),
            _cell(fmt, summary['median'][new][key], 10),
            _cell('%.2f', summary['ratio'][key], 10)))
    lines.append('  ratio = %s / %s' % (new, old))
    return lines


def pair_verdict(case, summary, target):
    """End-to-end cases[1]/cases[0] of a summarize_pair result >= target."""
    old, new = summary['cases']
    r = summary['ratio']['e2e_mbps']
    ok = r is not None and r >= target
    return {
        'target': '%s: end-to-end %s/%s >= %.2f' % (case, new, old, target),
        'ok': ok,
        'text': '%s: end-to-end %s/%s at %s >= %.2f: %s: %s' % (
            case, new, old, summary['label'], target,
            '-' if r is None else '%.2f' % r, 'PASS' if ok else 'FAIL'),
    }


def _signed_mib(value):
    return '-' if value is None else '%+.1f MiB' % value


def vm_hwm_kib(status_text):
    """The VmHWM of a /proc/<pid>/status text, in KiB, or None."""
    match = re.search(r'^VmHWM:\s+(\d+)\s+kB', status_text, re.M)
    return int(match.group(1)) if match else None


def stat_pgrp(stat_text):
    """The process group of a /proc/<pid>/stat text.

    The command name in parentheses may hold spaces and parentheses: the
    fields are counted after the last ')'.
    """
    fields = stat_text[stat_text.rindex(')') + 2:].split()
    return int(fields[2])


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='./series bench',
        description='Staging and import throughput and memory of '
                    'glance-api, patched against unpatched, beside the '
                    'raw-copy limit.')
    parser.add_argument('--sizes', default=DEFAULT_SIZES, type=_sizes,
                        help='image sizes, comma-separated, K/M/G = '
                             'KiB/MiB/GiB (default %s)' % DEFAULT_SIZES)
    parser.add_argument('--runs', default=DEFAULT_RUNS, type=_positive,
                        help='runs per side and size (default %d)'
                             % DEFAULT_RUNS)
    parser.add_argument('--json', help='where to write the results '
                        '(default build/bench.json)')
    parser.add_argument('--build-dir', required=True, help=argparse.SUPPRESS)
    for side in ('pristine', 'patched'):
        parser.add_argument('--%s-python' % side, required=True,
                            help=argparse.SUPPRESS)
        parser.add_argument('--%s-tree' % side, required=True,
                            help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = os.path.join(args.build_dir, 'bench.json')
    return args


def _sizes(text):
    try:
        return parse_sizes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('not a number: %r' % text)
    if value < 1:
        raise argparse.ArgumentTypeError('must be at least 1')
    return value


# ---------------------------------------------------------- the machine

def say(msg=''):
    print(msg, flush=True)


def group_pids(pgid):
    """Every process of a process group, from /proc."""
    pids = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name) as f:
                if stat_pgrp(f.read()) == pgid:
                    pids.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def read_vm_hwm(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            return vm_hwm_kib(f.read())
    except OSError:
        return None


class PeakMemory(object):
    """The VmHWM of every process of a group, sampled in a thread.

    VmHWM is the peak of a live process, so a late sample still holds the
    peak; sampling catches children that would exit before the end.
    """

    def __init__(self, pgid):
        self.pgid = pgid
        self.peaks = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name='bench-memory')

    def sample(self):
        for pid in group_pids(self.pgid):
            hwm = read_vm_hwm(pid)
            if hwm is not None:
                self.peaks[pid] = max(hwm, self.peaks.get(pid, 0))

    def _loop(self):
        while not self._stop.wait(MEMORY_INTERVAL):
            self.sample()

    def start(self):
        self.sample()
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        self.sample()
        return sum(self.peaks.values())


CLEANUP_LINE = re.compile(
    r'Removing the orphans of the reserved stores in process (\d+)')


class BenchApi(glance_demo.GlanceApi):
    """glance-api, ready at its first 200 on /versions."""
    ready_path = '/versions'
    poll_interval = 0.02

    def wait_for_cleanup(self, timeout=30):
        """Wait for the patched start-up clean-up's process to end.

        It is forked from the parent once the worker serves, shares the
        parent's pages, and ends within a fraction of a second: counted
        in the sum of VmHWM it would add the parent's size again to a
        run's peak, or not, by the luck of timing.
        """
        with open(self.layout.log) as f:
            found = CLEANUP_LINE.findall(f.read())
        if not found:
            return
        pid = int(found[-1])
        deadline = time.monotonic() + timeout
        while read_vm_hwm(pid) is not None:
            if time.monotonic() > deadline:
                raise BenchError('the start-up clean-up (process %d) did '
                                 'not end in %d s' % (pid, timeout))
            time.sleep(0.02)


class Client(object):
    """Just enough of the Images API, over http.client."""

    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection('127.0.0.1', self.port,
                                          timeout=REQUEST_TIMEOUT,
                                          blocksize=SEND_CHUNK)
        all_headers = dict(glance_demo.IDENTITY_HEADERS)
        all_headers.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def json(self, method, path, body, expect):
        status, data = self.request(
            method, path, json.dumps(body).encode(),
            {'Content-Type': 'application/json'})
        return self._check(method, path, status, data, expect)

    def _check(self, method, path, status, data, expect):
        if status != expect:
            raise BenchError('%s %s: %d, not %d: %s' % (
                method, path, status, expect,
                data.decode('utf-8', 'replace')[:500]))
        return json.loads(data.decode('utf-8')) if data else None

    def create_image(self):
        return self.json('POST', '/v2/images', {
            'name': 'bench', 'disk_format': 'raw',
            'container_format': 'bare'}, 201)

    def image(self, image_id):
        path = '/v2/images/' + image_id
        status, data = self.request('GET', path)
        return self._check('GET', path, status, data, 200)

    def stage(self, image_id, path, size):
        """Stream the file as the body of the stage call."""
        url = '/v2/images/%s/stage' % image_id
        with open(path, 'rb') as f:
            status, data = self.request(
                'PUT', url, f, {'Content-Type': 'application/octet-stream',
                                'Content-Length': str(size)})
        self._check('PUT', url, status, data, 204)

    def import_image(self, image_id, uri=None):
        method = {'name': 'glance-direct'}
        if uri is not None:
            method = {'name': 'web-download', 'uri': uri}
        self.json('POST', '/v2/images/%s/import' % image_id,
                  {'method': method}, 202)

    def wait_active(self, image_id, since, deadline):
        """Poll until the image is active; fail if the import failed.

        since is the image's updated_at before the import was asked for.
        The task sets 'importing' after the call has answered; a failed
        import leaves 'importing' again (the patched code hands the image
        back as 'uploading').
        """
        seen = []
        # A random phase: the polls would otherwise fall at the same
        # times after every import call, and an import a little shorter
        # than another could show up a whole interval shorter.
        time.sleep(random.uniform(0, POLL_INTERVAL))
        while True:
            image = self.image(image_id)
            status = image['status']
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 'active':
                return image
            if status in ('killed', 'deleted') or (
                    status != 'importing' and (
                        'importing' in seen or image['updated_at'] != since)):
                raise BenchError('the import of %s failed: states seen: %s'
                                 % (image_id, ' -> '.join(seen)))
            if time.monotonic() > deadline:
                raise BenchError('the import of %s did not end in time; '
                                 'states seen: %s' % (image_id,
                                                      ' -> '.join(seen)))
            time.sleep(POLL_INTERVAL)

    def delete(self, image_id):
        status, _data = self.request('DELETE', '/v2/images/' + image_id)
        return status


class ImageData(object):
    """A file of random bytes of one size, with its md5 and sha512."""

    def __init__(self, folder, size):
        self.size = size
        self.path = os.path.join(folder, 'image-%d.bin' % size)
        self.meta = self.path + '.json'
        self.md5 = self.sha512 = None

    def ensure(self):
        try:
            st = os.stat(self.path)
            with open(self.meta) as f:
                meta = json.load(f)
            if meta['size'] == self.size == st.st_size and \
                    meta['mtime_ns'] == st.st_mtime_ns:
                self.md5, self.sha512 = meta['md5'], meta['sha512']
                return self
        except (OSError, ValueError, KeyError):
            pass
        say('==> writing %s of random bytes to %s' % (
            size_label(self.size), os.path.relpath(self.path)))
        md5, sha512 = hashlib.md5(), hashlib.sha512()
        left = self.size
        with open(self.path + '.tmp', 'wb') as f:
            while left:
                block = os.urandom(min(left, COPY_CHUNK))
                md5.update(block)
                sha512.update(block)
                f.write(block)
                left -= len(block)
            # On disk before the first run, which would otherwise share the
            # disk with its write-back.
            f.flush()
            os.fsync(f.fileno())
        os.replace(self.path + '.tmp', self.path)
        self.md5, self.sha512 = md5.hexdigest(), sha512.hexdigest()
        with open(self.meta, 'w') as f:
            json.dump({'size': self.size, 'md5': self.md5,
                       'sha512': self.sha512,
                       'mtime_ns': os.stat(self.path).st_mtime_ns}, f)
        return self


def measure_limit(data, folder):
    """Copy the image file with sha512 on the way; return the run."""
    dest = os.path.join(folder, 'copy.bin')
    buf = bytearray(COPY_CHUNK)
    view = memoryview(buf)
    digest = hashlib.sha512()
    start = time.monotonic()
    try:
        with open(data.path, 'rb') as src, open(dest, 'wb') as dst:
            while True:
                n = src.readinto(buf)
                if not n:
                    break
                digest.update(view[:n])
                dst.write(view[:n])
        seconds = time.monotonic() - start
        copied = os.path.getsize(dest)
    finally:
        if os.path.exists(dest):
            os.unlink(dest)
    if copied != data.size or digest.hexdigest() != data.sha512:
        raise BenchError('the limit copy of %s is wrong' % data.path)
    return {'seconds': seconds, 'mbps': mbps(data.size, seconds)}


class Side(object):
    """One glance-api to compare: its Python, tree and configuration."""

    def __init__(self, name, python, tree, base, store_dir=None):
        self.name = name
        self.web_port = None
        # A node of a two-node cluster: the URL the other node reaches it
        # at, and the database file it shares (None: its own).
        self.self_url = None
        self.db_path = None
        self.python = python
        self.tree = tree
        self.layout = glance_demo.Layout(base)
        if store_dir is not None:
            # The target store on another filesystem than the staging.
            self.layout.datadirs[glance_demo.DEFAULT_STORE] = store_dir
        self.template_db = self.layout.db + '.template'
        if name == 'unpatched':
            self.staging = os.path.join(self.layout.base, 'staging')
            self.work_dir = os.path.join(self.layout.base, 'work_dir')
        else:
            self.staging = self.layout.datadirs[glance_demo.STAGING_STORE]
            self.work_dir = self.layout.datadirs[glance_demo.TASKS_STORE]
        self.store = self.layout.datadirs[glance_demo.DEFAULT_STORE]

    def sections(self, port):
        sections = glance_demo.config_sections(self.layout, port,
                                               self.web_port)
        # As users run it: a parent and one worker process, not the
        # demo's single process.
        sections['DEFAULT']['workers'] = '1'
        if self.self_url is not None:
            sections['DEFAULT']['worker_self_reference_url'] = self.self_url
        if self.db_path is not None:
            sections['database'] = {'connection': 'sqlite:///' +
                                    self.db_path}
        if self.name == 'unpatched':
            # Glance 18.0.1 knows no reserved stores: it stages into
            # node_staging_uri and works in [task]/work_dir.
            for store in glance_demo.RESERVED_STORES:
                del sections[store]
            sections['DEFAULT']['node_staging_uri'] = 'file://' + \
                self.staging
            sections['task'] = {'work_dir': self.work_dir}
        return sections

    def data_dirs(self):
        dirs = [self.staging, self.work_dir]
        dirs += [d for d in self.layout.datadirs.values() if d not in dirs]
        return dirs

    def prepare(self):
        """Write the configuration and the database; compile the tree."""
        say('==> %s: configuration and database in %s' % (
            self.name, os.path.relpath(self.layout.base)))
        glance_demo.write_config(self.layout, self.sections(0), self.tree)
        glance_demo.db_sync(self.python, self.layout)
        shutil.copy(self.layout.db, self.template_db)
        # Both trees are installed in develop mode: compile them alike so
        # that no run pays for compiling Glance.
        subprocess.run([self.python, '-m', 'compileall', '-q',
                        os.path.join(self.tree, 'glance')],
                       stdout=subprocess.DEVNULL, timeout=600)

    def clear(self):
        """Remove every image file the runs left (the disk must not fill)."""
        for folder in self.data_dirs():
            if os.path.isdir(folder):
                shutil.rmtree(folder)
            os.makedirs(folder)

    def reset(self, port):
        """A clean start for a run: empty stores, the fresh database."""
        self.clear()
        shutil.copy(self.template_db, self.layout.db)
        with open(self.layout.conf, 'w') as f:
            f.write(glance_demo.render_config(self.sections(port)))


def run_timeout(size):
    """How long one run may take at most, in seconds."""
    return STARTUP_TIMEOUT + 2 * (60 + size / (SLOWEST_MBPS * MB))


def measure_side(side, data, web=None):
    """Start glance-api, stage and import the image; return the run.

    With web, a WebServer, the import is a web-download of the image
    file from it, with no stage: its stage time is 0.
    """
    port = glance_demo.free_port()
    side.reset(port)
    api = BenchApi(side.python, side.layout, port)
    timeout = run_timeout(data.size)
    expired = threading.Event()

    def expire():
        expired.set()
        if api.proc is not None and api.proc.poll() is None:
            try:
                os.killpg(api.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    watchdog.start()
    memory = None
    try:
        start = time.monotonic()
        api.start(STARTUP_TIMEOUT)
        startup = time.monotonic() - start
        api.wait_for_cleanup()
        memory = PeakMemory(api.proc.pid).start()
        client = Client(port)
        image_id = client.create_image()['id']
        t0 = time.monotonic()
        if web is None:
            client.stage(image_id, data.path, data.size)
        t1 = time.monotonic() if web is None else t0
        # Not timed: only the wait needs it.
        since = client.image(image_id)['updated_at']
        t2 = time.monotonic()
        client.import_image(image_id, None if web is None else web.url(data))
        image = client.wait_active(image_id, since, start + timeout)
        t3 = time.monotonic()
        peak_kib = memory.stop()
        check_image(side, image, data)
        staged_left = os.path.exists(os.path.join(side.staging, image_id))
        client.delete(image_id)
    except Exception as exc:
        if expired.is_set():
            raise BenchError('%s: the run took more than %d s (%s); '
                             'glance-api log: %s' % (
                                 side.name, timeout, exc,
                                 os.path.relpath(side.layout.log)))
        if isinstance(exc, (BenchError, glance_demo.DemoError)):
            raise BenchError('%s: %s\nlast lines of %s:\n%s' % (
                side.name, exc, os.path.relpath(side.layout.log),
                glance_demo.tail(side.layout.log, 15)))
        raise
    finally:
        watchdog.cancel()
        if memory is not None:
            memory.stop()
        api.stop()
        side.clear()
    return {
        'startup_s': startup,
        'stage_s': t1 - t0,
        'import_s': t3 - t2,
        'e2e_s': (t1 - t0) + (t3 - t2),
        'stage_mbps': None if web else mbps(data.size, t1 - t0),
        'import_mbps': mbps(data.size, t3 - t2),
        'e2e_mbps': mbps(data.size, (t1 - t0) + (t3 - t2)),
        'peak_rss_mib': peak_kib / 1024.0,
        'processes': len(memory.peaks),
        'staged_data_left': staged_left,
    }


def check_image(side, image, data):
    """The import is only worth timing if the image is right."""
    problems = []
    if image.get('size') != data.size:
        problems.append('size %s, not %d' % (image.get('size'), data.size))
    if image.get('checksum') != data.md5:
        problems.append('checksum %s, not %s' % (image.get('checksum'),
                                                 data.md5))
    if image.get('os_hash_algo') == 'sha512' and \
            image.get('os_hash_value') != data.sha512:
        problems.append('os_hash_value is not the sha512 of the data')
    stored = os.path.join(side.store, image['id'])
    if not os.path.isfile(stored) or os.path.getsize(stored) != data.size:
        problems.append('%s does not hold the %d bytes' % (stored,
                                                           data.size))
    if problems:
        raise BenchError('image %s is wrong after the import: %s'
                         % (image['id'], '; '.join(problems)))


def check_free_space(folder, sizes, data_folder):
    """Fail before starting when the disk cannot take the runs."""
    need = 512 * MiB
    for size in sizes:
        if not os.path.exists(os.path.join(data_folder,
                                           'image-%d.bin' % size)):
            need += size
    # At most, beside the image files: the limit's copy, or the staged
    # data and the imported image.
    need += max(2 * max(sizes), 2 * CONCURRENT_IMPORTS * min(sizes))
    free = shutil.disk_usage(folder).free
    if free < need:
        raise BenchError(
            'not enough free space for the benchmark: it needs %.1f GiB '
            'in %s and %.1f GiB are free.  Free some space or give '
            'smaller --sizes.' % (need / (1 << 30), folder,
                                  free / (1 << 30)))


def machine_info(args):
    info = {
        'cpus': os.cpu_count(),
        'platform': platform.platform(),
        'client_python': platform.python_version(),
        'loadavg_start': list(os.getloadavg()),
    }
    try:
        with open('/proc/meminfo') as f:
            info['mem_total_kib'] = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    for side, python in (('unpatched', args.pristine_python),
                         ('patched', args.patched_python)):
        proc = subprocess.run([python, '-c', 'import platform; '
                               'print(platform.python_version())'],
                              stdout=subprocess.PIPE,
                              universal_newlines=True, timeout=60)
        info['%s_python' % side] = proc.stdout.strip()
    return info


def describe(result):
    stage = result['stage_mbps']
    return ('start %.2f s, stage %s, import %.1f, end-to-end %.1f MB/s, '
            'peak %.1f MiB' % (result['startup_s'],
                               '-' if stage is None else '%.1f' % stage,
                               result['import_mbps'], result['e2e_mbps'],
                               result['peak_rss_mib']))


class WebServer(object):
    """The image files over HTTP on 127.0.0.1, for web-download."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def __init__(self, folder):
        handler = functools.partial(self.Handler, directory=folder)
        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def url(self, data):
        return 'http://127.0.0.1:%d/%s' % (self.port,
                                           os.path.basename(data.path))


def measure_size(sides, data, runs_wanted, limit_folder, label, web=None):
    """Alternate limit, unpatched and patched runs; return the summary."""
    runs = {'limit': [], 'unpatched': [], 'patched': []}
    for n in range(1, runs_wanted + 1):
        time.sleep(SETTLE_SECONDS)
        limit = measure_limit(data, limit_folder)
        runs['limit'].append(limit)
        say('--> %s, run %d/%d: limit %.1f MB/s' % (
            label, n, runs_wanted, limit['mbps']))
        for name in SIDES:
            time.sleep(SETTLE_SECONDS)
            result = measure_side(sides[name], data, web)
            runs[name].append(result)
            say('    %-9s %s' % (name, describe(result)))
    summary = summarize(data.size, runs)
    summary['label'] = label
    return summary


def measure_other_filesystem(args, base, data):
    """The largest size with the target store on tmpfs, staging on disk."""
    if not os.path.isdir(SHM):
        raise BenchError('%s is missing: the target store on another '
                         'filesystem goes there' % SHM)
    if shutil.disk_usage(SHM).free < 2 * data.size + 512 * MiB:
        raise BenchError('not enough free space in %s for %s'
                         % (SHM, size_label(data.size)))
    shm = tempfile.mkdtemp(prefix='glance-bench-', dir=SHM)
    try:
        sides = {}
        for name, python, tree in (
                ('unpatched', args.pristine_python, args.pristine_tree),
                ('patched', args.patched_python, args.patched_tree)):
            sides[name] = Side(name, python, tree,
                               os.path.join(base, name + '-other-fs'),
                               store_dir=os.path.join(shm, name))
            sides[name].prepare()
        return measure_size(sides, data, args.runs, shm, '%s, store on '
                            'tmpfs' % size_label(data.size))
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def ratio_verdict(case, summary, target=1.0):
    """patched/unpatched end-to-end of one case against a target."""
    r = summary['ratio']['e2e_mbps']
    ok = r is not None and r >= target
    return {
        'target': '%s: end-to-end patched/unpatched >= %.1f' % (
            case, target),
        'ok': ok,
        'text': '%s: end-to-end patched/unpatched at %s >= %.1f: %s: %s' % (
            case, summary['label'], target, '-' if r is None else '%.2f' % r,
            'PASS' if ok else 'FAIL'),
    }


@contextlib.contextmanager
def guarded_run(label, apis, logs, timeout):
    """Bound a run that starts the glance-api nodes apis; stop them after.

    Past timeout seconds a watchdog kills their process groups; a failure
    names the logs.
    """
    expired = threading.Event()

    def expire():
        expired.set()
        for api in apis:
            if api.proc is not None and api.proc.poll() is None:
                try:
                    os.killpg(api.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    except Exception as exc:
        if expired.is_set():
            raise BenchError('%s: the run took more than %d s (%s); '
                             'glance-api logs: %s' % (
                                 label, timeout, exc,
                                 ', '.join(map(os.path.relpath, logs))))
        if isinstance(exc, (BenchError, glance_demo.DemoError)):
            raise BenchError('%s: %s\n%s' % (label, exc, '\n'.join(
                'last lines of %s:\n%s' % (os.path.relpath(log),
                                            glance_demo.tail(log, 15))
                for log in logs)))
        raise
    finally:
        watchdog.cancel()
        for api in apis:
            api.stop()


def measure_concurrent(side, data, count=CONCURRENT_IMPORTS):
    """One glance-api; count clients stage and import an image each."""
    port = glance_demo.free_port()
    side.reset(port)
    api = BenchApi(side.python, side.layout, port)
    timeout = run_timeout(count * data.size)
    memory = None
    try:
        with guarded_run(side.name, [api], [side.layout.log], timeout):
            start = time.monotonic()
            deadline = start + timeout
            api.start(STARTUP_TIMEOUT)
            startup = time.monotonic() - start
            api.wait_for_cleanup()
            memory = PeakMemory(api.proc.pid).start()
            client = Client(port)
            image_ids = [client.create_image()['id'] for _ in range(count)]
            go = threading.Barrier(count + 1, timeout=60)
            images, ended, errors = {}, {}, []

            def one(image_id):
                try:
                    go.wait()
                    client.stage(image_id, data.path, data.size)
                    since = client.image(image_id)['updated_at']
                    client.import_image(image_id)
                    images[image_id] = client.wait_active(image_id, since,
                                                          deadline)
                    ended[image_id] = time.monotonic()
                except Exception as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=one, args=(i,), daemon=True,
                                        name='bench-client')
                       for i in image_ids]
            for thread in threads:
                thread.start()
            go.wait()
            t0 = time.monotonic()
            for thread in threads:
                thread.join(max(1, deadline - time.monotonic() + 30))
            if errors:
                raise errors[0]
            if len(images) != count:
                raise BenchError('%d of %d imports did not end' % (
                    count - len(images), count))
            wall = max(ended.values()) - t0
            peak_kib = memory.stop()
            for image_id in image_ids:
                check_image(side, images[image_id], data)
                client.delete(image_id)
    finally:
        if memory is not None:
            memory.stop()
        side.clear()
    return {
        'startup_s': startup,
        'wall_s': wall,
        'e2e_mbps': mbps(count * data.size, wall),
        'peak_rss_mib': peak_kib / 1024.0,
    }


def measure_forward(node_a, node_b, data, forwarded):
    """Two patched nodes; stage on A, import on B (forwarded) or A."""
    port_a = glance_demo.free_port()
    port_b = glance_demo.free_port()
    while port_b == port_a:
        port_b = glance_demo.free_port()
    node_a.self_url = 'http://127.0.0.1:%d' % port_a
    node_b.self_url = 'http://127.0.0.1:%d' % port_b
    node_b.db_path = node_a.layout.db
    node_a.reset(port_a)
    node_b.reset(port_b)
    api_a = BenchApi(node_a.python, node_a.layout, port_a)
    api_b = BenchApi(node_b.python, node_b.layout, port_b)
    timeout = STARTUP_TIMEOUT + run_timeout(data.size)
    case = 'forwarded' if forwarded else 'local'
    try:
        with guarded_run(case, [api_a, api_b],
                         [node_a.layout.log, node_b.layout.log], timeout):
            deadline = time.monotonic() + timeout
            api_a.start(STARTUP_TIMEOUT)
            api_b.start(STARTUP_TIMEOUT)
            client_a, client_b = Client(port_a), Client(port_b)
            image_id = client_a.create_image()['id']
            t0 = time.monotonic()
            client_a.stage(image_id, data.path, data.size)
            t1 = time.monotonic()
            since = client_a.image(image_id)['updated_at']
            t2 = time.monotonic()
            (client_b if forwarded else client_a).import_image(image_id)
            image = client_a.wait_active(image_id, since, deadline)
            t3 = time.monotonic()
            check_image(node_a, image, data)
            passed = forward_lines(node_b.layout.log, image_id)
            if passed != (1 if forwarded else 0):
                raise BenchError('node B logged %d forwarded imports of '
                                 '%s, not %d' % (passed, image_id,
                                                 1 if forwarded else 0))
            if glance_demo.list_files(node_b.staging):
                raise BenchError('node B staged data: %s' % ', '.join(
                    glance_demo.list_files(node_b.staging)))
            client_a.delete(image_id)
    finally:
        node_a.clear()
        node_b.clear()
    return {
        'stage_mbps': mbps(data.size, t1 - t0),
        'import_mbps': mbps(data.size, t3 - t2),
        'e2e_mbps': mbps(data.size, (t1 - t0) + (t3 - t2)),
    }


def forward_lines(log, image_id):
    """How many times a node's log says it passed the image's import on."""
    pattern = re.compile(r'Passing the import of image %s to ' % image_id)
    try:
        with open(log, errors='replace') as f:
            return sum(1 for line in f if pattern.search(line))
    except FileNotFoundError:
        return 0


def measure_concurrency(sides, data, runs_wanted):
    """Four imports at once on each side, alternating; the summary."""
    label = '%d x %s at once' % (CONCURRENT_IMPORTS, size_label(data.size))
    runs = {'unpatched': [], 'patched': []}
    for n in range(1, runs_wanted + 1):
        say('--> %s, run %d/%d' % (label, n, runs_wanted))
        for name in SIDES:
            time.sleep(SETTLE_SECONDS)
            result = measure_concurrent(sides[name], data)
            runs[name].append(result)
            say('    %-9s wall %.2f s, aggregate %.1f MB/s, peak %.1f MiB'
                % (name, result['wall_s'], result['e2e_mbps'],
                   result['peak_rss_mib']))
    return summarize_pair(label, data.size, runs, SIDES, CONCURRENT_FIGURES)


def measure_forwarding(args, base, data, warm_up):
    """Local against forwarded imports in a two-node patched cluster."""
    nodes = [Side('patched', args.patched_python, args.patched_tree,
                  os.path.join(base, 'cluster-' + name))
             for name in ('a', 'b')]
    for node in nodes:
        node.prepare()
    say('==> two-node cluster: a forwarded run with %s, not measured'
        % size_label(warm_up.size))
    measure_forward(nodes[0], nodes[1], warm_up, True)
    label = '%s, two nodes' % size_label(data.size)
    runs = {'local': [], 'forwarded': []}
    for n in range(1, args.runs + 1):
        say('--> %s, run %d/%d' % (label, n, args.runs))
        for case in FORWARD_CASES:
            time.sleep(SETTLE_SECONDS)
            result = measure_forward(nodes[0], nodes[1], data,
                                     case == 'forwarded')
            runs[case].append(result)
            say('    %-9s stage %.1f, import %.1f, end-to-end %.1f MB/s' % (
                case, result['stage_mbps'], result['import_mbps'],
                result['e2e_mbps']))
    return summarize_pair(label, data.size, runs, FORWARD_CASES,
                          FORWARD_FIGURES)


def bench(args):
    base = os.path.join(args.build_dir, 'bench')
    data_folder = os.path.join(base, 'data')
    os.makedirs(data_folder, exist_ok=True)
    check_free_space(base, args.sizes, data_folder)
    info = machine_info(args)
    say('==> %d CPUs, load average %.2f %.2f %.2f at the start' % (
        (info['cpus'],) + tuple(info['loadavg_start'])))
    sides = {
        'unpatched': Side('unpatched', args.pristine_python,
                          args.pristine_tree, os.path.join(base, 'unpatched')),
        'patched': Side('patched', args.patched_python, args.patched_tree,
                        os.path.join(base, 'patched')),
    }
    for name in SIDES:
        sides[name].prepare()
    datas = [ImageData(data_folder, size).ensure() for size in args.sizes]
    # The first import of each side reads modules and files no run has
    # read yet: make it one that is not measured.
    warm_up = ImageData(data_folder, WARM_UP_SIZE).ensure()
    for name in SIDES:
        say('==> %s: a first run with %s, not measured' % (
            name, size_label(WARM_UP_SIZE)))
        measure_side(sides[name], warm_up)
    summaries = [measure_size(sides, data, args.runs, base, size_label(
        data.size)) for data in datas]
    other = measure_other_filesystem(args, base, datas[-1])
    with WebServer(data_folder) as web:
        for name in SIDES:
            sides[name].web_port = web.port
        web_summary = measure_size(sides, datas[-1], args.runs, base,
                                   '%s, web-download' % size_label(
                                       datas[-1].size), web)
    concurrent = measure_concurrency(sides, datas[0], args.runs)
    forwarding = measure_forwarding(args, base, datas[-1], warm_up)
    info['loadavg_end'] = list(os.getloadavg())
    table = '\n'.join(
        [format_table(summaries + [other, web_summary], args.runs)] +
        format_pair(concurrent, CONCURRENT_FIGURES) +
        format_pair(forwarding, FORWARD_FIGURES))
    checks = verdicts(summaries) + [
        ratio_verdict('another filesystem', other),
        ratio_verdict('web-download', web_summary),
        pair_verdict('four at once', concurrent, CONCURRENT_TARGET),
        pair_verdict('forwarded', forwarding, FORWARD_TARGET)]
    report = {
        'generated': datetime.datetime.now().isoformat(timespec='seconds'),
        'machine': info,
        'options': {'sizes': args.sizes, 'runs': args.runs,
                    'settle_s': SETTLE_SECONDS, 'poll_s': POLL_INTERVAL},
        'units': {'mbps': '10^6 bytes/s', 'peak_rss_mib': 'MiB, sum of '
                  'VmHWM over the process group of glance-api',
                  'startup_s': 'seconds from Popen to the first 200 on '
                  '/versions'},
        'sizes': summaries,
        'other_filesystem': other,
        'web_download': web_summary,
        'four_at_once': concurrent,
        'forwarded': forwarding,
        'table': table,
        'verdicts': checks,
    }
    with open(args.json + '.tmp', 'w') as f:
        json.dump(report, f, indent=2, sort_keys=True)
    os.replace(args.json + '.tmp', args.json)
    say('')
    say(table)
    say('')
    say('load average %.2f %.2f %.2f at the end; results in %s' % (
        tuple(info['loadavg_end']) + (os.path.relpath(args.json),)))
    for check in checks:
        say('verdict: ' + check['text'])
    return 1 if any(check['ok'] is False for check in checks) else 0


def main(argv):
    args = parse_args(argv)
    try:
        return bench(args)
    except (BenchError, glance_demo.DemoError) as exc:
        sys.stderr.write('bench: %s\n' % exc)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

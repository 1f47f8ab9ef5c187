"""The main job: the patched glance-api, walked through over HTTP.

Run by ``./series demo`` (and ``./series serve``) with the Python that has
the patched Glance installed.  It writes a self-contained configuration
under the build directory, starts glance-api on 127.0.0.1 and, step by
step, prints each request, its result and what was checked.  It exits 0
only if every check passed, and stops every process it started.

With ``--serve`` it starts the same glance-api and leaves it running in
the foreground until Ctrl-C, printing the endpoint and commands to try.
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import glance_demo  # noqa: E402  (the directory is only known at run time)

STAGED_SIZE = 64 << 20      # staged with glance-direct
WEB_SIZE = 16 << 20         # served to the web-download method
STAGED_NAME = 'staged-64M.raw'
WEB_NAME = 'web-16M.raw'
IMPORT_TIMEOUT = 180        # seconds for an import to end
SHOWN_HEADERS = ('Content-Type', 'Content-Length', 'X-Image-Meta-Store')


class Report(object):
    """Prints the walk-through and counts the checks."""

    def __init__(self):
        self.passed = 0
        self.failed = []
        self.number = 0

    def title(self, text):
        self.number += 1
        print('\n== %d. %s' % (self.number, text), flush=True)

    def request(self, method, path, headers):
        shown = ''.join('\n     %s: %s' % (name, headers[name])
                        for name in SHOWN_HEADERS if name in headers)
        print('  > %s %s%s' % (method, path, shown), flush=True)

    def response(self, resp):
        print('  < %d %s  %s' % (resp.status, resp.reason,
                                 resp.summary()), flush=True)

    def note(self, text):
        print('    ' + text, flush=True)

    def check(self, ok, text):
        """Record a check; return whether it passed."""
        if ok:
            self.passed += 1
        else:
            self.failed.append('step %d: %s' % (self.number, text))
        print('  %s %s' % ('ok  ' if ok else 'FAIL', text), flush=True)
        return ok


class Response(object):
    """What came back: status, headers and body (or its digest)."""

    def __init__(self, status, reason, headers, body, md5=None, size=None):
        self.status, self.reason = status, reason
        self.headers, self.body = headers, body
        self.md5, self.size = md5, size

    def json(self):
        return json.loads(self.body.decode('utf-8'))

    def text(self):
        """The body as one line of text, HTML tags removed."""
        text = self.body.decode('utf-8', 'replace')
        text = re.sub(r'<title>.*?</title>|<h1>.*?</h1>', ' ', text,
                      flags=re.S)
        text = re.sub(r'<[^>]+>', ' ', text)
        text = text.replace('&#x27;', "'").replace('&quot;', '"')
        return ' '.join(text.split())

    def summary(self):
        if self.md5 is not None:
            return '%d bytes, md5 %s' % (self.size, self.md5)
        if not self.body:
            return ''
        try:
            data = self.json()
        except ValueError:
            text = self.text()
            # webob's plain-text errors start with the status line.
            status_line = '%d %s' % (self.status, self.reason)
            if text.startswith(status_line):
                text = text[len(status_line):].strip()
            return text[:300]
        if isinstance(data, dict) and 'status' in data and 'id' in data:
            keys = ('id', 'status', 'size', 'checksum', 'stores')
            data = dict((k, data[k]) for k in keys if k in data)
        return json.dumps(data)[:400]


class Client(object):
    """Talks to glance-api as the demo user (trusted-auth headers)."""

    def __init__(self, port, report):
        self.port = port
        self.report = report

    def call(self, method, path, body=None, headers=None, download=False,
             show=True):
        """Send one request; print it and its response unless show=False.

        body may be bytes, a dict (sent as JSON) or an open file.  With
        download=True the response body is hashed, not kept.
        """
        headers = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body).encode('utf-8')
            headers.setdefault('Content-Type', 'application/json')
        if hasattr(body, 'fileno'):
            headers['Content-Length'] = str(os.fstat(body.fileno()).st_size)
        if show:
            self.report.request(method, path, headers)
        headers.update(glance_demo.IDENTITY_HEADERS)
        conn = http.client.HTTPConnection('127.0.0.1', self.port,
                                          timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            raw = conn.getresponse()
            if download:
                md5, size = hash_stream(raw)
                resp = Response(raw.status, raw.reason, raw.headers, b'',
                                md5, size)
            else:
                resp = Response(raw.status, raw.reason, raw.headers,
                                raw.read())
        finally:
            conn.close()
        if show:
            self.report.response(resp)
        return resp

    def image(self, image_id):
        return self.call('GET', '/v2/images/' + image_id, show=False).json()

    def create_image(self, name):
        return self.call('POST', '/v2/images', {
            'name': name, 'disk_format': 'raw', 'container_format': 'bare'})


def hash_stream(stream):
    """(md5 hex digest, size) of what a file-like object yields."""
    md5 = hashlib.md5()
    size = 0
    for block in iter(lambda: stream.read(1 << 20), b''):
        md5.update(block)
        size += len(block)
    return md5.hexdigest(), size


def write_data(path, size):
    """Write size random bytes to path; return their md5 hex digest."""
    md5 = hashlib.md5()
    with open(path, 'wb') as f:
        for _ in range(size >> 20):
            block = os.urandom(1 << 20)
            md5.update(block)
            f.write(block)
    return md5.hexdigest()


def import_and_wait(client, report, image_id, body, headers=None,
                    timeout=IMPORT_TIMEOUT):
    """Ask for an import, then poll the image until the import ends.

    It has ended when the image is active, killed or deleted, or when it
    was updated and is not 'importing' (a failed import hands the image
    back for another try).

    :returns: (the import response, the image at the end)
    """
    since = client.image(image_id)['updated_at']
    resp = client.call('POST', '/v2/images/%s/import' % image_id, body,
                       headers)
    if resp.status != 202:
        return resp, client.image(image_id)
    start = time.monotonic()
    seen = []
    while True:
        image = client.image(image_id)
        if not seen or seen[-1] != image['status']:
            seen.append(image['status'])
        if (image['status'] in ('active', 'killed', 'deleted') or
                image['status'] != 'importing' and
                image['updated_at'] != since or
                time.monotonic() - start > timeout):
            break
        time.sleep(0.5)
    report.note('status seen while polling GET /v2/images/%s: %s '
                '(%.1f s)' % (image_id, ' -> '.join(seen),
                              time.monotonic() - start))
    return resp, image


def datadir_listing(report, layout, store):
    """Print and return the files in a store's datadir."""
    path = layout.datadirs[store]
    files = glance_demo.list_files(path)
    report.note('$ ls %s  ->  %s' % (os.path.relpath(path),
                                     ' '.join(files) or '(empty)'))
    return files


# ---------------------------------------------------------------- the steps

def step_stores_info(ctx):
    report = ctx['report']
    report.title('stores-info: what a user may choose from')
    resp = ctx['client'].call('GET', '/v2/info/stores')
    ids = [s['id'] for s in resp.json().get('stores', [])] \
        if resp.status == 200 else []
    report.check(resp.status == 200, 'GET /v2/info/stores answers 200')
    report.check(sorted(ids) == sorted(glance_demo.OPERATOR_STORES),
                 'the stores listed are the operator\'s: %s'
                 % ', '.join(ids))
    report.check(not any(i.startswith('os_glance_') for i in ids),
                 'no os_glance_ store is listed')
    layout = ctx['layout']
    report.check(all(os.path.isdir(layout.datadirs[name])
                     for name in glance_demo.RESERVED_STORES),
                 'yet both reserved stores are enabled: glance-api created '
                 'their datadirs at start-up')


def step_create(ctx):
    report = ctx['report']
    report.title('create an image')
    resp = ctx['client'].create_image('demo-glance-direct')
    ok = report.check(resp.status == 201, 'POST /v2/images answers 201')
    image = resp.json() if ok else {}
    ctx['image_id'] = image.get('id')
    report.check(image.get('status') == 'queued', 'the image is queued')
    report.check(resp.headers.get('OpenStack-image-store-ids') == 'fast,'
                 'cheap', 'header OpenStack-image-store-ids: %s' %
                 resp.headers.get('OpenStack-image-store-ids'))
    return ok


def step_stage(ctx):
    report, layout = ctx['report'], ctx['layout']
    image_id = ctx['image_id']
    report.title('stage %d MiB of data (glance-direct, step 1)'
                 % (STAGED_SIZE >> 20))
    with open(os.path.join(layout.web, STAGED_NAME), 'rb') as data:
        start = time.monotonic()
        resp = ctx['client'].call(
            'PUT', '/v2/images/%s/stage' % image_id, data,
            {'Content-Type': 'application/octet-stream'})
    report.note('staged in %.1f s' % (time.monotonic() - start))
    report.check(resp.status == 204, 'PUT .../stage answers 204')
    image = ctx['client'].image(image_id)
    report.check(image['status'] == 'uploading',
                 'the image is %s (uploading expected)' % image['status'])
    files = datadir_listing(report, layout, glance_demo.STAGING_STORE)
    staged = os.path.join(layout.datadirs[glance_demo.STAGING_STORE],
                          image_id)
    report.check(files == [image_id] and
                 os.path.getsize(staged) == STAGED_SIZE,
                 'the data is in the staging store\'s datadir, %d bytes'
                 % (os.path.getsize(staged) if os.path.exists(staged)
                    else 0))


def step_import(ctx):
    report, layout = ctx['report'], ctx['layout']
    image_id = ctx['image_id']
    report.title('import it into the store "cheap" (glance-direct, step 2)')
    resp, image = import_and_wait(
        ctx['client'], report, image_id,
        {'method': {'name': 'glance-direct'}},
        {'X-Image-Meta-Store': 'cheap'})
    report.check(resp.status == 202, 'POST .../import answers 202')
    report.check(image['status'] == 'active',
                 'the image is %s (active expected)' % image['status'])
    report.check(image.get('stores') == 'cheap',
                 'its stores: %s' % image.get('stores'))
    report.check(image.get('checksum') == ctx['staged_md5'],
                 'its checksum %s is the md5 of the data staged'
                 % image.get('checksum'))
    files = datadir_listing(report, layout, 'cheap')
    report.check(image_id in files, 'the data is in cheap\'s datadir')


def step_download(ctx):
    report = ctx['report']
    image_id = ctx['image_id']
    report.title('download it')
    resp = ctx['client'].call('GET', '/v2/images/%s/file' % image_id,
                              download=True)
    report.check(resp.status == 200, 'GET .../file answers 200')
    report.check(resp.md5 == ctx['staged_md5'] and
                 resp.size == STAGED_SIZE,
                 'the %d bytes downloaded have the md5 of the data staged'
                 % (resp.size or 0))
    report.check(resp.headers.get('Content-MD5') == ctx['staged_md5'],
                 'header Content-MD5: %s' % resp.headers.get('Content-MD5'))


def step_staging_empty(ctx):
    report, layout = ctx['report'], ctx['layout']
    report.title('the staging store is empty again')
    files = datadir_listing(report, layout, glance_demo.STAGING_STORE)
    report.check(files == [], 'nothing is left in the staging store\'s '
                 'datadir after the import')
    old = '/tmp/staging/' + ctx['image_id']
    report.check(not os.path.exists(old), 'nothing went to the deprecated '
                 'node_staging_uri either (%s does not exist)' % old)


def step_reserved_refused(ctx):
    report, layout, client = ctx['report'], ctx['layout'], ctx['client']
    report.title('name a reserved store: refused with 400')
    resp = client.create_image('demo-reserved')
    if not report.check(resp.status == 201, 'a second image is created'):
        return
    image_id = resp.json()['id']
    reserved = {'X-Image-Meta-Store': glance_demo.STAGING_STORE}
    with open(os.path.join(layout.web, WEB_NAME), 'rb') as data:
        headers = dict(reserved, **{'Content-Type':
                                    'application/octet-stream'})
        resp = client.call('PUT', '/v2/images/%s/file' % image_id, data,
                           headers)
    report.check(resp.status == 400 and 'reserved' in resp.text(),
                 'upload (PUT .../file) naming it: %d, the message says '
                 'the store is reserved' % resp.status)
    resp = client.call('POST', '/v2/images/%s/import' % image_id, {
        'method': {'name': 'web-download',
                   'uri': ctx['server'].url(WEB_NAME)}}, reserved)
    report.check(resp.status == 400 and 'reserved' in resp.text(),
                 'import naming it: %d, the message says the store is '
                 'reserved' % resp.status)
    status = client.image(image_id)['status']
    report.check(status == 'queued', 'the image is still %s' % status)
    files = datadir_listing(report, layout, glance_demo.STAGING_STORE)
    report.check(files == [], 'no data reached the staging store')
    resp = client.call('DELETE', '/v2/images/' + image_id)
    report.check(resp.status == 204, 'the image is deleted')


def step_web_download(ctx):
    report, layout, client = ctx['report'], ctx['layout'], ctx['client']
    report.title('web-download %d MiB from a local HTTP server into the '
                 'default store' % (WEB_SIZE >> 20))
    url = ctx['server'].url(WEB_NAME)
    report.note('serving %s at %s' % (os.path.relpath(
        os.path.join(layout.web, WEB_NAME)), url))
    resp = client.create_image('demo-web-download')
    if not report.check(resp.status == 201, 'a third image is created'):
        return
    image_id = resp.json()['id']
    resp, image = import_and_wait(client, report, image_id, {
        'method': {'name': 'web-download', 'uri': url}})
    report.check(resp.status == 202, 'POST .../import answers 202')
    report.check(image['status'] == 'active',
                 'the image is %s (active expected)' % image['status'])
    report.check(image.get('stores') == glance_demo.DEFAULT_STORE,
                 'its stores: %s (the default)' % image.get('stores'))
    report.check(image.get('checksum') == ctx['web_md5'],
                 'its checksum %s is the md5 of the file served'
                 % image.get('checksum'))
    files = datadir_listing(report, layout, glance_demo.STAGING_STORE)
    report.check(files == [], 'the data went through the staging store '
                 'and nothing is left there')


STEPS = (step_stores_info, step_create, step_stage, step_import,
         step_download, step_staging_empty, step_reserved_refused,
         step_web_download)


# ------------------------------------------------------------- processes

def set_up(args, layout):
    """Write the configuration and the data, create the database.

    :returns: the started file server (the caller stops it)
    """
    print('==> writing the configuration under %s'
          % os.path.relpath(layout.base), flush=True)
    server = glance_demo.FileServer(layout.web)
    try:
        sections = glance_demo.config_sections(
            layout, args.port or glance_demo.free_port(), server.port)
        glance_demo.write_config(layout, sections, args.tree)
        md5s = {
            STAGED_NAME: write_data(os.path.join(layout.web, STAGED_NAME),
                                    STAGED_SIZE),
            WEB_NAME: write_data(os.path.join(layout.web, WEB_NAME),
                                 WEB_SIZE),
        }
        print('==> glance-manage db_sync (SQLite: %s)'
              % os.path.relpath(layout.db), flush=True)
        glance_demo.db_sync(args.python, layout)
    except BaseException:
        server.stop()
        raise
    server.start()
    port = int(sections['DEFAULT']['bind_port'])
    return server, port, md5s


def run_step(step, ctx):
    """Run one step; False when the walk-through cannot go on."""
    try:
        return step(ctx) is not False
    except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
        ctx['report'].check(False, 'the step broke off: %s: %s'
                            % (type(exc).__name__, exc))
        return False


def walk_through(args, layout):
    report = Report()
    server, port, md5s = set_up(args, layout)
    api = glance_demo.GlanceApi(args.python, layout, port)
    try:
        print('==> starting glance-api on %s' % api.url, flush=True)
        start = time.monotonic()
        api.start()
        print('    ready in %.1f s; log: %s' % (
            time.monotonic() - start, os.path.relpath(layout.log)))
        print('    no Keystone: every request carries the identity headers',
              flush=True)
        for item in sorted(glance_demo.IDENTITY_HEADERS.items()):
            print('      %s: %s' % item, flush=True)
        ctx = {'report': report, 'layout': layout, 'server': server,
               'client': Client(port, report),
               'staged_md5': md5s[STAGED_NAME], 'web_md5': md5s[WEB_NAME]}
        for step in STEPS:
            if not run_step(step, ctx):
                break
    finally:
        code = api.stop()
        server.stop()
        print('\n==> stopped glance-api (exit code %s) and the HTTP server'
              % code, flush=True)
    return report


def serve(args, layout):
    """Start glance-api and keep it in the foreground until Ctrl-C."""
    server, port, md5s = set_up(args, layout)
    api = glance_demo.GlanceApi(args.python, layout, port)
    try:
        api.start()
        print_serve_help(api.url, server.url(WEB_NAME), layout)
        code = api.proc.wait()
        print('glance-api exited with code %d; its log: %s'
              % (code, os.path.relpath(layout.log)))
        return 1
    except KeyboardInterrupt:
        print('\nstopping glance-api')
        return 0
    finally:
        api.stop()
        server.stop()


def write_curl_config(layout):
    """A curl config file sending the demo identity; return its path."""
    path = os.path.join(layout.etc, 'identity.curlrc')
    with open(path, 'w') as f:
        for item in sorted(glance_demo.IDENTITY_HEADERS.items()):
            f.write('header = "%s: %s"\n' % item)
    return os.path.relpath(path)


SERVE_HELP = """
glance-api (patched) is listening on {url}
  configuration  {conf}
  log            {log}
  file server    {web} (for web-download)
Stop it with Ctrl-C.  Try, in another terminal:

  G="curl -s -K {curlrc}"
  $G {url}/v2/info/stores
  $G -H 'Content-Type: application/json' {url}/v2/images \\
     -d '{{"name": "try", "disk_format": "raw", "container_format": "bare"}}'
  ID=...   # the "id" printed
  $G -X PUT -H 'Content-Type: application/octet-stream' \\
     --data-binary @README.rst {url}/v2/images/$ID/stage
  $G -i -H 'Content-Type: application/json' \\
     -H 'X-Image-Meta-Store: os_glance_staging_store' \\
     -d '{{"method": {{"name": "glance-direct"}}}}' {url}/v2/images/$ID/import
  $G -i -H 'Content-Type: application/json' -H 'X-Image-Meta-Store: cheap' \\
     -d '{{"method": {{"name": "glance-direct"}}}}' {url}/v2/images/$ID/import
  $G {url}/v2/images/$ID
"""


def print_serve_help(url, web_url, layout):
    print(SERVE_HELP.format(
        url=url, conf=os.path.relpath(layout.conf),
        log=os.path.relpath(layout.log), web=web_url,
        curlrc=write_curl_config(layout)), flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--build-dir', required=True,
                        help='where the configuration and data go '
                        '(emptied first)')
    parser.add_argument('--serve', action='store_true',
                        help='start glance-api and keep it running')
    parser.add_argument('--port', type=int, default=0,
                        help='port for glance-api (default: a free one)')
    parser.add_argument('--tree', default=os.environ.get('GLANCE_TREE'),
                        help='the patched Glance tree (default: '
                        '$GLANCE_TREE)')
    args = parser.parse_args(argv)
    if not args.tree:
        parser.error('no Glance tree: pass --tree or set GLANCE_TREE')
    args.python = sys.executable
    return args


def interrupt(signum, frame):
    """SIGTERM: stop like Ctrl-C, through the same clean-up."""
    raise KeyboardInterrupt


def main(argv):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    layout = glance_demo.Layout(args.build_dir)
    try:
        if args.serve:
            return serve(args, layout)
        start = time.monotonic()
        report = walk_through(args, layout)
    except glance_demo.DemoError as exc:
        print('demo: %s' % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('demo: interrupted; every process it started is stopped',
              file=sys.stderr)
        return 130
    total = report.passed + len(report.failed)
    if report.failed:
        print('\nDEMO FAILED: %d of %d checks failed (%.0f s):\n  %s' % (
            len(report.failed), total, time.monotonic() - start,
            '\n  '.join(report.failed)))
        return 1
    print('\nDEMO OK: all %d checks passed in %.0f s' % (
        total, time.monotonic() - start))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

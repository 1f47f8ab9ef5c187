"""Write the lock for Python 2.7 or 3.6 from Stein's upper constraints.

Run by tools/refresh-lock with a Python 3 that has ``packaging`` (or
pip, which carries a copy):

    stein-lock.py UPPER_CONSTRAINTS OVERRIDES PY37_LOCK ENV_JSON OUTPUT

UPPER_CONSTRAINTS is Stein's upper-constraints.txt, which pins every
package for Python 2.7, 3.5, 3.6 and 3.7 with environment markers.  Its
entries are kept whose markers hold for the target interpreter (ENV_JSON:
its marker environment, printed by that interpreter itself).  Then:

- OVERRIDES (tools/lock-overrides.txt) replace a pin when they name an
  exact version (``glance-store==0.28.1``); any other specifier
  (``dnspython<2``) must hold for the pin that is kept, or the lock is
  refused;
- a package that Stein's file does not know at all (hacking and the
  linters it pins, tox, setuptools...) takes its pin from PY37_LOCK, the
  lock resolved for Python 3.7 as of Stein's release day.

The output is sorted by name, so the same inputs always give the same
file.
"""

import json
import re
import sys

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:  # the copy pip carries
    from pip._vendor.packaging.markers import Marker
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version


def canonical(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def lines(path):
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if line:
                yield number, line


def read_uc(path, env):
    """Return ({name: (display name, version)}, names known at all)."""
    pins, known = {}, set()
    for number, line in lines(path):
        spec, _, marker = line.partition(';')
        match = re.match(r'^([A-Za-z0-9][A-Za-z0-9._-]*)===?([^\s=]+)$',
                         spec.strip())
        if not match:
            sys.exit('%s:%d: not a pin: %r' % (path, number, line))
        name, version = match.groups()
        key = canonical(name)
        known.add(key)
        if marker.strip() and not Marker(marker.strip()).evaluate(env):
            continue
        if key in pins:
            sys.exit('%s:%d: %s is pinned twice for Python %s' % (
                path, number, name, env['python_version']))
        pins[key] = (name, version)
    return pins, known


def main(uc_path, overrides_path, py37_lock, env_path, output):
    with open(env_path) as f:
        env = json.load(f)
    pins, known = read_uc(uc_path, env)
    origin = dict((key, 'stein') for key in pins)
    for number, line in lines(overrides_path):
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        key = canonical(req.name)
        exact = [s for s in req.specifier if s.operator in ('==', '===')]
        if exact:
            pins[key] = (req.name, exact[0].version)
            origin[key] = 'override'
        elif key not in pins:
            sys.exit('%s:%d: %s is not pinned for Python %s, so %r cannot '
                     'be checked' % (overrides_path, number, req.name,
                                     env['python_version'], line))
        elif not req.specifier.contains(Version(pins[key][1]),
                                        prereleases=True):
            sys.exit('%s:%d: %s %s does not satisfy %r' % (
                overrides_path, number, req.name, pins[key][1], line))
    for number, line in lines(py37_lock):
        name, _, version = line.partition('==')
        key = canonical(name)
        if key not in known and key not in pins:
            pins[key] = (name.strip(), version.strip())
            origin[key] = 'py37'
    with open(output, 'w') as out:
        for key in sorted(pins):
            out.write('%s==%s\n' % pins[key])
    counts = {}
    for key in pins:
        counts[origin[key]] = counts.get(origin[key], 0) + 1
    sys.stdout.write('%s: %d pins (%d from Stein, %d overrides, %d from the '
                     'Python 3.7 lock)\n' % (
                         output, len(pins), counts.get('stein', 0),
                         counts.get('override', 0), counts.get('py37', 0)))


# Printed by the target interpreter (Python 2.7 or 3.x): its marker
# environment, as PEP 508 defines it.
ENV_SCRIPT = r'''
import json, os, platform, sys
impl = getattr(sys, 'implementation', None)
if impl is None:
    name, full = 'cpython', ''
else:
    name = impl.name
    v = impl.version
    full = '%d.%d.%d' % (v.major, v.minor, v.micro)
    if v.releaselevel != 'final':
        full += v.releaselevel[0] + str(v.serial)
sys.stdout.write(json.dumps({
    'implementation_name': name,
    'implementation_version': full,
    'os_name': os.name,
    'platform_machine': platform.machine(),
    'platform_release': platform.release(),
    'platform_system': platform.system(),
    'platform_version': platform.version(),
    'python_full_version': platform.python_version(),
    'platform_python_implementation': platform.python_implementation(),
    'python_version': '.'.join(platform.python_version_tuple()[:2]),
    'sys_platform': sys.platform,
}))
'''

if __name__ == '__main__':
    if sys.argv[1:] == ['--env-script']:
        sys.stdout.write(ENV_SCRIPT)
    elif len(sys.argv) == 6:
        main(*sys.argv[1:])
    else:
        sys.exit(__doc__)

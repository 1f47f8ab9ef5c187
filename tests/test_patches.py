"""The committed series, read as a Gerrit series is read.

These tests look at patches/ as it is committed: each patch's metadata
and commit message, and what it does to the release notes of the others.
"""

import email
import email.policy
import os
import re
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PATCHES = os.path.join(os.path.dirname(HERE), 'patches')
IDENTITY = ('Seed d2a1d20e maintainers '
            '<maintainers@users.noreply.r-seed-d2a1d20e.example>')
NOTES = 'releasenotes/notes/'


def read_series():
    """[(file name, message, diff)] in the order of patches/series."""
    with open(os.path.join(PATCHES, 'series')) as f:
        names = [line.strip() for line in f
                 if line.strip() and not line.startswith('#')]
    patches = []
    for name in names:
        with open(os.path.join(PATCHES, name), 'rb') as f:
            msg = email.message_from_binary_file(f,
                                                 policy=email.policy.default)
        text = msg.get_payload(decode=True).decode('utf-8')
        body, _sep, diff = text.partition('\n---\n')
        patches.append((name, msg, body, diff))
    return patches


def subject_of(msg):
    subject = ' '.join(str(msg['Subject']).split())
    return re.sub(r'^\[PATCH[^\]]*\]\s*', '', subject)


def files_changed(diff):
    """{path: 'A'|'M'|'D'} from a format-patch diff."""
    changed = {}
    for block in re.split(r'^diff --git ', diff, flags=re.M)[1:]:
        head = block.split('\n', 1)[0]
        path = head.split(' b/', 1)[1]
        if re.search(r'^new file mode', block, re.M):
            changed[path] = 'A'
        elif re.search(r'^deleted file mode', block, re.M):
            changed[path] = 'D'
        else:
            changed[path] = 'M'
    return changed


class TestSeriesShape(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.patches = read_series()

    def test_there_is_a_series(self):
        self.assertTrue(self.patches)

    def test_one_identity(self):
        for name, msg, _body, _diff in self.patches:
            self.assertEqual(IDENTITY, ' '.join(str(msg['From']).split()),
                             name)

    def test_summary_lines(self):
        for name, msg, _body, _diff in self.patches:
            subject = subject_of(msg)
            self.assertLessEqual(len(subject), 50, name)
            self.assertFalse(subject.endswith('.'), name)
            self.assertFalse(subject.startswith(('fixup!', 'squash!')),
                             name)

    def test_bodies_are_wrapped_and_explain(self):
        for name, _msg, body, _diff in self.patches:
            lines = body.strip('\n').split('\n')
            self.assertGreaterEqual(len(lines), 3, name)
            for line in lines:
                self.assertLessEqual(len(line), 72, '%s: %r' % (name, line))

    def test_every_patch_has_a_change_id_of_its_own(self):
        seen = {}
        for name, _msg, body, _diff in self.patches:
            ids = re.findall(r'^Change-Id: (I[0-9a-f]{40})$', body, re.M)
            self.assertEqual(1, len(ids), name)
            self.assertNotIn(ids[0], seen, '%s and %s' % (
                name, seen.get(ids[0])))
            seen[ids[0]] = name
            # A trailer, in the last paragraph.
            last = body.strip('\n').split('\n\n')[-1]
            self.assertIn('Change-Id: ' + ids[0], last, name)

    def test_no_patch_edits_a_note_another_patch_added(self):
        added = {}
        for name, _msg, _body, diff in self.patches:
            for path, how in sorted(files_changed(diff).items()):
                if not path.startswith(NOTES):
                    continue
                if how == 'A':
                    added[path] = name
                elif path in added:
                    self.fail('%s changes %s, which %s added'
                              % (name, path, added[path]))

    def test_a_note_is_added_by_one_patch_only(self):
        owners = {}
        for name, _msg, _body, diff in self.patches:
            for path, how in files_changed(diff).items():
                if path.startswith(NOTES) and how == 'A':
                    self.assertNotIn(path, owners, name)
                    owners[path] = name

    def test_the_security_fix_comes_first_and_stands_alone(self):
        name, msg, body, diff = self.patches[0]
        changed = files_changed(diff)
        notes = [path for path in changed if path.startswith(NOTES)]
        self.assertEqual(1, len(notes), name)
        self.assertEqual('A', changed[notes[0]])
        note = re.search(r'^\+\+\+ b/%s\n(.*?)(?=^diff --git |\Z)'
                         % re.escape(notes[0]), diff, re.M | re.S).group(1)
        self.assertIn('+security:', note)
        # Nothing of the feature: it applies to the release as it is.
        self.assertNotIn('reserved', ' '.join(changed).lower())
        self.assertNotIn('blueprint', body)


if __name__ == '__main__':
    unittest.main()

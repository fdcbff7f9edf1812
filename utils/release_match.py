"""Which file of the release repository (or member of an archive there) is a released checkpoint, when the
repository does not hold it under the name this project expects.

The authors' Hub repository names no file in their README; earlier links used other names, and the same
authors ship other weights as an archive (records.zip, level2_YouTubeVOS.pth inside). A path matches a
released checkpoint by its keys (RELEASE_KEYS), case-insensitive, with '_', '-', '.' and spaces ignored:
those in its file name, or, when the file name holds no key of any checkpoint, those anywhere in its path
('level1/model.pth'). It must hold more keys of that checkpoint than of any other.
"""
import posixpath
import re

RELEASE_KEYS = {
    'pretrain': ('level0', 'pretrain'),
    'davis17': ('level1', 'davis'),
    'youtube18': ('level2', 'youtube'),
}
_IGNORED = re.compile(r'[\s_.-]+')


def _key_counts(path):
    """{released name: how many of its keys `path` holds}, from its file name, else from the whole path."""
    counts = {}
    for text in (posixpath.basename(path.replace('\\', '/')), path):
        squeezed = _IGNORED.sub('', text.lower())
        counts = {name: sum(key in squeezed for key in keys) for name, keys in RELEASE_KEYS.items()}
        if any(counts.values()):
            break
    return counts


def best_matches(name, paths):
    """The paths (in their order) that match released checkpoint `name` best: most of its keys, more than of
    any other checkpoint. Several mean that the repository holds more than one candidate."""
    scored = []
    for path in paths:
        counts = _key_counts(path)
        own = counts[name]
        if own and all(own > count for other, count in counts.items() if other != name):
            scored.append((own, path))
    best = max((score for score, _ in scored), default=0)
    return [path for score, path in scored if score == best]


def holds_no_key(path):
    """Whether `path` names no released checkpoint at all (an archive such as records.zip may hold them all)."""
    return not any(_key_counts(path).values())

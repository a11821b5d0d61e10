"""The man pages a postmaster reads (issue 17): dovegate-auth.conf(5) names
every key dovegate-auth accepts, in its section. (That the pages render
without a warning is lintian's check, run by scripts/package-check on both
releases.)

The keys come from dovegate-auth's own key tables (src/shim/config.c), so a
key added there without a word in the man page fails here.
"""
import os
import re

import pytest

SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAN_CONF = os.path.join(SRC_DIR, "doc", "dovegate-auth.conf.5")


def config_keys():
    """(section, key) for every key of src/shim/config.c's tables."""
    src = open(os.path.join(SRC_DIR, "src", "shim", "config.c")).read()
    keys = re.findall(r'\{ "(\w+)", "(\w+)", set_\w+', src)
    for section, table in (("passdb", "passdb_keys"), ("backend", "backend_keys")):
        m = re.search(r"static const char \*const %s\[\] = \{([^}]*)\}" % table, src)
        assert m, f"{table} not found in config.c"
        keys += [(section, k) for k in re.findall(r'"(\w+)"', m.group(1))]
    assert len(keys) > 50, keys
    return sorted(set(keys))


def man_sections():
    """section name -> the set of words on its .TP tag lines."""
    sections, current, tag_next = {}, None, False
    for line in open(MAN_CONF):
        m = re.match(r"\.SH \[(\w+)\]", line)
        if m:
            current = sections.setdefault(m.group(1), set())
            tag_next = False
            continue
        if line.startswith(".SH"):
            current = None
            continue
        if current is None:
            continue
        if line.startswith(".TP"):
            tag_next = True
            continue
        if tag_next:
            current.update(re.findall(r"[a-z0-9_]+", line.replace("\\-", "-")))
            tag_next = False
    return sections


@pytest.mark.parametrize("section,key", config_keys())
def test_every_key_is_in_the_man_page(section, key):
    sections = man_sections()
    assert section in sections, f"dovegate-auth.conf(5) has no [{section}] section"
    assert key in sections[section], f"dovegate-auth.conf(5): [{section}] {key} is not described"

# Man pages: plain roff sources, installed as they are (no generator needed).
dist_man_MANS = doc/dovegate-auth.8 doc/dovegate.1 doc/dovegate-auth.conf.5
# The design notes the README points at.
dist_doc_DATA = README.md doc/design.md

"""The third-party package's own tests run inside its installed environment, not in this session."""

collect_ignore = ["third_party_pkg"]

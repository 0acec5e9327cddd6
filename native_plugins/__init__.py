"""The example C plugins, installed as ``plugin_host.examples`` so ``plugin-host demo``
can build them from any install (their sources are package data)."""

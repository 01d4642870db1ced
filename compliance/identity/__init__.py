"""Identity (DESIGN §7): roles and their rules, signing keys, signatures and ledger anchors.

Pure code: nothing here opens the store. The use cases that read and write people, grants,
keys and anchors live in :mod:`compliance.services.people` and :mod:`compliance.services.signing`,
which call into this package (as they call into ``checks`` or ``analysis``).
"""

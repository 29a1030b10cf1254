#!/usr/bin/env python3
"""Write Prosody 0.12 internal_hashed accounts directly (see provision.sh).

    accounts.py DATA_DIR PREFIX N DOMAIN JOBS      password on stdin

Creates PREFIX0..PREFIX(N-1) in DATA_DIR/<host>/accounts/<user>.dat with
the same content mod_auth_internal_hashed's create_user() stores.
"""
import hashlib
import hmac
import multiprocessing
import os
import re
import sys
import uuid

ITERATIONS = 4096  # default_iteration_count in bench/peers/prosody/prosody.cfg.lua


def encode(s):
    """util/datamanager.lua's encode(): s:gsub("%W", "%%%02x")."""
    return "".join(c if c.isascii() and c.isalnum() else "%%%02x" % ord(c) for c in s)


def scram_sha1(password, salt, iterations):
    """(stored_key, server_key) as lowercase hex, RFC 5802 section 3."""
    salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
    stored_key = hashlib.sha1(client_key).hexdigest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha1).hexdigest()
    return stored_key, server_key


def record(password, salt, iterations):
    stored_key, server_key = scram_sha1(password, salt, iterations)
    # util/serialization.lua's layout, as prosodyctl register writes it
    return ("return {\n"
            '\t["iteration_count"] = %d;\n'
            '\t["stored_key"] = "%s";\n'
            '\t["server_key"] = "%s";\n'
            '\t["salt"] = "%s";\n'
            "};\n") % (iterations, stored_key, server_key, salt)


class Writer:
    def __init__(self, accounts, prefix, password):
        self.accounts, self.prefix, self.password = accounts, prefix, password

    def __call__(self, i):
        user = self.prefix + str(i)
        text = record(self.password, str(uuid.uuid4()), ITERATIONS)
        path = os.path.join(self.accounts, encode(user) + ".dat")
        tmp = "%s.tmp%d" % (path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)  # atomic, like datamanager's atomic_store
        return 1


def main():
    if len(sys.argv) != 6:
        sys.exit("usage: accounts.py DATA_DIR PREFIX N DOMAIN JOBS  (password on stdin)")
    data, prefix, n, domain, jobs = sys.argv[1:]
    password = sys.stdin.readline().rstrip("\n")
    if not re.fullmatch(r"[a-z0-9._-]+", prefix):
        sys.exit("prosody: PREFIX must be lowercase letters, digits, '.', '_' or '-'")
    if not re.fullmatch(r"[0-9]+", n) or not re.fullmatch(r"[0-9]+", jobs):
        sys.exit("prosody: N and JOBS must be numbers")
    if not re.fullmatch(r"[\x20-\x7e]+", password):
        sys.exit("prosody: PASSWORD must be non-empty printable ASCII")
    n, jobs = int(n), max(1, int(jobs))

    accounts = os.path.join(data, encode(domain), "accounts")
    os.makedirs(accounts, mode=0o750, exist_ok=True)
    writer = Writer(accounts, prefix, password)
    with multiprocessing.Pool(jobs) as pool:
        done = sum(pool.imap_unordered(writer, range(n), chunksize=64))
    if done != n:
        sys.exit("prosody: wrote %d of %d accounts" % (done, n))


if __name__ == "__main__":
    main()

"""Seeds a fresh agentkey with agent tokens for bench/verify, over HTTP.

Writes three files into the output directory, one token per line:
valid.txt (tokens that verify), revoked.txt (created, then deleted) and
garbage.txt (half malformed, half well-formed with a valid checksum but
never issued). Uses only the standard library.
"""

import http.client
import json
import os
import sys
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(number, width):
    digits = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        digits.append(ALPHABET[rem])
    return "".join(reversed(digits))


def unissued_token():
    """A token with agentkey's shape and a valid checksum, never issued."""
    body = "akagt_" + base62(int.from_bytes(os.urandom(32), "big"), 43)
    return body + base62(zlib.crc32(body.encode()), 6)


def main():
    host, port, root, out, total, revoked = sys.argv[1:7]
    total, revoked = int(total), int(revoked)
    conn = http.client.HTTPConnection(host, int(port))
    headers = {"Authorization": f"Bearer {root}", "Content-Type": "application/json"}

    def call(method, path, body=None):
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise SystemExit(f"{method} {path}: {response.status} {data!r}")
        return json.loads(data) if data else None

    org = call("POST", "/v1/organizations", {"name": "bench"})["id"]
    ws = call("POST", f"/v1/organizations/{org}/workspaces", {"name": "bench"})["id"]
    tokens = []  # (path, secret)
    deployment = None
    for i in range(total + revoked):
        if i % 50 == 0:
            deployment = call("POST", f"/v1/organizations/{org}/deployments",
                              {"name": f"dep-{i // 50}", "workspaceId": ws})["id"]
        path = f"/v1/organizations/{org}/deployments/{deployment}/agent-tokens"
        created = call("POST", path, {"name": f"agent-{i}"})
        tokens.append((f"{path}/{created['id']}", created["token"]))
    for path, _ in tokens[total:]:
        call("DELETE", path)

    with open(os.path.join(out, "valid.txt"), "w") as f:
        f.writelines(secret + "\n" for _, secret in tokens[:total])
    with open(os.path.join(out, "revoked.txt"), "w") as f:
        f.writelines(secret + "\n" for _, secret in tokens[total:])
    with open(os.path.join(out, "garbage.txt"), "w") as f:
        for i in range(revoked):
            f.write((unissued_token() if i % 2 else "akagt_" + os.urandom(20).hex()) + "\n")


if __name__ == "__main__":
    main()

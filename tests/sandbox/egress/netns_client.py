"""Runs inside the test's network namespace as a plugin would: stdlib HTTP and raw sockets.

Prints one JSON object: what each attempt got. Argument: JSON {"port", "other_port", "socket"}.
"""

import json
import socket
import sys
import urllib.error
import urllib.request


def fetch(url: str, headers: dict | None = None) -> str:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return f"{r.status} {r.read().decode()}"
    except urllib.error.HTTPError as exc:
        return f"http {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"error {type(reason).__name__}: {reason}"
    except Exception as exc:  # http.client.RemoteDisconnected and friends
        return f"error {type(exc).__name__}: {exc}"


def ask_broker(path: str, grant: str) -> str:
    """What a hostile plugin gets by talking to the broker socket directly."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(b"RHEG1 " + grant.encode() + b"\n")
    answer = s.makefile("rb").readline().decode().strip()
    s.close()
    return answer


def main() -> None:
    args = json.loads(sys.argv[1])
    port, other = args["port"], args["other_port"]
    out = {
        "granted": fetch(f"http://target.test:{port}/hello"),
        "host_header": fetch(f"http://target.test:{port}/hello", {"Host": f"other.test:{other}"}),
        "ungranted_name": fetch(f"http://ungranted.test:{port}/"),
        "ip_literal_loopback": fetch(f"http://127.0.0.1:{other}/"),
        "ip_literal_private": fetch("http://10.0.0.1:80/"),
        "internal_dns": fetch(f"http://internal.test:{port}/"),
        "localhost_dns": fetch(f"http://target-alias.test:{port}/"),
        "redirect_off_list": fetch(f"http://target.test:{port}/redirect-name"),
        "redirect_ip_literal": fetch(f"http://target.test:{port}/redirect-ip"),
        "broker_ungranted": ask_broker(args["socket"], f"ungranted.test:{port}"),
        "broker_garbage": ask_broker(args["socket"], "not a grant"),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

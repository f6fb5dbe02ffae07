"""Client keys of ``/route`` and the OpenAI-compatible ``/v1/*`` endpoints.

Separate from the admin token of expert changes (``--token-env``): a client key lets a
caller route and chat, never change the router. Keys come from an environment variable
(``--client-token-env``, default ``IRDE_CLIENT_TOKEN``; one key) and/or a file
(``--client-keys``; one key per line, blank lines and lines starting with ``#`` ignored).
A request sends one as ``Authorization: Bearer <key>`` (what every OpenAI client does with
its ``api_key``). With no key configured the endpoints are open; ``irde serve`` refuses
that on any interface but loopback unless ``--allow-anonymous`` is given.

The comparison takes the same time whichever key matches and however much of one does:
the sha256 of the given key is compared with each key's, all of them, with
:func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from pathlib import Path

from irde_onnx.errors import InvalidInputError

CLIENT_TOKEN_ENV = "IRDE_CLIENT_TOKEN"
MAX_KEYS = 10_000


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class ClientKeys:
    """The accepted client keys (none: the endpoints are open)."""

    def __init__(self, keys: list[str], sources: list[str]) -> None:
        self._digests = [_digest(k) for k in keys]
        self.sources = sources  # where the keys came from, for messages

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries one of the keys."""
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        digest = _digest(given.strip())
        match = False
        for known in self._digests:  # every key, so the time does not say which one matched
            match |= hmac.compare_digest(digest, known)
        return match


def _checked(key: str, where: str, fix: str) -> str:
    if key != key.strip():
        raise InvalidInputError(
            f"the client key in {where} has leading or trailing white space (a newline or a "
            f"space), which no client could send; {fix}"
        )
    if any(not c.isprintable() for c in key):
        raise InvalidInputError(
            f"the client key in {where} has control characters; use printable characters only"
        )
    return key


def load_client_keys(
    env: str = CLIENT_TOKEN_ENV, file: str | os.PathLike | None = None, env_required: bool = False
) -> ClientKeys:
    """The client keys from the environment variable ``env`` and the keys file ``file``.

    Args:
        env: the variable holding one key; unset or empty: no key from it.
        file: a keys file, one key per line (``#`` comments and blank lines ignored).
        env_required: the variable was named on the command line, so it must be set.

    Raises:
        InvalidInputError: a key with surrounding white space or control characters, a named
            variable that is unset, a keys file with no key.
        FileNotFoundError: the keys file does not exist.

    """
    keys: list[str] = []
    sources: list[str] = []
    value = os.environ.get(env) or None
    if value is not None:
        fix = f"set {env} to the key alone, e.g. {env}=\"$(tr -d '[:space:]' < file)\""
        keys.append(_checked(value, env, fix))
        sources.append(env)
    elif env_required:
        raise InvalidInputError(
            f"--client-token-env {env}: the environment variable {env} is not set; "
            "set it to a client key, or leave out --client-token-env"
        )
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"client keys file not found: {path}")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{path} is not UTF-8 text: {exc}") from exc
        found = 0
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                keys.append(_checked(line, f"{path}:{number}", "remove it"))
                found += 1
        if not found:
            raise InvalidInputError(
                f"{path} holds no client key; write one key per line (lines starting with "
                "# are comments)"
            )
        if found > MAX_KEYS:
            raise InvalidInputError(f"{path} holds {found} keys; at most {MAX_KEYS} are read")
        sources.append(str(path))
    return ClientKeys(keys, sources)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``--host``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


def exposure_problem(host: str, keys: ClientKeys, allow_anonymous: bool) -> str | None:
    """Why serving on ``host`` with ``keys`` is refused (None: it is not)."""
    if keys or allow_anonymous or is_loopback(host):
        return None
    return (
        f"--host {host} lets other machines use /route and /v1/* (and spend the backends' "
        f"keys), but no client key is set: set {CLIENT_TOKEN_ENV} (or --client-token-env "
        "NAME, or --client-keys FILE) and send it as Authorization: Bearer <key>, or pass "
        "--allow-anonymous to serve them open"
    )

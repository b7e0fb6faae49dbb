"""The HTTP client huggingface_hub uses while guard downloads: Hub hosts only, a deadline, a byte budget.

huggingface_hub takes one process-wide client factory; `hub_session` installs guard's for the duration
of a call (one guarded session at a time per process) and turns off the Xet transfer path, whose Rust
client would bypass this transport. Limits raise `HubLimitExceeded` (a PolicyRefusal: exit 1) from
inside the transport, so huggingface_hub's retry-on-network-error paths do not swallow them.
"""

from __future__ import annotations

import contextlib
import fnmatch
import threading
import time
from collections.abc import Iterator

from guard.errors import InputError, PolicyRefusal
from guard.hub.settings import HubLimits, HubSettings

API_RESPONSE_CAP = 64 << 20  # one JSON answer (tree listing, model info): far above any real one
_SESSION_LOCK = threading.Lock()


class HubLimitExceeded(PolicyRefusal):
    """A download broke a limit: a host outside the Hub, the deadline, or the byte budget."""


class HubUnavailable(InputError):
    """The Hub could not be reached or answered with an error: worth retrying later."""


class _Budget:
    def __init__(self, *, total: int, deadline: float) -> None:
        self.left = total
        self.deadline = deadline
        self.unreachable: str | None = None  # the last connection failure, while nothing has connected since
        self._lock = threading.Lock()

    def check_time(self, what: str, limits: HubLimits) -> None:
        if time.monotonic() > self.deadline:
            if self.unreachable:
                raise HubUnavailable(f"the Hub could not be reached within {limits.timeout_s:g} s: "
                                     f"{self.unreachable}", rule="hub-unavailable")
            raise HubLimitExceeded(f"download took longer than the {limits.timeout_s:g} s limit ({what})",
                                   rule="hub-timeout")

    def take(self, n: int, what: str) -> None:
        with self._lock:
            self.left -= n
            if self.left < 0:
                raise HubLimitExceeded(f"the Hub sent more bytes than the download's budget ({what})",
                                       rule="hub-too-large")


def _make_transport(settings: HubSettings, limits: HubLimits, budget: _Budget):
    import httpx2

    allowed = settings.allowed_hosts()

    class _CappedStream(httpx2.SyncByteStream):
        def __init__(self, inner, cap: int, what: str) -> None:
            self._inner, self._cap, self._what = inner, cap, what

        def __iter__(self) -> Iterator[bytes]:
            seen = 0
            for chunk in self._inner:
                seen += len(chunk)
                if seen > self._cap:
                    raise HubLimitExceeded(f"{self._what} sent more than {self._cap:,} bytes", rule="hub-too-large")
                budget.take(len(chunk), self._what)
                budget.check_time(self._what, limits)
                yield chunk

        def close(self) -> None:
            self._inner.close()

    class GuardedTransport(httpx2.BaseTransport):
        def __init__(self) -> None:
            self._inner = httpx2.HTTPTransport(trust_env=False)

        def handle_request(self, request):
            host = request.url.host or ""
            if not any(fnmatch.fnmatchcase(host, pattern) for pattern in allowed):
                raise HubLimitExceeded(f"refused a connection to {host!r}: downloads may reach only the Hub "
                                       f"({', '.join(allowed)})", rule="hub-host")
            what = f"{request.method} {request.url.path[:200]}"
            budget.check_time(what, limits)
            # huggingface_hub passes per-request timeouts (60 s on its retries): none may outlast the limits.
            cap = max(0.05, min(limits.read_timeout_s, budget.deadline - time.monotonic()))
            timeouts = dict(request.extensions.get("timeout") or {})
            request.extensions["timeout"] = {k: cap if v is None else min(v, cap)
                                             for k, v in {"connect": None, "read": None, "write": None, "pool": None,
                                                          **timeouts}.items()}
            try:
                response = self._inner.handle_request(request)
            except httpx2.ConnectError as exc:
                budget.unreachable = f"{type(exc).__name__}: {exc}"[:300]
                raise
            budget.unreachable = None
            size_cap = API_RESPONSE_CAP if request.url.path.startswith("/api/") else limits.max_file_bytes
            response.stream = _CappedStream(response.stream, size_cap, what)
            return response

        def close(self) -> None:
            self._inner.close()

    return GuardedTransport()


@contextlib.contextmanager
def hub_session(settings: HubSettings, limits: HubLimits, *, total_bytes: int | None = None) -> Iterator[None]:
    """Route huggingface_hub through guard's transport until the block ends."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    budget = _Budget(total=(limits.max_total_bytes if total_bytes is None else total_bytes) + API_RESPONSE_CAP,
                     deadline=time.monotonic() + limits.timeout_s)

    def factory():
        return httpx2.Client(transport=_make_transport(settings, limits, budget), follow_redirects=True,
                             event_hooks={"request": [_http.hf_request_event_hook]}, trust_env=False,
                             timeout=httpx2.Timeout(limits.read_timeout_s, connect=min(30.0, limits.read_timeout_s)))

    with _SESSION_LOCK:
        saved_factory, saved_xet = _http._GLOBAL_CLIENT_FACTORY, constants.HF_HUB_DISABLE_XET
        constants.HF_HUB_DISABLE_XET = True
        _http.set_client_factory(factory)
        try:
            yield
        finally:
            _http.set_client_factory(saved_factory)
            constants.HF_HUB_DISABLE_XET = saved_xet

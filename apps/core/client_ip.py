"""The client's IP address, for rate limits and buyer identities.

Behind a reverse proxy REMOTE_ADDR is the proxy. The address the proxy saw is
read from one configured header only (TRUSTED_PROXY_IP_HEADER), and of a
list-valued header like X-Forwarded-For only the entry written by our own
proxies counts: each proxy appends the address it received the request from,
so anything left of the last TRUSTED_PROXY_COUNT entries was written by the
client and is ignored. Without the setting, headers are ignored entirely: a
client that reaches the app directly could put anything there.
"""

import functools
import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _meta_name(header: str) -> str:
    return "HTTP_" + header.strip().upper().replace("-", "_")


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str:
    """The client's address as our trusted proxies saw it, else REMOTE_ADDR."""
    remote_addr = request.META.get("REMOTE_ADDR", "")
    header = settings.TRUSTED_PROXY_IP_HEADER
    if not header:
        return remote_addr
    entries = [entry for entry in request.META.get(_meta_name(header), "").split(",") if entry.strip()]
    if not entries:
        # The proxy always sets it; a request without it did not come through the proxy.
        return remote_addr
    # The entry the outermost of our proxies appended. A shorter list than the
    # configured hops means fewer proxies were passed; its first entry was then
    # still written by one of ours.
    hops = max(1, settings.TRUSTED_PROXY_COUNT)
    return _valid_ip(entries[-min(hops, len(entries))]) or remote_addr


def ip_counted(ip: str) -> str:
    """The address a per-client limit counts: an IPv6 client by its /64, since
    one client usually holds a whole /64 and can pick any address in it."""
    if ":" in ip:
        try:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False).network_address)
        except ValueError:
            return ip
    return ip


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip())


def ip_in_networks(ip: str, cidrs: list[str] | tuple[str, ...]) -> bool:
    """Whether `ip` lies in one of the CIDR blocks (a setting's list; parsed
    once per distinct list). An unreadable address is in none."""
    address = _valid_ip(ip)
    if address is None:
        return False
    parsed = ipaddress.ip_address(address)
    return any(parsed in network for network in _networks(tuple(cidrs)) if network.version == parsed.version)

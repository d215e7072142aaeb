"""``connectors.http``'s clients share one TLS context per process (httpx would read the CA
bundle again for every client)."""

from __future__ import annotations

from connectors.http import HttpApi, new_client, tls_context


def test_every_client_shares_the_process_tls_context() -> None:
    api = HttpApi(system="org", backend="org_admin", base_url="https://org.example")
    for client in (new_client(5), api.client):
        assert client._transport._pool._ssl_context is tls_context()  # type: ignore[attr-defined]

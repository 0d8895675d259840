"""The hostile-client tests run the real server like the integration tests do."""

from tests.integration.conftest import start_dnsfilter

__all__ = ["start_dnsfilter"]

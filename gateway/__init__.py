"""The payment gateway: the HTTP adapter our workers use, and a sandbox that plays the provider."""

from gateway.client import Charge, GatewayClient, GatewayRejected, GatewayUnavailable, Refund

__all__ = ["Charge", "GatewayClient", "GatewayRejected", "GatewayUnavailable", "Refund"]

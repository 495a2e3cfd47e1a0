"""The payment gateway: the HTTP adapter our workers use, and a sandbox that plays the provider."""

from gateway.client import (
    Charge, ChargePage, ChargeVoided, GatewayClient, GatewayRejected, GatewayUnavailable, Refund, Void,
)

__all__ = ["Charge", "ChargePage", "ChargeVoided", "GatewayClient", "GatewayRejected", "GatewayUnavailable",
           "Refund", "Void"]

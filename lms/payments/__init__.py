"""Payments: checkout at Stripe, Paymob and MyFatoorah, signed webhooks, settlement, refunds, subscriptions.

- ``signatures``: each gateway's webhook signature scheme, on the raw request;
- ``models`` and ``outcomes``: the verified payloads and what they mean for a payment;
- ``gateways``: the clients of the gateways' APIs (checkout, refund, status);
- ``intake``: verify, store, acknowledge (the webhook routes' work);
- ``settlement``: apply an outcome to a payment exactly once, and its side effects;
- ``service``: checkout, subscriptions and refunds; ``queries``: the SQL, revenue included.
"""

"""The order lifecycle, one module per use case:

checkout     reserve stock in Redis and answer 202 (no database write)
persistence  queued reservations become awaiting_payment orders
payment      a verified notification marks an order paid or refunded, once
fulfilment   paid orders get their keys in batches; re-drive of stuck ones
manual_delivery  the merchant delivers a paid order of a manual product by hand
expiry       unpaid orders past their reservation expire; their stock returns
reconcile    the periodic run of re-drives and gate repairs

queued -> awaiting_payment -> paid -> delivered, with the side exits expired,
refund_pending -> refunded and needs_attention (docs/architecture.md). Each
transition has one writer here. Import the module you need:
`from apps.orders.services.checkout import order_checkout`.
"""

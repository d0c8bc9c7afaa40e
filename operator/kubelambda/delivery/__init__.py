"""Asynchronous work waiting for delivery: the job (`jobs`), the `DeliveryStore` interface and
its bounded in-memory implementation (`store`), and the durable file store (`files`).

The gateway's sources put accepted events in a store; the dispatcher takes them out.
"""

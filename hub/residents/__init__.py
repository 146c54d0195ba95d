"""Residents' services: what residents ask of the hub, each a component of its own.

Reserved for the services to come (intake of residents' requests, notices, votes,
assessment), in the shape of Decidim's participatory components: each its own
module or subpackage here, owning its tables, its API router and its templates, and using
other components only through their interfaces — work orders through
:class:`hub.workorders.WorkOrders` (``create`` a request, ``get``/``find`` to show its
progress, ``act`` with a resident's ``comment``), accounts through :class:`hub.accounts.Accounts`.
Nothing in this package reads another component's tables; the composition root
(:mod:`hub.service`) wires a service in.
"""

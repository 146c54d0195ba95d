"""Work orders: what staff and volunteer residents do, and the SLA timers on it.

The public interface other components use (alerting through :mod:`hub.workorders.intake`,
the API, and the residents' services of :mod:`hub.residents`):

- :class:`WorkOrders` (``store.py``): ``create`` an order (a request from anyone: a
  resident's report, a kiosk), ``act`` on it as a :class:`~hub.accounts.Principal`
  (claim, assign, start, resolve, verify, reopen, comment), ``get``, ``find``, and
  ``counts`` for summaries. It owns the ``work_orders`` and ``work_order_events`` tables;
  nothing else reads them.
- :class:`AlertIntake` (``intake.py``): turns a raised alert into an order (one per incident).
- :class:`SlaTimer` (``sla.py``): escalates orders past their category's SLA, once each.
"""

from hub.categories import CATEGORIES, REQUEST_CATEGORIES, Category, category_of_alert
from hub.workorders.intake import AlertIntake
from hub.workorders.sla import SlaTimer
from hub.workorders.store import ACTIONS, ACTIVE, STATUSES, WorkOrderError, WorkOrders

__all__ = ["ACTIONS", "ACTIVE", "CATEGORIES", "REQUEST_CATEGORIES", "STATUSES", "AlertIntake", "Category",
           "SlaTimer", "WorkOrderError", "WorkOrders", "category_of_alert"]

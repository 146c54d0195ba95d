"""Residents' requests: one window for reports from every channel (kiosk, phone, counter,
hotline, Open311), triaged, routed to work orders, and tracked by ticket and PIN.

=================  ===========================================================
module             job
=================  ===========================================================
intake.py          :class:`Intake`: submit, confirm (triage queue), track, add_info,
                   rate, reopen, order photos, anonymise_closed
store.py           :class:`RequestStore`: the component's own tables
identity.py        the per-hub secret; identity and PIN as HMAC-SHA256
pin_guard.py       wrong ticket+PIN attempts, per ticket and per address
photos.py          photos checked and re-encoded without metadata
places.py          the place picker: buildings, units, common areas
duplicates.py      is a report the same problem as an active one (pure)
duplicates_eval.py its figures on a labelled file
api.py             the JSON API router
metrics.py         counters at /metrics
=================  ===========================================================
"""

from hub.residents.requests.errors import RequestError
from hub.residents.requests.intake import (CHANNELS, CONTACT_PREFS, EMERGENCY_NUMBERS, Intake, NewRequest,
                                           Receipt)
from hub.residents.requests.places import Place, Places
from hub.residents.requests.store import RequestStore

__all__ = ["CHANNELS", "CONTACT_PREFS", "EMERGENCY_NUMBERS", "Intake", "NewRequest", "Place", "Places", "Receipt",
           "RequestError", "RequestStore"]

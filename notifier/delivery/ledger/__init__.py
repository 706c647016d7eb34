"""The ledger: the one owner of the delivery state (``delivery_state``), after Alertmanager's nflog.

What each sink was told about each credential, and when it is next due, is read, encoded and
written here and nowhere else: the pass's candidates (:mod:`.candidates`), its claims,
postponements, records and releases with their version and lease rules (:mod:`.writes`),
the row codec (:mod:`.codec`), and what other parts read or change (:mod:`.history`:
``deliveries list``, unsnooze, token delete, retention).
"""

from notifier.delivery.ledger.candidates import View, Walks, WindowView, view
from notifier.delivery.ledger.codec import EPOCH, Candidate, Item, Key, record_row
from notifier.delivery.ledger.writes import Ledger

__all__ = [
    "EPOCH",
    "Candidate",
    "Item",
    "Key",
    "Ledger",
    "View",
    "Walks",
    "WindowView",
    "record_row",
    "view",
]

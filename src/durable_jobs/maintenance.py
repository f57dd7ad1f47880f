"""Store maintenance: replay checks, JSONL export and import, purge, tail.

Everything here works on an open :class:`~durable_jobs.Store` (see
:func:`durable_jobs.open_store`) and is what the ``durable-jobs`` command line
runs (``replay``, ``export``, ``import``, ``purge``, ``tail``):

- :func:`replay_instance` / :func:`replay_store` rebuild instances from their
  whole log and compare that with the snapshot-based rebuild and with the
  index row (status, alarm, version);
- :func:`export_jsonl` writes a store (or part of it) as JSON lines and
  :func:`import_jsonl` writes such a file into another store, versions and
  timestamps kept, index rows rebuilt;
- :func:`purge_instance` deletes a terminated instance's whole history (for
  data-removal requests);
- :func:`tail_events` follows the events other processes commit;
- :func:`terminate_instance` and :func:`trigger_instance` are the quiet admin
  path: they commit domain events (no handler runs, no overdue alarm fires),
  which a runtime serving the store then acts on.

The export format (``format`` ``durable-jobs-export``, ``version`` 1) is one
JSON object per line::

    {"type":"header","format":"durable-jobs-export","version":1,
     "exported_at":"2026-01-01T00:00:00+00:00","store":"sqlite:///jobs.db",
     "filter":{"kind":null,"job":null,"status":null},
     "plaintext":true,"encrypted_store":false}
    {"type":"event","instance_uuid":"…","kind":"continuous","job":"sync",
     "instance_id":"acct-42","version":1,"timestamp":"2026-01-01T00:00:00Z",
     "topic":"durable_jobs:ContinuousInstance.Started","name":"started",
     "state":{…the stored JSON of the event…}}
    …
    {"type":"footer","instances":12,"events":345}

Events come instance by instance, each instance's versions 1, 2, 3… in order.
``state`` is the event's stored JSON as is (it includes ``timestamp``);
``timestamp`` and ``name`` repeat what it says for readers. Snapshots are
not exported (they are a cache; an import takes new ones). The footer makes a
truncated file detectable: an import refuses a file without it.

The events are exported decrypted (``plaintext`` is true): the export of an
encrypted store, made with its key (``encrypted_store`` true), holds its data in
clear and must be protected accordingly. Without a key the export stops at the
first encrypted row, so one made without a key (``encrypted_store`` false) holds
only rows the store keeps in clear. An import into a store opened with an encryption key
encrypts every row it writes.
"""

from __future__ import annotations

from durable_jobs._errors import ExportFileError, InstanceExistsError, LiveInstanceError
from durable_jobs._tools.admin import AdminResult, terminate_instance, trigger_instance
from durable_jobs._tools.export import EXPORT_FORMAT, EXPORT_VERSION, ExportSummary, export_jsonl
from durable_jobs._tools.importer import ImportSummary, check_export, import_jsonl
from durable_jobs._tools.purge import PurgeResult, purge_instance
from durable_jobs._tools.replay import Divergence, ReplayReport, replay_instance, replay_store
from durable_jobs._tools.tail import TailEvent, tail_events, tail_position

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "AdminResult",
    "Divergence",
    "ExportFileError",
    "ExportSummary",
    "ImportSummary",
    "InstanceExistsError",
    "LiveInstanceError",
    "PurgeResult",
    "ReplayReport",
    "TailEvent",
    "check_export",
    "export_jsonl",
    "import_jsonl",
    "purge_instance",
    "replay_instance",
    "replay_store",
    "tail_events",
    "tail_position",
    "terminate_instance",
    "trigger_instance",
]

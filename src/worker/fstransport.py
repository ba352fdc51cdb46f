"""kombu's filesystem transport with atomic message files (the embedded default broker).

kombu writes a message file in place, so a consumer that lists the folder at the wrong
moment reads an empty file and crashes on the JSON. Here the message is written to a
staging folder and renamed into the queue folder, so a consumer only ever sees whole files.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

ALIAS = "vmfs"


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        staging = os.path.join(self.data_folder_out, ".staging")
        os.makedirs(staging, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=staging)
        with os.fdopen(fd, "wb") as fh:
            fh.write(str_to_bytes(dumps(payload)))  # type: ignore[no-untyped-call]
        os.replace(tmp, os.path.join(self.data_folder_out, name))


class Transport(filesystem.Transport):
    Channel = Channel


def register() -> None:
    TRANSPORT_ALIASES[ALIAS] = "worker.fstransport:Transport"

"""The service's use cases: each runs in the caller's transaction, state and events together.

The routes (api.py) and the event handlers (handlers.py) only translate into these.

Split by use case: `intakes` (submitting an intake), `decisions` (matching an intake: the
matcher's decision with the chosen therapist's place claimed), `clinicians` (triage,
approval, rejection), `clinician_access` (opening, claiming and releasing an intake),
`switching` (a client's switch of therapist), `waitlist` (its retries), `index` (the
worker's candidate index), `waiting` (the waiting gauges), `rights` (export, erasure,
retention); `common` holds what they share.
"""

from __future__ import annotations

from matching.service.clinician_access import (
    Opened,
    claim_intake,
    needs_clinician,
    open_intake,
    release_intake,
)
from matching.service.clinicians import approve, reject, triage
from matching.service.decisions import (
    CLAIM_WAIT,
    CLAIMS,
    CLAIMS_HELD,
    CLAIMS_REFUSED,
    HELD,
    MAX_CLAIMS,
    Candidates,
    IndexedCandidates,
    ReadModelCandidates,
    match_intake,
    match_submitted,
)
from matching.service.index import (
    INDEX_PAGE,
    INDEX_THERAPISTS,
    IndexNotReady,
    built_index,
    index_ready,
    keep_candidate_index,
    worker_index,
)
from matching.service.intakes import Submitted, submit
from matching.service.rights import ERASED, KEPT, handle_rights_request, purge_expired
from matching.service.switching import NobodyToSwitchTo, switch
from matching.service.waiting import AWAITING_TRIAGE_OLDEST, WAITLISTED, waiting_watch
from matching.service.waitlist import retry_waitlist, waitlist_retrier

__all__ = [
    "AWAITING_TRIAGE_OLDEST",
    "CLAIMS",
    "CLAIMS_HELD",
    "CLAIMS_REFUSED",
    "CLAIM_WAIT",
    "ERASED",
    "HELD",
    "INDEX_PAGE",
    "INDEX_THERAPISTS",
    "KEPT",
    "MAX_CLAIMS",
    "WAITLISTED",
    "Candidates",
    "IndexNotReady",
    "IndexedCandidates",
    "NobodyToSwitchTo",
    "Opened",
    "ReadModelCandidates",
    "Submitted",
    "approve",
    "built_index",
    "claim_intake",
    "handle_rights_request",
    "index_ready",
    "keep_candidate_index",
    "match_intake",
    "match_submitted",
    "needs_clinician",
    "open_intake",
    "purge_expired",
    "reject",
    "release_intake",
    "retry_waitlist",
    "submit",
    "switch",
    "triage",
    "waiting_watch",
    "waitlist_retrier",
    "worker_index",
]

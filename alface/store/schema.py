"""The store's tables, and the migrations that take an older store to the current schema.

``MIGRATIONS[v]`` takes a store from schema version ``v`` to ``v + 1``; ``PRAGMA user_version``
holds the version. A migration runs in one transaction with foreign keys off (SQLite rebuilds a
table to change its columns), and is checked with ``PRAGMA foreign_key_check`` before commit.
"""

from __future__ import annotations

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,          -- content hash of the input file
    kind TEXT NOT NULL,                 -- image | video | crop
    status TEXT NOT NULL,               -- done | failed
    n_faces INTEGER NOT NULL DEFAULT 0,
    n_frames INTEGER,
    error TEXT,
    pool INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,           -- stable string id used at every file boundary
    crop_path TEXT NOT NULL,            -- relative to WORKDIR, or absolute for external crops
    hash TEXT NOT NULL UNIQUE,          -- content hash of the crop
    source_id INTEGER REFERENCES sources(id),
    source_path TEXT,
    frame INTEGER,
    box TEXT,                           -- JSON [x1, y1, x2, y2] in source pixels
    prob REAL,
    landmarks TEXT,                     -- JSON 5 x [x, y]
    pool INTEGER NOT NULL,              -- the pool (preprocess run) it arrived with
    split TEXT NOT NULL DEFAULT 'pool',
    labeled_round INTEGER,              -- when it entered the labeled set (baal's labelled_map)
    labeled_iteration INTEGER,
    created REAL NOT NULL
);
CREATE INDEX items_split ON items(split);
CREATE TABLE split_events (             -- append-only history of split membership
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id),
    split TEXT NOT NULL,
    round_id INTEGER,
    iteration_id INTEGER,
    audit_id INTEGER NOT NULL REFERENCES audit(id)
);
CREATE INDEX split_events_item ON split_events(item_id);
CREATE TABLE imports (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    file_hash TEXT NOT NULL UNIQUE,     -- the same file imported twice changes nothing
    format TEXT NOT NULL,
    annotator TEXT,
    n_rows INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id),
    label TEXT NOT NULL,
    annotator TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'label', -- label | review | oracle
    import_id INTEGER REFERENCES imports(id),
    superseded_by INTEGER REFERENCES annotations(id),
    created REAL NOT NULL
);
CREATE INDEX annotations_item ON annotations(item_id);
CREATE TABLE labels (                   -- resolved labels, derived from current annotations
    item_id INTEGER PRIMARY KEY REFERENCES items(id),
    label TEXT NOT NULL,
    rule TEXT NOT NULL,                 -- single | agreed | review
    updated REAL NOT NULL
);
CREATE TABLE batches (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                 -- select | itval | review
    round_id INTEGER,
    iteration_id INTEGER,
    strategy TEXT,
    out_dir TEXT,
    created REAL NOT NULL,
    closed REAL                         -- set when every item in it is labeled
);
CREATE TABLE batch_items (
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    item_id INTEGER NOT NULL REFERENCES items(id),
    rank INTEGER NOT NULL,
    cluster INTEGER,
    reason TEXT,                        -- near | far | random | uncertain | ...
    score REAL,
    predicted TEXT,
    annotators INTEGER NOT NULL DEFAULT 1,  -- 2: sent to two annotators (pair annotation)
    PRIMARY KEY (batch_id, item_id)
);
CREATE TABLE rounds (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'open', -- open | closed
    baseline TEXT,                      -- JSON metrics on the overfitting set at the start
    stop_reason TEXT,
    started REAL NOT NULL,
    ended REAL
);
CREATE TABLE iterations (
    id INTEGER PRIMARY KEY,
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,                -- the loop's step (see alface/loop.py)
    metrics TEXT,                       -- JSON {set: {metric: value}}
    decision TEXT,                      -- continue | stop
    stop_reason TEXT,
    started REAL NOT NULL,
    ended REAL,
    UNIQUE (round_id, idx)
);
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,                 -- checkpoint, relative to WORKDIR
    iteration_id INTEGER REFERENCES iterations(id),
    backbone TEXT NOT NULL,
    n_labeled INTEGER NOT NULL,
    metrics TEXT,                       -- JSON {set: {metric: value}}
    created REAL NOT NULL
);
CREATE TABLE scorings (
    id INTEGER PRIMARY KEY,
    model_id INTEGER REFERENCES models(id),
    path TEXT NOT NULL,                 -- folder with ids.npy, probs.npy, emb.npy
    n_items INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE audit (                    -- append-only log of every change
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    command TEXT,
    action TEXT NOT NULL,
    detail TEXT                         -- JSON
);
"""

# v2: label sessions (a file import, the oracle, a reviewer, a web page) replace file imports:
# every annotation belongs to the session that recorded it.
_V2_LABEL_SESSIONS = """
CREATE TABLE label_sessions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                 -- import | oracle | review | web
    name TEXT NOT NULL,                 -- the file imported, or a description
    key TEXT UNIQUE,                    -- idempotency key: the same file imported twice changes nothing
    annotator TEXT,
    format TEXT,                        -- csv | label-studio (imports)
    n_rows INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
INSERT INTO label_sessions (id, kind, name, key, annotator, format, n_rows, created)
    SELECT id, 'import', path, file_hash, annotator, format, n_rows, created FROM imports;
CREATE TABLE annotations_v2 (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id),
    label TEXT NOT NULL,
    annotator TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'label', -- label | review | oracle
    session_id INTEGER REFERENCES label_sessions(id),
    superseded_by INTEGER REFERENCES annotations_v2(id),
    created REAL NOT NULL
);
INSERT INTO annotations_v2 (id, item_id, label, annotator, kind, session_id, superseded_by, created)
    SELECT id, item_id, label, annotator, kind, import_id, superseded_by, created FROM annotations;
DROP TABLE annotations;
ALTER TABLE annotations_v2 RENAME TO annotations;
CREATE INDEX annotations_item ON annotations(item_id);
DROP TABLE imports;
"""

# v3: the labeling page (alface label): an annotator may take a label back (undo), the page's
# annotators with their access tokens, and indexes for its queries (an item's batch entries,
# a batch in rank order, an annotator's latest labels).
_V3_LABEL_PAGE = """
ALTER TABLE annotations ADD COLUMN withdrawn REAL;  -- set when its annotator took it back
CREATE TABLE annotators (
    name TEXT PRIMARY KEY,
    token_hash TEXT UNIQUE,             -- sha256 of the page's access token (hex); NULL: none
    created REAL NOT NULL
);
CREATE INDEX batch_items_item ON batch_items(item_id);
CREATE INDEX batch_items_rank ON batch_items(batch_id, rank);
CREATE INDEX annotations_annotator ON annotations(annotator, id);
"""


# v4 (video): the face track of each crop (global over videos), its perceptual hash for
# near-duplicate search, and the annotation a propagated label came from. A retracted
# annotation (a propagated label taken back) is superseded by itself.
_V4_TRACKS_AND_HASHES = """
ALTER TABLE items ADD COLUMN track INTEGER;           -- face track (global); NULL: not from a video
ALTER TABLE items ADD COLUMN phash INTEGER;           -- 64-bit perceptual hash of the crop, signed
CREATE INDEX items_track ON items(track);
ALTER TABLE annotations ADD COLUMN source_id INTEGER REFERENCES annotations(id);
"""

# v5: biometric data handled as such (alface forget, docs/PRIVACY.md): the terms (licence,
# consent reference) each source was collected under; how many of the faces a model was
# trained on were forgotten since (it must be retrained); the content hashes of forgotten
# input files, so that preprocess does not add them again (their tombstone is an audit entry);
# indexes for finding a source's and an old pool's faces.
_V5_PRIVACY = """
CREATE TABLE terms (
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,          -- sha256 of the text: the same terms are stored once
    created REAL NOT NULL
);
ALTER TABLE sources ADD COLUMN terms_id INTEGER REFERENCES terms(id);
ALTER TABLE models ADD COLUMN forgotten INTEGER NOT NULL DEFAULT 0;
CREATE TABLE forgotten_sources (
    hash TEXT PRIMARY KEY,              -- content hash of the input file (sources.hash)
    audit_id INTEGER NOT NULL REFERENCES audit(id)  -- the forget's tombstone
);
CREATE INDEX items_source ON items(source_id);
CREATE INDEX items_created ON items(created);
CREATE INDEX split_events_audit ON split_events(audit_id);
"""

MIGRATIONS: dict[int, str] = {
    0: _SCHEMA_V1, 1: _V2_LABEL_SESSIONS, 2: _V3_LABEL_PAGE, 3: _V4_TRACKS_AND_HASHES,
    4: _V5_PRIVACY,
}  # fmt: skip
SCHEMA_VERSION = len(MIGRATIONS)


def statements(script: str) -> list[str]:
    """Split a schema script into statements (``executescript`` would commit mid-transaction)."""
    out, buf = [], []
    for line in script.splitlines():
        buf.append(line.split("--", 1)[0])
        if buf[-1].rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            buf = []
    return out

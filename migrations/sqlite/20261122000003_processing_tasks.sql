-- The task flows seen per file, with when each was first seen: a late event of an older task
-- must not replace the state of a newer one (VOD gives no time or order across tasks).

CREATE TABLE processing_tasks (
    file_id       TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    PRIMARY KEY (file_id, task_id)
);

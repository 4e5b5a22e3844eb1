-- The recovery checklist of each conversation with a failure cue (docs/labelling.md): one row per
-- conversation, rewritten as its steps change. Steps are 0 or 1; the row holds no message text.
CREATE TABLE checklists (
    conversation           BIGINT  PRIMARY KEY,
    guild_id               BIGINT  NOT NULL,
    -- The agent who answered the cue first: the row counts towards their figures.
    agent_id               BIGINT,
    opened_at              BIGINT  NOT NULL,
    updated_at             BIGINT  NOT NULL,
    replies                BIGINT  NOT NULL,
    step_apologized        BIGINT  NOT NULL,
    step_specific          BIGINT  NOT NULL,
    step_before_explaining BIGINT  NOT NULL,
    step_owned_first       BIGINT  NOT NULL,
    step_next_step         BIGINT  NOT NULL,
    step_thanked           BIGINT  NOT NULL
);
CREATE INDEX checklists_opened ON checklists (guild_id, opened_at);
CREATE INDEX checklists_agent ON checklists (agent_id);

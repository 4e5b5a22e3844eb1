-- Backstop's first schema. Times are Unix milliseconds; Discord ids are 64-bit integers.
-- Message text is kept only as short, redacted excerpts: never whole transcripts.

CREATE TABLE promises (
    id            INTEGER PRIMARY KEY,
    guild_id      BIGINT  NOT NULL,
    conversation  BIGINT  NOT NULL,
    agent_id      BIGINT  NOT NULL,
    customer_id   BIGINT,
    message_id    BIGINT  NOT NULL,
    rule          TEXT    NOT NULL,
    evidence      TEXT    NOT NULL,
    excerpt       TEXT    NOT NULL,
    made_at       BIGINT  NOT NULL,
    due_at        BIGINT  NOT NULL,
    due_words     TEXT,
    state         TEXT    NOT NULL,
    next_step     TEXT,
    next_at       BIGINT,
    reminders     BIGINT  NOT NULL DEFAULT 0,
    updated_at    BIGINT  NOT NULL,
    closed_at     BIGINT,
    escalated_at  BIGINT,
    UNIQUE (guild_id, message_id)
);
CREATE INDEX promises_pending ON promises (next_at, id) WHERE next_at IS NOT NULL;
CREATE INDEX promises_conversation ON promises (conversation, state);
CREATE INDEX promises_agent ON promises (agent_id);
CREATE INDEX promises_message ON promises (message_id);
CREATE INDEX promises_customer ON promises (customer_id);

CREATE TABLE nudges (
    id            INTEGER PRIMARY KEY,
    nudge_key     TEXT    NOT NULL UNIQUE,
    guild_id      BIGINT  NOT NULL,
    conversation  BIGINT  NOT NULL,
    message_id    BIGINT  NOT NULL,
    agent_id      BIGINT,
    customer_id   BIGINT,
    kind          TEXT    NOT NULL,
    category      TEXT,
    rule          TEXT    NOT NULL,
    evidence      TEXT    NOT NULL,
    -- The message's one-line excerpt, redacted: what `backstop export-labels` turns into a test line.
    excerpt       TEXT    NOT NULL DEFAULT '',
    at            BIGINT  NOT NULL,
    delivered     BIGINT  NOT NULL DEFAULT 1,
    feedback      BIGINT,
    feedback_by   BIGINT,
    feedback_at   BIGINT,
    -- When the agent apologized after this cue (prior_failure only), for time-to-apology.
    recovered_at  BIGINT
);
CREATE INDEX nudges_at ON nudges (guild_id, at);
CREATE INDEX nudges_agent ON nudges (agent_id);
CREATE INDEX nudges_customer ON nudges (customer_id);

CREATE TABLE agents (
    guild_id      BIGINT  NOT NULL,
    agent_id      BIGINT  NOT NULL,
    muted_until   BIGINT,
    delivery      TEXT,
    updated_at    BIGINT  NOT NULL,
    PRIMARY KEY (guild_id, agent_id)
);

CREATE TABLE conversations (
    conversation  BIGINT  PRIMARY KEY,
    guild_id      BIGINT  NOT NULL,
    last_agent    BIGINT,
    last_customer BIGINT,
    context       TEXT    NOT NULL,
    updated_at    BIGINT  NOT NULL
);
CREATE INDEX conversations_agent ON conversations (last_agent);
CREATE INDEX conversations_customer ON conversations (last_customer);
CREATE INDEX conversations_updated ON conversations (updated_at);

-- Small facts about the database itself; the bot writes one at start to prove it can write.
CREATE TABLE meta (
    key           TEXT    PRIMARY KEY,
    value         TEXT    NOT NULL
);

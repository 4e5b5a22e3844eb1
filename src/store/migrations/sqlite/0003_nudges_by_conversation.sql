-- Marking a conversation's nudges recovered (once per agent apology) looks them up by
-- conversation; without this index every apology scans the whole nudge log, which costs more
-- the longer the bot runs.
CREATE INDEX nudges_conversation ON nudges (conversation, kind);

//! Slash commands, through poise: each command a typed function, `lead_only` a check, the
//! situation list an autocomplete, and one [`on_error`] that answers the caller privately and
//! logs the cause. Every answer is ephemeral: only the person who asked sees it.

use std::borrow::Cow;
use std::sync::Arc;

use poise::serenity_prelude as serenity;

use super::bot::Bot;
use crate::coach::config::Delivery;
use crate::engine::{format_due, NudgeKind, Prompts};
use crate::store::{from_ms, StoreError};

/// What a command handler receives.
pub type Ctx<'a> = poise::Context<'a, Arc<Bot>, CommandError>;

/// Why a command could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("use this in a server where Backstop is set up")]
    NotSetUp,
    #[error("the database is not answering: {0}")]
    Store(#[from] StoreError),
    #[error("Discord did not take the answer: {0}")]
    Discord(Box<serenity::Error>),
}

impl From<serenity::Error> for CommandError {
    fn from(e: serenity::Error) -> CommandError {
        CommandError::Discord(Box::new(e))
    }
}

/// Every command, for the framework and for registration.
pub fn all() -> Vec<poise::Command<Arc<Bot>, CommandError>> {
    vec![phrase(), followups(), handoff(), followup(), coach()]
}

/// The framework: the commands, their one error handler, and the bot as their data.
pub fn framework(bot: Arc<Bot>) -> poise::Framework<Arc<Bot>, CommandError> {
    poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: all(),
            on_error: |error| Box::pin(on_error(error)),
            // Owners come from Discord's application info; no command here is owner-only.
            initialize_owners: false,
            ..Default::default()
        })
        // Commands are registered per guild when the gateway is ready (see the event handler).
        .setup(move |_ctx, _ready, _framework| Box::pin(async move { Ok(bot) }))
        .build()
}

/// The definitions registered in every configured guild (bulk overwrite, so stale ones go).
pub fn definitions() -> Vec<serenity::CreateCommand> {
    poise::builtins::create_application_commands(&all())
}

/// The one error handler: the caller always gets a private answer, and the log gets the cause.
async fn on_error(error: poise::FrameworkError<'_, Arc<Bot>, CommandError>) {
    let (ctx, text) = match error {
        poise::FrameworkError::Command { error, ctx, .. } => {
            tracing::warn!(command = %ctx.command().qualified_name, error = %error, cause = ?std::error::Error::source(&error), "a command failed");
            let text = match error {
                CommandError::NotSetUp => "Use this in a server where Backstop is set up.".to_string(),
                CommandError::Store(_) => {
                    "That is unavailable right now (the database is not answering). Try again shortly.".to_string()
                }
                CommandError::Discord(_) => "Discord did not take that; try again.".to_string(),
            };
            (ctx, text)
        }
        poise::FrameworkError::CommandCheckFailed { ctx, error, .. } => {
            if let Some(e) = error {
                tracing::warn!(command = %ctx.command().qualified_name, error = %e, "a command's check failed");
            }
            let text = format!(
                "/{} is for leads (a lead role or Manage Server).",
                ctx.command().qualified_name
            );
            (ctx, text)
        }
        poise::FrameworkError::ArgumentParse { ctx, input, error, .. } => {
            tracing::info!(command = %ctx.command().qualified_name, ?input, %error, "a command's option did not parse");
            let text = format!("That option did not make sense here: {error}.");
            (ctx, text)
        }
        poise::FrameworkError::CommandStructureMismatch { ctx, description, .. } => {
            // Most often Discord still holds an older registration of the command.
            tracing::warn!(command = %ctx.command.qualified_name, description, "a command's options did not match its definition");
            let text = "That command's options did not match what Backstop expects (Discord may still show an older version). Try again in a minute.".to_string();
            (poise::Context::Application(ctx), text)
        }
        poise::FrameworkError::GuildOnly { ctx, .. } => {
            (ctx, "Use this in a server where Backstop is set up.".to_string())
        }
        other => {
            if let Err(e) = poise::builtins::on_error(other).await {
                tracing::warn!(error = %e, "could not report a framework error");
            }
            return;
        }
    };
    let reply = poise::CreateReply::default().content(text).ephemeral(true);
    if let Err(e) = ctx.send(reply).await {
        tracing::warn!(error = %e, "could not answer a failed command");
    }
}

/// Whether the caller is a lead: a lead role, or Manage Server.
async fn is_lead(ctx: Ctx<'_>) -> bool {
    let Some(guild) = ctx.guild_id() else { return false };
    let Some(member) = ctx.author_member().await else {
        return false;
    };
    let manages = member.permissions.is_some_and(|p| p.manage_guild());
    ctx.data()
        .coach
        .is_lead(guild.get(), &super::convert::roles(&member.roles), manages)
}

/// The check on commands for leads.
async fn lead_only(ctx: Ctx<'_>) -> Result<bool, CommandError> {
    Ok(is_lead(ctx).await)
}

/// The configured guild a command was called in.
fn guild_of<'a>(ctx: Ctx<'a>) -> Result<&'a crate::coach::config::GuildConfig, CommandError> {
    ctx.guild_id()
        .and_then(|g| ctx.data().coach.config.guild(g.get()))
        .ok_or(CommandError::NotSetUp)
}

/// The caller's roles, as the event carried them.
async fn roles_of(ctx: Ctx<'_>) -> Option<Vec<u64>> {
    ctx.author_member()
        .await
        .map(|m: Cow<'_, serenity::Member>| super::convert::roles(&m.roles))
}

/// Situation choices matching what the user typed so far.
pub fn situations_matching(prompts: &Prompts, typed: &str) -> Vec<(String, String)> {
    let typed = typed.to_lowercase();
    prompts
        .situations()
        .iter()
        .filter(|s| typed.is_empty() || s.id.contains(&typed) || s.title.to_lowercase().contains(&typed))
        .take(25)
        .map(|s| (s.title.chars().take(100).collect(), s.id.clone()))
        .collect()
}

async fn situations(ctx: Ctx<'_>, partial: &str) -> Vec<serenity::AutocompleteChoice> {
    situations_matching(&ctx.data().coach.guilds.prompts(), partial)
        .into_iter()
        .map(|(name, value)| serenity::AutocompleteChoice::new(name, value))
        .collect()
}

/// The text `/phrase` answers with.
pub fn phrase_answer(prompts: &Prompts, situation: Option<&str>, search: Option<&str>) -> String {
    if let Some(id) = situation {
        return match prompts.situation(id) {
            Some(s) => format!(
                "**{}**\n{}",
                s.title,
                s.phrases
                    .iter()
                    .map(|p| format!("• {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            None => format!("No situation called `{id}`. Start typing to pick one from the list."),
        };
    }
    if let Some(words) = search {
        let found = prompts.search(words);
        if found.is_empty() {
            return format!("No phrases match \"{words}\".");
        }
        return found
            .iter()
            .take(8)
            .map(|(s, p)| format!("• {p}  _({})_", s.id))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let list: Vec<String> = prompts
        .situations()
        .iter()
        .map(|s| format!("`{}` {}", s.id, s.title))
        .collect();
    format!("Pick a situation:\n{}", list.join("\n"))
}

/// Phrases for a service-recovery situation
#[poise::command(slash_command, guild_only, ephemeral)]
async fn phrase(
    ctx: Ctx<'_>,
    #[description = "The situation, e.g. missed callback"]
    #[autocomplete = "situations"]
    situation: Option<String>,
    #[description = "Find phrases by words"] search: Option<String>,
) -> Result<(), CommandError> {
    let text = phrase_answer(
        &ctx.data().coach.guilds.prompts(),
        situation.as_deref(),
        search.as_deref(),
    );
    ctx.say(text).await?;
    Ok(())
}

/// Hand this conversation to another agent: they get a private brief
///
/// The named agent gets the conversation's brief privately, now; the customer sees nothing.
#[poise::command(slash_command, guild_only, ephemeral)]
async fn handoff(
    ctx: Ctx<'_>,
    #[description = "The agent taking over"] to: serenity::Member,
) -> Result<(), CommandError> {
    let guild = guild_of(ctx)?;
    let coach = &ctx.data().coach;
    let engine = coach.guilds.engine(guild.id).ok_or(CommandError::NotSetUp)?;
    let me = ctx.author().id.get();
    let text = if !coach.is_agent(guild, me, roles_of(ctx).await.as_deref()) {
        "Only agents can hand a conversation over.".to_string()
    } else if to.user.id.get() == me {
        "That's you: pick the agent who takes over.".to_string()
    } else if !coach.is_agent(guild, to.user.id.get(), Some(&super::convert::roles(&to.roles))) {
        // The brief quotes the customer: it only ever goes to an agent.
        format!(
            "<@{}> isn't an agent here, so they can't take over (the brief quotes the customer).",
            to.user.id
        )
    } else {
        let conversation = ctx.channel_id().get();
        let to = to.user.id.get();
        match engine.handoff(&conversation.to_string(), &me.to_string(), &to.to_string(), coach.now()) {
            Some(brief) => {
                coach.send(guild, conversation, vec![brief]).await;
                format!("<@{to}> has a private brief of this conversation: the customer's words, the apology so far, any open promise and the wait.")
            }
            None => "Nothing to brief yet: no failure named and no open promise in this conversation.".into(),
        }
    };
    ctx.say(text).await?;
    Ok(())
}

/// How long `/coach mute duration:` pauses nudges: a positive duration of at most a week.
pub(crate) fn mute_duration(text: &str) -> Option<jiff::SignedDuration> {
    text.parse::<jiff::SignedDuration>()
        .ok()
        .filter(|d| d.is_positive() && *d <= jiff::SignedDuration::from_hours(24 * 7))
}

/// Your open follow-up promises
///
/// An agent's own, or the team's for a lead. Read from the store, so promises made before a
/// restart are listed too.
#[poise::command(slash_command, guild_only, ephemeral)]
async fn followups(ctx: Ctx<'_>) -> Result<(), CommandError> {
    let guild = guild_of(ctx)?.id;
    let coach = &ctx.data().coach;
    let engine = coach.guilds.engine(guild).ok_or(CommandError::NotSetUp)?;
    let schedule = &engine.settings().schedule;
    let agent = (!is_lead(ctx).await).then(|| ctx.author().id.get());
    let promises = coach.store.open_promises(guild, agent).await?;
    let lines: Vec<String> = promises
        .iter()
        .map(|p| {
            let link = crate::coach::jump_link(guild, p.conversation, p.message.max(1));
            let state = if p.state.is_overdue() { " **overdue**" } else { "" };
            let who = if agent.is_none() {
                format!(" <@{}>", p.agent)
            } else {
                String::new()
            };
            let to = p.customer.map(|c| format!(" to <@{c}>")).unwrap_or_default();
            // The promise as the agent wrote it (the stored excerpt of their message), not the
            // few words a rule matched.
            let said = if p.excerpt.is_empty() { &p.evidence } else { &p.excerpt };
            format!(
                "• due {}{state}{who}{to}: \"{said}\" [jump]({link})",
                format_due(from_ms(p.due_at), schedule),
            )
        })
        .collect();
    let text = if lines.is_empty() {
        "You have no open follow-up promises.".to_string()
    } else {
        lines.join("\n")
    };
    ctx.say(text).await?;
    Ok(())
}

/// Close or postpone the promise in this conversation
#[poise::command(slash_command, guild_only, subcommands("done", "snooze"), subcommand_required)]
async fn followup(_ctx: Ctx<'_>) -> Result<(), CommandError> {
    Ok(())
}

/// The open promise of the command's conversation, when the caller may settle it; otherwise
/// the answer that says why not.
async fn settleable(ctx: Ctx<'_>) -> Result<Result<u64, &'static str>, CommandError> {
    let guild = guild_of(ctx)?.id;
    let coach = &ctx.data().coach;
    let engine = coach.guilds.engine(guild).ok_or(CommandError::NotSetUp)?;
    let conversation = ctx.channel_id().get();
    let owner = match coach.store.open_promise_in(conversation).await {
        Ok(p) => p.map(|p| p.agent),
        Err(_) => engine
            .promise(&conversation.to_string())
            .and_then(|p| p.agent.as_str().parse().ok()),
    };
    Ok(match owner {
        None => Err("There is no open promise in this conversation."),
        Some(agent) if agent != ctx.author().id.get() && !is_lead(ctx).await => {
            Err("That promise is another agent's; only they or a lead can close it.")
        }
        Some(_) => Ok(conversation),
    })
}

/// I followed up: close the promise
#[poise::command(slash_command, guild_only, ephemeral)]
async fn done(ctx: Ctx<'_>) -> Result<(), CommandError> {
    let text = match settleable(ctx).await? {
        Ok(conversation) => {
            ctx.data().coach.settle_promise(conversation, None).await;
            "Marked done. Nice follow-through."
        }
        Err(why) => why,
    };
    ctx.say(text).await?;
    Ok(())
}

/// Remind me again in an hour
#[poise::command(slash_command, guild_only, ephemeral)]
async fn snooze(ctx: Ctx<'_>) -> Result<(), CommandError> {
    let text = match settleable(ctx).await? {
        Ok(conversation) => {
            let now = ctx.data().coach.now();
            let until = now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap_or(now);
            ctx.data().coach.settle_promise(conversation, Some(until)).await;
            "Snoozed for an hour. I'll remind you again before it's due."
        }
        Err(why) => why,
    };
    ctx.say(text).await?;
    Ok(())
}

/// Backstop coaching settings and figures
#[poise::command(
    slash_command,
    guild_only,
    subcommands("mute", "unmute", "delivery", "stats", "me", "digest", "reload", "rules"),
    subcommand_required
)]
async fn coach(_ctx: Ctx<'_>) -> Result<(), CommandError> {
    Ok(())
}

/// Pause coaching nudges for a while
#[poise::command(slash_command, guild_only, ephemeral)]
async fn mute(ctx: Ctx<'_>, #[description = "e.g. 30m, 2h"] duration: String) -> Result<(), CommandError> {
    let guild = guild_of(ctx)?.id;
    let coach = &ctx.data().coach;
    let text = match mute_duration(&duration) {
        Some(d) => {
            let now = coach.now();
            coach.mute(guild, ctx.author().id.get(), Some(now.checked_add(d).unwrap_or(now)));
            format!("Coaching nudges paused for {d:#}. Follow-up reminders still come: a promise is a promise.")
        }
        None => "Give a duration between a minute and a week, like `30m` or `2h`.".into(),
    };
    ctx.say(text).await?;
    Ok(())
}

/// Resume coaching nudges
#[poise::command(slash_command, guild_only, ephemeral)]
async fn unmute(ctx: Ctx<'_>) -> Result<(), CommandError> {
    let guild = guild_of(ctx)?.id;
    ctx.data().coach.mute(guild, ctx.author().id.get(), None);
    ctx.say("Coaching nudges are back on.").await?;
    Ok(())
}

/// Where an agent's nudges arrive.
#[derive(Debug, Clone, Copy, poise::ChoiceParameter)]
pub enum DeliveryChoice {
    #[name = "Direct message"]
    Dm,
    #[name = "Private coaching thread"]
    Thread,
}

/// Where your nudges arrive: DM or a private coaching thread
#[poise::command(slash_command, guild_only, ephemeral)]
async fn delivery(ctx: Ctx<'_>, #[description = "dm or thread"] to: DeliveryChoice) -> Result<(), CommandError> {
    let guild = guild_of(ctx)?;
    let chosen = match to {
        DeliveryChoice::Dm => Delivery::Dm,
        DeliveryChoice::Thread => Delivery::Thread,
    };
    let text = if chosen == Delivery::Thread && guild.coaching_channel.is_none() {
        "This server has no coaching channel for private threads; nudges stay in your DMs."
    } else {
        ctx.data()
            .coach
            .choose_delivery(guild.id, ctx.author().id.get(), chosen);
        match chosen {
            Delivery::Dm => "Your nudges now arrive by DM (or a private thread if your DMs are closed).",
            Delivery::Thread => "Your nudges now arrive in your private thread in the coaching channel.",
        }
    };
    ctx.say(text).await?;
    Ok(())
}

/// Your own figures for the last 7 days
#[poise::command(slash_command, guild_only, ephemeral)]
async fn me(ctx: Ctx<'_>) -> Result<(), CommandError> {
    let guild = guild_of(ctx)?;
    let text = super::digests::for_agent(&ctx.data().coach, guild, ctx.author().id.get())
        .await
        .unwrap_or_else(|why| format!("Your figures are unavailable right now: {why}"));
    ctx.say(text).await?;
    Ok(())
}

/// Coaching digests (leads)
#[poise::command(
    slash_command,
    guild_only,
    subcommands("now"),
    subcommand_required,
    check = "lead_only"
)]
async fn digest(_ctx: Ctx<'_>) -> Result<(), CommandError> {
    Ok(())
}

/// Post a digest of the last 24 hours to the coaching channel now
#[poise::command(slash_command, guild_only, ephemeral, check = "lead_only")]
async fn now(ctx: Ctx<'_>) -> Result<(), CommandError> {
    let guild = guild_of(ctx)?;
    let cadence = crate::digest::Cadence::Daily(jiff::civil::Time::midnight());
    let text = match super::digests::post(ctx.data(), guild, cadence, ctx.data().coach.now()).await {
        Ok(()) => "Posted a digest of the last 24 hours to the coaching channel.".to_string(),
        Err(why) => format!("No digest posted: {why}."),
    };
    ctx.say(text).await?;
    Ok(())
}

/// Discord caps a message at 2,000 characters; cut longer answers with `tail` after the cut.
fn fit(text: String, tail: &str) -> String {
    if text.chars().count() > 1990 {
        text.chars().take(1980).collect::<String>() + tail
    } else {
        text
    }
}

/// Load changed rules and phrases now (leads)
#[poise::command(slash_command, guild_only, ephemeral, check = "lead_only")]
async fn reload(ctx: Ctx<'_>) -> Result<(), CommandError> {
    let text = match ctx.data().coach.reload() {
        Ok(summary) => format!("Reloaded. {summary}"),
        Err(why) => fit(
            format!("Not reloaded: the previous rules keep running.\n```\n{why}```"),
            "\n…```",
        ),
    };
    ctx.say(text).await?;
    Ok(())
}

/// Each rule's fires and the team's 👍/👎 over 30 days (leads)
#[poise::command(slash_command, guild_only, ephemeral, check = "lead_only")]
async fn rules(ctx: Ctx<'_>) -> Result<(), CommandError> {
    let guild = guild_of(ctx)?.id;
    let coach = &ctx.data().coach;
    let since = coach.now().as_millisecond() - 30 * 86_400_000;
    let report = crate::report::RuleReport::load(&coach.store, since, Some(guild)).await?;
    ctx.say(fit(report.for_discord(15), "…")).await?;
    Ok(())
}

/// The team's nudges today and this week (leads)
#[poise::command(slash_command, guild_only, ephemeral, check = "lead_only")]
async fn stats(ctx: Ctx<'_>) -> Result<(), CommandError> {
    let guild = guild_of(ctx)?.id;
    let coach = &ctx.data().coach;
    let engine = coach.guilds.engine(guild).ok_or(CommandError::NotSetUp)?;
    let tz = engine.settings().schedule.time_zone.clone();
    let today = coach.now().to_zoned(tz.clone()).date();
    let week_start = today
        .checked_sub(jiff::Span::new().days(i64::from(today.weekday().to_monday_zero_offset())))
        .unwrap_or(today);
    let since = |date: jiff::civil::Date| {
        date.to_zoned(tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(0)
    };
    let (day, week) = tokio::try_join!(
        coach.store.nudge_counts(guild, since(today)),
        coach.store.nudge_counts(guild, since(week_start))
    )?;
    let count = |rows: &[(String, i64, i64, i64)], kind: NudgeKind| {
        rows.iter().find(|r| r.0 == kind.as_str()).map_or(0, |r| r.1)
    };
    let mut lines = vec!["**Nudges delivered** (today / this week)".to_string()];
    for kind in NudgeKind::ALL {
        lines.push(format!("{kind}: {} / {}", count(&day, kind), count(&week, kind)));
    }
    ctx.say(lines.join("\n")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registered_commands_are_the_typed_functions() {
        let defs = serde_json::to_value(definitions()).expect("definitions serialise");
        let names: Vec<&str> = defs
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["phrase", "followups", "handoff", "followup", "coach"]);
        let coach = &defs[4];
        let subcommands: Vec<&str> = coach["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            subcommands,
            ["mute", "unmute", "delivery", "stats", "me", "digest", "reload", "rules"],
            "every /coach subcommand is registered"
        );
        let phrase = &defs[0];
        assert_eq!(phrase["options"][0]["autocomplete"], true, "situations autocomplete");
        let handoff = &defs[2];
        assert_eq!(handoff["options"][0]["type"], 6, "a user option");
        assert_eq!(handoff["options"][0]["required"], true);
    }

    #[test]
    fn lead_only_guards_exactly_the_lead_commands() {
        let coach = coach();
        let guarded: Vec<String> = coach
            .subcommands
            .iter()
            .filter(|c| !c.checks.is_empty())
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(guarded, ["stats", "digest", "reload", "rules"]);
    }
}

//! Slash commands: `/phrase` (situation with autocomplete, or search words) and `/followups`.
//! Answers are ephemeral: only the person who asked sees them.

use serenity::all::{
    AutocompleteOption, CommandInteraction, CommandOptionType, Context, CreateCommand, CreateCommandOption,
    CreateInteractionResponse, CreateInteractionResponseMessage, ResolvedValue,
};

use super::bot::Bot;
use crate::coach::config::Delivery;
use crate::engine::{format_due, NudgeKind, Prompts};
use crate::store::from_ms;

/// The commands registered in every configured guild (bulk overwrite, so stale ones disappear).
pub fn definitions() -> Vec<CreateCommand> {
    vec![
        CreateCommand::new("phrase")
            .description("Phrases for a service-recovery situation")
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::String,
                    "situation",
                    "The situation, e.g. missed callback",
                )
                .set_autocomplete(true),
            )
            .add_option(CreateCommandOption::new(
                CommandOptionType::String,
                "search",
                "Find phrases by words",
            )),
        CreateCommand::new("followups").description("Your open follow-up promises"),
        CreateCommand::new("handoff")
            .description("Hand this conversation to another agent: they get a private brief")
            .add_option(
                CreateCommandOption::new(CommandOptionType::User, "to", "The agent taking over").required(true),
            ),
        CreateCommand::new("followup")
            .description("Close or postpone the promise in this conversation")
            .add_option(CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "done",
                "I followed up: close the promise",
            ))
            .add_option(CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "snooze",
                "Remind me again in an hour",
            )),
        CreateCommand::new("coach")
            .description("Backstop coaching settings and figures")
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::SubCommand,
                    "mute",
                    "Pause coaching nudges for a while",
                )
                .add_sub_option(
                    CreateCommandOption::new(CommandOptionType::String, "duration", "e.g. 30m, 2h").required(true),
                ),
            )
            .add_option(CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "unmute",
                "Resume coaching nudges",
            ))
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::SubCommand,
                    "delivery",
                    "Where your nudges arrive: DM or a private coaching thread",
                )
                .add_sub_option(
                    CreateCommandOption::new(CommandOptionType::String, "to", "dm or thread")
                        .required(true)
                        .add_string_choice("Direct message", "dm")
                        .add_string_choice("Private coaching thread", "thread"),
                ),
            )
            .add_option(CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "stats",
                "The team's nudges today and this week (leads)",
            ))
            .add_option(CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "me",
                "Your own figures for the last 7 days",
            ))
            .add_option(
                CreateCommandOption::new(CommandOptionType::SubCommandGroup, "digest", "Coaching digests (leads)")
                    .add_sub_option(CreateCommandOption::new(
                        CommandOptionType::SubCommand,
                        "now",
                        "Post a digest of the last 24 hours to the coaching channel now",
                    )),
            )
            .add_option(CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "reload",
                "Load changed rules and phrases now (leads)",
            ))
            .add_option(CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "rules",
                "Each rule's fires and the team's 👍/👎 over 30 days (leads)",
            )),
    ]
}

/// Situation choices matching what the user typed so far.
pub fn autocomplete(prompts: &Prompts, ac: &CommandInteraction) -> Vec<(String, String)> {
    let typed = ac
        .data
        .autocomplete()
        .map(|o: AutocompleteOption<'_>| o.value.to_lowercase())
        .unwrap_or_default();
    prompts
        .situations()
        .iter()
        .filter(|s| typed.is_empty() || s.id.contains(&typed) || s.title.to_lowercase().contains(&typed))
        .take(25)
        .map(|s| (s.title.chars().take(100).collect(), s.id.clone()))
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

/// Whether the caller of a command is a lead: a lead role, or Manage Server.
fn is_lead(bot: &Bot, guild: u64, cmd: &CommandInteraction) -> bool {
    let Some(member) = &cmd.member else { return false };
    let manages = member.permissions.is_some_and(|p| p.manage_guild());
    bot.coach.is_lead(guild, &super::convert::roles(&member.roles), manages)
}

pub async fn run(bot: &Bot, ctx: &Context, cmd: &CommandInteraction) {
    let text = match cmd.data.name.as_str() {
        "phrase" => {
            let options = cmd.data.options();
            let get = |name: &str| {
                options.iter().find(|o| o.name == name).and_then(|o| match o.value {
                    ResolvedValue::String(s) => Some(s.to_string()),
                    _ => None,
                })
            };
            phrase_answer(
                &bot.coach.guilds.prompts(),
                get("situation").as_deref(),
                get("search").as_deref(),
            )
        }
        "followups" => followups(bot, cmd).await,
        "handoff" => handoff(bot, cmd).await,
        "followup" => followup(bot, cmd).await,
        "coach" => coach(bot, cmd).await,
        other => format!("Unknown command /{other}."),
    };
    let response =
        CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content(text).ephemeral(true));
    if let Err(e) = cmd.create_response(&ctx.http, response).await {
        tracing::warn!(error = %e, "could not answer a command");
    }
}

/// `/handoff to:@agent`: the named agent gets the conversation's brief privately, now; the
/// customer sees nothing.
async fn handoff(bot: &Bot, cmd: &CommandInteraction) -> String {
    let Some(guild) = cmd.guild_id.map(|g| g.get()).and_then(|g| bot.coach.config.guild(g)) else {
        return "Use this in a server where Backstop is set up.".into();
    };
    let Some(engine) = bot.coach.guilds.engine(guild.id) else {
        return "Backstop is not set up in this server.".into();
    };
    let caller_roles: Option<Vec<u64>> = cmd.member.as_ref().map(|m| m.roles.iter().map(|r| r.get()).collect());
    if !bot.coach.is_agent(guild, cmd.user.id.get(), caller_roles.as_deref()) {
        return "Only agents can hand a conversation over.".into();
    }
    let Some(to_id) = cmd
        .data
        .options
        .iter()
        .find(|o| o.name == "to")
        .and_then(|o| o.value.as_user_id())
    else {
        return "Say who takes over: /handoff to:@agent".into();
    };
    // Discord sends the member's roles with the option; without them, the roles seen so far.
    let target_roles: Option<Vec<u64>> = cmd
        .data
        .resolved
        .members
        .get(&to_id)
        .map(|m| m.roles.iter().map(|r| r.get()).collect());
    let to = to_id.get();
    if to == cmd.user.id.get() {
        return "That's you: pick the agent who takes over.".into();
    }
    // The brief quotes the customer: it only ever goes to an agent.
    if !bot.coach.is_agent(guild, to, target_roles.as_deref()) {
        return format!("<@{to}> isn't an agent here, so they can't take over (the brief quotes the customer).");
    }
    let conversation = cmd.channel_id.get();
    let now = bot.coach.guilds.clock().now();
    match engine.handoff(
        &conversation.to_string(),
        &cmd.user.id.get().to_string(),
        &to.to_string(),
        now,
    ) {
        Some(brief) => {
            bot.coach.send(guild, conversation, vec![brief]).await;
            format!("<@{to}> has a private brief of this conversation: the customer's words, the apology so far, any open promise and the wait.")
        }
        None => "Nothing to brief yet: no failure named and no open promise in this conversation.".into(),
    }
}

/// How long `/coach mute duration:` pauses nudges: a positive duration of at most a week.
pub(crate) fn mute_duration(text: &str) -> Option<jiff::SignedDuration> {
    text.parse::<jiff::SignedDuration>()
        .ok()
        .filter(|d| d.is_positive() && *d <= jiff::SignedDuration::from_hours(24 * 7))
}

/// The subcommand a command was called with, and its options.
pub(crate) fn subcommand<'a>(cmd: &'a CommandInteraction) -> Option<(&'a str, Vec<serenity::all::ResolvedOption<'a>>)> {
    cmd.data.options().into_iter().find_map(|o| match o.value {
        ResolvedValue::SubCommand(options) => Some((o.name, options)),
        // `/coach digest now` answers to "digest"; a group's only subcommand is implied.
        ResolvedValue::SubCommandGroup(inner) => Some((o.name, inner)),
        _ => None,
    })
}

/// Open promises: an agent's own, or the team's for a lead. Read from the store, so promises
/// made before a restart are listed too.
async fn followups(bot: &Bot, cmd: &CommandInteraction) -> String {
    let Some(guild) = cmd.guild_id.map(|g| g.get()) else {
        return "Use this in a server.".into();
    };
    let Some(engine) = bot.coach.guilds.engine(guild) else {
        return "Backstop is not set up in this server.".into();
    };
    let schedule = &engine.settings().schedule;
    let agent = (!is_lead(bot, guild, cmd)).then(|| cmd.user.id.get());
    let promises = match bot.coach.store.open_promises(guild, agent).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list promises");
            return "The promise list is unavailable right now (the database is not answering). Try again shortly."
                .into();
        }
    };
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
    if lines.is_empty() {
        "You have no open follow-up promises.".to_string()
    } else {
        lines.join("\n")
    }
}

async fn followup(bot: &Bot, cmd: &CommandInteraction) -> String {
    let Some(guild) = cmd.guild_id.map(|g| g.get()) else {
        return "Use this in a server.".into();
    };
    let Some(engine) = bot.coach.guilds.engine(guild) else {
        return "Backstop is not set up in this server.".into();
    };
    let conversation = cmd.channel_id.get();
    let me = cmd.user.id.get();
    let owner = match bot.coach.store.open_promise_in(conversation).await {
        Ok(p) => p.map(|p| p.agent),
        Err(_) => engine
            .promise(&conversation.to_string())
            .and_then(|p| p.agent.as_str().parse().ok()),
    };
    let now = bot.coach.guilds.clock().now();
    match (subcommand(cmd).map(|(name, _)| name), owner) {
        (_, None) => "There is no open promise in this conversation.".into(),
        (_, Some(agent)) if agent != me && !is_lead(bot, guild, cmd) => {
            "That promise is another agent's; only they or a lead can close it.".into()
        }
        (Some("done"), Some(_)) => {
            bot.coach.settle_promise(conversation, None).await;
            "Marked done. Nice follow-through.".into()
        }
        (Some("snooze"), Some(_)) => {
            let until = now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap_or(now);
            bot.coach.settle_promise(conversation, Some(until)).await;
            "Snoozed for an hour. I'll remind you again before it's due.".into()
        }
        _ => "Use /followup done or /followup snooze.".into(),
    }
}

async fn coach(bot: &Bot, cmd: &CommandInteraction) -> String {
    let Some(guild) = cmd.guild_id.map(|g| g.get()) else {
        return "Use this in a server.".into();
    };
    let me = cmd.user.id.get();
    let now = bot.coach.guilds.clock().now();
    match subcommand(cmd) {
        Some(("mute", options)) => {
            let text = options.iter().find_map(|o| match o.value {
                ResolvedValue::String(s) => Some(s),
                _ => None,
            });
            match text.and_then(mute_duration) {
                Some(d) => {
                    let until = now.checked_add(d).unwrap_or(now);
                    bot.coach.mute(guild, me, Some(until));
                    format!("Coaching nudges paused for {d:#}. Follow-up reminders still come: a promise is a promise.")
                }
                None => "Give a duration between a minute and a week, like `30m` or `2h`.".into(),
            }
        }
        Some(("unmute", _)) => {
            bot.coach.mute(guild, me, None);
            "Coaching nudges are back on.".into()
        }
        Some(("delivery", options)) => {
            let chosen = options.iter().find_map(|o| match o.value {
                ResolvedValue::String(s) => Delivery::parse(s),
                _ => None,
            });
            let Some(chosen) = chosen else {
                return "Choose `dm` or `thread`.".into();
            };
            if chosen == Delivery::Thread
                && bot
                    .coach
                    .config
                    .guild(guild)
                    .is_none_or(|g| g.coaching_channel.is_none())
            {
                return "This server has no coaching channel for private threads; nudges stay in your DMs.".into();
            }
            bot.coach.choose_delivery(guild, me, chosen);
            match chosen {
                Delivery::Dm => "Your nudges now arrive by DM (or a private thread if your DMs are closed).".into(),
                Delivery::Thread => "Your nudges now arrive in your private thread in the coaching channel.".into(),
            }
        }
        Some(("me", _)) => match bot.coach.config.guild(guild) {
            Some(g) => super::digests::for_agent(&bot.coach, g, me)
                .await
                .unwrap_or_else(|why| format!("Your figures are unavailable right now: {why}")),
            None => "Backstop is not set up in this server.".into(),
        },
        Some(("digest", _)) if !is_lead(bot, guild, cmd) => {
            "Posting a digest is for leads (a lead role or Manage Server).".into()
        }
        Some(("digest", _)) => match bot.coach.config.guild(guild) {
            Some(g) => {
                let cadence = crate::digest::Cadence::Daily(jiff::civil::Time::midnight());
                match super::digests::post(bot, g, cadence, now).await {
                    Ok(()) => "Posted a digest of the last 24 hours to the coaching channel.".into(),
                    Err(why) => format!("No digest posted: {why}."),
                }
            }
            None => "Backstop is not set up in this server.".into(),
        },
        Some(("reload", _)) if !is_lead(bot, guild, cmd) => {
            "Reloading rules is for leads (a lead role or Manage Server).".into()
        }
        Some(("reload", _)) => match bot.coach.reload() {
            Ok(summary) => format!("Reloaded. {summary}"),
            Err(why) => {
                let mut text = format!("Not reloaded: the previous rules keep running.\n```\n{why}```");
                if text.chars().count() > 1990 {
                    text = text.chars().take(1980).collect::<String>() + "\n…```";
                }
                text
            }
        },
        Some(("rules", _)) if !is_lead(bot, guild, cmd) => {
            "The rule report is for leads (a lead role or Manage Server).".into()
        }
        Some(("rules", _)) => {
            let since = now.as_millisecond() - 30 * 86_400_000;
            match crate::report::RuleReport::load(&bot.coach.store, since, Some(guild)).await {
                Ok(report) => {
                    let mut text = report.for_discord(15);
                    // Discord caps a message at 2,000 characters.
                    if text.chars().count() > 1990 {
                        text = text.chars().take(1980).collect::<String>() + "…";
                    }
                    text
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the nudge log");
                    "The rule report is unavailable right now (the database is not answering).".into()
                }
            }
        }
        Some(("stats", _)) if !is_lead(bot, guild, cmd) => {
            "Team figures are for leads (a lead role or Manage Server). Your own nudges arrive in your DMs.".into()
        }
        Some(("stats", _)) => {
            let Some(engine) = bot.coach.guilds.engine(guild) else {
                return "Backstop is not set up in this server.".into();
            };
            let tz = engine.settings().schedule.time_zone.clone();
            let today = now.to_zoned(tz.clone()).date();
            let week_start = today
                .checked_sub(jiff::Span::new().days(i64::from(today.weekday().to_monday_zero_offset())))
                .unwrap_or(today);
            let since = |date: jiff::civil::Date| {
                date.to_zoned(tz.clone())
                    .map(|z| z.timestamp().as_millisecond())
                    .unwrap_or(0)
            };
            let (day, week) = match tokio::join!(
                bot.coach.store.nudge_counts(guild, since(today)),
                bot.coach.store.nudge_counts(guild, since(week_start))
            ) {
                (Ok(d), Ok(w)) => (d, w),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the nudge log");
                    return "Figures are unavailable right now (the database is not answering). Try again shortly."
                        .into();
                }
            };
            let count = |rows: &[(String, i64, i64, i64)], kind: NudgeKind| {
                rows.iter().find(|r| r.0 == kind.as_str()).map_or(0, |r| r.1)
            };
            let mut lines = vec!["**Nudges delivered** (today / this week)".to_string()];
            for kind in NudgeKind::ALL {
                lines.push(format!("{kind}: {} / {}", count(&day, kind), count(&week, kind)));
            }
            lines.join("\n")
        }
        _ => "Use /coach mute, /coach unmute or /coach stats.".into(),
    }
}

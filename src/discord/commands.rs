//! Slash commands: `/phrase` (situation with autocomplete, or search words) and `/followups`.
//! Answers are ephemeral: only the person who asked sees them.

use serenity::all::{
    AutocompleteOption, CommandInteraction, CommandOptionType, Context, CreateCommand, CreateCommandOption,
    CreateInteractionResponse, CreateInteractionResponseMessage, ResolvedValue,
};

use super::handler::Handler;
use crate::engine::{format_due, Prompts};

/// The commands registered in every configured guild (bulk overwrite, so stale ones disappear).
pub fn definitions(_prompts: &Prompts) -> Vec<CreateCommand> {
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

pub async fn run(handler: &Handler, ctx: &Context, cmd: &CommandInteraction) {
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
                &handler.guilds.prompts(),
                get("situation").as_deref(),
                get("search").as_deref(),
            )
        }
        "followups" => {
            let me = cmd.user.id.get().to_string();
            let guild = cmd.guild_id.map(|g| g.get());
            let mut lines = Vec::new();
            for (id, engine) in handler.guilds.all().filter(|(id, _)| Some(*id) == guild) {
                let schedule = engine.settings().schedule.clone();
                for p in engine.open_promises().into_iter().filter(|p| p.agent.as_str() == me) {
                    let link = super::delivery::jump_link(
                        id,
                        p.conversation.as_str().parse().unwrap_or(0),
                        serenity::all::MessageId::new(p.source.0.max(1)),
                    );
                    let state = if p.overdue { " **overdue**" } else { "" };
                    lines.push(format!(
                        "• due {}{state}: \"{}\" [jump]({link})",
                        format_due(p.due.at, &schedule),
                        p.evidence
                    ));
                }
            }
            if lines.is_empty() {
                "You have no open follow-up promises.".to_string()
            } else {
                lines.join("\n")
            }
        }
        other => format!("Unknown command /{other}."),
    };
    let response =
        CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content(text).ephemeral(true));
    if let Err(e) = cmd.create_response(&ctx.http, response).await {
        tracing::warn!(error = %e, "could not answer a command");
    }
}

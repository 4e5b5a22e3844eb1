//! Engine settings from `config/engine.toml`: cooldowns, follow-up timing, business hours.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::SignedDuration;
use serde::Deserialize;

use super::problem::{toml_problem, Problem, Problems};
use super::timeframe::Schedule;

/// Everything tunable about how the engine decides, with the defaults a new team starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Business hours and zone that give "tomorrow" or "EOD" a time.
    pub schedule: Schedule,
    /// The same nudge kind does not fire twice in a conversation within this time.
    pub cooldown: SignedDuration,
    /// Conversations with nothing open are forgotten after this long without a message.
    pub forget_idle_after: SignedDuration,
    /// The reminder goes out this long before a promise is due.
    pub reminder_lead: SignedDuration,
    /// An agent message at least this long after a promise counts as following up; sooner ones
    /// ("anything else?") are part of the same exchange.
    pub min_gap: SignedDuration,
    /// Due time of a promise that names no time.
    pub default_due: SignedDuration,
    /// How many library phrases a nudge suggests.
    pub phrases_per_nudge: usize,
    /// For the bot: how long after a promise goes overdue it is posted to the team's coaching channel.
    pub escalate_after: SignedDuration,
    /// Phrases a role's rules may need checked word by word per message, on average over sample
    /// text (`backstop check`); a costlier book is refused.
    pub check_budget: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            schedule: Schedule::default(),
            cooldown: SignedDuration::from_mins(15),
            forget_idle_after: SignedDuration::from_hours(12),
            reminder_lead: SignedDuration::from_mins(15),
            min_gap: SignedDuration::from_mins(10),
            default_due: SignedDuration::from_hours(24),
            phrases_per_nudge: 3,
            escalate_after: SignedDuration::from_mins(30),
            check_budget: super::rules::DEFAULT_BUDGET,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    time_zone: Option<String>,
    cooldown: Option<SignedDuration>,
    forget_idle_after: Option<SignedDuration>,
    phrases_per_nudge: Option<usize>,
    #[serde(default)]
    follow_up: FollowUpOverrides,
    #[serde(default)]
    business_hours: HoursOverrides,
    #[serde(default)]
    rules: RulesSettings,
}

/// `[rules]` keys of engine.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesSettings {
    /// Phrases checked word by word per message, on average.
    check_budget: Option<f64>,
}

/// `[business_hours]` keys, in engine.toml and in each guild of backstop.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursOverrides {
    pub start: Option<Time>,
    pub end: Option<Time>,
    pub evening: Option<Time>,
}

/// `[follow_up]` keys, in engine.toml and in each guild of backstop.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUpOverrides {
    pub reminder_lead: Option<SignedDuration>,
    pub min_gap: Option<SignedDuration>,
    pub default_due: Option<SignedDuration>,
    pub soon: Option<SignedDuration>,
    pub later_today: Option<SignedDuration>,
    pub escalate_after: Option<SignedDuration>,
}

/// What a team may override: the same keys in engine.toml and in a guild's table of backstop.toml,
/// so both are read, checked and applied by one piece of code.
#[derive(Debug, Default)]
pub struct Overrides<'a> {
    pub time_zone: Option<&'a str>,
    pub cooldown: Option<SignedDuration>,
    pub business_hours: Option<&'a HoursOverrides>,
    pub follow_up: Option<&'a FollowUpOverrides>,
}

impl Settings {
    /// Parses `engine.toml`; keys left out keep their defaults.
    pub fn parse(file: &str, text: &str) -> Result<Settings, Problems> {
        let def: SettingsFile = toml::from_str(text).map_err(|e| Problems(vec![toml_problem(file, text, &e)]))?;
        let mut base = Settings::default();
        base.forget_idle_after = def.forget_idle_after.unwrap_or(base.forget_idle_after);
        base.phrases_per_nudge = def.phrases_per_nudge.unwrap_or(base.phrases_per_nudge);
        let mut problems = Vec::new();
        if let Some(budget) = def.rules.check_budget {
            if budget.is_finite() && budget >= 1.0 {
                base.check_budget = budget;
            } else {
                problems.push((
                    "rules.check_budget".to_string(),
                    format!("expected a number of phrases of at least 1, such as 8.0, got {budget}"),
                ));
            }
        }
        if base.forget_idle_after.is_negative() {
            problems.push(("forget_idle_after".to_string(), "must not be negative".to_string()));
        }
        let overrides = Overrides {
            time_zone: def.time_zone.as_deref(),
            cooldown: def.cooldown,
            business_hours: Some(&def.business_hours),
            follow_up: Some(&def.follow_up),
        };
        let settings = base.with_overrides(&overrides).map_err(|p| problems.extend(p)).ok();
        match settings {
            Some(s) if problems.is_empty() => Ok(s),
            _ => Err(Problems(
                problems
                    .into_iter()
                    .map(|(key, msg)| Problem::new(file, None, Some(key), msg))
                    .collect(),
            )),
        }
    }

    /// These settings with a team's overrides applied, or every problem as (key, message).
    pub fn with_overrides(&self, o: &Overrides<'_>) -> Result<Settings, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut s = self.clone();
        if let Some(name) = o.time_zone {
            match TimeZone::get(name) {
                Ok(tz) => s.schedule.time_zone = tz,
                Err(e) => problems.push((
                    "time_zone".to_string(),
                    format!("unknown time zone {name:?} ({e}); use an IANA name such as \"Europe/London\""),
                )),
            }
        }
        let none = FollowUpOverrides::default();
        let f = o.follow_up.unwrap_or(&none);
        let durations = [
            ("cooldown", o.cooldown, &mut s.cooldown),
            ("follow_up.reminder_lead", f.reminder_lead, &mut s.reminder_lead),
            ("follow_up.min_gap", f.min_gap, &mut s.min_gap),
            ("follow_up.default_due", f.default_due, &mut s.default_due),
            ("follow_up.soon", f.soon, &mut s.schedule.soon),
            ("follow_up.later_today", f.later_today, &mut s.schedule.later_today),
            ("follow_up.escalate_after", f.escalate_after, &mut s.escalate_after),
        ];
        for (key, value, slot) in durations {
            match value {
                Some(d) if d.is_negative() => {
                    problems.push((key.to_string(), format!("must not be negative (got {d:#})")))
                }
                Some(d) => *slot = d,
                None => {}
            }
        }
        if let Some(hours) = o.business_hours {
            s.schedule.day_start = hours.start.unwrap_or(s.schedule.day_start);
            s.schedule.day_end = hours.end.unwrap_or(s.schedule.day_end);
            s.schedule.evening = hours.evening.unwrap_or(s.schedule.evening);
        }
        if s.schedule.day_start >= s.schedule.day_end {
            problems.push(("business_hours".to_string(), "start must be before end".to_string()));
        }
        if s.default_due <= SignedDuration::ZERO {
            problems.push((
                "follow_up.default_due".to_string(),
                "must be longer than zero".to_string(),
            ));
        }
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Settings::parse("engine.toml", "").unwrap(), Settings::default());
    }

    #[test]
    fn friendly_durations_times_and_zones() {
        let s = Settings::parse(
            "engine.toml",
            "time_zone = \"Asia/Kolkata\"\ncooldown = \"30m\"\n[follow_up]\nreminder_lead = \"1h\"\n[business_hours]\nend = \"18:30\"\n",
        )
        .unwrap();
        assert_eq!(s.cooldown, SignedDuration::from_mins(30));
        assert_eq!(s.reminder_lead, SignedDuration::from_hours(1));
        assert_eq!(s.schedule.day_end, Time::constant(18, 30, 0, 0));
        assert_eq!(s.schedule.time_zone.iana_name(), Some("Asia/Kolkata"));
    }

    #[test]
    fn the_check_budget_is_a_number_of_phrases() {
        let s = Settings::parse("engine.toml", "[rules]\ncheck_budget = 12.5\n").unwrap();
        assert_eq!(s.check_budget, 12.5);
        let err = Settings::parse("engine.toml", "[rules]\ncheck_budget = 0.0\n").unwrap_err();
        assert!(err.to_string().contains("rules.check_budget"), "{err}");
        let err = Settings::parse("engine.toml", "[rules]\ncheck_budget = \"lots\"\n").unwrap_err();
        assert!(err.to_string().contains("engine.toml:2"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = Settings::parse("engine.toml", "time_zone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("engine.toml: time_zone: unknown time zone \"Mars/Olympus\""),
            "{err}"
        );
        let err = Settings::parse("engine.toml", "[follow_up]\nremind_lead = \"1h\"\n").unwrap_err();
        assert!(
            err.to_string().contains("engine.toml:2: unknown field `remind_lead`"),
            "{err}"
        );
        let err = Settings::parse("engine.toml", "cooldown = \"soonish\"\n").unwrap_err();
        assert!(err.to_string().contains("engine.toml:1:"), "{err}");
    }
}

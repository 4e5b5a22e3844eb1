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
    follow_up: FollowUpDef,
    #[serde(default)]
    business_hours: BusinessHoursDef,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowUpDef {
    reminder_lead: Option<SignedDuration>,
    min_gap: Option<SignedDuration>,
    default_due: Option<SignedDuration>,
    soon: Option<SignedDuration>,
    later_today: Option<SignedDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BusinessHoursDef {
    start: Option<Time>,
    end: Option<Time>,
    evening: Option<Time>,
}

impl Settings {
    /// Parses `engine.toml`; keys left out keep their defaults.
    pub fn parse(file: &str, text: &str) -> Result<Settings, Problems> {
        let def: SettingsFile = toml::from_str(text).map_err(|e| Problems(vec![toml_problem(file, text, &e)]))?;
        let mut problems = Vec::new();
        let mut s = Settings::default();
        let problem = |key: &str, msg: String| Problem::new(file, None, Some(key.to_string()), msg);
        if let Some(name) = def.time_zone {
            match TimeZone::get(&name) {
                Ok(tz) => s.schedule.time_zone = tz,
                Err(e) => problems.push(problem(
                    "time_zone",
                    format!("unknown time zone {name:?} ({e}); use an IANA name such as \"Europe/London\""),
                )),
            }
        }
        let durations = [
            ("cooldown", def.cooldown, &mut s.cooldown),
            ("forget_idle_after", def.forget_idle_after, &mut s.forget_idle_after),
            (
                "follow_up.reminder_lead",
                def.follow_up.reminder_lead,
                &mut s.reminder_lead,
            ),
            ("follow_up.min_gap", def.follow_up.min_gap, &mut s.min_gap),
            ("follow_up.default_due", def.follow_up.default_due, &mut s.default_due),
            ("follow_up.soon", def.follow_up.soon, &mut s.schedule.soon),
            (
                "follow_up.later_today",
                def.follow_up.later_today,
                &mut s.schedule.later_today,
            ),
        ];
        for (key, value, slot) in durations {
            match value {
                Some(d) if d.is_negative() => problems.push(problem(key, format!("must not be negative (got {d:#})"))),
                Some(d) => *slot = d,
                None => {}
            }
        }
        if let Some(n) = def.phrases_per_nudge {
            s.phrases_per_nudge = n;
        }
        let hours = def.business_hours;
        s.schedule.day_start = hours.start.unwrap_or(s.schedule.day_start);
        s.schedule.day_end = hours.end.unwrap_or(s.schedule.day_end);
        s.schedule.evening = hours.evening.unwrap_or(s.schedule.evening);
        if s.schedule.day_start >= s.schedule.day_end {
            problems.push(problem("business_hours", "start must be before end".into()));
        }
        if s.default_due <= SignedDuration::ZERO {
            problems.push(problem("follow_up.default_due", "must be longer than zero".into()));
        }
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(Problems(problems))
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

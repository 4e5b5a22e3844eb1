//! When is a promise due? Reading "tomorrow by 3pm", "within 30 mins", "EOD" in a promise.
//!
//! Parsing finds the parts of a time expression (a delay, a clock time, a day, a part of the day)
//! in the promise's sentence; resolving turns them into an instant in the conversation's time zone
//! using the business-hour constants from settings. Both are pure: the message time is the clock.

use std::sync::LazyLock;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use regex::bytes::Regex;

/// Business-hour constants that give words like "tomorrow" or "end of day" a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub time_zone: TimeZone,
    /// "tomorrow morning", "first thing": when the working day starts.
    pub day_start: Time,
    /// "end of day", "today", "tomorrow", "by Friday": when the working day ends.
    pub day_end: Time,
    /// "tonight", "this evening".
    pub evening: Time,
    /// "later today": this long from now, but no later than `day_end`.
    pub later_today: SignedDuration,
    /// "shortly", "soon", "asap".
    pub soon: SignedDuration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            time_zone: TimeZone::UTC,
            day_start: Time::constant(9, 0, 0, 0),
            day_end: Time::constant(17, 0, 0, 0),
            evening: Time::constant(20, 0, 0, 0),
            later_today: SignedDuration::from_hours(4),
            soon: SignedDuration::from_hours(1),
        }
    }
}

/// Which day a promise points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Day {
    Today,
    Tomorrow,
    Weekday(Weekday),
    NextWeek,
}

/// Which part of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Morning,
    EndOfDay,
    Evening,
}

/// A time expression found in a promise.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeframe {
    kind: Kind,
    /// The words it was read from, as written.
    pub words: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    After(SignedDuration),
    Calendar {
        day: Option<Day>,
        clock: Option<Time>,
        part: Option<Part>,
    },
    LaterToday,
    Soon,
}

static DELAY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:in|within|inside(?: of)?|in the next|within the next|over the next|give me|give us)\s+(?:about\s+|around\s+|roughly\s+|another\s+)?(an?|one|two|three|four|five|six|seven|eight|nine|ten|twelve|fifteen|twenty|thirty|forty[- ]?five|forty|ninety|half an?|a couple(?: of)?|couple(?: of)?|a few|few|\d{1,3})\s*(?:more\s+)?(mins?|minutes?|m|hrs?|hours?|h|days?|d|business days?|working days?)\b",
    )
});
static WITHIN_THE_HOUR: LazyLock<Regex> = LazyLock::new(|| re(r"\bwithin (?:the|an|the next) hour\b"));
static CLOCK: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:(by|at|before|around|until|till|til|no later than|latest by|@)\s*)?(\d{1,2})(?:[:.](\d{2}))?\s*(a\.?m\.?|p\.?m\.?|o'?clock|hrs)?(?:\s|$|[^\w:])|\b(?:by|at|before|around)\s+(noon|midday|lunch(?:time)?)\b",
    )
});
static TOMORROW: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:tomorrow|tomorow|tommorow|tommorrow|tomorro|tmrw|tmr|tmrrw|2moro|2morrow|tomoz)\b"));
static TODAY: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:today|2day|tday|this afternoon)\b"));
static EOD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:end of (?:the |to)?(?:business )?day|eod|cob|close of business|end of business|before (?:we|i) (?:close|leave|log off|sign off))\b",
    )
});
static MORNING: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:first thing|morning)\b"));
static EVENING: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:tonight|tonite|this evening|in the evening)\b"));
static LATER_TODAY: LazyLock<Regex> =
    LazyLock::new(|| re(r"\blater (?:on )?(?:today|this afternoon|this morning|in the day)\b"));
static SOON: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:shortly|soon|asap|a\.s\.a\.p|as soon as (?:possible|i can|we can|i know|i hear)|right away|straight away|in a (?:bit|little while|while)|in a short while|in due course)\b",
    )
});
static WEEKDAY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(mon|monday|tue|tues|tuesday|wed|weds|wednesday|thu|thur|thurs|thursday|fri|friday|sat|saturday|sun|sunday)\b",
    )
});
static NEXT_WEEK: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:next week|early next week|by the end of the week|end of (?:the |this )?week)\b"));

fn re(pattern: &str) -> Regex {
    regex::bytes::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .unicode(false)
        .build()
        .expect("built-in timeframe pattern")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

fn count(word: &str) -> Option<i64> {
    Some(match word.trim() {
        "a" | "an" | "one" | "half a" | "half an" => 1,
        "two" | "a couple" | "a couple of" | "couple" | "couple of" => 2,
        "three" | "a few" | "few" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "twelve" => 12,
        "fifteen" => 15,
        "twenty" => 20,
        "thirty" => 30,
        "forty" => 40,
        "ninety" => 90,
        w if w.starts_with("forty") => 45,
        w => w.parse().ok()?,
    })
}

fn weekday(word: &str) -> Option<Weekday> {
    Some(match &word[..3] {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

impl Timeframe {
    /// Finds the time expression in a promise (ASCII scan text of the promise's sentence).
    /// `None` when the promise names no time.
    pub fn parse(sentence: &[u8]) -> Option<Timeframe> {
        let lower = sentence.to_ascii_lowercase();
        let s = lower.as_slice();
        let mut words: Vec<(usize, String)> = Vec::new();
        let note = |words: &mut Vec<(usize, String)>, m: regex::bytes::Match<'_>| {
            words.push((m.start(), text(&sentence[m.range()]).to_string()))
        };

        if let Some(m) = WITHIN_THE_HOUR.find(s) {
            note(&mut words, m);
            return Some(Timeframe::new(Kind::After(SignedDuration::from_hours(1)), words));
        }
        if let Some(c) = DELAY.captures(s) {
            let amount = count(text(&c[1]));
            let unit = text(&c[2]);
            if let Some(n) = amount {
                let minutes = match unit.as_bytes()[0] {
                    b'm' => n,
                    b'h' => n * 60,
                    _ => n * 24 * 60,
                };
                // "half an hour": the count word carries the half.
                let minutes = if text(&c[1]).starts_with("half") {
                    minutes / 2
                } else {
                    minutes
                };
                if minutes > 0 {
                    note(&mut words, c.get(0).expect("match"));
                    return Some(Timeframe::new(Kind::After(SignedDuration::from_mins(minutes)), words));
                }
            }
        }
        if let Some(m) = LATER_TODAY.find(s) {
            note(&mut words, m);
            return Some(Timeframe::new(Kind::LaterToday, words));
        }

        let mut day = None;
        let mut clock = None;
        let mut part = None;
        for c in CLOCK.captures_iter(s) {
            if let Some(noon) = c.get(5) {
                clock = Some(Time::constant(12, 0, 0, 0));
                note(&mut words, c.get(0).map(|_| noon).expect("match"));
                break;
            }
            let hour: i8 = text(&c[2]).parse().unwrap_or(99);
            let minute: i8 = c
                .get(3)
                .map_or(Some(0), |m| text(m.as_bytes()).parse().ok())
                .unwrap_or(99);
            let suffix = c.get(4).map(|m| text(m.as_bytes()).to_string());
            // A bare number is a time only after "by/at/before…" ("by 4"), never "2 items".
            if c.get(1).is_none() && suffix.is_none() && c.get(3).is_none() {
                continue;
            }
            let hour = match suffix.as_deref().map(|s| s.as_bytes()[0]) {
                Some(b'p') if hour < 12 => hour + 12,
                Some(b'a') if hour == 12 => 0,
                Some(b'a' | b'p') => hour,
                // "by 4" in a working day means the afternoon.
                _ if c.get(3).is_none() && (1..=7).contains(&hour) => hour + 12,
                _ => hour,
            };
            if let Ok(t) = Time::new(hour, minute, 0, 0) {
                clock = Some(t);
                let m = c.get(0).expect("match");
                let end = m.end()
                    - usize::from(
                        m.as_bytes()
                            .last()
                            .is_some_and(|b| !b.is_ascii_alphanumeric() && *b != b'.'),
                    );
                words.push((m.start(), text(&sentence[m.start()..end]).trim().to_string()));
                break;
            }
        }
        if let Some(m) = TOMORROW.find(s) {
            day = Some(Day::Tomorrow);
            note(&mut words, m);
        } else if let Some(m) = NEXT_WEEK.find(s) {
            day = Some(Day::NextWeek);
            note(&mut words, m);
        } else if let Some(c) = WEEKDAY.captures(s) {
            day = weekday(text(&c[1])).map(Day::Weekday);
            note(&mut words, c.get(0).expect("match"));
        } else if let Some(m) = TODAY.find(s) {
            day = Some(Day::Today);
            note(&mut words, m);
        }
        if let Some(m) = EOD.find(s) {
            part = Some(Part::EndOfDay);
            note(&mut words, m);
        } else if let Some(m) = MORNING.find(s) {
            part = Some(Part::Morning);
            note(&mut words, m);
        } else if let Some(m) = EVENING.find(s) {
            part = Some(Part::Evening);
            note(&mut words, m);
        }
        if day.is_some() || clock.is_some() || part.is_some() {
            return Some(Timeframe::new(Kind::Calendar { day, clock, part }, words));
        }
        if let Some(m) = SOON.find(s) {
            note(&mut words, m);
            return Some(Timeframe::new(Kind::Soon, words));
        }
        None
    }

    fn new(kind: Kind, mut words: Vec<(usize, String)>) -> Timeframe {
        words.sort();
        words.dedup_by(|a, b| a.1 == b.1);
        let words = words.into_iter().map(|(_, w)| w).collect::<Vec<_>>().join(" ");
        Timeframe { kind, words }
    }

    /// The instant this timeframe names, for a promise made at `at`.
    pub fn resolve(&self, at: Timestamp, schedule: &Schedule) -> Timestamp {
        let tz = &schedule.time_zone;
        let now = at.to_zoned(tz.clone());
        let today = now.date();
        let local = |date: Date, time: Time| -> Option<Timestamp> {
            date.to_datetime(time).to_zoned(tz.clone()).ok().map(|z| z.timestamp())
        };
        let end_today = local(today, schedule.day_end);
        let later_today = || {
            let later = at.checked_add(schedule.later_today).unwrap_or(at);
            match end_today {
                Some(end) if end > at && end < later => end,
                _ => later,
            }
        };
        match &self.kind {
            Kind::After(d) => at.checked_add(*d).unwrap_or(at),
            Kind::Soon => at.checked_add(schedule.soon).unwrap_or(at),
            Kind::LaterToday => later_today(),
            Kind::Calendar { day, clock, part } => {
                let time = clock.unwrap_or(match part {
                    Some(Part::Morning) => schedule.day_start,
                    Some(Part::Evening) => schedule.evening,
                    Some(Part::EndOfDay) | None => schedule.day_end,
                });
                let date = match day {
                    None | Some(Day::Today) => today,
                    Some(Day::Tomorrow) => today.tomorrow().unwrap_or(today),
                    Some(Day::Weekday(w)) => {
                        let ahead = (w.to_monday_zero_offset() - today.weekday().to_monday_zero_offset()).rem_euclid(7);
                        today.checked_add(jiff::Span::new().days(ahead)).unwrap_or(today)
                    }
                    Some(Day::NextWeek) => {
                        let ahead = 7 - today.weekday().to_monday_zero_offset();
                        today.checked_add(jiff::Span::new().days(ahead)).unwrap_or(today)
                    }
                };
                let Some(due) = local(date, time) else {
                    return later_today();
                };
                if due > at {
                    return due;
                }
                match (day, clock, part) {
                    // "by 3pm" said at 4pm, "first thing" said at 10am: the next one.
                    (None | Some(Day::Today), Some(_), _) | (None, None, Some(Part::Morning)) => {
                        local(today.tomorrow().unwrap_or(today), time)
                    }
                    // "by Friday" late on Friday: next Friday.
                    (Some(Day::Weekday(_)), _, _) => {
                        local(date.checked_add(jiff::Span::new().days(7)).unwrap_or(date), time)
                    }
                    // "end of day" said after hours: a few hours, as for "later today".
                    _ => None,
                }
                .unwrap_or_else(later_today)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 2026-11-23, at the given UTC time.
    fn at(hm: &str) -> Timestamp {
        format!("2026-11-23T{hm}:00Z").parse().unwrap()
    }

    fn due(sentence: &str, now: &str) -> Option<String> {
        let tf = Timeframe::parse(sentence.as_bytes())?;
        Some(tf.resolve(at(now), &Schedule::default()).to_string())
    }

    #[test]
    fn delays() {
        assert_eq!(
            due("I'll call you back in 2 hours", "10:00").unwrap(),
            "2026-11-23T12:00:00Z"
        );
        assert_eq!(
            due("will update u within 30 mins", "10:00").unwrap(),
            "2026-11-23T10:30:00Z"
        );
        assert_eq!(
            due("I'll ring you in half an hour", "10:00").unwrap(),
            "2026-11-23T10:30:00Z"
        );
        assert_eq!(
            due("back to you within the hour", "10:00").unwrap(),
            "2026-11-23T11:00:00Z"
        );
        assert_eq!(
            due("I'll email you in a couple of days", "10:00").unwrap(),
            "2026-11-25T10:00:00Z"
        );
        assert_eq!(
            due("I'll get back to you within 24 hrs", "10:00").unwrap(),
            "2026-11-24T10:00:00Z"
        );
    }

    #[test]
    fn clock_times() {
        assert_eq!(
            due("I'll call you back by 3pm", "10:00").unwrap(),
            "2026-11-23T15:00:00Z"
        );
        assert_eq!(
            due("I'll call you back by 3pm", "16:00").unwrap(),
            "2026-11-24T15:00:00Z"
        );
        assert_eq!(
            due("I'll email you by 3:30 p.m.", "10:00").unwrap(),
            "2026-11-23T15:30:00Z"
        );
        assert_eq!(
            due("I'll get back to you at 10am tomorrow", "16:00").unwrap(),
            "2026-11-24T10:00:00Z"
        );
        assert_eq!(due("expect my call by 4", "10:00").unwrap(), "2026-11-23T16:00:00Z");
        assert_eq!(
            due("I'll update you before 14:00", "10:00").unwrap(),
            "2026-11-23T14:00:00Z"
        );
        assert_eq!(due("I'll call you by noon", "10:00").unwrap(), "2026-11-23T12:00:00Z");
    }

    #[test]
    fn days_and_parts_of_days() {
        assert_eq!(
            due("I'll call you back tomorrow", "10:00").unwrap(),
            "2026-11-24T17:00:00Z"
        );
        assert_eq!(due("I'll call you tmrw", "10:00").unwrap(), "2026-11-24T17:00:00Z");
        assert_eq!(
            due("I'll call you tomorrow morning", "10:00").unwrap(),
            "2026-11-24T09:00:00Z"
        );
        assert_eq!(
            due("first thing I'll email you", "10:00").unwrap(),
            "2026-11-23T09:00:00Z".replace("23T09", "24T09")
        );
        assert_eq!(
            due("I'll get back to you by Friday", "10:00").unwrap(),
            "2026-11-27T17:00:00Z"
        );
        assert_eq!(
            due("I'll get back to you by Monday", "18:00").unwrap(),
            "2026-11-30T17:00:00Z"
        );
        assert_eq!(
            due("I'll update you by end of day", "10:00").unwrap(),
            "2026-11-23T17:00:00Z"
        );
        assert_eq!(due("update by EOD", "10:00").unwrap(), "2026-11-23T17:00:00Z");
        assert_eq!(due("I'll let you know today", "10:00").unwrap(), "2026-11-23T17:00:00Z");
        assert_eq!(
            due("I'll email you next week", "10:00").unwrap(),
            "2026-11-30T17:00:00Z"
        );
        assert_eq!(
            due("I'll message you tonight", "10:00").unwrap(),
            "2026-11-23T20:00:00Z"
        );
    }

    #[test]
    fn later_today_is_capped_at_end_of_day() {
        assert_eq!(
            due("I'll call you later today", "10:00").unwrap(),
            "2026-11-23T14:00:00Z"
        );
        assert_eq!(
            due("I'll call you later today", "15:00").unwrap(),
            "2026-11-23T17:00:00Z"
        );
        // After hours there is no end of day left to cap at.
        assert_eq!(
            due("I'll call you later today", "18:00").unwrap(),
            "2026-11-23T22:00:00Z"
        );
        assert_eq!(
            due("I'll update you by end of day", "18:00").unwrap(),
            "2026-11-23T22:00:00Z"
        );
    }

    #[test]
    fn soon() {
        assert_eq!(
            due("I'll get back to you shortly", "10:00").unwrap(),
            "2026-11-23T11:00:00Z"
        );
        assert_eq!(due("will update asap", "10:00").unwrap(), "2026-11-23T11:00:00Z");
    }

    #[test]
    fn no_timeframe() {
        assert_eq!(due("I'll get back to you", "10:00"), None);
        assert_eq!(due("I'll call you about the 2 items", "10:00"), None);
        assert_eq!(due("I'll email you order 12345", "10:00"), None);
    }

    #[test]
    fn time_zones_and_business_hours_come_from_the_schedule() {
        let schedule = Schedule {
            time_zone: TimeZone::get("America/New_York").unwrap(),
            ..Schedule::default()
        };
        let tf = Timeframe::parse(b"I'll call you back by 3pm").unwrap();
        // 10:00 UTC is 05:00 in New York; 15:00 there is 20:00 UTC.
        assert_eq!(tf.resolve(at("10:00"), &schedule).to_string(), "2026-11-23T20:00:00Z");
        assert_eq!(tf.words, "by 3pm");
    }

    #[test]
    fn words_are_reported_as_written() {
        let tf = Timeframe::parse(b"I'll call you back Tomorrow by 3PM").unwrap();
        assert_eq!(tf.words, "Tomorrow by 3PM");
    }
}

//! When is a promise due? Reading "tomorrow by 3pm", "within 30 mins", "EOD" in a promise.
//!
//! Reading finds the parts of a time expression (a delay, a clock time, a day, a part of the day)
//! in the promise's sentence, over the words the lexicon normalised: the vocabulary ("EOD",
//! "tmrw", "within the next") is data in `config/lexicon.toml` ([`TIME_CLASSES`]), the grammar and
//! the meaning are here. Resolving turns the parts into an instant in the conversation's time zone
//! using the business-hour constants from settings. Both are pure: the message time is the clock.

use std::collections::HashMap;
use std::ops::Range;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::automaton::{Matcher, Node};
use super::lexicon::{Lexicon, DIGITS};
use super::text::Prepared;
use super::tokens::Tokens;

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

/// The lexicon classes the timeframe reader reads, and what each is for. The words are data
/// (`config/lexicon.toml`); what they mean ("tomorrow" is the next day) is here.
pub const TIME_CLASSES: [(&str, &str); 18] = [
    (
        "timeframe_soon",
        "\"shortly\", \"asap\", \"right away\": due after follow_up.soon",
    ),
    (
        "timeframe_later_today",
        "\"later today\": due after follow_up.later_today, capped at the end of the day",
    ),
    ("timeframe_end_of_day", "\"end of day\", \"EOD\", \"close of business\""),
    (
        "timeframe_morning",
        "\"first thing\", \"morning\": the start of business hours",
    ),
    ("timeframe_evening", "\"tonight\", \"this evening\""),
    ("timeframe_today", "\"today\", \"this afternoon\""),
    ("timeframe_tomorrow", "\"tomorrow\""),
    ("timeframe_next_week", "\"next week\", \"end of the week\""),
    (
        "timeframe_delay",
        "words before an amount of time: \"in\", \"within\", \"in the next\"",
    ),
    (
        "timeframe_about",
        "words between a delay and its amount: \"about\", \"another\"",
    ),
    ("timeframe_minutes", "units of minutes"),
    ("timeframe_hours", "units of hours"),
    ("timeframe_days", "units of days: \"days\", \"business days\""),
    (
        "timeframe_clock_lead",
        "words before a clock time: \"by\", \"at\", \"before\"",
    ),
    ("timeframe_am", "\"am\" after a clock time"),
    ("timeframe_pm", "\"pm\" after a clock time"),
    ("timeframe_oclock", "\"o'clock\""),
    (
        "timeframe_noon",
        "\"noon\", \"midday\", \"lunchtime\" after a clock lead",
    ),
];

/// The timeframe vocabulary, compiled from the lexicon.
#[derive(Debug, Clone, Default)]
pub struct TimeWords {
    classes: HashMap<&'static str, Node>,
    /// Counts in words ("two", "a couple of", "half an") and their values.
    numbers: Vec<(Node, f64)>,
}

impl TimeWords {
    pub fn new(classes: HashMap<&'static str, Node>, numbers: Vec<(Node, f64)>) -> TimeWords {
        TimeWords { classes, numbers }
    }
}

/// Reads one sentence's words.
struct Reader<'a> {
    words: &'a TimeWords,
    lexicon: &'a Lexicon,
    text: &'a Prepared<'a>,
    tokens: &'a Tokens,
    first: usize,
    last: usize,
    found: Vec<Range<usize>>,
}

impl Reader<'_> {
    fn matcher(&self) -> Matcher<'_> {
        Matcher {
            tokens: self.tokens,
            scan: self.text.scan(),
            lexicon: Some(self.lexicon),
        }
    }

    /// Where the longest match of a class starting at token `at` ends.
    fn ends(&self, class: &str, at: usize) -> Option<usize> {
        let node = self.words.classes.get(class)?;
        self.matcher().ends(node, at, self.last).into_iter().max()
    }

    /// The first match of a class in the sentence, as tokens.
    fn find(&self, class: &str) -> Option<Range<usize>> {
        (self.first..self.last).find_map(|at| self.ends(class, at).map(|end| at..end))
    }

    fn word(&self, at: usize) -> &str {
        self.tokens.tokens.get(at).map_or("", |t| self.lexicon.word(t.word))
    }

    fn digits(&self, at: usize) -> Option<&str> {
        let t = self
            .tokens
            .tokens
            .get(at)
            .filter(|t| t.word == DIGITS && at < self.last)?;
        std::str::from_utf8(&self.text.scan()[t.start as usize..t.end as usize]).ok()
    }

    /// Notes the words a part was read from (token range), for the promise's "due from" words.
    fn note(&mut self, tokens: Range<usize>) {
        if tokens.is_empty() {
            return;
        }
        let (a, b) = (&self.tokens.tokens[tokens.start], &self.tokens.tokens[tokens.end - 1]);
        self.found.push(a.start as usize..b.end as usize);
    }

    /// The upper end of a range starting at the count at `at` ("3-5 days", "3 to 5 days"), and the
    /// token after it: the latest the customer was told to expect.
    fn range_end(&self, at: usize) -> Option<(f64, usize)> {
        let joined_by_dash = || {
            let (a, b) = (self.tokens.tokens.get(at)?, self.tokens.tokens.get(at + 1)?);
            let gap = self.text.scan().get(a.end as usize..b.start as usize)?;
            (gap.trim_ascii() == b"-").then_some(at + 1)
        };
        let upper = match joined_by_dash() {
            Some(k) => k,
            None if matches!(self.word(at + 1), "to" | "or") => at + 2,
            None => return None,
        };
        Some((amount_of(self.digits(upper)?)?, upper + 1))
    }

    /// "in 2 hours", "within the hour", "in a couple of days", "in 3-5 working days".
    fn delay(&mut self) -> Option<Kind> {
        for at in self.first..self.last {
            let Some(lead_end) = self.ends("timeframe_delay", at) else {
                continue;
            };
            let mut k = self.ends("timeframe_about", lead_end).unwrap_or(lead_end);
            let (amount, next) = if let Some(d) = self.digits(k) {
                match amount_of(d) {
                    Some(n) => self.range_end(k).unwrap_or((n, k + 1)),
                    None => continue,
                }
            } else if self.word(k) == "the" && self.ends("timeframe_hours", k + 1).is_some() {
                (1.0, k + 1)
            } else {
                let m = self.matcher();
                let best = self
                    .words
                    .numbers
                    .iter()
                    .filter_map(|(node, value)| m.ends(node, k, self.last).into_iter().max().map(|e| (e, *value)))
                    .max_by_key(|(e, _)| *e);
                match best {
                    Some((e, value)) => (value, e),
                    None => continue,
                }
            };
            k = next;
            if self.word(k) == "more" {
                k += 1;
            }
            let units = [
                ("timeframe_minutes", 1.0),
                ("timeframe_hours", 60.0),
                ("timeframe_days", 24.0 * 60.0),
            ];
            for (class, minutes) in units {
                if let Some(end) = self.ends(class, k) {
                    let total = (amount * minutes).round() as i64;
                    if total > 0 {
                        self.note(at..end);
                        return Some(Kind::After(SignedDuration::from_mins(total)));
                    }
                }
            }
        }
        None
    }

    /// "by 3pm", "at 10:30", "before 14:00", "by 4", "by noon".
    fn clock(&mut self) -> Option<Time> {
        let lead_before = |r: &Reader<'_>, at: usize| {
            (r.first..at)
                .rev()
                .take(4)
                .find(|&s| r.ends("timeframe_clock_lead", s) == Some(at))
        };
        for at in self.first..self.last {
            if let Some(noon_end) = lead_before(self, at).and(self.ends("timeframe_noon", at)) {
                let start = lead_before(self, at).unwrap_or(at);
                self.note(start..noon_end);
                return Some(Time::constant(12, 0, 0, 0));
            }
            let Some(d) = self.digits(at) else { continue };
            let (hour, mut minute) = match d.split_once('.') {
                Some((h, m)) if m.len() == 2 => (h.parse::<i8>().ok()?, m.parse::<i8>().ok()),
                Some(_) => continue,
                None => (d.parse::<i8>().unwrap_or(99), None),
            };
            let mut end = at + 1;
            // "10:30": the minutes are the next number, straight after a colon.
            if minute.is_none() {
                if let (Some(m), Some(t), Some(n)) = (
                    self.digits(at + 1),
                    self.tokens.tokens.get(at),
                    self.tokens.tokens.get(at + 1),
                ) {
                    let between = &self.text.scan()[t.end as usize..n.start as usize];
                    if between == b":" && m.len() == 2 {
                        minute = m.parse().ok();
                        end = at + 2;
                    }
                }
            }
            let suffix = ["timeframe_am", "timeframe_pm", "timeframe_oclock"]
                .into_iter()
                .find_map(|c| self.ends(c, end).map(|e| (c, e)));
            let lead = lead_before(self, at);
            // A bare number is a time only after "by/at/before…" ("by 4"), never "2 items".
            if lead.is_none() && suffix.is_none() && minute.is_none() {
                continue;
            }
            let hour = match suffix.map(|(c, _)| c) {
                Some("timeframe_pm") if hour < 12 => hour + 12,
                Some("timeframe_am") if hour == 12 => 0,
                Some(_) => hour,
                // "by 4" in a working day means the afternoon.
                None if minute.is_none() && (1..=7).contains(&hour) => hour + 12,
                None => hour,
            };
            if let Ok(t) = Time::new(hour, minute.unwrap_or(0), 0, 0) {
                let stop = suffix.map_or(end, |(_, e)| e);
                self.note(lead.unwrap_or(at)..stop);
                return Some(t);
            }
        }
        None
    }

    fn weekday(&mut self) -> Option<Weekday> {
        for at in self.first..self.last {
            let day = match self.word(at) {
                "monday" => Weekday::Monday,
                "tuesday" => Weekday::Tuesday,
                "wednesday" => Weekday::Wednesday,
                "thursday" => Weekday::Thursday,
                "friday" => Weekday::Friday,
                "saturday" => Weekday::Saturday,
                "sunday" => Weekday::Sunday,
                _ => continue,
            };
            self.note(at..at + 1);
            return Some(day);
        }
        None
    }

    fn class(&mut self, class: &str) -> bool {
        match self.find(class) {
            Some(r) => {
                self.note(r);
                true
            }
            None => false,
        }
    }
}

/// A count written in digits.
fn amount_of(digits: &str) -> Option<f64> {
    digits.parse::<f64>().ok().filter(|n| *n < 1000.0)
}

impl Timeframe {
    /// Finds the time expression in one sentence of a promise. `None` when it names no time.
    pub fn read(
        words: &TimeWords,
        lexicon: &Lexicon,
        text: &Prepared<'_>,
        tokens: &Tokens,
        sentence: usize,
    ) -> Option<Timeframe> {
        let s = tokens.sentences.get(sentence)?;
        let mut r = Reader {
            words,
            lexicon,
            text,
            tokens,
            first: s.first as usize,
            last: s.last as usize,
            found: Vec::new(),
        };
        let kind = if let Some(after) = r.delay() {
            after
        } else if r.class("timeframe_later_today") {
            Kind::LaterToday
        } else {
            let clock = r.clock();
            let day = if r.class("timeframe_tomorrow") {
                Some(Day::Tomorrow)
            } else if r.class("timeframe_next_week") {
                Some(Day::NextWeek)
            } else if let Some(w) = r.weekday() {
                Some(Day::Weekday(w))
            } else if r.class("timeframe_today") {
                Some(Day::Today)
            } else {
                None
            };
            let part = if r.class("timeframe_end_of_day") {
                Some(Part::EndOfDay)
            } else if r.class("timeframe_morning") {
                Some(Part::Morning)
            } else if r.class("timeframe_evening") {
                Some(Part::Evening)
            } else {
                None
            };
            if day.is_some() || clock.is_some() || part.is_some() {
                Kind::Calendar { day, clock, part }
            } else if r.class("timeframe_soon") {
                Kind::Soon
            } else {
                return None;
            }
        };
        let words = r
            .found
            .iter()
            .map(|span| (span.start, text.original(span.clone()).to_string()))
            .collect();
        Some(Timeframe::new(kind, words))
    }

    fn new(kind: Kind, mut words: Vec<(usize, String)>) -> Timeframe {
        words.sort();
        words.dedup_by(|a, b| a.1 == b.1);
        let words = words.into_iter().map(|(_, w)| w).collect::<Vec<_>>().join(" ");
        Timeframe { kind, words }
    }

    /// Whether the words name no real time ("shortly", "asap"): the promise gets a due time from
    /// settings, and the agent is still asked to give the customer a time.
    pub fn is_vague(&self) -> bool {
        matches!(self.kind, Kind::Soon)
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

    /// The shipped lexicon's timeframe words, with a one-rule book around them.
    fn rules() -> &'static crate::RuleSet {
        static RULES: std::sync::OnceLock<crate::RuleSet> = std::sync::OnceLock::new();
        RULES.get_or_init(|| {
            let lexicon = Lexicon::parse(&[(
                "config/lexicon.toml".into(),
                include_str!("../../../config/lexicon.toml").into(),
            )])
            .expect("shipped lexicon");
            let book = "[[rule]]\nid = \"a\"\nkind = \"apology\"\nphrases = [\"sorry\"]\n";
            crate::RuleSet::parse(&lexicon, &[("rules.toml".into(), book.into())], 8.0).expect("book")
        })
    }

    fn parse(sentence: &str) -> Option<Timeframe> {
        let text = Prepared::new(sentence);
        let tokens = rules().tokens(&text);
        rules().timeframe(&text, &tokens, 0)
    }

    fn due(sentence: &str, now: &str) -> Option<String> {
        let tf = parse(sentence)?;
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
        // A range is due at its upper end; a number that is not a count is no delay.
        assert_eq!(
            due("it'll land in your account in 3-5 days", "10:00").unwrap(),
            "2026-11-28T10:00:00Z"
        );
        assert_eq!(
            due("we'll call you in 2 to 3 hours", "10:00").unwrap(),
            "2026-11-23T13:00:00Z"
        );
        assert_eq!(parse("we'll call you in 1.2.3 hours"), None);
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
        let tf = parse("I'll call you back by 3pm").unwrap();
        // 10:00 UTC is 05:00 in New York; 15:00 there is 20:00 UTC.
        assert_eq!(tf.resolve(at("10:00"), &schedule).to_string(), "2026-11-23T20:00:00Z");
        assert_eq!(tf.words, "by 3pm");
    }

    #[test]
    fn words_are_reported_as_written() {
        let tf = parse("I'll call you back Tomorrow by 3PM").unwrap();
        assert_eq!(tf.words, "Tomorrow by 3PM");
    }
}

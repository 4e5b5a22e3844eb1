//! The coaching engine: messages in, detections and nudges out, state per conversation.
//!
//! Pure by design, and a crate of its own so its `Cargo.toml` shows it: no Discord, no async
//! runtime, no database, no files, no clock. Time is whatever the caller
//! passes in, so the live bot, `backstop replay` and the tests get the same nudges from the same
//! messages. State lives in a [`DashMap`] so many tasks can feed one engine at once.
//!
//! A promise's life (open, reminded, overdue, escalated; snoozed; done; superseded) is decided in
//! `promise` alone. The engine keeps no timer: adapters ask [`Engine::next_step`] what a promise
//! waits for and when, and tell it with [`Engine::promise_step_sent`] once that went out — the
//! bot from its database-backed scheduler, replay from an in-memory timeline.
//!
//! # Layout
//! - [`text`](Prepared): the scan text (typography folded, quotes and code blanked).
//! - `lexicon`, `tokens`: spellings and classes; a message as normalised words and sentences.
//! - `phrase`, `automaton`, `rules`: the phrase language, the word index, the rule book.
//! - `learned`: the learned layer's features, model files and scoring.
//! - `timeframe`, `settings`, `prompts`: due times, engine settings, coaching text.
//! - `model`, `state`: ids, messages, detections, nudges; what is kept per conversation.
//! - `promise`: a follow-up promise, its states, steps and the moves between them.

mod automaton;
mod checklist;
mod learned;
mod lexicon;
mod model;
mod phrase;
mod problem;
mod promise;
mod prompts;
mod rules;
mod settings;
mod state;
mod text;
mod timeframe;
mod tokens;

use std::sync::Arc;

use dashmap::DashMap;
use jiff::Timestamp;

pub use automaton::{BuildError, Cost, Matcher, Node, Warmth};
pub use checklist::{Checklist, RecoveryStep};
pub use learned::{Features, Featurizer, Learned, ModelFile, Scorer, Standing, StoredModel, FORMAT_VERSION, HASH_BITS};
pub use lexicon::{edit_distance, Class, Lexicon, WordId};
pub use model::{
    Category, ConversationId, Detection, Due, DueSource, Message, MessageRef, Nudge, NudgeKind, Role, Suppressed,
    UserId,
};
pub use phrase::{Ast, PhraseError};
pub use problem::{line_of, toml_problem, Problem, Problems};
pub use prompts::{Prompts, Situation, Template, Values};
pub use rules::{BookCost, Hit, Phrase, Rule, RuleKind, RuleSet, DEFAULT_BUDGET, ENGINE_CLASSES};
pub use settings::{FollowUpOverrides, HoursOverrides, Overrides, Settings};
pub use text::Prepared;
pub use timeframe::{Schedule, Timeframe};
pub use tokens::{Sentence, Token, Tokens};

use checklist::ReplyFacts;
pub use promise::{Move, Promise, PromiseChange, PromiseState, Refused, Step};
pub use state::Context;
use state::{Conversation, CueNote, COOLED, STORY_CUES};

/// Longest excerpt of a message carried in a nudge.
const QUOTE_CHARS: usize = 160;

/// The coaching engine. Share it behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Engine {
    /// The rule book and coaching text, replaced whole by [`Engine::replace_book`] (hot reload).
    book: std::sync::RwLock<Book>,
    settings: Settings,
    conversations: DashMap<ConversationId, Conversation>,
    /// Whether model detections carry the features behind them (`replay --explain`).
    explaining: bool,
    /// How `{customer}` and `{agent}` are written in coaching text: ids in replay, mentions on
    /// Discord (which shows them as the member's name).
    name: fn(&UserId) -> String,
}

/// Rules and prompts, shared by every guild's engine.
#[derive(Debug, Clone)]
struct Book {
    rules: Arc<RuleSet>,
    prompts: Arc<Prompts>,
    /// The learned layer, when a model file is loaded.
    learned: Option<Arc<Learned>>,
}

/// One message's scan: the rule book it was scanned with and what matched. Hits are indices
/// into that book, so they are never looked up in another (a reload mid-message).
struct Scan<'a> {
    rules: &'a RuleSet,
    tokens: &'a Tokens,
    hits: &'a [Hit],
    learned: Option<&'a Learned>,
    /// The message's features for the learned layer (named when explaining).
    features: Option<Features>,
    situation: Standing,
}

impl Scan<'_> {
    fn rule(&self, hit: &Hit) -> &Rule {
        self.rules.rule(hit.rule)
    }

    fn first(&self, kind: RuleKind) -> Option<&Hit> {
        self.hits.iter().find(|h| self.rule(h).kind == kind)
    }

    /// A request for the customer's details in a message that neither owns the problem nor
    /// apologizes: what `details_before_ownership` coaches and the checklist's `owned_first` misses.
    fn unowned_details_request(&self) -> Option<&Hit> {
        let owned = self.first(RuleKind::Apology).is_some() || self.first(RuleKind::Ownership).is_some();
        self.first(RuleKind::DetailsRequest).filter(|_| !owned)
    }
}

/// What a detection rests on: a rule's words, or the sentence the model scored highest.
struct Basis {
    rule: Arc<str>,
    span: std::ops::Range<usize>,
    category: Option<Category>,
    score: Option<f32>,
    why: Vec<(String, f32)>,
}

impl Basis {
    fn of_rule(scan: &Scan<'_>, hit: &Hit) -> Basis {
        let rule = scan.rule(hit);
        Basis {
            rule: rule.id.clone(),
            span: hit.span.clone(),
            category: rule.category,
            score: None,
            why: Vec::new(),
        }
    }
}

/// The rule id model detections carry.
pub const MODEL_RULE: &str = "model";

/// What reading one message produced: nudges for the agent, and what happened to the
/// conversation's promise (for adapters that store promises).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reading {
    pub nudges: Vec<Nudge>,
    /// Every detection in the message, nudged or not (then with the reason).
    pub detections: Vec<Detection>,
    pub changes: Vec<PromiseChange>,
    /// The agent apologized for an open problem with this message (time-to-apology figures).
    pub recovered: bool,
    /// Cue nudges held for the first agent that this agent's reply made unnecessary: it already
    /// apologized for the failure by name. Not delivered; adapters count them as wins.
    pub unprompted: Vec<Nudge>,
    /// The conversation's recovery checklist, when this message changed it.
    pub checklist: Option<Checklist>,
    /// A live first reading (`claim`) of a message older than one already read here: the
    /// adapter let the conversation's messages through out of order, so what the engine
    /// concluded may be wrong. Edits re-read old messages and are never flagged.
    pub out_of_order: bool,
}

/// An open promise, as shown to agents and leads.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenPromise {
    pub conversation: ConversationId,
    pub agent: UserId,
    pub source: MessageRef,
    pub made_at: Timestamp,
    pub due: Due,
    pub evidence: String,
    pub overdue: bool,
}

impl Engine {
    pub fn new(rules: RuleSet, prompts: Prompts, settings: Settings) -> Engine {
        Engine::shared(Arc::new(rules), Arc::new(prompts), settings)
    }

    /// An engine with its own state and settings, sharing compiled rules and prompts (one per guild).
    pub fn shared(rules: Arc<RuleSet>, prompts: Arc<Prompts>, settings: Settings) -> Engine {
        Engine {
            book: std::sync::RwLock::new(Book {
                rules,
                prompts,
                learned: None,
            }),
            settings,
            conversations: DashMap::new(),
            explaining: false,
            name: |user| user.as_str().to_string(),
        }
    }

    /// This engine, writing people in coaching text with `name` (e.g. a chat mention).
    pub fn naming(mut self, name: fn(&UserId) -> String) -> Engine {
        self.name = name;
        self
    }

    /// This engine with a learned layer beside the rules (or without one, `None`).
    pub fn with_learned(self, learned: Option<Arc<Learned>>) -> Engine {
        self.book.write().unwrap_or_else(|e| e.into_inner()).learned = learned;
        self
    }

    /// This engine, naming the features behind each model detection (slower; for explaining).
    pub fn explaining(mut self) -> Engine {
        self.explaining = true;
        self
    }

    /// The learned layer in use, if any.
    pub fn learned(&self) -> Option<Arc<Learned>> {
        self.book().learned
    }

    fn book(&self) -> Book {
        // Plain data swapped whole: a panic elsewhere cannot leave it half-written.
        self.book.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.book().rules
    }

    pub fn prompts(&self) -> Arc<Prompts> {
        self.book().prompts
    }

    /// Puts a new rule book and coaching text in place; conversations and promises carry on.
    /// A message being read meanwhile finishes with the book it started with.
    pub fn replace_book(&self, rules: Arc<RuleSet>, prompts: Arc<Prompts>) {
        let mut book = self.book.write().unwrap_or_else(|e| e.into_inner());
        book.rules = rules;
        book.prompts = prompts;
    }

    /// Puts another engine's rules, prompts and learned layer in place (hot reload).
    pub fn adopt_book(&self, from: &Engine) {
        *self.book.write().unwrap_or_else(|e| e.into_inner()) = from.book();
    }

    /// A new engine with the same rules and prompts but other settings and empty state.
    pub fn with_settings(&self, settings: Settings) -> Engine {
        let book = self.book();
        let mut engine = Engine::shared(book.rules, book.prompts, settings).with_learned(book.learned);
        engine.explaining = self.explaining;
        engine.name = self.name;
        engine
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// How many conversations are remembered right now.
    pub fn conversations(&self) -> usize {
        self.conversations.len()
    }

    /// Reads one message and returns the nudges it causes.
    pub fn observe(&self, msg: &Message<'_>) -> Vec<Nudge> {
        self.read(msg, false).nudges
    }

    /// Like [`Engine::observe`], but an agent's message also claims a customer cue that arrived
    /// before any agent spoke, in the same step: the claimed nudge, addressed to this agent, comes
    /// first. Live adapters use this; doing the claim and the read as two calls would let a cue
    /// read in between be cleared unclaimed. Replay uses `observe`, where such a cue was already
    /// reported with no agent.
    pub fn observe_claiming(&self, msg: &Message<'_>) -> Vec<Nudge> {
        self.read(msg, true).nudges
    }

    /// Reads one message (claiming an early cue when `claim`, as [`Engine::observe_claiming`]) and
    /// returns its nudges along with what happened to the conversation's promise.
    pub fn read(&self, msg: &Message<'_>, claim: bool) -> Reading {
        let text = Prepared::new(msg.text);
        let book = self.book();
        let rules = &book.rules;
        let tokens = rules.tokens(&text);
        let hits = rules.scan(msg.role, &text, &tokens);
        let mut scan = Scan {
            rules,
            tokens: &tokens,
            hits: &hits,
            learned: book.learned.as_deref(),
            features: None,
            situation: Standing::default(),
        };
        let mut conv = match self.conversations.get_mut(msg.conversation) {
            Some(c) => c,
            None => self
                .conversations
                .entry(ConversationId::new(msg.conversation))
                .or_insert_with(|| Conversation::new(msg.at)),
        };
        let id = conv.key().clone();
        let conv = conv.value_mut();
        let out_of_order = claim && msg.at < conv.context.last_message;
        conv.context.last_message = conv.context.last_message.max(msg.at);
        scan.situation = Standing {
            problem_open: conv.context.problem_open,
            apologized: conv.context.apologized,
            customer_spoke_last: conv.context.last_role == Some(Role::Customer),
            first_reply: msg.role == Role::Agent
                && conv.context.problem_open
                && conv.context.last_role == Some(Role::Customer),
        };
        if let Some(learned) = scan.learned {
            // Features only when a model of this role may fire on its own (or must explain why).
            let fires = |m: &Option<Scorer>| m.as_ref().is_some_and(|m| m.threshold.is_some());
            // And only where the rules have not already found that kind, or when explaining.
            let found = |kind: RuleKind| hits.iter().any(|h| rules.rule(h.rule).kind == kind);
            let wanted = self.explaining
                || match msg.role {
                    Role::Customer => fires(&learned.prior_failure) && !found(RuleKind::PriorFailure),
                    Role::Agent => {
                        fires(&learned.explain_before_apology)
                            || (fires(&learned.follow_up_promised) && !found(RuleKind::FollowUp))
                    }
                };
            if wanted {
                scan.features = Some(rules.featurizer().features(
                    &text,
                    &tokens,
                    &hits,
                    rules,
                    scan.situation,
                    None,
                    self.explaining,
                ));
            }
        }
        let mut out = Reading {
            out_of_order,
            ..Reading::default()
        };
        if claim && msg.role == Role::Agent {
            if let Some(mut nudge) = conv.unclaimed.take().map(|n| *n) {
                nudge.agent = Some(UserId::new(msg.author));
                nudge.at = nudge.at.max(msg.at);
                // A first reply that already says sorry for the failure by name needs no coaching
                // after the fact: it is counted as a recovery the agent made unprompted.
                let found = |kind: RuleKind| scan.first(kind).is_some();
                let specific =
                    found(RuleKind::Apology) && found(RuleKind::FailureNamed) && !found(RuleKind::ApologyEraser);
                if specific && nudge.kind == NudgeKind::PriorFailure {
                    out.unprompted.push(nudge);
                } else {
                    out.nudges.push(nudge);
                }
            }
        }
        match msg.role {
            Role::Customer => self.customer_message(&id, conv, msg, &text, &scan, &mut out),
            Role::Agent => self.agent_message(&id, conv, msg, &text, &scan, &mut out),
        }
        conv.context.last_role = Some(msg.role);
        conv.story.last_source = msg.source;
        out
    }

    /// A model detection: when `pick`'s model passes its threshold on the message, the sentence
    /// it scores highest is the evidence.
    fn model_basis(
        &self,
        scan: &Scan<'_>,
        text: &Prepared<'_>,
        pick: fn(&Learned) -> Option<&Scorer>,
    ) -> Option<Basis> {
        let (learned, features) = (scan.learned?, scan.features.as_ref()?);
        let scorer = pick(learned)?;
        let p = scorer.fires(features)?;
        let featurizer = scan.rules.featurizer();
        let sentence_score = |s: usize| {
            let f = featurizer.features(text, scan.tokens, &[], scan.rules, scan.situation, Some(s), false);
            scorer.probability(&f)
        };
        let best = (0..scan.tokens.sentences.len())
            .filter(|&s| scan.tokens.sentences[s].first < scan.tokens.sentences[s].last)
            .map(|s| (s, sentence_score(s)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s)?;
        let sentence = &scan.tokens.sentences[best];
        let (first, last) = (
            &scan.tokens.tokens[sentence.first as usize],
            &scan.tokens.tokens[sentence.last as usize - 1],
        );
        Some(Basis {
            rule: Arc::from(MODEL_RULE),
            span: first.start as usize..last.end as usize,
            category: None,
            score: Some(p),
            why: if self.explaining {
                scorer.top(features, 6)
            } else {
                Vec::new()
            },
        })
    }

    fn customer_message(
        &self,
        id: &ConversationId,
        conv: &mut Conversation,
        msg: &Message<'_>,
        text: &Prepared<'_>,
        scan: &Scan<'_>,
        out: &mut Reading,
    ) {
        if conv.context.last_customer.as_ref().map(UserId::as_str) != Some(msg.author) {
            conv.context.last_customer = Some(UserId::new(msg.author));
        }
        conv.story.customer_since.get_or_insert(msg.at);
        let of = |kind: RuleKind| scan.first(kind);
        conv.context.reason_requested = of(RuleKind::ReasonRequest).is_some();
        let cue = match of(RuleKind::PriorFailure) {
            Some(hit) => Some(Basis::of_rule(scan, hit)),
            None => self.model_basis(scan, text, |l| l.prior_failure.as_ref()).map(|mut b| {
                b.category = scan
                    .learned
                    .zip(scan.features.as_ref())
                    .and_then(|(l, f)| l.category(f))
                    .or(Some(Category::NotReceived));
                b
            }),
        };
        if cue.is_some() || of(RuleKind::Complaint).is_some() {
            // A new problem, or a failure named while one is open: either way no agent has owned
            // this yet, so the next agent message is the first reply to it.
            if !conv.context.problem_open || cue.is_some() {
                conv.context.awaiting_reply = true;
            }
            conv.context.problem_open = true;
        }
        let Some(cue) = cue else { return };
        conv.context.cue_unapologized = true;
        conv.context.checklist.get_or_insert_with(|| Checklist::new(msg.at));
        let story = &mut conv.story;
        if story.cues.len() == STORY_CUES {
            story.cues.remove(0);
        }
        story.cues.push(CueNote {
            category: cue.category.unwrap_or(Category::NotReceived),
            words: excerpt(msg.text),
        });
        let evidence = text.original(cue.span.clone());
        let detect = |suppressed| Detection {
            kind: NudgeKind::PriorFailure,
            category: cue.category,
            conversation: id.clone(),
            source: msg.source,
            at: msg.at,
            rule: cue.rule.clone(),
            evidence: evidence.to_string(),
            suppressed,
            score: cue.score,
            why: cue.why.clone(),
        };
        if let Some(promise) = conv.promise.as_deref_mut() {
            if chases_promise(cue.category, text, scan, &cue.span) {
                // The customer is already chasing the promised follow-up: that is the overdue
                // story arriving early, not a separate failure to coach on.
                out.detections.push(detect(Some(Suppressed::ChasesPromise)));
                // The chase stands in for the overdue notice, so it goes out once, like that notice.
                if promise.advance(Step::Overdue).is_ok() {
                    // Before the due time nothing has been missed yet: the agent hears that the
                    // customer is already asking, in the customer's words, not "overdue".
                    let early = msg.at < promise.due().at;
                    let customer_words = excerpt(msg.text);
                    out.nudges.push(self.render(Draft {
                        kind: NudgeKind::FollowUpOverdue,
                        category: early.then_some(Category::Chased),
                        conversation: id,
                        agent: Some(promise.agent.clone()),
                        customer: promise.customer.clone(),
                        rule: &promise.rule,
                        evidence,
                        quote: if early { &customer_words } else { &promise.quote },
                        at: msg.at,
                        due: Some(promise.due().clone()),
                        source: promise.source,
                    }));
                    out.changes.push(PromiseChange::Chased {
                        source: promise.source,
                        at: msg.at,
                    });
                }
                return;
            }
        }
        // The same failure said again before any agent has answered is one nudge; a new failure,
        // or the same one raised after the agent spoke, is a new one.
        let category = cue.category.unwrap_or(Category::NotReceived);
        if conv.context.cues_since_agent.contains(&category) {
            out.detections.push(detect(Some(Suppressed::Repeated)));
            return;
        }
        conv.context.cues_since_agent.push(category);
        out.detections.push(detect(None));
        let nudge = self.render(Draft {
            kind: NudgeKind::PriorFailure,
            category: cue.category,
            conversation: id,
            agent: conv.context.last_agent.clone(),
            customer: conv.context.last_customer.clone(),
            rule: &cue.rule,
            evidence,
            quote: &excerpt(msg.text),
            at: msg.at,
            due: None,
            source: msg.source,
        });
        if nudge.agent.is_none() {
            conv.unclaimed = Some(Box::new(nudge.clone()));
        }
        out.nudges.push(nudge);
    }

    fn agent_message(
        &self,
        id: &ConversationId,
        conv: &mut Conversation,
        msg: &Message<'_>,
        text: &Prepared<'_>,
        scan: &Scan<'_>,
        out: &mut Reading,
    ) {
        if let Some(mut promise) = conv
            .promise
            .take_if(|p| msg.at >= add(p.made_at, self.settings.min_gap))
        {
            if promise.done().is_ok() {
                out.changes.push(PromiseChange::Kept {
                    source: promise.source,
                    at: msg.at,
                });
            }
        }
        out.nudges
            .extend(self.takeover_brief(id, conv, msg.author, msg.at, msg.source));
        if conv.context.last_agent.as_ref().map(UserId::as_str) != Some(msg.author) {
            conv.context.last_agent = Some(UserId::new(msg.author));
        }
        conv.unclaimed = None;
        conv.context.cues_since_agent.clear();

        let first = |kind: RuleKind| scan.first(kind);
        let apology = first(RuleKind::Apology);
        let explanation = first(RuleKind::Explanation);
        let eraser = apology.and_then(|a| {
            scan.hits
                .iter()
                .find(|h| scan.rule(h).kind == RuleKind::ApologyEraser && h.span.start >= a.span.start)
        });
        let excused = match (explanation, apology) {
            (Some(e), None) => Some((e, Category::InsteadOfApology)),
            (Some(e), Some(a)) if e.span.start < a.span.start => Some((e, Category::BeforeApology)),
            _ => eraser.map(|e| (e, Category::ApologyErased)),
        };
        let asked_after_apology = conv.context.reason_requested && conv.context.apologized;
        // Rules need an open problem to call an explanation an excuse; the model learned from
        // real replies what answering a reported problem looks like, and needs no such flag.
        let excused = match excused.filter(|_| conv.context.problem_open) {
            Some((hit, category)) => Some((Basis::of_rule(scan, hit), category)),
            None => self
                .model_basis(scan, text, |l| l.explain_before_apology.as_ref())
                .map(|b| {
                    (
                        b,
                        if apology.is_some() {
                            Category::BeforeApology
                        } else {
                            Category::InsteadOfApology
                        },
                    )
                }),
        };
        let excused = excused.filter(|_| !asked_after_apology);
        let excuse = excused.is_some();
        if let Some((basis, category)) = excused {
            let finding = (NudgeKind::ExplainBeforeApology, Some(category), basis);
            self.coach_reply(id, conv, msg, text, finding, out);
        }
        self.craft(id, conv, msg, text, scan, out);
        // Only conversations with a failure cue have a checklist; the rest skip the time reading.
        if let Some(checklist) = conv.context.checklist.as_mut() {
            let facts = ReplyFacts {
                apology: apology.is_some() && eraser.is_none(),
                names_failure: first(RuleKind::FailureNamed).is_some(),
                excuse,
                details_unowned: scan.unowned_details_request().is_some(),
                next_step: says_next_step(text, scan),
                thanks: first(RuleKind::Gratitude).is_some(),
            };
            if checklist.reply(msg.author, facts) {
                out.checklist = Some(checklist.clone());
            }
        }
        if apology.is_some() {
            conv.story.apology = Some(excerpt(msg.text));
        }
        if apology.is_some() && eraser.is_none() {
            out.recovered = conv.context.problem_open;
            conv.context.problem_open = false;
            conv.context.apologized = true;
        }
        let promise = match first(RuleKind::FollowUp) {
            Some(hit) => Some(Basis::of_rule(scan, hit)),
            None => self.model_basis(scan, text, |l| l.follow_up_promised.as_ref()),
        };
        if let Some(basis) = promise {
            self.promise_made(id, conv, msg, (text, scan), basis, out);
        }
    }

    /// The service-recovery craft in one agent message: own the problem before asking for
    /// details, apologize for exactly what went wrong, hand the customer off warm.
    fn craft(
        &self,
        id: &ConversationId,
        conv: &mut Conversation,
        msg: &Message<'_>,
        text: &Prepared<'_>,
        scan: &Scan<'_>,
        out: &mut Reading,
    ) {
        let first = |kind: RuleKind| scan.first(kind);
        let apology = first(RuleKind::Apology);
        let mut found: Vec<(NudgeKind, Option<Category>, &Hit)> = Vec::new();
        if std::mem::take(&mut conv.context.awaiting_reply) {
            if let Some(hit) = scan.unowned_details_request() {
                found.push((NudgeKind::DetailsBeforeOwnership, None, hit));
            }
        }
        if let Some(hit) = apology.filter(|_| conv.context.cue_unapologized) {
            conv.context.cue_unapologized = false;
            if first(RuleKind::FailureNamed).is_none() {
                found.push((NudgeKind::GenericApology, None, hit));
            }
        }
        if let Some(hit) = first(RuleKind::Transfer) {
            let has = |part: &str| {
                scan.hits.iter().any(|h| {
                    let rule = scan.rule(h);
                    rule.kind == RuleKind::Handoff && rule.label.as_deref() == Some(part)
                })
            };
            let missing = [
                ("who", Category::NoDestination),
                ("how", Category::NoRoute),
                ("next", Category::NoNextStep),
            ]
            .into_iter()
            .find(|(part, _)| !has(part));
            if let Some((_, category)) = missing {
                found.push((NudgeKind::ColdTransfer, Some(category), hit));
            }
        }
        for (kind, category, hit) in found {
            self.coach_reply(id, conv, msg, text, (kind, category, Basis::of_rule(scan, hit)), out);
        }
    }

    /// One finding in an agent's reply: always a detection, and a nudge to that agent unless the
    /// kind's cooldown holds it back.
    fn coach_reply(
        &self,
        id: &ConversationId,
        conv: &mut Conversation,
        msg: &Message<'_>,
        text: &Prepared<'_>,
        (kind, category, basis): (NudgeKind, Option<Category>, Basis),
        out: &mut Reading,
    ) {
        let cooled = self.cooled(conv, kind, msg.at);
        let evidence = text.original(basis.span.clone());
        out.detections.push(Detection {
            kind,
            category,
            conversation: id.clone(),
            source: msg.source,
            at: msg.at,
            rule: basis.rule.clone(),
            evidence: evidence.to_string(),
            suppressed: (!cooled).then_some(Suppressed::Cooldown),
            score: basis.score,
            why: basis.why,
        });
        if cooled {
            out.nudges.push(self.render(Draft {
                kind,
                category,
                conversation: id,
                agent: conv.context.last_agent.clone(),
                customer: conv.context.last_customer.clone(),
                rule: &basis.rule,
                evidence,
                quote: &excerpt(msg.text),
                at: msg.at,
                due: None,
                source: msg.source,
            }));
        }
    }

    fn promise_made(
        &self,
        id: &ConversationId,
        conv: &mut Conversation,
        msg: &Message<'_>,
        (text, scan): (&Prepared<'_>, &Scan<'_>),
        basis: Basis,
        out: &mut Reading,
    ) {
        let sentence = scan.tokens.sentence_of(basis.span.start).unwrap_or(0);
        let timeframe = scan.rules.timeframe(text, scan.tokens, sentence);
        let due = match &timeframe {
            Some(tf) => Due {
                at: tf.resolve(msg.at, &self.settings.schedule),
                source: DueSource::Stated(tf.words.clone()),
            },
            None => Due {
                at: add(msg.at, self.settings.default_due),
                source: DueSource::Default,
            },
        };
        let agent = conv
            .context
            .last_agent
            .clone()
            .unwrap_or_else(|| UserId::new(msg.author));
        let cooled = self.cooled(conv, NudgeKind::FollowUpPromised, msg.at);
        let restates = !cooled && conv.promise.is_some();
        let suppressed = match (cooled, restates) {
            (true, _) => None,
            (false, true) => Some(Suppressed::Restated),
            (false, false) => Some(Suppressed::Cooldown),
        };
        let evidence = text.original(basis.span.clone());
        let kinds = [
            Some(NudgeKind::FollowUpPromised),
            timeframe
                .as_ref()
                .is_none_or(Timeframe::is_vague)
                .then_some(NudgeKind::FollowUpNoTimeframe),
        ];
        for kind in kinds.into_iter().flatten() {
            out.detections.push(Detection {
                kind,
                category: None,
                conversation: id.clone(),
                source: msg.source,
                at: msg.at,
                rule: basis.rule.clone(),
                evidence: evidence.to_string(),
                suppressed,
                score: basis.score,
                why: basis.why.clone(),
            });
        }
        if let Some(open) = conv.promise.as_deref_mut().filter(|_| restates) {
            // A second promise moments after the first restates it: keep one promise, newest time.
            // A held promise is always open, so the restatement is never refused.
            if open.restate(due.clone()).is_ok() {
                out.changes.push(PromiseChange::Restated {
                    source: open.source,
                    due,
                });
                return;
            }
        }
        if let Some(mut old) = conv.promise.take() {
            if old.supersede().is_ok() {
                out.changes.push(PromiseChange::Superseded {
                    source: old.source,
                    at: msg.at,
                });
            }
        }
        let promise = Promise::new(
            agent,
            conv.context.last_customer.clone(),
            basis.rule.clone(),
            msg.source,
            msg.at,
            due,
            text.original(basis.span.clone()).to_string(),
            excerpt(msg.text),
        );
        if cooled {
            out.nudges
                .push(self.promise_nudge(NudgeKind::FollowUpPromised, id, &promise, msg.at, None));
            if timeframe.as_ref().is_none_or(Timeframe::is_vague) {
                out.nudges
                    .push(self.promise_nudge(NudgeKind::FollowUpNoTimeframe, id, &promise, msg.at, None));
            }
        }
        out.changes.push(PromiseChange::Made(promise.clone()));
        conv.promise = Some(Box::new(promise));
    }

    /// An agent started typing: the hand-off brief if they are taking the conversation over from
    /// another agent (once per agent), then any cue waiting for an agent ([`Engine::claim`]).
    pub fn typing(&self, conversation: &str, agent: &str, at: Timestamp) -> Vec<Nudge> {
        let mut out = Vec::new();
        if let Some(mut conv) = self.conversations.get_mut(conversation) {
            let id = conv.key().clone();
            let conv = conv.value_mut();
            // The brief points at the last message the agent will be answering.
            let source = conv.story.last_source;
            out.extend(self.takeover_brief(&id, conv, agent, at, source));
        }
        out.extend(self.claim(conversation, agent, at));
        out
    }

    /// The brief for `agent` if they are taking over from another agent and have not had it here.
    fn takeover_brief(
        &self,
        id: &ConversationId,
        conv: &mut Conversation,
        agent: &str,
        at: Timestamp,
        source: MessageRef,
    ) -> Option<Nudge> {
        let previous = conv.context.last_agent.clone().filter(|p| p.as_str() != agent)?;
        if conv.story.briefed.iter().any(|b| b.as_str() == agent) {
            return None;
        }
        self.brief(id, conv, &previous, agent, at, source)
    }

    /// The hand-off brief for `agent` when another agent has been handling the conversation and
    /// the customer has told us of a failure or is owed a promise: their words, the apology so
    /// far, the promise and how long they have waited, before the new agent writes. Once per
    /// agent per conversation.
    fn brief(
        &self,
        id: &ConversationId,
        conv: &mut Conversation,
        previous: &UserId,
        agent: &str,
        at: Timestamp,
        source: MessageRef,
    ) -> Option<Nudge> {
        if conv.story.cues.is_empty() && conv.promise.is_none() {
            return None;
        }
        conv.story.briefed.push(UserId::new(agent));
        let story = &conv.story;
        let cues: Vec<String> = story
            .cues
            .iter()
            .map(|c| format!("\"{}\" ({})", c.words, c.category.label()))
            .collect();
        let apology = story
            .apology
            .clone()
            .map_or_else(|| "none yet".to_string(), |a| format!("\"{a}\""));
        let waited = story
            .customer_since
            .map(|since| format_wait(at.duration_since(since)))
            .unwrap_or_default();
        let due = conv.promise.as_deref().map(|p| p.due().clone());
        let quote = if cues.is_empty() {
            "none".to_string()
        } else {
            cues.join("; ")
        };
        let rule: Arc<str> = Arc::from("handoff");
        Some(self.compose(
            Draft {
                kind: NudgeKind::HandoffBrief,
                category: None,
                conversation: id,
                agent: Some(UserId::new(agent)),
                customer: conv.context.last_customer.clone(),
                rule: &rule,
                evidence: &apology,
                quote: &quote,
                at,
                due,
                source,
            },
            &(self.name)(previous),
            &waited,
        ))
    }

    /// `/handoff`: `from` hands the conversation to `to`, who gets the brief now (again, if they
    /// had one before). `None` when there is nothing to brief: no failure cue and no promise.
    pub fn handoff(&self, conversation: &str, from: &str, to: &str, at: Timestamp) -> Option<Nudge> {
        let mut conv = self.conversations.get_mut(conversation)?;
        let id = conv.key().clone();
        let conv = conv.value_mut();
        conv.story.briefed.retain(|b| b.as_str() != to);
        let source = conv.story.last_source;
        self.brief(&id, conv, &UserId::new(from), to, at, source)
    }

    /// Hands a customer cue that arrived before any agent spoke to the first agent who turns up.
    ///
    /// Adapters call this (through [`Engine::typing`]) when an agent starts typing in the
    /// conversation, and before [`Engine::observe`] for an agent's message (which clears what is
    /// left unclaimed). Returns the cue's nudge addressed to `agent`, once.
    pub fn claim(&self, conversation: &str, agent: &str, at: Timestamp) -> Option<Nudge> {
        let mut conv = self.conversations.get_mut(conversation)?;
        let mut nudge = *conv.unclaimed.take()?;
        nudge.agent = Some(UserId::new(agent));
        nudge.at = nudge.at.max(at);
        Some(nudge)
    }

    /// Marks a conversation's open promise as kept (the agent pressed Done). Returns whether there
    /// was one.
    pub fn promise_kept(&self, conversation: &str) -> bool {
        let Some(mut conv) = self.conversations.get_mut(conversation) else {
            return false;
        };
        conv.promise.take().is_some_and(|mut p| p.done().is_ok())
    }

    /// Moves a conversation's open promise to be due at `until` (the agent pressed Snooze); its
    /// reminder and overdue notice are due again for the new time. Returns whether there was one.
    pub fn snooze(&self, conversation: &str, until: Timestamp) -> bool {
        let Some(mut conv) = self.conversations.get_mut(conversation) else {
            return false;
        };
        conv.promise.as_deref_mut().is_some_and(|p| p.snooze(until).is_ok())
    }

    /// Every open promise, soonest due first.
    pub fn open_promises(&self) -> Vec<OpenPromise> {
        let mut all: Vec<OpenPromise> = self
            .conversations
            .iter()
            .filter_map(|entry| {
                let p = entry.promise.as_deref()?;
                Some(OpenPromise {
                    conversation: entry.key().clone(),
                    agent: p.agent.clone(),
                    source: p.source,
                    made_at: p.made_at,
                    due: p.due().clone(),
                    evidence: p.evidence.clone(),
                    overdue: p.is_overdue(),
                })
            })
            .collect();
        all.sort_by(|a, b| {
            a.due
                .at
                .cmp(&b.due.at)
                .then_with(|| a.conversation.cmp(&b.conversation))
        });
        all
    }

    /// The next step a promise waits for and when, under this engine's settings (see
    /// [`Promise::next_step`]): the bot's scheduler and replay's timeline both time promises by it.
    ///
    /// `now` is when the last step went out; the escalation is timed from it.
    pub fn next_step(&self, promise: &Promise, now: Timestamp) -> Option<(Timestamp, Step)> {
        promise.next_step(&self.settings, now)
    }

    /// Renders a promise's heads-up or overdue notice (see [`Step::nudge_kind`]), stamped `at`.
    pub fn reminder(&self, kind: NudgeKind, conversation: &ConversationId, promise: &Promise, at: Timestamp) -> Nudge {
        self.promise_nudge(kind, conversation, promise, at, None)
    }

    /// A conversation's context, to store it.
    pub fn context(&self, conversation: &str) -> Option<Context> {
        self.conversations.get(conversation).map(|c| c.context.clone())
    }

    /// A conversation's open promise, if the engine holds one.
    pub fn promise(&self, conversation: &str) -> Option<Promise> {
        self.conversations.get(conversation)?.promise.as_deref().cloned()
    }

    /// Whether the engine holds state for this conversation right now.
    pub fn knows(&self, conversation: &str) -> bool {
        self.conversations.contains_key(conversation)
    }

    /// Brings back a stored conversation (after a restart, or after it was forgotten while idle),
    /// its promise in the state it was stored in; a done or superseded one is not held again.
    /// State already in memory wins: it is newer than anything stored.
    pub fn restore(&self, conversation: &str, context: Context, promise: Option<Promise>) {
        let id = ConversationId::new(conversation);
        self.conversations.entry(id).or_insert_with(|| Conversation {
            context,
            story: Default::default(),
            unclaimed: None,
            promise: promise.filter(|p| p.state().is_open()).map(Box::new),
        });
    }

    /// Records that a scheduler sent `step` of the promise `source` made, moving the held
    /// promise on, so the conversation's state agrees (a customer chasing an already-overdue
    /// promise is not told twice). Returns whether it moved: not when the engine does not hold
    /// that promise, or holds it in a state the step cannot follow (it moved on meanwhile).
    pub fn promise_step_sent(&self, conversation: &str, source: MessageRef, step: Step) -> bool {
        let Some(mut conv) = self.conversations.get_mut(conversation) else {
            return false;
        };
        conv.promise
            .as_deref_mut()
            .filter(|p| p.source == source)
            .is_some_and(|p| p.advance(step).is_ok())
    }

    /// Forgets conversations idle for longer than `forget_idle_after` with nothing left to do, so
    /// memory stays bounded however long the bot runs. Returns how many were forgotten.
    ///
    /// An open problem keeps its conversation four times as long. A promise keeps its conversation
    /// alive until it has been overdue for that long too; durable storage, not memory, is where
    /// lapsed promises are kept for the team.
    pub fn forget_idle(&self, now: Timestamp) -> usize {
        let idle = self.settings.forget_idle_after;
        let before = self.conversations.len();
        self.conversations.retain(|_, c| {
            // A problem nobody has apologized for yet is worth remembering longer: replies on
            // social channels often come the next day.
            let keep = if c.context.problem_open { idle * 4 } else { idle };
            let recent = now < add(c.context.last_message, keep);
            let promise_alive = c
                .promise
                .as_deref()
                .is_some_and(|p| !p.is_overdue() || now < add(p.due().at, idle));
            recent || promise_alive
        });
        before - self.conversations.len()
    }

    /// True (and recorded) when `kind` may fire now: it has not fired in this conversation within
    /// the cooldown.
    fn cooled(&self, conv: &mut Conversation, kind: NudgeKind, at: Timestamp) -> bool {
        let Some(slot) = COOLED.iter().position(|k| *k == kind) else {
            return true;
        };
        if conv.context.last_fired[slot].is_some_and(|last| at < add(last, self.settings.cooldown)) {
            return false;
        }
        conv.context.last_fired[slot] = Some(at);
        true
    }

    fn promise_nudge(
        &self,
        kind: NudgeKind,
        id: &ConversationId,
        p: &Promise,
        at: Timestamp,
        evidence: Option<&str>,
    ) -> Nudge {
        self.render(Draft {
            kind,
            category: None,
            conversation: id,
            agent: Some(p.agent.clone()),
            customer: p.customer.clone(),
            rule: &p.rule,
            evidence: evidence.unwrap_or(&p.evidence),
            quote: &p.quote,
            at,
            due: Some(p.due().clone()),
            source: p.source,
        })
    }

    fn render(&self, d: Draft<'_>) -> Nudge {
        self.compose(d, "", "")
    }

    /// [`Engine::render`] with the hand-off brief's extra values.
    fn compose(&self, d: Draft<'_>, last_agent: &str, waited: &str) -> Nudge {
        let prompts = self.prompts();
        let template = prompts.template(d.kind, d.category);
        let phrases: Vec<String> = prompts
            .situation(&template.situation)
            .map(|s| {
                s.phrases
                    .iter()
                    .take(self.settings.phrases_per_nudge)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let bullets: String = phrases.iter().map(|p| format!("• {p}\n")).collect();
        let due = d
            .due
            .as_ref()
            .map(|due| format_due(due.at, &self.settings.schedule))
            .unwrap_or_default();
        let customer = d
            .customer
            .as_ref()
            .map_or_else(|| "the customer".to_string(), self.name);
        let agent = d.agent.as_ref().map(self.name).unwrap_or_default();
        let values = Values {
            evidence: d.evidence,
            quote: d.quote,
            customer: &customer,
            agent: &agent,
            due: &due,
            category: d.category.map_or("", Category::label),
            phrases: bullets.trim_end(),
            last_agent,
            waited,
        };
        let title = template.title.render(&values);
        let text = template.text.render(&values);
        Nudge {
            kind: d.kind,
            category: d.category,
            conversation: d.conversation.clone(),
            agent: d.agent,
            customer: d.customer,
            rule: d.rule.clone(),
            evidence: d.evidence.to_string(),
            quote: d.quote.to_string(),
            at: d.at,
            due: d.due,
            source: d.source,
            title,
            text,
            phrases,
        }
    }
}

/// Everything a nudge is made of before its text is rendered.
struct Draft<'a> {
    kind: NudgeKind,
    category: Option<Category>,
    conversation: &'a ConversationId,
    agent: Option<UserId>,
    customer: Option<UserId>,
    rule: &'a Arc<str>,
    evidence: &'a str,
    quote: &'a str,
    at: Timestamp,
    due: Option<Due>,
    source: MessageRef,
}

/// Whether an agent message tells the customer what happens next and when: a next step, a promise
/// to get back in touch or the next part of a hand-off, with a real time in the same sentence.
fn says_next_step(text: &Prepared<'_>, scan: &Scan<'_>) -> bool {
    let mut sentences: Vec<usize> = scan
        .hits
        .iter()
        .filter(|h| {
            let rule = scan.rule(h);
            match rule.kind {
                RuleKind::NextStep | RuleKind::FollowUp => true,
                RuleKind::Handoff => rule.label.as_deref() == Some("next"),
                _ => false,
            }
        })
        .filter_map(|h| scan.tokens.sentence_of(h.span.start))
        .collect();
    sentences.dedup();
    sentences.into_iter().any(|s| {
        scan.rules
            .timeframe(text, scan.tokens, s)
            .is_some_and(|tf| !tf.is_vague())
    })
}

/// Whether a customer cue is about the open promise itself ("you said you'd call me back",
/// "still waiting for your email") rather than about the order: a missed-callback cue, or a
/// waiting cue with a word of the lexicon's `{contact}` class in its sentence.
fn chases_promise(
    category: Option<Category>,
    text: &Prepared<'_>,
    scan: &Scan<'_>,
    cue: &std::ops::Range<usize>,
) -> bool {
    match category {
        Some(Category::MissedCallback) => true,
        Some(Category::StillWaiting | Category::NotReceived) => {
            let Some(index) = scan.tokens.sentence_of(cue.start) else {
                return false;
            };
            scan.rules.sentence_has("contact", scan.tokens, text.scan(), index)
        }
        _ => false,
    }
}

fn add(t: Timestamp, d: jiff::SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(t)
}

/// A wait as a person says it: "40 min", "3 h 5 min", "2 days".
pub fn format_wait(wait: jiff::SignedDuration) -> String {
    let minutes = wait.as_secs().max(0) / 60;
    match minutes {
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => match m % 60 {
            0 => format!("{} h", m / 60),
            r => format!("{} h {r} min", m / 60),
        },
        m => format!("{} days", m / (24 * 60)),
    }
}

/// A due time as agents read it: local to the conversation's zone.
pub fn format_due(at: Timestamp, schedule: &Schedule) -> String {
    at.to_zoned(schedule.time_zone.clone())
        .strftime("%a %-d %b %H:%M %Z")
        .to_string()
}

/// A one-line excerpt of a message, cut at a character boundary.
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for (n, word) in text.split_whitespace().enumerate() {
        if out.chars().count() + word.chars().count() + 1 > QUOTE_CHARS {
            out.push('…');
            break;
        }
        if n > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > QUOTE_CHARS + 1 {
        out = out.chars().take(QUOTE_CHARS).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests;

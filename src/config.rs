//! Loading rules, prompts and settings from disk — or the defaults built into the binary — and
//! checking them.
//!
//! Layout of a config folder: `lexicon.toml` (spellings and word classes; the built-in one when
//! absent), `rules.toml` and/or `rules/*.toml` (read in name order), and an optional
//! `engine.toml`. A prompts folder holds `nudges.toml` and `phrases.toml`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::engine::{Engine, Learned, Lexicon, Problem, Problems, Prompts, RuleSet, Settings};

/// Why loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} has no rules: add rules.toml or a rules/ folder of .toml files")]
    NoRules { path: PathBuf },
    #[error("{0}")]
    Invalid(Problems),
}

/// Where rules, settings and prompts come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A config folder; `None` uses `./config` when it exists, else the built-in defaults.
    pub config: Option<PathBuf>,
    /// A prompts folder; `None` uses `./prompts` when it exists, else the built-in defaults.
    pub prompts: Option<PathBuf>,
}

/// A file as `(name for messages, contents)`.
type Named = (String, String);

/// Everything read for one load.
struct Texts {
    lexicon: Vec<Named>,
    /// The learned layer's model file, when the config has one.
    model: Option<Named>,
    rules: Vec<Named>,
    engine: Named,
    nudges: Named,
    phrases: Named,
}

/// The shipped rule book, file by file, as `config/rules/` holds it (a test keeps the two equal).
pub const BUILT_IN_RULES: [(&str, &str); 8] = [
    (
        "config/rules/callbacks_and_repeats.toml",
        include_str!("../config/rules/callbacks_and_repeats.toml"),
    ),
    (
        "config/rules/checklist.toml",
        include_str!("../config/rules/checklist.toml"),
    ),
    (
        "config/rules/complaints_apologies_follow_ups.toml",
        include_str!("../config/rules/complaints_apologies_follow_ups.toml"),
    ),
    (
        "config/rules/explanations.toml",
        include_str!("../config/rules/explanations.toml"),
    ),
    (
        "config/rules/not_received_and_waiting.toml",
        include_str!("../config/rules/not_received_and_waiting.toml"),
    ),
    (
        "config/rules/problem_statements.toml",
        include_str!("../config/rules/problem_statements.toml"),
    ),
    (
        "config/rules/recovery_craft.toml",
        include_str!("../config/rules/recovery_craft.toml"),
    ),
    (
        "config/rules/self_service_automated_transfers.toml",
        include_str!("../config/rules/self_service_automated_transfers.toml"),
    ),
];
/// The shipped lexicon: the core file, then `config/lexicon/` file by file.
pub const BUILT_IN_LEXICON: [(&str, &str); 9] = [
    ("config/lexicon.toml", include_str!("../config/lexicon.toml")),
    (
        "config/lexicon/callbacks_and_repeats.toml",
        include_str!("../config/lexicon/callbacks_and_repeats.toml"),
    ),
    (
        "config/lexicon/checklist.toml",
        include_str!("../config/lexicon/checklist.toml"),
    ),
    (
        "config/lexicon/complaints_apologies_follow_ups.toml",
        include_str!("../config/lexicon/complaints_apologies_follow_ups.toml"),
    ),
    (
        "config/lexicon/explanations.toml",
        include_str!("../config/lexicon/explanations.toml"),
    ),
    (
        "config/lexicon/not_received_and_waiting.toml",
        include_str!("../config/lexicon/not_received_and_waiting.toml"),
    ),
    (
        "config/lexicon/problem_statements.toml",
        include_str!("../config/lexicon/problem_statements.toml"),
    ),
    (
        "config/lexicon/recovery_craft.toml",
        include_str!("../config/lexicon/recovery_craft.toml"),
    ),
    (
        "config/lexicon/self_service_automated_transfers.toml",
        include_str!("../config/lexicon/self_service_automated_transfers.toml"),
    ),
];

fn built_in(files: &[(&str, &str)]) -> Vec<Named> {
    files
        .iter()
        .map(|(name, text)| (format!("(built-in) {name}"), text.to_string()))
        .collect()
}
/// The shipped learned layer, trained by `backstop train` (its `trained_on` names the files).
const BUILT_IN_MODEL: Option<&str> = Some(include_str!("../config/model.json"));

const BUILT_IN_ENGINE: &str = include_str!("../config/engine.toml");
const BUILT_IN_NUDGES: &str = include_str!("../prompts/nudges.toml");
const BUILT_IN_PHRASES: &str = include_str!("../prompts/phrases.toml");

impl Sources {
    /// The folders these sources resolve to, `None` meaning the built-in defaults.
    pub fn resolved(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        let pick = |given: &Option<PathBuf>, default: &str, marker: &str| {
            given.clone().or_else(|| {
                let dir = PathBuf::from(default);
                (dir.join(marker).exists() || dir.join("rules").is_dir()).then_some(dir)
            })
        };
        (
            pick(&self.config, "config", "rules.toml"),
            pick(&self.prompts, "prompts", "nudges.toml"),
        )
    }

    fn read(&self) -> Result<Texts, LoadError> {
        let (config, prompts) = self.resolved();
        let built_in_lexicon = || built_in(&BUILT_IN_LEXICON);
        let (model, lexicon, rules, engine) = match &config {
            None => (
                BUILT_IN_MODEL.map(|m| ("(built-in) config/model.json".to_string(), m.to_string())),
                built_in_lexicon(),
                built_in(&BUILT_IN_RULES),
                ("(built-in) config/engine.toml".to_string(), BUILT_IN_ENGINE.to_string()),
            ),
            Some(dir) => {
                let rules = read_set(dir, "rules.toml", "rules")?;
                if rules.is_empty() {
                    return Err(LoadError::NoRules { path: dir.clone() });
                }
                let engine_path = dir.join("engine.toml");
                let engine = if engine_path.exists() {
                    read(&engine_path)?
                } else {
                    (engine_path.display().to_string(), String::new())
                };
                let lexicon = read_set(dir, "lexicon.toml", "lexicon")?;
                let lexicon = if lexicon.is_empty() {
                    built_in_lexicon()
                } else {
                    lexicon
                };
                let model_path = dir.join("model.json");
                let model = if model_path.exists() {
                    Some(read(&model_path)?)
                } else {
                    None
                };
                (model, lexicon, rules, engine)
            }
        };
        let (nudges, phrases) = match &prompts {
            None => (
                (
                    "(built-in) prompts/nudges.toml".to_string(),
                    BUILT_IN_NUDGES.to_string(),
                ),
                (
                    "(built-in) prompts/phrases.toml".to_string(),
                    BUILT_IN_PHRASES.to_string(),
                ),
            ),
            Some(dir) => (read(&dir.join("nudges.toml"))?, read(&dir.join("phrases.toml"))?),
        };
        Ok(Texts {
            model,
            lexicon,
            rules,
            engine,
            nudges,
            phrases,
        })
    }

    /// Loads and compiles everything into an engine; any problem stops the load.
    pub fn engine(&self) -> Result<Engine, LoadError> {
        let Texts {
            model,
            lexicon,
            rules,
            engine,
            nudges,
            phrases,
        } = self.read()?;
        let learned = match &model {
            Some((name, text)) => Learned::parse(name, text).map(Some),
            None => Ok(None),
        };
        let mut problems = Vec::new();
        let settings = Settings::parse(&engine.0, &engine.1)
            .map_err(|p| problems.extend(p.0))
            .ok();
        let budget = settings
            .as_ref()
            .map_or(crate::engine::DEFAULT_BUDGET, |s| s.check_budget);
        let lexicon = Lexicon::parse(&lexicon).map_err(|p| problems.extend(p.0)).ok();
        let rules = lexicon.and_then(|lexicon| {
            RuleSet::parse(&lexicon, &rules, budget)
                .map_err(|p| problems.extend(p.0))
                .ok()
        });
        let prompts = Prompts::parse((&nudges.0, &nudges.1), (&phrases.0, &phrases.1))
            .map_err(|p| problems.extend(p.0))
            .ok();
        match (rules, prompts, settings) {
            (Some(r), Some(p), Some(s)) => match learned {
                Ok(learned) if problems.is_empty() => Ok(Engine::new(r, p, s).with_learned(learned.map(Arc::new))),
                Ok(_) => Err(LoadError::Invalid(Problems(problems))),
                Err(more) => {
                    problems.extend(more);
                    Err(LoadError::Invalid(Problems(problems)))
                }
            },
            _ => {
                if let Err(more) = learned {
                    problems.extend(more);
                }
                Err(LoadError::Invalid(Problems(problems)))
            }
        }
    }

    /// Loads the prompts alone (for the phrase library).
    pub fn prompts(&self) -> Result<Prompts, LoadError> {
        let Texts { nudges, phrases, .. } = self.read()?;
        Prompts::parse((&nudges.0, &nudges.1), (&phrases.0, &phrases.1)).map_err(LoadError::Invalid)
    }

    /// Every problem in rules, settings and prompts, including rules whose own examples fail.
    pub fn check(&self) -> Result<Report, LoadError> {
        let engine = match self.engine() {
            Ok(e) => e,
            Err(LoadError::Invalid(p)) => {
                return Ok(Report {
                    problems: p.0,
                    situations: 0,
                    rules: None,
                })
            }
            Err(e) => return Err(e),
        };
        let rules = engine.rules();
        Ok(Report {
            problems: rules.self_test(),
            situations: engine.prompts().situations().len(),
            rules: Some(rules),
        })
    }
}

/// What `check` found.
#[derive(Debug)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub situations: usize,
    /// The compiled book, when it compiled (its warnings, costs and lexicon are reported too).
    pub rules: Option<std::sync::Arc<RuleSet>>,
}

/// `NAME.toml` and then every `.toml` in `FOLDER/`, in name order.
fn read_set(dir: &Path, single: &str, folder: &str) -> Result<Vec<Named>, LoadError> {
    let mut out = Vec::new();
    let single = dir.join(single);
    if single.exists() {
        out.push(read(&single)?);
    }
    let folder = dir.join(folder);
    if folder.is_dir() {
        let mut paths: Vec<PathBuf> = fs::read_dir(&folder)
            .map_err(|source| LoadError::Read {
                path: folder.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            out.push(read(&p)?);
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<(String, String), LoadError> {
    fs::read_to_string(path)
        .map(|text| (path.display().to_string(), text))
        .map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule book and lexicon built into the binary are exactly the files in `config/`.
    #[test]
    fn the_built_in_defaults_are_the_config_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (folder, built_in) in [
            ("config/rules", &BUILT_IN_RULES[..]),
            ("config/lexicon", &BUILT_IN_LEXICON[1..]),
        ] {
            let mut on_disk: Vec<String> = fs::read_dir(root.join(folder))
                .unwrap()
                .map(|e| format!("{folder}/{}", e.unwrap().file_name().to_string_lossy()))
                .filter(|n| n.ends_with(".toml"))
                .collect();
            on_disk.sort();
            let names: Vec<String> = built_in.iter().map(|(n, _)| n.to_string()).collect();
            assert_eq!(names, on_disk, "add new files to BUILT_IN_* in src/config.rs");
            for (name, text) in built_in {
                assert_eq!(fs::read_to_string(root.join(name)).unwrap(), *text, "{name}");
            }
        }
    }
}

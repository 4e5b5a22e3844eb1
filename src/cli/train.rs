//! `backstop train`: fit the learned layer from labelled transcripts, and gate a new model on a
//! labelled set before it replaces the running one.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use backstop::eval::evaluate;
use backstop::train::{self, TrainingFile};

use super::SourceArgs;

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    sources: SourceArgs,
    /// Labelled transcripts to learn from (the replay format with `labels`; `backstop
    /// export-labels` output works too). Blind sets and CC BY-NC-SA text are refused.
    #[arg(required = true, value_name = "LABELLED")]
    files: Vec<PathBuf>,
    /// Where to write the model (JSON), e.g. config/model.json.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Seed for the development folds.
    #[arg(long, default_value_t = 20261130)]
    seed: u64,
    /// L2 penalty on the weights (larger: smoother, more cautious models).
    #[arg(long, default_value_t = train::DEFAULT_L2)]
    l2: f64,
    /// Labelled transcripts to gate on: the new model is written only if no kind's detection
    /// F1 drops against the model the config runs now.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    gate: Vec<PathBuf>,
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let sources = args.sources.sources();
    let current = sources.engine()?;
    let mut files: Vec<TrainingFile> = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        // Names as given, so the model file reads the same wherever it is trained.
        files.push((path.display().to_string(), text));
    }
    let started = std::time::Instant::now();
    let options = train::Options {
        seed: args.seed,
        l2: args.l2,
    };
    let model = train::train(&current, &files, options, |line| eprintln!("  {line}"))?;
    let text = train::to_json(&model);
    let learned = train::check(&args.out.display().to_string(), &text)
        .map_err(|p| anyhow::anyhow!("the trained model does not load: {}", backstop::engine::Problems(p)))?;
    eprintln!(
        "trained in {:.1}s: {} models, {} bytes",
        started.elapsed().as_secs_f64(),
        model.models.len(),
        text.len()
    );
    if !args.gate.is_empty() {
        let candidate = current
            .with_settings(current.settings().clone())
            .with_learned(Some(learned.into()));
        eprintln!(
            "{:<28} {:>8} {:>8}   (detection F1 on the gate set)",
            "kind", "running", "new"
        );
        let (mut old_total, mut new_total) = (
            backstop::eval::Evaluation::default(),
            backstop::eval::Evaluation::default(),
        );
        for path in &args.gate {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path.display().to_string();
            old_total.merge(evaluate(&current, &name, &text)?);
            new_total.merge(evaluate(&candidate, &name, &text)?);
        }
        for (kind, new) in &new_total.detections.by_kind {
            let old = old_total.detections.by_kind.get(kind).map_or(0.0, |c| c.f1());
            eprintln!("{:<28} {:>8.3} {:>8.3}", kind.to_string(), old, new.f1());
        }
        let dropped = train::dropped(&old_total.detections, &new_total.detections);
        if !dropped.is_empty() {
            eprintln!(
                "backstop: not written: detection F1 dropped on the gate set ({}); the running model stays",
                dropped.join(", ")
            );
            return Ok(ExitCode::from(1));
        }
    }
    std::fs::write(&args.out, &text).with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

//! Shared by the integration tests: where the shipped rules, settings and prompts are.

use std::path::PathBuf;

use backstop::config::Sources;

/// The project's own `config/` and `prompts/`, whatever folder the test runs from.
pub fn shipped() -> Sources {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Sources {
        config: Some(root.join("config")),
        prompts: Some(root.join("prompts")),
    }
}

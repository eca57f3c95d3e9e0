//! The step boundaries of the relay's multi-step operations (docs/relay.md, "A relay killed
//! part way"), where the tests stop it: with the `test-hooks` feature the process kills itself
//! with `SIGKILL` at the step `CAIRN_TEST_KILL_AFTER` names, so each boundary is hit exactly
//! (as `cairn_signer::interrupted` does for the signer; the relay does not link the signer).
//! A release build has no such hook.

/// `POST /api/v1/bundles`, in order: `mirror` (the bundle verified and written to the mirror in
/// one synced batch), `state` (the rollout engine took the mirror up and its events are in the
/// state log), `tiles` (the mirror's tiles published under `data_dir/tiles`).
pub const IMPORT_STEPS: [&str; 3] = ["mirror", "state", "tiles"];

/// `GET /api/v1/state-bundle`: `state-bundle` (the bundle built from the state log, nothing sent
/// yet).
pub const EXPORT_STEPS: [&str; 1] = ["state-bundle"];

/// Marks that the relay finished `step` (one of [`IMPORT_STEPS`] or [`EXPORT_STEPS`]); with the
/// `test-hooks` feature and `CAIRN_TEST_KILL_AFTER` naming it, the process is killed here.
pub fn reached(step: &'static str) {
    debug_assert!(
        IMPORT_STEPS.contains(&step) || EXPORT_STEPS.contains(&step),
        "unknown step {step}"
    );
    #[cfg(feature = "test-hooks")]
    if std::env::var("CAIRN_TEST_KILL_AFTER").is_ok_and(|s| s == step) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

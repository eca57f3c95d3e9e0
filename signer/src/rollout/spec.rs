//! The rollout plan file as an operator writes it (TOML, docs/eligibility.md "The plan file"), and
//! every check of it that does not need the log or the fleet: `PlanSpec::check` refuses a bad
//! file before a passphrase is asked or a device decided, naming the field. The checks against the
//! fleet (stage sizes, Jobs counts against the eligible devices) run once the devices are decided.
//!
//! This file depends on `cairn-verifier`, `serde`, `toml` and `thiserror` only, and on its sibling
//! `jobs.rs` (`super::jobs`): the `plan_spec` fuzz target compiles the two from their source files.

use cairn_verifier::rollout::jobs::{JobsControls, MAX_THINGS};
use cairn_verifier::rollout::{Gate, MAX_STAGES, Stage};
use cairn_verifier::types::{Id, Version};
use serde::Deserialize;

use super::jobs::JobsSpec;

/// A plan file that cannot be signed: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct SpecError {
    /// The field, as the file names it (`scope.min_version`, `stage "canary"`, `jobs.retry[0]`).
    pub field: String,
    /// What is wrong with it.
    pub why: String,
}

impl SpecError {
    pub(super) fn new(field: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            why: why.into(),
        }
    }
}

/// Which devices a release is for (besides the release's own product, family and hardware).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSpec {
    /// Lowest current version allowed (inclusive), `MAJOR.MINOR.PATCH`.
    pub min_version: String,
    /// Highest current version allowed (inclusive).
    pub max_version: String,
    /// Cohort tags; a device must carry one (empty: every device).
    #[serde(default)]
    pub cohorts: Vec<String>,
    /// Devices in scope whatever their cohorts.
    #[serde(default)]
    pub include: Vec<String>,
    /// Devices never in scope.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Quarantined devices.
    #[serde(default)]
    pub quarantine: Vec<String>,
}

/// One stage as an operator writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Name (`canary`, `wave-1`, …).
    pub name: String,
    /// Exactly this many devices (cumulative), for a canary.
    pub devices: Option<u64>,
    /// Or this share of the eligible devices (cumulative), 1 to 100.
    pub percent: Option<u8>,
    /// Soak time before advancing, seconds.
    pub soak_secs: u64,
    /// Installed share to advance, per mille.
    pub success_permille: u16,
    /// Failed share that pauses, per mille.
    pub failure_permille: u16,
    /// `automatic` or `approval`.
    pub gate: String,
}

/// A rollout plan as an operator writes it (TOML, docs/eligibility.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// Campaign id (new).
    pub campaign: String,
    /// The release to roll out (in the log).
    pub release: String,
    /// The pre-signed rollback target: an earlier release in the log.
    pub rollback_release: String,
    /// Scope.
    pub scope: ScopeSpec,
    /// Stages, in order; the last covers every eligible device.
    pub stages: Vec<StageSpec>,
    /// Install attempts per device, 1 to 10.
    pub max_attempts: u8,
    /// First retry delay, seconds (doubled per attempt).
    pub backoff_secs: u64,
    /// Failures that quarantine a device, 1 to 10.
    pub quarantine_after_failures: u8,
    /// Quarantine a device at once when it reports a verification failure.
    pub quarantine_on_verification_failure: bool,
    /// AWS IoT Jobs rollout controls (`[jobs]`, docs/jobs.md), signed as plan key 17.
    #[serde(default)]
    pub jobs: Option<JobsSpec>,
}

/// What `PlanSpec::check` found valid, parsed.
#[derive(Debug, Clone)]
pub struct Checked<'a> {
    /// The campaign id.
    pub campaign: Id<'a>,
    /// The scope's version range, `min_version <= max_version`.
    pub min_version: Version,
    /// The scope's version range.
    pub max_version: Version,
    /// The stages' names, in order.
    pub stage_names: Vec<Id<'a>>,
}

fn id<'a>(field: &str, s: &'a str) -> Result<Id<'a>, SpecError> {
    Id::new(s).ok_or_else(|| SpecError::new(field, format!("{s:?} is not a valid identifier")))
}

fn version(field: &str, s: &str) -> Result<Version, SpecError> {
    Version::parse(s)
        .ok_or_else(|| SpecError::new(field, format!("{s:?} is not MAJOR.MINOR.PATCH")))
}

impl PlanSpec {
    /// Parses a plan file (TOML). `check` validates it.
    pub fn from_toml(text: &str) -> Result<Self, SpecError> {
        toml::from_str(text).map_err(|e| SpecError::new("plan file", e.to_string()))
    }

    /// Every check that needs neither the log nor the fleet: identifiers, the version range, the
    /// retry numbers, each stage's own fields, and the `[jobs]` section against AWS's bounds (its
    /// counts against the eligible devices come with `jobs_controls`).
    pub fn check(&self) -> Result<Checked<'_>, SpecError> {
        let campaign = id("campaign", &self.campaign)?;
        id("release", &self.release)?;
        id("rollback_release", &self.rollback_release)?;
        let min_version = version("scope.min_version", &self.scope.min_version)?;
        let max_version = version("scope.max_version", &self.scope.max_version)?;
        if min_version > max_version {
            return Err(SpecError::new(
                "scope.min_version",
                format!("{min_version} is above max_version {max_version}"),
            ));
        }
        for (field, v) in [
            ("max_attempts", self.max_attempts),
            ("quarantine_after_failures", self.quarantine_after_failures),
        ] {
            if !(1..=10).contains(&v) {
                return Err(SpecError::new(field, format!("{v} is not 1 to 10")));
            }
        }
        let count = self.stages.len();
        if count == 0 || count as u64 > MAX_STAGES {
            return Err(SpecError::new(
                "stages",
                format!("{count} stages: a plan has 1 to {MAX_STAGES}"),
            ));
        }
        let mut stage_names = Vec::with_capacity(count);
        for s in &self.stages {
            stage_names.push(check_stage(s)?);
        }
        // As if every count the section names could be met: AWS's largest.
        self.jobs_controls(MAX_THINGS)?;
        Ok(Checked {
            campaign,
            min_version,
            max_version,
            stage_names,
        })
    }

    /// Stage device counts for `eligible` devices (each stage's own fields are `check`ed): counts
    /// strictly increase and the last stage covers every eligible device.
    pub fn stage_counts(&self, eligible: u64) -> Result<Vec<u64>, SpecError> {
        let mut counts = Vec::with_capacity(self.stages.len());
        let mut last = 0;
        for s in &self.stages {
            let count = match (s.devices, s.percent) {
                (Some(n), None) => n.min(eligible),
                (None, Some(p)) => (u128::from(eligible) * u128::from(p))
                    .div_ceil(100)
                    .try_into()
                    .unwrap_or(u64::MAX),
                _ => return Err(stage_error(s, "give exactly one of devices and percent")),
            };
            if count <= last {
                return Err(stage_error(
                    s,
                    format!("covers {count} devices, not more than the stage before ({last})"),
                ));
            }
            last = count;
            counts.push(count);
        }
        if last != eligible {
            return Err(SpecError::new(
                "stages",
                format!(
                    "they cover {last} of the {eligible} eligible devices; the last stage must cover them all (percent = 100)"
                ),
            ));
        }
        Ok(counts)
    }

    /// The stages to sign, from `stage_counts` and `Checked::stage_names`.
    pub fn stages<'a>(&self, counts: &[u64], names: &[Id<'a>]) -> Vec<Stage<'a>> {
        self.stages
            .iter()
            .zip(counts)
            .zip(names)
            .map(|((s, &devices), &name)| Stage {
                name,
                devices,
                soak_secs: s.soak_secs,
                success_permille: s.success_permille,
                failure_permille: s.failure_permille,
                gate: if s.gate == "approval" {
                    Gate::Approval
                } else {
                    Gate::Automatic
                },
            })
            .collect()
    }

    /// The `[jobs]` controls to sign for `eligible` devices, if the plan has the section.
    pub fn jobs_controls(&self, eligible: u64) -> Result<Option<JobsControls>, SpecError> {
        self.jobs
            .as_ref()
            .map(|j| j.controls(eligible, self.max_attempts))
            .transpose()
    }
}

fn stage_error(s: &StageSpec, why: impl Into<String>) -> SpecError {
    SpecError::new(format!("stage {:?}", s.name), why)
}

/// A stage's own fields; its name.
fn check_stage(s: &StageSpec) -> Result<Id<'_>, SpecError> {
    let name = Id::new(&s.name)
        .ok_or_else(|| stage_error(s, format!("name {:?} is not a valid identifier", s.name)))?;
    match (s.devices, s.percent) {
        (Some(0), None) => return Err(stage_error(s, "devices 0: a stage covers at least one")),
        (Some(_), None) | (None, Some(1..=100)) => {}
        (None, Some(p)) => return Err(stage_error(s, format!("percent {p} is not 1 to 100"))),
        _ => return Err(stage_error(s, "give exactly one of devices and percent")),
    }
    for (what, v) in [
        ("success_permille", s.success_permille),
        ("failure_permille", s.failure_permille),
    ] {
        if !(1..=1000).contains(&v) {
            return Err(stage_error(s, format!("{what} {v} is not 1 to 1000")));
        }
    }
    if !matches!(s.gate.as_str(), "automatic" | "approval") {
        return Err(stage_error(
            s,
            format!("gate {:?} is not automatic or approval", s.gate),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
campaign = "cmp-2026-03"
release = "controller-fw-2.4.1"
rollback_release = "controller-fw-2.4.0"
max_attempts = 3
backoff_secs = 60
quarantine_after_failures = 3
quarantine_on_verification_failure = true

[scope]
min_version = "2.3.0"
max_version = "2.4.0"

[[stages]]
name = "canary"
devices = 50
soak_secs = 600
success_permille = 980
failure_permille = 20
gate = "approval"

[[stages]]
name = "fleet"
percent = 100
soak_secs = 0
success_permille = 950
failure_permille = 50
gate = "automatic"
"#;

    fn refusal(text: &str) -> String {
        let spec = PlanSpec::from_toml(text).unwrap_or_else(|e| panic!("{e}"));
        spec.check()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_valid_file_is_checked_and_sized_by_the_fleet() {
        let spec = PlanSpec::from_toml(PLAN).unwrap_or_else(|e| panic!("{e}"));
        let checked = spec.check().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(checked.campaign.as_str(), "cmp-2026-03");
        assert_eq!(checked.min_version.to_string(), "2.3.0");
        let names: Vec<&str> = checked.stage_names.iter().map(Id::as_str).collect();
        assert_eq!(names, ["canary", "fleet"]);
        assert_eq!(spec.stage_counts(8203), Ok(vec![50, 8203]));
        // The canary's fixed count is capped by a smaller fleet, and then covers it all.
        assert_eq!(
            spec.stage_counts(50).unwrap_err().to_string(),
            "stage \"fleet\": covers 50 devices, not more than the stage before (50)"
        );
        let stages = spec.stages(&[50, 8203], &checked.stage_names);
        assert_eq!(stages[0].gate, Gate::Approval);
        assert_eq!((stages[1].devices, stages[1].gate), (8203, Gate::Automatic));
    }

    #[test]
    fn percentages_round_up_without_overflow() {
        let text = PLAN.replace("devices = 50", "percent = 1");
        let spec = PlanSpec::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.stage_counts(8203), Ok(vec![83, 8203]));
        assert_eq!(
            spec.stage_counts(u64::MAX),
            Ok(vec![u64::MAX / 100 + 1, u64::MAX])
        );
    }

    #[test]
    fn each_refusal_names_its_field() {
        for (from, to, says) in [
            (
                "campaign = \"cmp-2026-03\"",
                "campaign = \"a b\"",
                "campaign: \"a b\" is not a valid identifier",
            ),
            (
                "rollback_release = \"controller-fw-2.4.0\"",
                "rollback_release = \"\"",
                "rollback_release: \"\" is not",
            ),
            (
                "min_version = \"2.3.0\"",
                "min_version = \"2.3\"",
                "scope.min_version: \"2.3\" is not MAJOR.MINOR.PATCH",
            ),
            (
                "min_version = \"2.3.0\"",
                "min_version = \"2.5.0\"",
                "scope.min_version: 2.5.0 is above max_version 2.4.0",
            ),
            (
                "max_attempts = 3",
                "max_attempts = 11",
                "max_attempts: 11 is not 1 to 10",
            ),
            (
                "quarantine_after_failures = 3",
                "quarantine_after_failures = 0",
                "quarantine_after_failures: 0 is not 1 to 10",
            ),
            ("devices = 50", "devices = 0", "stage \"canary\": devices 0"),
            (
                "devices = 50",
                "devices = 50\npercent = 5",
                "stage \"canary\": give exactly one of devices and percent",
            ),
            (
                "percent = 100",
                "percent = 101",
                "stage \"fleet\": percent 101 is not 1 to 100",
            ),
            (
                "success_permille = 980",
                "success_permille = 1001",
                "stage \"canary\": success_permille 1001",
            ),
            (
                "gate = \"approval\"",
                "gate = \"maybe\"",
                "stage \"canary\": gate \"maybe\"",
            ),
            (
                "name = \"canary\"",
                "name = \"can ary\"",
                "stage \"can ary\": name",
            ),
            (
                "quarantine_on_verification_failure = true",
                "quarantine_on_verification_failure = true\n[jobs]\nmaximum_per_minute = 0",
                "jobs.maximum_per_minute: 0 is not 1 to 1000",
            ),
        ] {
            assert!(PLAN.contains(from), "{from}");
            let got = refusal(&PLAN.replacen(from, to, 1));
            assert!(got.contains(says), "{to:?}: {got:?} lacks {says:?}");
        }
        let mut spec = PlanSpec::from_toml(PLAN).unwrap_or_else(|e| panic!("{e}"));
        spec.stages.clear();
        let err = spec.check().map(|_| ()).unwrap_err().to_string();
        assert_eq!(err, "stages: 0 stages: a plan has 1 to 16");
        let one = PlanSpec::from_toml(PLAN)
            .unwrap_or_else(|e| panic!("{e}"))
            .stages[0]
            .clone();
        spec.stages = vec![one; 17];
        let err = spec.check().map(|_| ()).unwrap_err().to_string();
        assert_eq!(err, "stages: 17 stages: a plan has 1 to 16");
    }
}
